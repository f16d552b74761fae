"""ISIC 2018 Task 1 — skin-lesion boundary segmentation in dermoscopic images.

Layout as distributed (the challenge's zip files, unpacked into one root; nested
duplicate folders from unzipping are fine): ``ISIC2018_Task1-2_Training_Input/ISIC_*.jpg``
with ``ISIC2018_Task1_Training_GroundTruth/ISIC_*_segmentation.png`` (2,594 images), the
same for ``Validation`` (100) and ``Test`` (1,000).  Labels: 0 background, 1 lesion.
Official split: training (+ validation, option ``validation``) vs test, as in PLC-KD
(2,694 training and 1,000 test images); a part without its ground-truth folder is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from kdbench.datasets import register_dataset
from kdbench.datasets.images import ImageDataset, ImageOptions, is_image, pair_by_stem
from kdbench.datasets.prepare import Discovery, Source
from kdbench.datasets.volume import walk_files

PARTS = (("Training", "train"), ("Validation", "validation"), ("Test", "test"))


class IsicOptions(ImageOptions):
    validation: Literal["train", "test", "drop"] = "train"
    """Where the 100 official validation images go: train (PLC-KD's 2,694 training images), test, or drop."""


def _folders(root: Path, name: str) -> list[Path]:
    """Folders called ``name`` under ``root`` that hold files (the innermost of nested copies)."""
    hits = [p for p in [root, *root.rglob(name)] if p.name == name and p.is_dir()]
    return [p for p in hits if any(c.is_file() for c in p.iterdir())]


@register_dataset("isic2018")
class Isic2018(ImageDataset):
    """ISIC 2018 Task 1 skin-lesion segmentation (dermoscopy, RGB; official train/test)."""

    name = "isic2018"
    Options: ClassVar = IsicOptions
    layout = ("ISIC2018_Task1-2_{Training,Validation,Test}_Input/ folders with the matching "
              "ISIC2018_Task1_{...}_GroundTruth/ folders")
    download = "https://challenge.isic-archive.com/data/#2018"
    classes = ("background", "lesion")
    default_targets = {"lesion": (1,)}

    def discover(self) -> Discovery:
        found = Discovery()
        for part_name, part in PARTS:
            if part == "validation":
                if self.options.validation == "drop":
                    continue
                part = self.options.validation
            inputs = _folders(self.root_path, f"ISIC2018_Task1-2_{part_name}_Input")
            truths = _folders(self.root_path, f"ISIC2018_Task1_{part_name}_GroundTruth")
            if not inputs:
                continue
            images = [p for d in inputs for p in sorted(d.iterdir()) if is_image(p) and p.stem.startswith("ISIC_")]
            found.seen += len(images)
            if not truths:
                if part_name == "Training":
                    found.problems.append(f"{self.root_path / f'ISIC2018_Task1_{part_name}_GroundTruth'}: "
                                          f"missing (masks of {inputs[0]})")
                continue  # e.g. test images downloaded without their ground truth
            masks = [p for d in truths for p in sorted(d.iterdir()) if is_image(p)]
            pairs, problems = pair_by_stem(images, masks, truths[0], "_segmentation")
            found.problems += problems
            found.sources += [Source(stem, (image,), mask, part=part) for stem, image, mask in pairs]
        if not found.sources and not found.problems:
            files = walk_files(self.root_path)
            found.seen, found.examples = len(files), [str(p.relative_to(self.root_path)) for p in files[:4]]
        return found
