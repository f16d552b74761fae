"""CVC-EndoSceneStill — polyp segmentation in colonoscopy frames (912 frames).

Two layouts are read:

* as distributed: ``CVC-300/bbdd/N.bmp`` with ``CVC-300/gtpolyp/N.bmp`` and
  ``CVC-612/bbdd/N.bmp`` with ``CVC-612/gtpolyp/N.tif``; the official split (by
  patient, published with the dataset) is 547 training, 183 validation and 182 test
  frames, given as frame-number ranges of each sub-database;
* re-packed: ``TrainDataset/``, ``ValidationDataset/``, ``TestDataset/`` each with
  ``images/`` and ``masks/``.

Labels: 0 background, 1 polyp (masks: white polyp on black).  PLC-KD trains on the 547
training frames and tests on the 182 test frames; the validation frames are dropped by
default (option ``validation``: ``drop``, ``train`` or ``test``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Literal

from kdbench.datasets import register_dataset
from kdbench.datasets.images import ImageDataset, ImageOptions, is_image, pair_by_stem
from kdbench.datasets.prepare import Discovery, Source
from kdbench.datasets.volume import walk_files

#: the official split: frame-number ranges (inclusive) of each sub-database
SPLIT = {
    "CVC-300": {"train": [(1, 76), (98, 148), (221, 273)],
                "validation": [(77, 97), (209, 220), (274, 300)],
                "test": [(149, 208)]},
    "CVC-612": {"train": [(26, 50), (104, 126), (178, 227), (253, 317), (384, 503), (529, 612)],
                "validation": [(51, 103), (228, 252), (318, 342), (364, 383)],
                "test": [(1, 25), (127, 177), (343, 363), (504, 528)]},
}
SPLIT_DIRS = {"train": ("traindataset", "train", "training"),
              "validation": ("validationdataset", "valdataset", "validation", "valid", "val"),
              "test": ("testdataset", "test", "testing")}
IMAGE_DIRS = ("images", "image", "bbdd")
MASK_DIRS = ("masks", "mask", "gtpolyp", "gt")


class CvcOptions(ImageOptions):
    validation: Literal["drop", "train", "test"] = "drop"
    """Where the 183 official validation frames go: drop (PLC-KD trains on the 547 training frames), train or test."""


def official_part(database: str, number: int) -> str | None:
    for part, ranges in SPLIT[database].items():
        if any(lo <= number <= hi for lo, hi in ranges):
            return part
    return None


def _child(folder: Path, names: tuple[str, ...]) -> Path | None:
    for child in sorted(folder.iterdir()):
        if child.is_dir() and child.name.lower() in names:
            return child
    return None



def _pairs(found: Discovery, images_dir, masks_dir) -> list:
    """Frames and masks of two folders matched by stem; unmatched files go to ``found.problems``."""
    images = [p for p in sorted(images_dir.iterdir()) if is_image(p)]
    masks = [p for p in sorted(masks_dir.iterdir()) if is_image(p)]
    found.seen += len(images)
    pairs, problems = pair_by_stem(images, masks, masks_dir)
    found.problems += problems
    return pairs

@register_dataset("cvc_endoscene")
class CvcEndoScene(ImageDataset):
    """CVC-EndoSceneStill polyp segmentation (colonoscopy, RGB; official 547/183/182 split)."""

    name = "cvc_endoscene"
    Options: ClassVar = CvcOptions
    layout = ("CVC-300/ and CVC-612/ folders with bbdd/ and gtpolyp/, or TrainDataset/, "
              "ValidationDataset/, TestDataset/ with images/ and masks/")
    download = "http://www.cvc.uab.es/CVC-Colon/index.php/databases/cvc-endoscenestill/"
    classes = ("background", "polyp")
    default_targets = {"polyp": (1,)}

    def _part(self, part: str) -> str | None:
        if part == "validation":
            return None if self.options.validation == "drop" else self.options.validation
        return part

    def discover(self) -> Discovery:
        found = Discovery()
        databases = [p for p in [self.root_path, *self.root_path.rglob("CVC-*")] if p.is_dir() and p.name in SPLIT]
        for db in databases:
            images_dir, masks_dir = db / "bbdd", db / "gtpolyp"
            if not images_dir.is_dir() or not masks_dir.is_dir():
                found.problems.append(f"{db}: expected bbdd/ (frames) and gtpolyp/ (polyp masks) in it")
                continue
            pairs = _pairs(found, images_dir, masks_dir)
            tag = db.name.replace("-", "").lower()
            for stem, image, mask in pairs:
                number = int(stem) if re.fullmatch(r"\d+", stem) else -1
                part = official_part(db.name, number)
                if part is None:
                    found.problems.append(f"{image}: frame {stem} is not in the official split of {db.name}")
                    continue
                if (part := self._part(part)) is not None:
                    found.sources.append(Source(f"{tag}_{number:03d}", (image,), mask, part=part))
        if not databases:
            self._discover_repacked(found)
        if not found.sources and not found.problems:
            files = walk_files(self.root_path)
            found.seen, found.examples = len(files), [str(p.relative_to(self.root_path)) for p in files[:4]]
        return found

    def _discover_repacked(self, found: Discovery) -> None:
        for part, names in SPLIT_DIRS.items():
            folders = [p for p in [self.root_path, *self.root_path.rglob("*")]
                       if p.is_dir() and p.name.lower() in names]
            if not folders or (target := self._part(part)) is None:
                continue
            folder = folders[0]
            images_dir, masks_dir = _child(folder, IMAGE_DIRS), _child(folder, MASK_DIRS)
            if images_dir is None or masks_dir is None:
                found.problems.append(f"{folder}: expected images/ and masks/ in it")
                continue
            pairs = _pairs(found, images_dir, masks_dir)
            found.sources += [Source(f"{part}_{stem}", (image,), mask, part=target) for stem, image, mask in pairs]
