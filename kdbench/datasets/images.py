"""2D image sets read with Pillow: the base of ``isic2018``, ``cvc_endoscene``, ``idrid_od``, ``folder``.

Each image is a case of one slice: image ``(1, C, H, W)`` (RGB, or grey with
``in_channels: 1``), label ``(1, H, W)``; metrics are per image.  Files may be PNG,
JPEG, BMP, GIF or TIFF (:data:`IMAGE_SUFFIXES`).  Preparation decodes each image and its
mask once, checks that their sizes agree, turns the mask into labels and resizes both
to ``image_size`` × ``image_size`` (bilinear for the image, nearest for the mask).

Intensities (:func:`image_array`) are scaled to [0, 1] by the range of the stored type:
8-bit images are divided by 255 (stored as 8-bit, served as float32), 16-bit images by
65535; float images (and 32-bit integer images whose values do not fit in 16 bits) have
no fixed range and are min–max scaled per image.  A float image holding NaN or inf is
refused.

Masks (:meth:`ImageDataset.mask_labels`): binary masks must hold 0 and one other value,
1, 255 or 65535 (colour masks: their brightest channel), which is foreground; any
other value is refused, naming the values, unless ``mask_threshold`` is set (then
foreground is above it).  JPEG masks are lossy, so their edges hold in-between values:
they are binarised at 127 (or ``mask_threshold``) with a note.  Multi-class masks must
be lossless single-channel images whose values are the labels.

There is no physical pixel size: spacing is in pixels of the original image
(``spacing_unit = "px"``), so HD95/ASSD are in original pixels whatever ``image_size``
is.  With ``eval_original: true`` the mask is also kept at its original size and metrics
are computed there.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from PIL import Image
from pydantic import Field

from kdbench.datasets.options import DatasetOptions
from kdbench.datasets.prepare import CaseArrays, Discovery, PreparedDataset, Source, one_line
from kdbench.errors import DatasetError, KdbenchNote

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
#: file types whose compression changes pixel values (masks there are thresholded, not checked)
LOSSY_SUFFIXES = (".jpg", ".jpeg")
#: the values a binary mask may hold without a ``mask_threshold``: 0 and one of these
BINARY_FOREGROUND = (1, 255, 65535)
#: Pillow modes of more than 8 bits per pixel, read as numbers rather than converted
DEEP_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "I;16S", "F")


class ImageOptions(DatasetOptions):
    """Options shared by every 2D image dataset."""

    in_channels: Literal[1, 3] = 3
    """3: RGB; 1: grey (luminance)."""
    mask_threshold: int | None = Field(None, ge=0, le=65535)
    """Binary masks: foreground above this (brightest channel); null: masks must be 0 and 1/255 (JPEG: 127)."""
    eval_original: bool = False
    """Keep each mask at its original size too and compute metrics there (default: at image_size)."""


@dataclass
class RawImage:
    image: np.ndarray  # (H, W, C) uint8, or float32 in [0, 1] for 16-bit and float images
    label: np.ndarray  # (H, W) uint8


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def open_image(path: Path) -> Image.Image:
    """A fully decoded Pillow image (first frame); bad files are a one-line error naming the file.

    Unreadable, truncated and unknown files are refused, and so is an image larger than
    Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``), before it is
    decoded.
    """
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as src:
                src.load()
                img = src.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DatasetError(f"{path}: refused as a possible decompression bomb ({one_line(exc)}); "
                           f"downscale the image") from None
    except Exception as exc:  # Pillow raises many kinds for bad files (OSError, SyntaxError, struct.error ...)
        raise DatasetError(f"{path}: corrupt, truncated or not an image ({one_line(exc)})") from None
    return img


def image_array(img: Image.Image, path: Path, channels: int) -> np.ndarray:
    """The image as ``(H, W, channels)``: uint8 for 8-bit images, float32 in [0, 1] otherwise.

    See the module docstring for the scaling of 16-bit, 32-bit and float images.  Grey
    images are repeated to three channels; colour images become grey by luminance.
    """
    if img.mode not in DEEP_MODES:
        try:
            arr = np.asarray(img.convert("RGB" if channels == 3 else "L"))
        except (ValueError, OSError) as exc:
            raise DatasetError(f"{path}: cannot read an image of mode {img.mode} ({one_line(exc)})") from None
        return arr[:, :, None] if arr.ndim == 2 else arr
    values = np.asarray(img)
    if values.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise DatasetError(f"{path}: float image holds NaN or inf in {bad} pixels; kdbench does not guess "
                               f"values for them — fix the file")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if values.dtype.kind in "ui" and low >= 0 and high <= 65535:
        scaled = values.astype(np.float32) / 65535.0
    elif high > low:
        scaled = ((values.astype(np.float64) - low) / (high - low)).astype(np.float32)
    else:
        scaled = np.zeros(values.shape, dtype=np.float32)
    return np.repeat(scaled[:, :, None], channels, axis=2)


def mask_values(mask: Image.Image) -> np.ndarray:
    """A mask as a 2D array of its stored values (colour masks: the brightest channel)."""
    if mask.mode in ("1", "L", *DEEP_MODES):
        arr = np.asarray(mask.convert("L") if mask.mode == "1" else mask)
    else:
        arr = np.asarray(mask.convert("RGB")).max(axis=2)
    return arr


def distinct_values(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of an array (a histogram for 8/16-bit unsigned data)."""
    if values.dtype.kind == "u" and values.dtype.itemsize <= 2:
        return np.flatnonzero(np.bincount(values.ravel(), minlength=1))
    return np.unique(values)


def show_values(values: np.ndarray, limit: int = 8) -> str:
    """``[0, 1, 2]``, or the first ``limit`` values and how many there are."""
    shown = ", ".join(f"{float(v):g}" for v in values[:limit])
    return f"[{shown}]" if len(values) <= limit else f"[{shown}, … ({len(values)} distinct values)]"


class ImageDataset(PreparedDataset):
    """Images and masks matched by name, one case per image."""

    Options: ClassVar[type[ImageOptions]] = ImageOptions
    is_volume = False
    in_channels = 3
    spacing_unit = "px"
    #: version 2: 16-bit and float images scaled by their range; binary masks checked
    preprocess_version: ClassVar[int] = 2
    #: masks hold class indices (``True``) rather than a binary foreground
    multiclass: bool = False

    def configure(self) -> None:
        self.in_channels = self.options.in_channels

    def discovery(self) -> Discovery:
        """The cases found; the first call notes each folder of JPEG masks binarised at 127."""
        first = self._discovery is None
        found = super().discovery()
        if first and not self.multiclass and self.options.mask_threshold is None:
            for folder in sorted({s.label.parent for s in found.sources if s.label.suffix.lower() in LOSSY_SUFFIXES}):
                warnings.warn(KdbenchNote(f"{folder}: JPEG masks are lossy; binarised at 127 (set the option "
                                          f"mask_threshold to choose, or save masks as png)"), stacklevel=2)
        return found

    def read_case(self, source: Source) -> RawImage:
        img = open_image(source.images[0])
        mask = open_image(source.label)
        if mask.size != img.size:
            raise DatasetError(f"{source.label}: mask size {mask.size[0]}x{mask.size[1]} does not match image "
                               f"{source.images[0].name} size {img.size[0]}x{img.size[1]}")
        image = image_array(img, source.images[0], self.in_channels)
        return RawImage(np.ascontiguousarray(image), self.mask_labels(mask, source.label))

    def mask_labels(self, mask: Image.Image, path: Path) -> np.ndarray:
        """The ``(H, W)`` uint8 label map of a mask (see the module docstring for the rules)."""
        lossy = path.suffix.lower() in LOSSY_SUFFIXES
        if self.multiclass:
            if lossy:
                raise DatasetError(f"{path}: a JPEG mask is lossy, so its values are not labels; "
                                   f"save multi-class masks losslessly (png, gif, bmp, tif)")
            if mask.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N"):
                raise DatasetError(f"{path}: mask mode {mask.mode}; multi-class masks must be "
                                   f"single-channel images whose values are the labels")
            values = np.asarray(mask)
            values = values.astype(np.uint8) if values.dtype == bool else values
            found = distinct_values(values)
            bad = found[(found < 0) | (found >= len(self.classes))]
            if bad.size:
                raise DatasetError(f"{path}: label values {[int(v) for v in bad[:6]]} outside the declared classes "
                                   f"0..{len(self.classes) - 1} ({', '.join(self.classes)})")
            return values.astype(np.uint8)
        values = mask_values(mask)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise DatasetError(f"{path}: mask holds NaN or inf")
        threshold = self.options.mask_threshold
        if threshold is None and lossy:
            threshold = 127  # announced by discovery()
        if threshold is not None:
            return (values > threshold).astype(np.uint8)
        found = distinct_values(values)
        if not any(set(found.tolist()) <= {0, v} for v in BINARY_FOREGROUND):
            switch = ", or name the classes (option classes) to read the values as labels" \
                if "classes" in self.Options.model_fields else ""
            raise DatasetError(f"{path}: binary mask holds the values {show_values(found)}, but a binary mask holds "
                               f"only 0 and one of 1, 255 or 65535; set the option mask_threshold to binarise "
                               f"it{switch}")
        return (values != 0).astype(np.uint8)

    def preprocess(self, source: Source, raw: RawImage) -> CaseArrays:
        n = self.image_size
        height, width = raw.label.shape
        if raw.image.dtype == np.uint8:
            mode = "RGB" if raw.image.shape[2] == 3 else "L"
            pil = Image.fromarray(raw.image if mode == "RGB" else raw.image[:, :, 0], mode=mode)
            image = np.asarray(pil.resize((n, n), Image.Resampling.BILINEAR)).reshape(n, n, -1)
        else:
            planes = [np.asarray(Image.fromarray(np.ascontiguousarray(raw.image[:, :, c]), mode="F")
                                 .resize((n, n), Image.Resampling.BILINEAR)) for c in range(raw.image.shape[2])]
            image = np.clip(np.stack(planes, axis=2), 0.0, 1.0)
        image = image.transpose(2, 0, 1)[None]
        label = np.asarray(Image.fromarray(raw.label, mode="L").resize((n, n), Image.Resampling.NEAREST))[None]
        spacing = (1.0, height / n, width / n)
        eval_label = raw.label[None] if self.options.eval_original else None
        return CaseArrays(image=np.ascontiguousarray(image, dtype=raw.image.dtype), label=label, spacing=spacing,
                          eval_label=eval_label, eval_spacing=(1.0, 1.0, 1.0) if eval_label is not None else None,
                          meta={"original_size": [height, width]})


def pair_by_stem(images: list[Path], masks: list[Path], masks_dir: Path, mask_suffix: str = ""
                 ) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """``([(stem, image, mask)], problems)``: images and masks matched by file stem.

    A mask's stem may carry ``mask_suffix`` (``ISIC_0000000_segmentation``).  An image
    without a mask (named with the folder ``masks_dir`` it was looked for in), or a mask
    without an image, is a problem (one line naming the file).
    """
    def stem_of(path: Path) -> str:
        stem = path.stem
        return stem[: -len(mask_suffix)] if mask_suffix and stem.endswith(mask_suffix) else stem

    by_stem: dict[str, list[Path]] = {}
    for m in masks:
        by_stem.setdefault(stem_of(m), []).append(m)
    none_there = "" if masks else f" (it holds no {', '.join(s[1:] for s in IMAGE_SUFFIXES)} files)"
    pairs, problems = [], []
    seen = set()
    for image in images:
        found = by_stem.get(image.stem)
        if not found:
            problems.append(f"{image}: no mask {image.stem}{mask_suffix}.* in {masks_dir}{none_there}")
            continue
        pairs.append((image.stem, image, found[0]))
        seen.add(image.stem)
    image_stems = {i.stem for i in images}
    for stem, paths in sorted(by_stem.items()):
        if stem not in seen and stem not in image_stems:
            problems.append(f"{paths[0]}: mask without an image named {stem}.*")
    return pairs, problems
