"""Feature mimicking (Li, Jin & Yan, "Mimicking very efficient network for object detection", CVPR 2017)."""

from __future__ import annotations

from kdbench.methods import register_method
from kdbench.methods.base import Roles
from kdbench.methods.fitnet import FitNet
from kdbench.params import NonNegative


@register_method("mimic")
class Mimic(FitNet):
    """MIMIC: L2 mimicking of a mid/late teacher feature through a 1×1 adapter (Li et al. 2017).

    Li et al., CVPR 2017, Sec. 3 (the mimic loss, here over the whole map instead
    of proposal regions): ``L = Σ_layers mean((adapter(F_s) − F_t)²)``, the mean
    taken per position over channels and then over positions and batch (which
    equals the mean over all elements).  The student's feature is bilinearly resized to the teacher's
    size; the adapter is a trainable 1×1 conv (no bias, Cs → Ct).

    Defaults: layer ``high``, ``weight = 1``.  EMKD's Table III runs it on the same
    tapped layers as the other methods (``layers: [low, high]`` in
    ``tables/table3.yaml``).  Taps ``layers``.
    """

    term = "mimic"

    def __init__(self, layers: Roles = ("high",), weight: NonNegative = 1.0, **common):
        super().__init__(layers=layers, weight=weight, **common)
