"""FitNets: hints for thin deep nets (Romero et al., ICLR 2015)."""

from __future__ import annotations

from kdbench.methods import register_method
from kdbench.methods.base import Method, adapt, detached, resize_to, role_adapters


@register_method("fitnet")
class FitNet(Method):
    """FitNet hints: regress the teacher's feature through a 1×1 adapter on the student's (Romero 2015).

    Romero et al., "FitNets: hints for thin deep nets", ICLR 2015, Sec. 2.2 (hint-based
    training), one-stage (trained jointly with the segmentation loss):
    ``L = Σ_layers mean((adapter(F_s) − F_t)²)`` over all elements.  The student's
    feature is bilinearly resized to the teacher's size, then a trainable 1×1 conv
    (no bias, Cs → Ct) maps it to the teacher's channels.

    Defaults: layer ``pre_logits``, ``weight = 10`` (CIRKD).  Taps ``layers``.
    """

    term = "fitnet"

    def __init__(self, layers: tuple[str, ...] = ("pre_logits",), weight: float = 10.0, **common):
        super().__init__(**common)
        self.layers = tuple(layers)
        self.weight = weight
        self.adapters = role_adapters(self.student_roles, self.teacher_roles, self.layers)

    @property
    def taps(self):
        return self.layers

    def forward(self, student, teacher, batch):
        teacher = detached(teacher)
        total = 0.0
        for role in self.layers:
            f_t = teacher.features[role]
            f_s = adapt(self.adapters, role, resize_to(student.features[role], f_t.shape[2:]))
            total = total + (f_s - f_t).pow(2).mean()
        return {self.term: self.weight * total}
