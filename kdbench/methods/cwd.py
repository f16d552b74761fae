"""Channel-wise knowledge distillation (Shu et al., ICCV 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.methods import register_method
from kdbench.methods.base import Method, adapt, detached, resize_to, role_adapters
from kdbench.params import NonNegative, Positive


def channel_wise_kl(x_s: torch.Tensor, x_t: torch.Tensor, T: float) -> torch.Tensor:
    """``T²/(B·C) · Σ_{b,c} KL(φ(x_t,c) ‖ φ(x_s,c))``, φ = softmax over positions of x/T."""
    b, c = x_s.shape[:2]
    log_s = F.log_softmax(x_s.flatten(2) / T, dim=2)
    log_t = F.log_softmax(x_t.flatten(2) / T, dim=2)
    return (log_t.exp() * (log_t - log_s)).sum() * T * T / (b * c)


@register_method("cwd")
class CWD(Method):
    """CWD: KL between per-channel spatial distributions of logits (and features) (Shu 2021).

    Shu et al., "Channel-wise knowledge distillation for dense prediction", ICCV 2021,
    Sec. 3: for every channel c, ``φ(x_c) = softmax over positions of x_c / T``;
    ``L = T²/(B·C) · Σ_{b,c} Σ_i φ_t log(φ_t / φ_s)``.  Applied to the logits (the
    teacher's bilinearly resized to the student's size) and, with ``features: true``,
    also to the ``pre_logits`` features: the teacher's feature is resized to the
    student's size and the student's goes through a 1×1 adapter (no bias) when the
    channel counts differ.  Terms ``cwd`` and ``cwd_feat``.

    Defaults (CIRKD's scripts, ``channel`` norm with ``kl`` divergence): logits
    ``weight = 3``, ``T = 4``; features ``feature_weight = 50``, ``feature_T = 4``,
    off by default.  Taps ``pre_logits`` only with ``features: true``.  Caveat: with
    two classes the logit term sees only two channels.  (CIRKD's ``CriterionCWD``
    constructor defaults, norm ``none`` with ``mse``, are not CWD.)
    """

    def __init__(self, T: Positive = 4.0, weight: NonNegative = 3.0, features: bool = False,
                 feature_T: Positive = 4.0, feature_weight: NonNegative = 50.0, **common):
        super().__init__(**common)
        self.T, self.weight = T, weight
        self.features = features
        self.feature_T, self.feature_weight = feature_T, feature_weight
        self.adapters = role_adapters(self.student_roles, self.teacher_roles, self.taps, identity_if_equal=True)

    @property
    def taps(self):
        return ("pre_logits",) if self.features else ()

    def forward(self, student, teacher, batch):
        teacher = detached(teacher)
        z_s = student.logits
        terms = {"cwd": self.weight * channel_wise_kl(z_s, resize_to(teacher.logits, z_s.shape[2:]), self.T)}
        for role in self.taps:
            f_s = adapt(self.adapters, role, student.features[role])
            f_t = resize_to(teacher.features[role], f_s.shape[2:])
            terms["cwd_feat"] = self.feature_weight * channel_wise_kl(f_s, f_t, self.feature_T)
        return terms
