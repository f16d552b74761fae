"""FitNets: hints for thin deep nets (Romero et al., ICLR 2015)."""

from __future__ import annotations

from kdbench.methods import register_method
from kdbench.methods.base import LayerwiseMethod, Roles, adapt, resize_to, role_adapters
from kdbench.params import NonNegative


@register_method("fitnet")
class FitNet(LayerwiseMethod):
    """FitNet hints: regress the teacher's feature through a 1×1 adapter on the student's (Romero 2015).

    Romero et al., "FitNets: hints for thin deep nets", ICLR 2015, Sec. 2.2 (hint-based
    training), one-stage (trained jointly with the segmentation loss):
    ``L = Σ_layers mean((adapter(F_s) − F_t)²)`` over all elements.  The student's
    feature is bilinearly resized to the teacher's size, then a trainable 1×1 conv
    (no bias, Cs → Ct) maps it to the teacher's channels.

    Defaults: layer ``pre_logits``, ``weight = 10`` (CIRKD).  Taps ``layers``.
    """

    term = "fitnet"

    def __init__(self, layers: Roles = ("pre_logits",), weight: NonNegative = 10.0, **common):
        super().__init__(layers=layers, weight=weight, **common)
        self.adapters = role_adapters(self.student_roles, self.teacher_roles, self.layers)

    def student_feature(self, role, feature, size):
        return adapt(self.adapters, role, resize_to(feature, size))

    def layer_loss(self, f_s, f_t, batch):
        return (f_s - f_t).pow(2).mean()
