"""2D image sets read with Pillow: the base of ``isic2018``, ``cvc_endoscene``, ``idrid_od``, ``folder``.

Each image is a case of one slice: image ``(1, C, H, W)`` (RGB, or grey with
``in_channels: 1``), label ``(1, H, W)``; metrics are per image.  Preparation decodes
each image and its mask once, checks that their sizes agree, turns the mask into labels
(binary masks: a pixel is foreground when its brightest channel exceeds
``mask_threshold`` — by default 127, or 0 for masks stored as 0/1; multi-class masks:
the pixel values are the labels), and resizes both to ``image_size`` × ``image_size``
(bilinear for the image, nearest for the mask).  Images are stored as 8-bit and served
as float32 in [0, 1].  There is no physical pixel size: spacing is in pixels of the
original image, so HD95/ASSD are in original pixels whatever ``image_size`` is.  With
``eval_original: true`` the mask is also kept at its original size and metrics are
computed there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import Field

from kdbench.datasets.options import DatasetOptions
from kdbench.datasets.prepare import CaseArrays, PreparedDataset, Source, one_line
from kdbench.errors import DatasetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageOptions(DatasetOptions):
    """Options shared by every 2D image dataset."""

    in_channels: Literal[1, 3] = 3
    """3: RGB; 1: grey (luminance)."""
    mask_threshold: int | None = Field(None, ge=0, le=65535)
    """Binary masks: foreground where the brightest channel exceeds this; null: 127 (0 for 0/1 masks)."""
    eval_original: bool = False
    """Keep each mask at its original size too and compute metrics there (default: at image_size)."""


@dataclass
class RawImage:
    image: np.ndarray  # (H, W, C) uint8
    label: np.ndarray  # (H, W) uint8


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def open_image(path: Path) -> Image.Image:
    """A fully decoded Pillow image; unreadable or truncated files are a one-line error."""
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    try:
        img = Image.open(path)
        img.load()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"{path}: corrupt, truncated or not an image ({one_line(exc)})") from None
    return img


def mask_values(mask: Image.Image) -> np.ndarray:
    """A mask as a 2D integer array of its stored values (colour masks: the brightest channel)."""
    if mask.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(mask.convert("L") if mask.mode == "1" else mask)
    else:
        arr = np.asarray(mask.convert("RGB")).max(axis=2)
    return arr


class ImageDataset(PreparedDataset):
    """Images and masks matched by name, one case per image."""

    Options: ClassVar[type[ImageOptions]] = ImageOptions
    is_volume = False
    in_channels = 3
    #: masks hold class indices (``True``) rather than a binary foreground
    multiclass: bool = False

    def configure(self) -> None:
        self.in_channels = self.options.in_channels

    def read_case(self, source: Source) -> RawImage:
        img = open_image(source.images[0])
        mask = open_image(source.label)
        if mask.size != img.size:
            raise DatasetError(f"{source.label}: mask size {mask.size[0]}x{mask.size[1]} does not match image "
                               f"{source.images[0].name} size {img.size[0]}x{img.size[1]}")
        image = np.asarray(img.convert("RGB" if self.in_channels == 3 else "L"))
        if image.ndim == 2:
            image = image[:, :, None]
        if self.multiclass:
            if mask.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise DatasetError(f"{source.label}: mask mode {mask.mode}; multi-class masks must be "
                                   f"single-channel images whose values are the labels")
            values = np.asarray(mask)
            high = int(values.max()) if values.size else 0
            if values.min(initial=0) < 0 or high >= len(self.classes):
                bad = sorted({int(v) for v in np.unique(values) if v < 0 or v >= len(self.classes)})
                raise DatasetError(f"{source.label}: label values {bad[:6]} outside the declared classes "
                                   f"0..{len(self.classes) - 1} ({', '.join(self.classes)})")
            label = values.astype(np.uint8)
        else:
            values = mask_values(mask)
            threshold = self.options.mask_threshold
            if threshold is None:
                threshold = 0 if values.size and int(values.max()) <= 1 else 127
            label = (values > threshold).astype(np.uint8)
        return RawImage(np.ascontiguousarray(image, dtype=np.uint8), label)

    def preprocess(self, source: Source, raw: RawImage) -> CaseArrays:
        n = self.image_size
        height, width = raw.label.shape
        mode = "RGB" if raw.image.shape[2] == 3 else "L"
        pil = Image.fromarray(raw.image if mode == "RGB" else raw.image[:, :, 0], mode=mode)
        image = np.asarray(pil.resize((n, n), Image.Resampling.BILINEAR))
        image = image.reshape(n, n, -1).transpose(2, 0, 1)[None]
        label = np.asarray(Image.fromarray(raw.label, mode="L").resize((n, n), Image.Resampling.NEAREST))[None]
        spacing = (1.0, height / n, width / n)
        eval_label = raw.label[None] if self.options.eval_original else None
        return CaseArrays(image=np.ascontiguousarray(image, dtype=np.uint8), label=label, spacing=spacing,
                          eval_label=eval_label, eval_spacing=(1.0, 1.0, 1.0) if eval_label is not None else None,
                          meta={"original_size": [height, width]})


def pair_by_stem(images: list[Path], masks: list[Path], mask_suffix: str = ""
                 ) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """``([(stem, image, mask)], problems)``: images and masks matched by file stem.

    A mask's stem may carry ``mask_suffix`` (``ISIC_0000000_segmentation``).  An image
    without a mask, or a mask without an image, is a problem (one line naming the file).
    """
    def stem_of(path: Path) -> str:
        stem = path.stem
        return stem[: -len(mask_suffix)] if mask_suffix and stem.endswith(mask_suffix) else stem

    by_stem: dict[str, list[Path]] = {}
    for m in masks:
        by_stem.setdefault(stem_of(m), []).append(m)
    pairs, problems = [], []
    seen = set()
    for image in images:
        found = by_stem.get(image.stem)
        if not found:
            expected = f"{image.stem}{mask_suffix}.*"
            where = masks[0].parent if masks else image.parent
            problems.append(f"{image}: no mask {expected} in {where}")
            continue
        pairs.append((image.stem, image, found[0]))
        seen.add(image.stem)
    image_stems = {i.stem for i in images}
    for stem, paths in sorted(by_stem.items()):
        if stem not in seen and stem not in image_stems:
            problems.append(f"{paths[0]}: mask without an image named {stem}.*")
    return pairs, problems
