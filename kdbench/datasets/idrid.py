"""IDRiD optic disc — segmentation of the optic disc in retinal fundus photographs.

Layout as distributed (part A of the Indian Diabetic Retinopathy Image Dataset):
``A. Segmentation/1. Original Images/a. Training Set/IDRiD_NN.jpg`` (54 images) and
``b. Testing Set`` (27), with the masks
``A. Segmentation/2. All Segmentation Groundtruths/<set>/5. Optic Disc/IDRiD_NN_OD.tif``.
Labels: 0 background, 1 optic disc (masks may be red-on-black; the brightest channel
counts).  Official split: the 54 training vs the 27 testing images, as in PLC-KD.
Images are 4288 × 2848; preparation resizes them once.
"""

from __future__ import annotations

import re
from typing import ClassVar

from kdbench.datasets import register_dataset
from kdbench.datasets.images import ImageDataset, ImageOptions, is_image
from kdbench.datasets.prepare import Discovery, Source
from kdbench.datasets.volume import walk_files

IMAGE = re.compile(r"^IDRiD_(\d+)$")
MASK = re.compile(r"^IDRiD_(\d+)_OD$")


def _part(path, root) -> str | None:
    """``train``/``test`` from the set folder a file is in (``a. Training Set`` / ``b. Testing Set``)."""
    for part in path.relative_to(root).parts[:-1]:
        low = part.lower()
        if "train" in low:
            return "train"
        if "test" in low:
            return "test"
    return None


@register_dataset("idrid_od")
class IdridOpticDisc(ImageDataset):
    """IDRiD optic-disc segmentation (fundus photographs, RGB; official 54/27 split)."""

    name = "idrid_od"
    Options: ClassVar = ImageOptions
    layout = ("'1. Original Images/{a. Training Set,b. Testing Set}/IDRiD_NN.jpg' with "
              "'2. All Segmentation Groundtruths/<set>/5. Optic Disc/IDRiD_NN_OD.tif'")
    download = "https://idrid.grand-challenge.org/"
    classes = ("background", "optic_disc")
    default_targets = {"optic_disc": (1,)}

    def discover(self) -> Discovery:
        found = Discovery()
        images: dict[tuple[str, int], list] = {}
        masks: dict[tuple[str, int], list] = {}
        files = walk_files(self.root_path)
        for path in files:
            if not is_image(path):
                continue
            part = _part(path, self.root_path)
            if (m := IMAGE.match(path.stem)) and part:
                images.setdefault((part, int(m.group(1))), []).append(path)
            elif (m := MASK.match(path.stem)) and part and "optic disc" in str(path.parent).lower():
                masks.setdefault((part, int(m.group(1))), []).append(path)
        found.seen = sum(len(v) for v in images.values())
        for (part, number), paths in sorted(images.items()):
            mask = masks.get((part, number))
            if not mask:
                found.problems.append(f"{paths[0]}: no optic-disc mask IDRiD_{number:02d}_OD.tif "
                                      f"(expected under '5. Optic Disc' of the same set)")
                continue
            found.sources.append(Source(f"IDRiD_{number:02d}", (paths[0],), mask[0], part=part))
        for (part, number), paths in sorted(masks.items()):
            if (part, number) not in images:
                found.problems.append(f"{paths[0]}: mask without its image IDRiD_{number:02d}.jpg")
        if not images:
            found.seen, found.examples = len(files), [str(p.relative_to(self.root_path)) for p in files[:4]]
        return found
