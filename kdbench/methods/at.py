"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.methods import register_method
from kdbench.methods.base import LayerwiseMethod, Roles
from kdbench.params import NonNegative, Positive


def attention_map(feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """``a(F) = L2-normalise(flatten(mean_c F^p))`` → ``(B, positions)``."""
    return F.normalize(feature.pow(p).mean(dim=1).flatten(1), dim=1)


@register_method("at")
class AT(LayerwiseMethod):
    """Attention transfer: match L2-normalised spatial attention maps (Zagoruyko 2017).

    Zagoruyko & Komodakis, "Paying more attention to attention", ICLR 2017, Sec. 3.1
    (activation-based attention transfer):
    ``L = Σ_layers mean_{b, positions} (a_s − a_t)²`` with
    ``a(F) = L2-normalise(flatten(mean_c F^p))``.  The student's feature is bilinearly
    resized to the teacher's size first (mdistiller instead pools the larger map down).

    Defaults: ``p = 2``; layers ``low`` and ``high``; ``weight = 1000`` per layer
    (mdistiller/RepDistiller; CIRKD uses 10000 on one layer).  Taps ``layers``.
    """

    term = "at"

    def __init__(self, layers: Roles = ("low", "high"), p: Positive = 2.0,
                 weight: NonNegative = 1000.0, **common):
        super().__init__(layers=layers, weight=weight, **common)
        self.p = p

    def layer_loss(self, f_s, f_t, batch):
        return (attention_map(f_s, self.p) - attention_map(f_t, self.p)).pow(2).mean()
