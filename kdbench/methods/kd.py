"""Response-based knowledge distillation (Hinton et al., arXiv:1503.02531, 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.methods import register_method
from kdbench.methods.base import Method, detached, labels_at, masked_mean, resize_to
from kdbench.params import NonNegative, Positive


def pixel_kd(z_s: torch.Tensor, z_t: torch.Tensor, T: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``T² · mean_pixels KL(softmax(z_t/T) ‖ softmax(z_s/T))``, per-pixel batchmean.

    The KL is summed over classes and averaged over the B·h·w (valid) pixels; the
    teacher's logits are bilinearly resized to the student's resolution.
    """
    z_t = resize_to(z_t, z_s.shape[2:])
    log_p_s = F.log_softmax(z_s / T, dim=1)
    log_p_t = F.log_softmax(z_t / T, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
    return masked_mean(kl, mask) * T * T


@register_method("kd")
class KD(Method):
    """Pixel-wise KD: KL between temperature-softened class distributions (Hinton 2015).

    Hinton et al., "Distilling the knowledge in a neural network", 2015, Sec. 2 (the
    softened softmax and its cross-entropy, in KL form), applied to every pixel:
    ``L = T² · mean_pixels KL(softmax(z_t/T) ‖ softmax(z_s/T))``, the KL summed over
    classes and averaged over the B·h·w pixels (per-pixel batchmean); ignored pixels
    are left out.  The teacher's logits are bilinearly resized to the student's
    resolution.  Taps no features.

    Defaults: ``T = 4`` (EMKD's PMD and mdistiller; CIRKD uses 1), ``weight = 1``.
    Caveat: code that uses ``KLDivLoss(reduction='mean')`` averages over B·C·h·w and
    drops T², so its weights (e.g. λ = 10 in the IFVD/SKD code) are not comparable.
    """

    def __init__(self, T: Positive = 4.0, weight: NonNegative = 1.0, **common):
        super().__init__(**common)
        self.T = T
        self.weight = weight

    def forward(self, student, teacher, batch):
        _, mask = labels_at(batch, student.logits.shape[2:])
        return {"kd": self.weight * pixel_kd(student.logits, detached(teacher).logits, self.T, mask)}
