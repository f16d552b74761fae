"""Per-case evaluation: Dice, IoU, VOE, RVD, HD95 and ASSD for every target.

Slices are predicted in order and reassembled into the case's volume; metrics are
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
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
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
                   device: torch.device) -> pd.DataFrame:
    """Per-case metrics: one row per case × target × metric."""
    rows = []
    for case in cases:
        pred = predict_case(model, case, device)
        ref, spacing = case.label, case.spacing
        eval_label = getattr(case, "eval_label", None)
        if eval_label is not None:
            ref = eval_label
            spacing = getattr(case, "eval_spacing", None) or spacing
            pred = to_eval_resolution(pred, case)
        rows += [{"case_id": case.case_id, **row} for row in case_metrics(pred, ref, spacing, targets)]
    return pd.DataFrame(rows, columns=["case_id", "target", "metric", "value"])
