"""Decoupled knowledge distillation (Zhao et al., CVPR 2022)."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from kdbench.errors import KdbenchNote
from kdbench.methods import register_method
from kdbench.methods.base import Method, detached, labels_at, masked_mean, resize_to
from kdbench.params import Fraction, NonNegative, Positive


def decoupled_kl(z_s: torch.Tensor, z_t: torch.Tensor, label: torch.Tensor, T: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel ``(TCKD, NCKD)`` maps ``(B, *spatial)`` at temperature ``T`` (no T² factor).

    ``TCKD = KL(b_t ‖ b_s)`` with ``b = [p_y, 1 − p_y]``; ``NCKD`` is the KL between the
    distributions over the non-target classes, ``softmax(z/T − 1000·1_y)``.
    """
    target = F.one_hot(label, z_s.shape[1]).movedim(-1, 1).bool()

    def binary_log(z):  # log [p_y, 1 − p_y], both by log-sum-exp for stability
        log_p = F.log_softmax(z / T, dim=1)
        log_y = log_p.masked_fill(~target, float("-inf")).logsumexp(dim=1)
        log_rest = log_p.masked_fill(target, float("-inf")).logsumexp(dim=1)
        return torch.stack([log_y, log_rest], dim=1)

    b_s, b_t = binary_log(z_s), binary_log(z_t)
    tckd = (b_t.exp() * (b_t - b_s)).sum(dim=1)
    n_s = F.log_softmax(z_s / T - 1000.0 * target, dim=1)
    n_t = F.log_softmax(z_t / T - 1000.0 * target, dim=1)
    nckd = (n_t.exp() * (n_t - n_s)).sum(dim=1)
    return tckd, nckd


@register_method("dkd")
class DKD(Method):
    """DKD: KD split into target-class and non-target-class terms, weighted apart (Zhao 2022).

    Zhao et al., "Decoupled knowledge distillation", CVPR 2022, Sec. 3 (the DKD loss),
    per pixel: ``p = softmax(z/T)``, ``b = [p_y, 1 − p_y]``, ``TCKD = KL(b_t ‖ b_s)``,
    ``NCKD = KL(softmax(z_t/T − 1000·1_y) ‖ softmax(z_s/T − 1000·1_y))``;
    ``L = T² (α·TCKD + β·NCKD)`` averaged over valid pixels, times the warm-up factor
    ``min(step / warmup_steps, 1)`` with ``warmup_steps = warmup · total_steps``
    (iteration-based; ``batch.step`` / ``batch.total_steps``).  Labels are
    nearest-resized and the teacher's logits bilinearly resized to the student's
    logits.  Logged as two terms, ``tckd`` and ``nckd``.  Taps no features.

    Defaults (mdistiller): ``alpha = 1``, ``beta = 8``, ``T = 4``, ``warmup = 0.2``
    (20 of 240 epochs there); segmentation ports also use β = 2, T = 1.  Caveat: with
    two classes (binary masks) the non-target distribution has a single class, so
    NCKD is identically 0 (spec convention 7) and only TCKD trains; building DKD with
    ``num_classes = 2`` says so once (a :class:`~kdbench.errors.KdbenchNote`).
    """

    def __init__(self, alpha: NonNegative = 1.0, beta: NonNegative = 8.0, T: Positive = 4.0,
                 warmup: Fraction = 0.2, **common):
        super().__init__(**common)
        self.alpha, self.beta, self.T, self.warmup = alpha, beta, T, warmup
        if self.num_classes == 2:
            warnings.warn(KdbenchNote(
                "dkd: on binary masks (2 classes) NCKD is identically 0, so only TCKD trains "
                "(beta has no effect)"), stacklevel=2)

    def warmup_factor(self, step: int, total_steps: int) -> float:
        """``min(step / warmup_steps, 1)``; 1 without warm-up."""
        warmup_steps = self.warmup * total_steps
        return 1.0 if warmup_steps <= 0 else min(step / warmup_steps, 1.0)

    def forward(self, student, teacher, batch):
        z_s = student.logits
        z_t = resize_to(detached(teacher).logits, z_s.shape[2:])
        label, mask = labels_at(batch, z_s.shape[2:])
        tckd, nckd = decoupled_kl(z_s, z_t, label, self.T)
        scale = self.T ** 2 * self.warmup_factor(batch.step, batch.total_steps)
        return {"tckd": scale * self.alpha * masked_mean(tckd, mask),
                "nckd": scale * self.beta * masked_mean(nckd, mask)}
