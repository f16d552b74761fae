"""Per-case evaluation: Dice, IoU, VOE, RVD, HD95 and ASSD for every target.

How a case is predicted is the job's ``inference`` setting (see ``docs/3d.md``):
``slices`` (the default) predicts its slices in order with a 2D network and
reassembles them; ``sliding_window`` runs a 3D network over the whole volume with
Gaussian-weighted windows; ``tri_planar`` averages a 2D network's axial, coronal and
sagittal probabilities (:mod:`kdbench.benchmark.inference`).  With a target
``spacing`` the volume is resampled to it first and the probabilities back to the
case's own grid before the arg-max.  Metrics are
computed per case (volume) and per target (a set of label values), as in EMKD
("dice per case").  When a case carries its label at the original resolution
(``eval_label``/``eval_spacing``), the prediction is resized back (nearest) and
compared there (``kdbench.datasets.transforms.to_eval_resolution``).  Overlap metrics come from voxel counts; surface distances (mm,
spacing-aware) from MONAI.  Conventions (nnU-Net's): an empty reference with an empty
prediction gives NaN for every metric (skipped in means); an empty reference with a
non-empty prediction gives Dice = IoU = 0; HD95 and ASSD are NaN unless both masks are
non-empty.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import torch
from torch import nn

from kdbench.datasets.base import Case
from kdbench.datasets.transforms import to_eval_resolution

METRICS = ("dice", "iou", "voe", "rvd", "hd95", "assd")
LOWER_IS_BETTER = {"voe", "rvd", "hd95", "assd"}


@torch.no_grad()
def predict_case(model: nn.Module, case: Case, device: torch.device, batch_size: int = 16) -> np.ndarray:
    """Arg-max label map ``(S, H, W)`` of a case, predicted slice by slice."""
    model.eval()
    out = []
    for start in range(0, case.image.shape[0], batch_size):
        x = torch.from_numpy(np.ascontiguousarray(case.image[start:start + batch_size])).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
        out.append(logits.float().argmax(1).cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def predict_volume(model: nn.Module, case: Case, inference: dict, device: torch.device) -> np.ndarray:
    """Arg-max label map ``(S, H, W)`` of a case predicted as a whole volume (``inference`` mode
    ``sliding_window`` or ``tri_planar``), at the case's own grid whatever ``spacing`` it ran at."""
    from monai.transforms import Resize

    from kdbench.benchmark.inference import sliding_window, tri_planar
    from kdbench.datasets.patches import case_volume

    model.eval()
    spacing = inference.get("spacing")
    image, _ = case_volume(case, tuple(spacing) if spacing is not None else None)
    if inference["mode"] == "sliding_window":
        scores = sliding_window(model, image, inference["patch"], overlap=inference.get("overlap", 0.5),
                                sw_batch_size=inference.get("sw_batch_size", 4), device=device)
    else:
        scores = tri_planar(model, image, device=device)
    shape = tuple(case.label.shape)
    if tuple(scores.shape[1:]) != shape:  # back to the case's grid: probabilities, then the arg-max
        scores = Resize(shape, mode="trilinear")(torch.softmax(scores, 0) if inference["mode"] != "tri_planar"
                                                  else scores)
    return torch.as_tensor(scores).argmax(0).numpy()


def mask_metrics(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> dict[str, float]:
    """All metrics for one binary prediction vs. reference (same shape, ``spacing`` per axis)."""
    p, r = pred.astype(bool), ref.astype(bool)
    tp = float(np.logical_and(p, r).sum())
    n_p, n_r = float(p.sum()), float(r.sum())
    if n_p == 0 and n_r == 0:
        return {m: math.nan for m in METRICS}
    dice = 2 * tp / (n_p + n_r)
    iou = tp / (n_p + n_r - tp)
    out = {"dice": dice, "iou": iou, "voe": 1 - iou,
           "rvd": (n_p - n_r) / n_r if n_r else math.nan, "hd95": math.nan, "assd": math.nan}
    if n_p and n_r:
        from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

        yp = torch.from_numpy(p)[None, None]
        yr = torch.from_numpy(r)[None, None]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["hd95"] = float(compute_hausdorff_distance(yp, yr, include_background=True, percentile=95,
                                                           spacing=list(spacing)))
            out["assd"] = float(compute_average_surface_distance(yp, yr, include_background=True, symmetric=True,
                                                                 spacing=list(spacing)))
    return out


def case_metrics(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...],
                 targets: dict[str, tuple[int, ...]]) -> list[dict]:
    """Rows ``{target, metric, value}`` for one case; a single-slice case is measured in 2D."""
    if pred.shape[0] == 1:
        pred, ref, spacing = pred[0], ref[0], tuple(spacing[-2:])
    rows = []
    for target, labels in targets.items():
        values = mask_metrics(np.isin(pred, labels), np.isin(ref, labels), spacing)
        rows += [{"target": target, "metric": m, "value": v} for m, v in values.items()]
    return rows


def evaluate_model(model: nn.Module, cases: list[Case], targets: dict[str, tuple[int, ...]],
                   device: torch.device, inference: dict | None = None) -> pd.DataFrame:
    """Per-case metrics: one row per case × target × metric.

    ``inference`` is ``None`` or ``{"mode": "slices"}`` (2D, slice by slice), or
    ``{"mode": "sliding_window", "patch": [d, h, w], "overlap": 0.5, "sw_batch_size": 4,
    "spacing": [z, y, x] | None}`` or ``{"mode": "tri_planar", "spacing": ...}``.
    Every prediction is scored at the case's evaluation resolution and spacing (mm).
    """
    whole = inference is not None and inference.get("mode", "slices") != "slices"
    rows = []
    for case in cases:
        pred = predict_volume(model, case, inference, device) if whole else predict_case(model, case, device)
        ref, spacing = case.label, case.spacing
        eval_label = getattr(case, "eval_label", None)
        if eval_label is not None:
            ref = eval_label
            spacing = getattr(case, "eval_spacing", None) or spacing
            pred = to_eval_resolution(pred, case)
        rows += [{"case_id": case.case_id, **row} for row in case_metrics(pred, ref, spacing, targets)]
    return pd.DataFrame(rows, columns=["case_id", "target", "metric", "value"])
