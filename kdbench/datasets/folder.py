"""Any folder of 2D images and masks matched by file name.

``root/images/`` and ``root/masks/`` (names set by the options ``images`` and
``masks``); an image and its mask share a stem (``case1.jpg`` ↔ ``case1.png``), the mask
stem optionally carrying ``mask_suffix`` (``case1_mask.png``).  Masks are binary (white
on black, or 0/1) unless ``classes`` names more than two classes, in which case mask
pixel values are the labels.  With ``test_images``/``test_masks`` naming a second pair
of folders, that pair is the official test split.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from kdbench.datasets import register_dataset
from kdbench.datasets.images import IMAGE_SUFFIXES, ImageDataset, ImageOptions, is_image, pair_by_stem
from kdbench.datasets.prepare import Discovery, Source
from kdbench.errors import DatasetError


class FolderOptions(ImageOptions):
    images: str = "images"
    """Sub-folder of the root holding the images."""
    masks: str = "masks"
    """Sub-folder of the root holding the masks."""
    mask_suffix: str = ""
    """Text after the image stem in mask names (e.g. _mask, _segmentation)."""
    classes: tuple[str, ...] = Field(("background", "foreground"), min_length=2)
    """Class names, label 0 first; more than two: mask pixel values are the labels."""
    test_images: str | None = None
    """Sub-folder of test images (with test_masks: the official test split); null: none."""
    test_masks: str | None = None
    """Sub-folder of the test images' masks."""

    @field_validator("classes")
    @classmethod
    def _unique(cls, value):
        if len(set(value)) != len(value):
            raise ValueError("class names must be distinct")
        return value


@register_dataset("folder")
class Folder(ImageDataset):
    """Any folder of 2D images and masks matched by name (RGB or grey, binary or multi-class)."""

    name = "folder"
    Options: ClassVar = FolderOptions
    layout = "images/ and masks/ sub-folders whose files share their stems (options images, masks, mask_suffix)"

    def configure(self) -> None:
        super().configure()
        opts = self.options
        self.classes = tuple(opts.classes)
        self.default_targets = {name: (i,) for i, name in enumerate(self.classes) if i > 0}
        self.multiclass = len(self.classes) > 2
        if (opts.test_images is None) != (opts.test_masks is None):
            raise DatasetError("dataset folder: set both test_images and test_masks, or neither")

    def discover(self) -> Discovery:
        found = Discovery()
        opts = self.options
        pairs = [(opts.images, opts.masks, "train")]
        if opts.test_images is not None:
            pairs.append((opts.test_images, opts.test_masks, "test"))
        for images_name, masks_name, part in pairs:
            images_dir, masks_dir = self.root_path / images_name, self.root_path / masks_name
            missing = [d for d in (images_dir, masks_dir) if not d.is_dir()]
            if missing:
                present = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in self.root_path.iterdir())[:6])
                found.problems.append(f"dataset folder: {missing[0]} is not a folder (expected {images_name}/ and "
                                      f"{masks_name}/ under {self.root_path}; found: {present or 'nothing'})")
                continue
            images = [p for p in sorted(images_dir.iterdir()) if p.is_file() and is_image(p)]
            masks = [p for p in sorted(masks_dir.iterdir()) if p.is_file() and is_image(p)]
            found.seen += len(images)
            matched, problems = pair_by_stem(images, masks, masks_dir, opts.mask_suffix)
            found.problems += problems
            found.sources += [Source(stem, (image,), mask, part=part) for stem, image, mask in matched]
            if not images:
                found.problems.append(f"{images_dir}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
        return found
