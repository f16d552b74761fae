"""KiTS19 — the 2019 Kidney Tumor Segmentation Challenge, CT volumes.

Layout as distributed (github.com/neheller/kits19, after its download script):
``case_NNNNN/imaging.nii.gz`` and ``case_NNNNN/segmentation.nii.gz``, the case folders
in the root or in ``data/``; labels 0 background, 1 kidney, 2 tumour.  Cases 210–299
are the challenge's test set and have no segmentation; they are skipped.  KiTS19 stores
its arrays slice-first, so the default slice axis is 0.  Targets: kidney = {1, 2}
(kidney including tumour, as the challenge scores it), tumour = {2}.  There is no
labelled official test set: EMKD draws 168 training and 42 test cases at random, which
is the hold-out of 20 % (``holdout``) kdbench uses when ``folds = 1``.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from kdbench.datasets import register_dataset
from kdbench.datasets.prepare import Discovery, Source
from kdbench.datasets.volume import VolumeDataset, VolumeOptions, walk_files

CASE = re.compile(r"^case_(\d{5})$")
FIRST_TEST_CASE = 210


class KitsOptions(VolumeOptions):
    window: tuple[float, float] | None = (-200.0, 300.0)
    """HU window; default −200…300 as in EMKD's paper and official code."""
    slice_axis: Literal[0, 1, 2, "auto"] = 0
    """Voxel axis cut into slices; KiTS19 arrays are stored (z, y, x), so 0 (axial)."""


def _find(folder, stem: str):
    for suffix in (".nii.gz", ".nii"):
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


@register_dataset("kits19")
class Kits19(VolumeDataset):
    """KiTS19 kidney and kidney-tumour CT (210 labelled cases; nibabel, HU window −200…300)."""

    name = "kits19"
    Options: ClassVar = KitsOptions
    layout = "case_NNNNN/imaging.nii.gz with case_NNNNN/segmentation.nii.gz (in the root or data/)"
    download = "https://github.com/neheller/kits19"
    classes = ("background", "kidney", "tumour")
    default_targets = {"kidney": (1, 2), "tumour": (2,)}
    holdout = 0.2

    def discover(self) -> Discovery:
        found = Discovery()
        folders = sorted(p for p in self.root_path.rglob("case_*") if p.is_dir() and CASE.match(p.name)
                         and not any(part.startswith(".") for part in p.relative_to(self.root_path).parts))
        if not folders:
            files = walk_files(self.root_path)
            found.seen = len(files)
            found.examples = [str(p.relative_to(self.root_path)) for p in files[:4]]
            return found
        for folder in folders:
            found.seen += 1
            number = int(CASE.match(folder.name).group(1))
            image = _find(folder, "imaging")
            label = _find(folder, "segmentation")
            if image is None:
                present = ", ".join(sorted(p.name for p in folder.iterdir())[:4]) or "nothing"
                found.problems.append(f"{folder}: no imaging.nii.gz in this case folder (found: {present})")
                continue
            if label is None:
                if number >= FIRST_TEST_CASE:
                    continue  # the challenge's unlabelled test cases
                found.problems.append(f"{folder / 'segmentation.nii.gz'}: label file missing for {image}")
                continue
            found.sources.append(Source(folder.name, (image,), label, part="train"))
        return found
