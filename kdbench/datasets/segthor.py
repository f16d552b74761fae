"""SegTHOR — Segmentation of THoracic Organs at Risk (ISBI 2019 challenge), CT volumes.

Layout as distributed: ``train/Patient_NN/Patient_NN.nii.gz`` with the label
``train/Patient_NN/GT.nii.gz`` (``GT_NN.nii.gz`` is also read); labels 0 background,
1 oesophagus, 2 heart, 3 trachea, 4 aorta.  The 20 test scans (``test/Patient_NN.nii.gz``)
have no public labels and are skipped, so there is no labelled official split and a
seeded hold-out (or k-fold) of the 40 training patients is used.  Intensities: HU
window −1000…1000 (air for the trachea to contrast-enhanced aorta); the ensemble-KD
paper states no window, so this is kdbench's choice.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from kdbench.datasets import register_dataset
from kdbench.datasets.prepare import Discovery, Source
from kdbench.datasets.volume import VolumeDataset, VolumeOptions, nifti_stem, walk_files

PATIENT = re.compile(r"^Patient_(\d+)$")
LABEL = re.compile(r"^GT(_\d+)?$")


class SegthorOptions(VolumeOptions):
    window: tuple[float, float] | None = (-1000.0, 1000.0)
    """HU window; default −1000…1000 (kdbench's choice: the paper states none)."""
    slice_axis: Literal[0, 1, 2, "auto"] = 2
    """Voxel axis cut into slices; SegTHOR volumes are stored (x, y, z), so 2 (axial)."""


@register_dataset("segthor")
class Segthor(VolumeDataset):
    """SegTHOR thoracic organs at risk in CT: oesophagus, heart, trachea, aorta."""

    name = "segthor"
    Options: ClassVar = SegthorOptions
    layout = "Patient_NN/Patient_NN.nii.gz with Patient_NN/GT.nii.gz (e.g. under train/)"
    download = "https://competitions.codalab.org/competitions/21145"
    classes = ("background", "esophagus", "heart", "trachea", "aorta")
    default_targets = {"esophagus": (1,), "heart": (2,), "trachea": (3,), "aorta": (4,)}

    def discover(self) -> Discovery:
        found = Discovery()
        for path in walk_files(self.root_path):
            found.seen += 1
            stem = nifti_stem(path)
            if stem is None or not PATIENT.match(stem):
                if stem is None or not LABEL.match(stem):
                    if len(found.examples) < 4:
                        found.examples.append(str(path.relative_to(self.root_path)))
                continue
            if path.parent.name != stem:
                continue  # a test scan, distributed flat and without a label
            labels = [p for p in sorted(path.parent.iterdir()) if (s := nifti_stem(p)) and LABEL.match(s)]
            if not labels:
                found.problems.append(f"{path.parent / 'GT.nii.gz'}: label file missing for {path}")
                continue
            found.sources.append(Source(stem, (path,), labels[0], part="train"))
        return found
