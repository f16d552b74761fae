"""CT/MRI volumes read with nibabel: the base of ``lits17``, ``kits19``, ``acdc``, ``segthor``, ``msd``.

Preparation of one case:

1. read the image (one file per channel, or one 4D file with channels last) and the
   label map; check that their shapes and affines agree, that the files are complete,
   that voxels are numbers (not RGB colour), that the image holds no NaN/inf and that
   every label value is one of the declared classes; the voxel spacing is ``pixdim``,
   or the sform's column lengths where ``pixdim`` is 0 or not finite
   (:func:`voxel_spacing`);
2. pick the slice axis (``slice_axis``: a voxel axis, or ``auto`` — the axis with the
   coarsest spacing when it is clearly coarser, ≥ 1.5× the next, else the voxel axis
   closest to the patient's superior–inferior axis) and, with ``orient``, flip voxel
   axes so that each runs towards R, A or S (axes are never permuted or resampled
   through, so labels stay exact);
3. optionally crop in-plane (``crop``: fractions of the slice), normalise intensities —
   a window (HU for CT) clipped and scaled to [0, 1], or without one a per-case z-score
   of the 0.5–99.5-percentile-clipped intensities — and resize every slice to
   ``image_size`` × ``image_size`` (bilinear for images, nearest for labels);
4. keep the label at the original in-plane resolution (after the crop) as
   ``eval_label`` with its spacing ``eval_spacing``, for per-case evaluation.

Which slices a case is served with (``slices``: ``all``, or ``foreground`` — slices
containing a target plus ``background_ratio`` of the others, drawn with
``slice_seed``) is decided when a case is loaded, so changing it needs no new
preparation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import nibabel as nib
import numpy as np
from pydantic import Field, field_validator

from kdbench.datasets.options import DatasetOptions
from kdbench.datasets.prepare import CaseArrays, PreparedDataset, Source, case_rng, label_mask, one_line
from kdbench.datasets.transforms import CHUNK, apply_window, apply_zscore, resize_images, resize_labels, robust_stats
from kdbench.errors import DatasetError

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def nifti_stem(path: Path) -> str | None:
    """The file name without ``.nii``/``.nii.gz``, or ``None`` for other files."""
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def walk_files(root: Path) -> list[Path]:
    """Every file under ``root``, sorted, skipping hidden entries and macOS ``._`` files."""
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if any(p.startswith(".") for p in rel):
            continue
        if path.is_file():
            out.append(path)
    return out


class VolumeOptions(DatasetOptions):
    """Options shared by every volume dataset."""

    runtime_fields: ClassVar[frozenset[str]] = frozenset({"cache_dir", "slices", "background_ratio", "slice_seed"})

    window: tuple[float, float] | None = None
    """Intensity window [low, high] (HU for CT), clipped and scaled to [0, 1]; null: per-case z-score."""
    slice_axis: Literal[0, 1, 2, "auto"] = "auto"
    """Voxel axis cut into 2D slices (0, 1, 2), or auto (coarsest spacing, else superior–inferior)."""
    orient: bool = True
    """Flip voxel axes to run towards R, A, S (never permutes), so every case has the same handedness."""
    crop: tuple[float, float, float, float] | None = None
    """In-plane crop [top, bottom, left, right] as fractions of the slice (after orienting); null: none."""
    slices: Literal["all", "foreground"] = "all"
    """Slices a case is served with: all, or those containing a target plus background_ratio of the rest."""
    background_ratio: float = Field(0.0, ge=0.0, le=1.0)
    """With slices = foreground: the fraction of slices without a target kept (drawn with slice_seed)."""
    slice_seed: int = 0
    """Seed of the background-slice draw (per case, independent of case order)."""
    check_affine: bool = True
    """Reject a label whose affine differs from its image's (0.1%, half a voxel), and pixdim ≠ sform (1%)."""

    @field_validator("window")
    @classmethod
    def _window(cls, value):
        if value is not None and not value[0] < value[1]:
            raise ValueError("needs low < high")
        return value

    @field_validator("crop")
    @classmethod
    def _crop(cls, value):
        if value is not None:
            top, bottom, left, right = value
            if not (0.0 <= top < bottom <= 1.0 and 0.0 <= left < right <= 1.0):
                raise ValueError("needs 0 ≤ top < bottom ≤ 1 and 0 ≤ left < right ≤ 1")
        return value


@dataclass
class RawVolume:
    """A decoded case: channel arrays as stored (unscaled), their scaling, the label, geometry."""

    channels: list[np.ndarray]
    scales: list[tuple[float, float]]
    label: np.ndarray
    zooms: tuple[float, float, float]
    affine: np.ndarray


def load_nifti(path: Path):
    """The NIfTI image at ``path`` (header only); unreadable files are a one-line error.

    nibabel's log lines about header fields it repairs (e.g. a zero ``pixdim``) are
    silenced: :func:`voxel_spacing` reads and judges the stored values itself.
    """
    if not path.exists():
        raise DatasetError(f"{path}: file not found")
    logger = nib.imageglobals.logger
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return nib.load(str(path))
    except Exception as exc:  # nibabel raises many kinds for bad files
        raise DatasetError(f"{path}: not a readable NIfTI file ({one_line(exc)})") from None
    finally:
        logger.setLevel(level)


def read_raw(img, path: Path) -> tuple[np.ndarray, float, float]:
    """The stored array of ``img`` (no scaling applied) with its slope and intercept."""
    try:
        if nib.is_proxy(img.dataobj):
            raw = np.asarray(img.dataobj.get_unscaled())
            slope, inter = float(img.dataobj.slope), float(img.dataobj.inter)
        else:
            raw, slope, inter = np.asarray(img.dataobj), 1.0, 0.0
    except Exception as exc:  # EOFError, zlib.error, OSError "Expected N bytes" ...
        raise DatasetError(f"{path}: corrupt or truncated NIfTI ({one_line(exc)})") from None
    if not np.isfinite(slope) or slope == 0:
        slope = 1.0
    if not np.isfinite(inter):
        inter = 0.0
    return raw, slope, inter


def check_voxel_type(img, path: Path, what: str) -> None:
    """Refuse voxels that are not numbers (RGB24/RGBA32 colour, complex): one line naming the file."""
    dtype = img.get_data_dtype()
    if dtype.names:
        stored = f"{''.join(dtype.names)} colour voxels"
    elif dtype.kind == "c":
        stored = "complex voxels"
    elif dtype.kind in "biuf":
        return
    else:
        stored = f"voxels of type {dtype}"
    if what == "label":
        raise DatasetError(f"{path}: label map stores {stored}; labels must be integers 0..K-1 (one per voxel)")
    raise DatasetError(f"{path}: image stores {stored}; kdbench reads grey volumes — convert it to grey, or to "
                       f"a 4D image with one channel per colour")


def count_nonfinite(arr: np.ndarray, chunk: int = 16) -> int:
    """How many values of a float array are NaN or inf (counted a few slices at a time)."""
    if arr.dtype.kind != "f":
        return 0
    return sum(int(np.count_nonzero(~np.isfinite(arr[i:i + chunk]))) for i in range(0, arr.shape[0], chunk))


def stored_pixdim(img, path: Path) -> list[float]:
    """``pixdim[1:4]`` as stored in the file (nibabel replaces a stored 0 by 1 when it loads a header)."""
    try:
        with nib.openers.ImageOpener(str(path)) as fh:
            header = type(img.header).from_fileobj(fh, check=False)
        return [abs(float(z)) for z in header["pixdim"][1:4]]
    except Exception:  # not a NIfTI header nibabel can re-read unchecked: take the loaded one
        return [float(z) for z in img.header.get_zooms()[:3]]


def voxel_spacing(img, path: Path, check: bool) -> tuple[float, float, float]:
    """The voxel spacing (mm) of the first three axes: ``pixdim``, or the sform's where it is unusable.

    A stored ``pixdim`` that is 0 or not finite is replaced by the length of the sform's
    column for that axis (the qform holds no spacing of its own: it is built from
    ``pixdim``).  With ``check``, a ``pixdim`` and an sform that are both usable but
    differ by more than 1 % make the spacing ambiguous, and the file is refused; an axis
    whose spacing neither gives is refused too.
    """
    stated = stored_pixdim(img, path)
    sform, code = img.header.get_sform(coded=True) if hasattr(img.header, "get_sform") else (None, 0)
    columns = np.linalg.norm(np.asarray(sform, dtype=np.float64)[:3, :3], axis=0) if code else [np.nan] * 3
    spacing = []
    for axis, (pixdim, derived) in enumerate(zip(stated, columns)):
        stated_ok = bool(np.isfinite(pixdim) and pixdim > 0)
        derived_ok = bool(np.isfinite(derived) and derived > 0)
        if stated_ok and derived_ok and check and abs(pixdim - derived) > 0.01 * max(pixdim, derived):
            raise DatasetError(f"{path}: voxel spacing of axis {axis} is {pixdim:g} mm in pixdim but {derived:g} mm "
                               f"in the sform (set the option check_affine: false to use pixdim)")
        if not (stated_ok or derived_ok):
            raise DatasetError(f"{path}: voxel spacing (pixdim) {tuple(stated)} is not positive, and no sform "
                               f"gives it for axis {axis}")
        spacing.append(pixdim if stated_ok else float(derived))
    return spacing[0], spacing[1], spacing[2]


def squeeze_trailing(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape without trailing singleton axes beyond the third."""
    shape = tuple(shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def read_label(img, path: Path, classes: tuple[str, ...]) -> np.ndarray:
    """The label map of ``img`` as uint8, checked against the declared classes (and for NaN)."""
    check_voxel_type(img, path, "label")
    raw, slope, inter = read_raw(img, path)
    raw = raw.reshape(squeeze_trailing(raw.shape))
    if slope != 1.0 or inter != 0.0 or raw.dtype.kind == "f":
        values = raw.astype(np.float32) * slope + inter
        bad = count_nonfinite(values)
        if bad:
            raise DatasetError(f"{path}: label map holds NaN or inf in {bad} voxels; expected integer labels "
                               f"0..{len(classes) - 1}")
        rounded = np.rint(values)
        off = np.abs(values - rounded)
        if off.size and float(off.max()) > 1e-3:
            example = float(values.reshape(-1)[int(np.argmax(off))])
            raise DatasetError(f"{path}: label map holds non-integer values (e.g. {example:g}); "
                               f"expected integer labels 0..{len(classes) - 1}")
        raw = rounded
    low, high = (raw.min(), raw.max()) if raw.size else (0, 0)
    if low < 0 or high >= len(classes):
        values = np.unique(raw)
        bad = [int(v) for v in values if v < 0 or v >= len(classes)]
        names = ", ".join(f"{i} {n}" for i, n in enumerate(classes))
        raise DatasetError(f"{path}: label values {bad[:6]} outside the declared classes ({names})")
    return raw.astype(np.uint8)


def affine_mismatch(a: np.ndarray, b: np.ndarray, zooms: tuple[float, ...]) -> float | None:
    """How far two affines differ (mm), or ``None`` if they agree within tolerance."""
    rot = np.abs(a[:3, :3] - b[:3, :3]).max()
    shift = np.abs(a[:3, 3] - b[:3, 3]).max()
    if rot <= 1e-3 * max(max(zooms), 1e-6) and shift <= 0.5 * max(min(zooms), 1e-6):
        return None
    return float(max(rot, shift))


def orientation(affine: np.ndarray, zooms: tuple[float, float, float], slice_axis, orient: bool
                ) -> tuple[int, tuple[bool, bool, bool]]:
    """``(slice axis, flips)`` for a volume (see the module docstring)."""
    try:
        ornt = nib.orientations.io_orientation(affine)
    except Exception:  # a degenerate affine: keep the stored order
        ornt = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
    if slice_axis == "auto":
        z = np.asarray(zooms, dtype=float)
        order = np.argsort(-z, kind="stable")
        if z[order[0]] >= 1.5 * z[order[1]]:
            axis = int(order[0])
        else:
            si = [i for i in range(3) if not np.isnan(ornt[i, 0]) and int(ornt[i, 0]) == 2]
            axis = si[0] if si else 2
    else:
        axis = int(slice_axis)
    flips = tuple(bool(orient and not np.isnan(ornt[i, 1]) and ornt[i, 1] < 0) for i in range(3))
    return axis, flips


def reorder(arr: np.ndarray, axis: int, flips: tuple[bool, bool, bool]) -> np.ndarray:
    """View of a 3D array with the flips applied and the slice axis first."""
    index = tuple(slice(None, None, -1) if f else slice(None) for f in flips)
    return np.moveaxis(arr[index], axis, 0)


def crop_bounds(height: int, width: int, crop) -> tuple[int, int, int, int]:
    """Pixel bounds ``(r0, r1, c0, c1)`` of a fractional crop (at least one pixel each way)."""
    if crop is None:
        return 0, height, 0, width
    top, bottom, left, right = crop
    r0, r1 = int(round(top * height)), int(round(bottom * height))
    c0, c1 = int(round(left * width)), int(round(right * width))
    return r0, max(r1, r0 + 1), c0, max(c1, c0 + 1)


class VolumeDataset(PreparedDataset):
    """Volumes and label maps read with nibabel, sliced to 2D, evaluated per volume."""

    Options: ClassVar[type[VolumeOptions]] = VolumeOptions
    #: version 2: spacing from the sform where pixdim is 0 or not finite
    preprocess_version: ClassVar[int] = 2
    is_volume = True
    in_channels = 1
    #: channels kept from the image (``None``: all)
    channel_indices: tuple[int, ...] | None = None

    def read_case(self, source: Source) -> RawVolume:
        label_img = load_nifti(source.label)
        images = [load_nifti(p) for p in source.images]
        label_shape = squeeze_trailing(label_img.shape)
        if len(label_shape) != 3:
            raise DatasetError(f"{source.label}: label map has shape {label_img.shape}; expected a 3D volume")
        spatial = []
        for path, img in zip(source.images, images):
            shape = squeeze_trailing(img.shape)
            if len(shape) not in (3, 4):
                raise DatasetError(f"{path}: image has shape {img.shape}; expected 3D, or 4D with channels last")
            if shape[:3] != label_shape:
                raise DatasetError(f"{source.label}: label shape {label_shape} does not match image "
                                   f"{path.name} shape {shape[:3]}")
            spatial.append(shape)
        for path, img in zip(source.images, images):
            check_voxel_type(img, path, "image")
        zooms = voxel_spacing(images[0], source.images[0], self.options.check_affine)
        if self.options.check_affine:
            for path, img in zip(source.images, images):
                off = affine_mismatch(img.affine, label_img.affine, zooms)
                if off is not None:
                    raise DatasetError(f"{source.label}: affine differs from image {path.name}'s by {off:.3g} mm "
                                       f"(set the option check_affine: false if they are known to be aligned)")
        channels, scales = [], []
        for path, img, shape in zip(source.images, images, spatial):
            raw, slope, inter = read_raw(img, path)
            raw = raw.reshape(shape)
            bad = count_nonfinite(raw)
            if bad:
                raise DatasetError(f"{path}: image holds NaN or inf in {bad} voxels; kdbench does not guess values "
                                   f"for them — fix the file")
            if raw.ndim == 3:
                channels.append(raw)
                scales.append((slope, inter))
            else:
                for c in range(raw.shape[3]):
                    channels.append(raw[..., c])
                    scales.append((slope, inter))
        if self.channel_indices is not None:
            if max(self.channel_indices) >= len(channels):
                raise DatasetError(f"{source.images[0]}: has {len(channels)} channels; option channels asks for "
                                   f"{list(self.channel_indices)}")
            channels = [channels[i] for i in self.channel_indices]
            scales = [scales[i] for i in self.channel_indices]
        if len(channels) != self.in_channels:
            raise DatasetError(f"{source.images[0]}: has {len(channels)} channels; dataset {self.name} "
                               f"expects {self.in_channels}")
        label = read_label(label_img, source.label, self.classes)
        return RawVolume(channels, scales, label, zooms, np.asarray(images[0].affine))

    def preprocess(self, source: Source, raw: RawVolume) -> CaseArrays:
        opts = self.options
        axis, flips = orientation(raw.affine, raw.zooms, opts.slice_axis, opts.orient)
        label = reorder(raw.label, axis, flips)
        slices, height, width = label.shape
        r0, r1, c0, c1 = crop_bounds(height, width, opts.crop)
        eval_label = np.ascontiguousarray(label[:, r0:r1, c0:c1])
        size = (self.image_size, self.image_size)
        image = np.empty((slices, len(raw.channels), *size), dtype=np.float32)
        stats = []
        for c, (arr, (slope, inter)) in enumerate(zip(raw.channels, raw.scales)):
            vol = reorder(arr, axis, flips)[:, r0:r1, c0:c1]
            norm = None
            if opts.window is None:
                norm = robust_stats(vol, scale=(slope, inter))
                stats.append([round(v, 4) for v in norm])
            for s0 in range(0, slices, CHUNK):
                x = np.array(vol[s0:s0 + CHUNK], dtype=np.float32)
                if slope != 1.0 or inter != 0.0:
                    x *= slope
                    x += inter
                x = apply_window(x, opts.window) if norm is None else apply_zscore(x, norm)
                image[s0:s0 + CHUNK, c] = resize_images(x, size)
        sz, sa, sb = raw.zooms[axis], *[raw.zooms[i] for i in range(3) if i != axis]
        eval_spacing = (float(sz), float(sa), float(sb))
        spacing = (float(sz), float(sa) * (r1 - r0) / size[0], float(sb) * (c1 - c0) / size[1])
        meta = {"slice_axis": axis, "flips": list(flips), "crop_px": [r0, r1, c0, c1],
                "original_shape": [slices, height, width]}
        if stats:
            meta["zscore"] = stats
        return CaseArrays(image=image, label=resize_labels(eval_label, size), spacing=spacing,
                          eval_label=eval_label, eval_spacing=eval_spacing, meta=meta)

    def select_slices(self, case_id: str, present: np.ndarray) -> np.ndarray | None:
        opts = self.options
        if opts.slices == "all":
            return None
        mask = label_mask([v for labels in self.targets.values() for v in labels])
        hit = (present & mask) != 0
        fg, bg = np.flatnonzero(hit), np.flatnonzero(~hit)
        n_bg = int(round(opts.background_ratio * len(bg)))
        rng = case_rng(opts.slice_seed, case_id)
        chosen = np.sort(rng.choice(bg, size=n_bg, replace=False)) if n_bg else np.empty(0, dtype=np.int64)
        if len(fg) == 0 and len(chosen) == 0:
            chosen = bg[len(bg) // 2: len(bg) // 2 + 1]
        return np.sort(np.concatenate([fg, chosen]).astype(np.int64))
