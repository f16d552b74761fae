"""Similarity-preserving knowledge distillation (Tung & Mori, ICCV 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.methods import register_method
from kdbench.methods.base import LayerwiseMethod, Roles
from kdbench.params import NonNegative


def batch_similarity(feature: torch.Tensor) -> torch.Tensor:
    """``G = row-L2-normalise(Q Qᵀ)`` with ``Q = flatten(F)`` ∈ R^{B×(C·positions)} → ``(B, B)``."""
    q = feature.flatten(1)
    return F.normalize(q @ q.t(), dim=1)


@register_method("spkd")
class SPKD(LayerwiseMethod):
    """SPKD: match the batch's pairwise image-similarity matrices (Tung & Mori 2019).

    Tung & Mori, "Similarity-preserving knowledge distillation", ICCV 2019, Sec. 3:
    ``Q = flatten(F)``, ``G = row-L2-normalise(Q Qᵀ)`` (B×B),
    ``L = Σ_layers ‖G_t − G_s‖_F² / B²`` (as mdistiller's ``SP``; torchdistill's
    ``SPKDLoss`` normalises rows by their L1 sum instead).  The student's feature is
    bilinearly resized to the teacher's size first (kdbench convention 2); channel
    counts may differ.

    Defaults: layer ``high``, ``weight = 3000`` (mdistiller).  Taps ``layers``.
    Caveat: a relation between the images of a batch — with batch 2 it carries
    little; use a batch of at least 8.
    """

    term = "spkd"

    def __init__(self, layers: Roles = ("high",), weight: NonNegative = 3000.0, **common):
        super().__init__(layers=layers, weight=weight, **common)

    def layer_loss(self, f_s, f_t, batch):
        b = f_t.shape[0]
        return (batch_similarity(f_t) - batch_similarity(f_s)).pow(2).sum() / (b * b)
