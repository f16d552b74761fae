"""Local-relation distillation (Xie et al., "Improving fast segmentation with teacher-student learning", BMVC 2018)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from kdbench.methods import register_method
from kdbench.methods.base import Method, Roles, adapt, detached, labels_at, resize_to, role_adapters
from kdbench.methods.kd import pixel_kd
from kdbench.params import NonNegative, Positive


def local_relation_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """``mean ‖d_s − d_t‖²`` over all (image, position p, neighbour q) with ``d = F(p) − F(q)``.

    ``F`` are C-normalised maps of equal shape; the squared norm sums over channels.
    The offsets o and −o give the same set of squared differences, so one of each pair
    (4 of the 8 neighbours in 2D, 13 of the 26 in 3D) yields the same mean.
    """
    e = f_s - f_t  # d_s − d_t = e(p) − e(q)
    spatial = e.shape[2:]
    total, count = e.new_zeros(()), 0
    for offset in itertools.product((-1, 0, 1), repeat=len(spatial)):
        if offset <= (0,) * len(spatial):
            continue
        here = (..., *(slice(max(0, -o), n - max(0, o)) for o, n in zip(offset, spatial)))
        there = (..., *(slice(max(0, o), n - max(0, -o)) for o, n in zip(offset, spatial)))
        diff = e[here] - e[there]
        total = total + diff.pow(2).sum()
        count += diff[:, 0].numel()
    return total / max(count, 1)


@register_method("local")
class Local(Method):
    """LOCAL: pixel-wise KD plus matching of features' differences to their 8 neighbours (Xie 2018).

    Xie et al., BMVC 2018, Sec. 3: the zero-order term is pixel-wise KD (as the ``kd``
    method); the first-order term matches local relations: for each position p and
    each of its 8 neighbours q (26 in 3D), ``d = F(p) − F(q)`` of L2-normalised
    features; ``L_local = Σ_layers mean ‖d_s − d_t‖²`` over images and (p, q) pairs
    inside the map, the squared norm summed over channels.  The student's feature is
    bilinearly resized to the teacher's size and mapped by a 1×1 adapter (no bias,
    Cs → Ct) before normalising.  Terms ``kd`` and ``local``.

    Defaults: layer ``pre_logits``, ``kd_weight = 1``, ``local_weight = 1``, ``T = 4``
    (the ``kd`` default).  Taps ``layers``.
    """

    def __init__(self, layers: Roles = ("pre_logits",), kd_weight: NonNegative = 1.0,
                 local_weight: NonNegative = 1.0, T: Positive = 4.0, **common):
        super().__init__(**common)
        self.layers = tuple(layers)
        self.kd_weight, self.local_weight, self.T = kd_weight, local_weight, T
        self.adapters = role_adapters(self.student_roles, self.teacher_roles, self.layers)

    @property
    def taps(self):
        return self.layers

    def forward(self, student, teacher, batch):
        teacher = detached(teacher)
        _, mask = labels_at(batch, student.logits.shape[2:])
        local = 0.0
        for role in self.layers:
            f_t = teacher.features[role]
            f_s = adapt(self.adapters, role, resize_to(student.features[role], f_t.shape[2:]))
            local = local + local_relation_loss(F.normalize(f_s, dim=1), F.normalize(f_t, dim=1))
        return {"kd": self.kd_weight * pixel_kd(student.logits, teacher.logits, self.T, mask),
                "local": self.local_weight * local}
