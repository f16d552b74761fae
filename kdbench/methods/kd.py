"""Response-based knowledge distillation (Hinton et al., arXiv:1503.02531, 2015)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.methods import register_method
from kdbench.methods.base import Method, masked_mean, resize_to


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
    """Pixel-wise KD: KL between temperature-softened class distributions (Hinton 2015)."""

    def __init__(self, T: float = 4.0, weight: float = 1.0, **common):
        super().__init__(**common)
        self.T = T
        self.weight = weight

    def forward(self, student, teacher, batch):
        return {"kd": self.weight * pixel_kd(student.logits, teacher.logits, self.T, batch.valid_mask())}
