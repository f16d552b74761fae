"""ACDC — the MICCAI 2017 Automated Cardiac Diagnosis Challenge, cine-MRI.

Layout as distributed: ``training/patientNNN/`` (patients 001–100) and
``testing/patientNNN/`` (101–150), each with ``Info.cfg`` (naming the end-diastole
``ED`` and end-systole ``ES`` frames), ``patientNNN_frameFF.nii.gz`` and its label
``patientNNN_frameFF_gt.nii.gz``; labels 0 background, 1 right-ventricle cavity,
2 myocardium, 3 left-ventricle cavity.  One frame per patient is a case (``phase``,
default ED as in the ensemble-KD paper, which used only end-diastole frames), so no
patient is ever on both sides of a split.  The official split is training vs testing
when the testing patients come with their labels (as in the current release).
Intensities: no window (MRI); per-case z-score of percentile-clipped intensities.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from kdbench.datasets import register_dataset
from kdbench.datasets.prepare import Discovery, Source
from kdbench.datasets.volume import VolumeDataset, VolumeOptions, walk_files

PATIENT = re.compile(r"^patient(\d{3})$")
FIRST_TEST_PATIENT = 101


class AcdcOptions(VolumeOptions):
    phase: Literal["ED", "ES"] = "ED"
    """Cardiac phase of the frame each patient contributes: ED (end-diastole) or ES (end-systole)."""
    slice_axis: Literal[0, 1, 2, "auto"] = 2
    """Voxel axis cut into slices; ACDC stacks short-axis slices along axis 2."""


def _nifti(folder, stem: str):
    for suffix in (".nii.gz", ".nii"):
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def read_info(path) -> dict[str, str]:
    """``Info.cfg`` as a mapping (``ED``, ``ES``, ``Group``, ...)."""
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip()] = value.strip()
    return out


@register_dataset("acdc")
class Acdc(VolumeDataset):
    """ACDC cardiac cine-MRI: right ventricle, myocardium, left ventricle (one frame per patient)."""

    name = "acdc"
    Options: ClassVar = AcdcOptions
    layout = "patientNNN/ folders (under training/ and testing/) with Info.cfg and patientNNN_frameFF[_gt].nii.gz"
    download = "https://www.creatis.insa-lyon.fr/Challenge/acdc/"
    classes = ("background", "rv", "myocardium", "lv")
    default_targets = {"rv": (1,), "myocardium": (2,), "lv": (3,)}

    def discover(self) -> Discovery:
        found = Discovery()
        folders = sorted(p for p in self.root_path.rglob("patient*") if p.is_dir() and PATIENT.match(p.name))
        if not folders:
            files = walk_files(self.root_path)
            found.seen = len(files)
            found.examples = [str(p.relative_to(self.root_path)) for p in files[:4]]
            return found
        phase = self.options.phase
        for folder in folders:
            found.seen += 1
            number = int(PATIENT.match(folder.name).group(1))
            parts = {p.lower() for p in folder.relative_to(self.root_path).parts}
            testing = number >= FIRST_TEST_PATIENT or "testing" in parts
            info_path = folder / "Info.cfg"
            if not info_path.is_file():
                found.problems.append(f"{info_path}: missing (it names the ED and ES frames)")
                continue
            frame = read_info(info_path).get(phase, "")
            if not frame.isdigit():
                found.problems.append(f"{info_path}: no '{phase}: <frame>' line")
                continue
            stem = f"{folder.name}_frame{int(frame):02d}"
            image = _nifti(folder, stem)
            label = _nifti(folder, f"{stem}_gt")
            if image is None:
                found.problems.append(f"{folder / (stem + '.nii.gz')}: image of the {phase} frame missing")
                continue
            if label is None:
                if testing:
                    continue  # a testing patient distributed without labels
                found.problems.append(f"{folder / (stem + '_gt.nii.gz')}: label file missing for {image}")
                continue
            found.sources.append(Source(folder.name, (image,), label, part="test" if testing else "train",
                                        extra=(("phase", phase), ("frame", int(frame)))))
        return found
