"""Ensemble teachers (Noothout et al., "Knowledge distillation with ensembles of convolutional
neural networks for medical image segmentation", JMI 2022).

"To obtain the output of an ensemble, the posterior classification probabilities
predicted by the separate networks present in an ensemble are averaged" (Sec. 2.1); the
distilled network learns ``L_d = L_s + L_h`` (Sec. 2.2, Eq. 1): the mean squared error
between its softmax and those mean probabilities, plus the cross-entropy with the hard
labels.  Nothing here is 2D-only: members may take and return 3D maps
``(B, C, D, H, W)`` unchanged.
"""

from __future__ import annotations

import math
from typing import Iterable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.methods.base import masked_mean, resize_labels, resize_to


def _common(logits: Sequence[torch.Tensor], size: tuple[int, ...] | None) -> list[torch.Tensor]:
    """The members' logits resized (bilinear/trilinear) to ``size``, by default the largest member output."""
    if not logits:
        raise ValueError("an ensemble needs at least one member")
    if size is None:
        size = max((tuple(z.shape[2:]) for z in logits), key=math.prod)
    return [resize_to(z, size) for z in logits]


def mean_probabilities(logits: Sequence[torch.Tensor], size: tuple[int, ...] | None = None) -> torch.Tensor:
    """The ensemble's output: ``(1/K) Σ_k softmax(z_k)`` over the class axis (Noothout et al. Sec. 2.1).

    Members whose logits differ in spatial size are first resized (logits, bilinear or
    trilinear, methods.md convention 2) to ``size``, by default the largest output.
    """
    return torch.stack([F.softmax(z, dim=1) for z in _common(logits, size)]).mean(0)


def log_mean_probabilities(logits: Sequence[torch.Tensor], size: tuple[int, ...] | None = None) -> torch.Tensor:
    """``log mean_probabilities(logits)``, computed as ``logsumexp_k log_softmax(z_k) − log K``.

    Exact without an ε, and finite wherever the members' logits are finite (a plain
    ``log`` of a mean that underflows to 0 is −∞).
    """
    logits = _common(logits, size)
    log_probs = torch.stack([F.log_softmax(z, dim=1) for z in logits])
    return torch.logsumexp(log_probs, dim=0) - math.log(len(logits))


class EnsembleTeacher(nn.Module):
    """K member networks whose output is the mean of their softmax (Noothout et al. Sec. 2.1).

    ``forward(x)`` returns ``log_mean_probabilities``: logits whose softmax *is* the mean
    probability map, so any code that consumes a teacher's logits (a KD term, the
    evaluator's argmax, the profiler) sees the ensemble's probabilities.  With a
    temperature ``T ≠ 1`` a consumer would soften the mean, not average softened members.
    ``probabilities(x)`` returns the mean itself.  The ensemble declares no feature roles:
    its output is all a student reads.  Members keep their own train/eval modes.
    """

    def __init__(self, members: Iterable[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        if len(self.members) == 0:
            raise ValueError("an ensemble needs at least one member")
        self.feature_roles: dict = {}

    def member_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every member's logits for ``x``, in member order."""
        return [member(x) for member in self.members]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return log_mean_probabilities(self.member_logits(x))

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """The mean of the members' softmax for ``x``, ``(B, K, *spatial)``."""
        return mean_probabilities(self.member_logits(x))


def ensemble_loss(student_logits: torch.Tensor, mean_probs: torch.Tensor, label: torch.Tensor,
                  soft_loss: Literal["mse", "kl"] = "mse",
                  ignore_index: int | None = None) -> dict[str, torch.Tensor]:
    """The distillation loss ``L_d = L_s + L_h`` of Noothout et al. Eq. (1), as named terms.

    * ``soft`` — ``L_s``: with ``mse`` (the paper's) the squared difference between the
      student's softmax and the mean probabilities, averaged over classes and pixels;
      with ``kl`` the per-pixel batchmean ``KL(mean ‖ softmax(z_s))`` (methods.md
      convention 1, no temperature).
    * ``hard`` — ``L_h``: cross-entropy of the student's *logits* with the hard labels,
      averaged over pixels (the official code applies it to probabilities; not repeated).

    ``mean_probs`` is detached and bilinearly resized to the student's size; labels are
    nearest-resized.  Pixels labelled ``ignore_index`` are left out of both means.
    Gradients reach the student only.  ``L_d = soft + hard``.
    """
    if soft_loss not in ("mse", "kl"):
        raise ValueError(f"soft_loss = {soft_loss!r}; allowed: 'mse', 'kl'")
    size = student_logits.shape[2:]
    target = resize_to(mean_probs.detach(), size).to(student_logits.dtype)
    label = resize_labels(label, size)
    mask = None if ignore_index is None else label != ignore_index
    safe = label if mask is None else label.where(mask, torch.zeros_like(label))
    log_s = F.log_softmax(student_logits, dim=1)
    if soft_loss == "mse":
        soft = ((log_s.exp() - target) ** 2).mean(dim=1)
    else:
        soft = (torch.xlogy(target, target) - target * log_s).sum(dim=1)
    hard = F.cross_entropy(student_logits, safe, reduction="none")
    return {"soft": masked_mean(soft, mask), "hard": masked_mean(hard, mask)}
