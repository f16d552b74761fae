"""Array transforms shared by the file datasets: intensity normalisation and resizing.

Images are resized with bilinear interpolation (antialiased when shrinking), label maps
with nearest neighbour (``nearest-exact``: the pixel whose centre is closest).
:func:`to_eval_resolution` applies the same nearest-neighbour rule to bring a
prediction made at ``image_size`` back to a case's original in-plane resolution
(``Case.eval_label``), which is how per-case metrics are computed at the original
spacing.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: slices resized per call, bounding the memory of one step
CHUNK = 32


def apply_window(x: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Clip to ``window = (low, high)`` (HU for CT) and scale to [0, 1], in place."""
    low, high = float(window[0]), float(window[1])
    np.clip(x, low, high, out=x)
    x -= low
    x /= high - low
    return x


def robust_stats(volume: np.ndarray, scale: tuple[float, float] = (1.0, 0.0),
                 max_samples: int = 2_000_000) -> tuple[float, float, float, float]:
    """``(p0.5, p99.5, mean, std)`` of ``volume * slope + inter`` clipped to its 0.5–99.5 percentiles.

    Computed on a regular sub-grid of at most about ``max_samples`` voxels, so the cost
    does not grow with the volume.
    """
    step = max(1, int(np.ceil((volume.size / max_samples) ** (1.0 / max(volume.ndim, 1)))))
    sample = np.asarray(volume[(slice(None, None, step),) * volume.ndim], dtype=np.float64).ravel()
    sample = sample * scale[0] + scale[1]
    if sample.size == 0:
        return 0.0, 0.0, 0.0, 1.0
    low, high = np.percentile(sample, [0.5, 99.5])
    clipped = np.clip(sample, low, high)
    std = float(clipped.std())
    return float(low), float(high), float(clipped.mean()), std if std > 1e-6 else 1.0


def apply_zscore(x: np.ndarray, stats: tuple[float, float, float, float]) -> np.ndarray:
    """Clip to the percentiles in ``stats`` and standardise, in place."""
    low, high, mean, std = stats
    np.clip(x, low, high, out=x)
    x -= mean
    x /= std
    return x


def resize_images(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(S, H, W)`` float32 → ``(S, *size)`` float32, bilinear (antialiased when shrinking)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty((x.shape[0], *size), dtype=np.float32)
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    for s0 in range(0, x.shape[0], CHUNK):
        t = torch.from_numpy(np.ascontiguousarray(x[s0:s0 + CHUNK], dtype=np.float32))[:, None]
        y = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        out[s0:s0 + CHUNK] = y[:, 0].numpy()
    return out


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(S, H, W)`` integer label maps → ``(S, *size)``, nearest neighbour, same dtype."""
    labels = np.asarray(labels)
    if tuple(labels.shape[-2:]) == tuple(size):
        return np.ascontiguousarray(labels)
    dtype = labels.dtype
    work = labels.astype(np.uint8) if labels.min(initial=0) >= 0 and labels.max(initial=0) < 256 else labels.astype(np.float32)
    out = np.empty((labels.shape[0], *size), dtype=work.dtype)
    for s0 in range(0, labels.shape[0], CHUNK):
        t = torch.from_numpy(np.ascontiguousarray(work[s0:s0 + CHUNK]))[:, None]
        out[s0:s0 + CHUNK] = F.interpolate(t, size=size, mode="nearest-exact")[:, 0].numpy()
    return out.astype(dtype, copy=False)


def to_eval_resolution(prediction: np.ndarray, case) -> np.ndarray:
    """A prediction ``(S, H, W)`` at ``image_size`` → the resolution of ``case.eval_label``.

    Nearest neighbour, as for labels.  Cases without ``eval_label`` are evaluated at the
    resolution they hold, so the prediction is returned unchanged.
    """
    target = getattr(case, "eval_label", None)
    if target is None:
        return np.asarray(prediction)
    if prediction.shape[0] != target.shape[0]:
        raise ValueError(f"case {case.case_id}: prediction has {prediction.shape[0]} slices, "
                         f"the case {target.shape[0]}")
    return resize_labels(prediction, tuple(target.shape[-2:]))
