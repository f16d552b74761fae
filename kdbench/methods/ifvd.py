"""Intra-class feature variation distillation (Wang et al., ECCV 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kdbench.methods import register_method
from kdbench.methods.base import LayerwiseMethod, Roles, class_masks, class_prototypes, labels_at, masked_mean
from kdbench.params import NonNegative


def feature_variation(feature: torch.Tensor, masks: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``M(p) = cos(F(p), c_{y(p)})`` along C → ``(B, positions)``; 0 at positions of no class."""
    f = feature.flatten(2)
    prototypes = class_prototypes(f, masks, eps)
    own = prototypes.transpose(1, 2) @ masks.to(f.dtype)
    return F.cosine_similarity(f, own, dim=1)


@register_method("ifvd")
class IFVD(LayerwiseMethod):
    """IFVD: match each pixel's cosine similarity to its class prototype (Wang et al. 2020).

    Wang et al., "Intra-class feature variation distillation for semantic
    segmentation", ECCV 2020, Sec. 3 (the intra-class feature variation map).  Labels
    are nearest-resized to the feature; per image and class k the prototype is
    ``c_k = Σ_{p∈k} F(p) / (|k| + 1e-6)``; ``M(p) = cos(F(p), c_{y(p)})`` for teacher and
    student separately;
    ``L = Σ_layers mean over valid positions of (M_s − M_t)²``.  The student's feature
    is bilinearly resized to the teacher's size first; channel counts may differ.

    Defaults: layer ``pre_logits``, ``weight = 20`` (CIRKD; 200 in the original with
    its mean-reduced KD).  Taps ``layers``.  Caveat: ignored pixels are masked
    explicitly (CIRKD's code does not, so with ignored pixels it reads lower by the
    valid fraction).
    """

    term = "ifvd"

    def __init__(self, layers: Roles = ("pre_logits",), weight: NonNegative = 20.0, **common):
        super().__init__(layers=layers, weight=weight, **common)

    def layer_loss(self, f_s, f_t, batch):
        label, mask = labels_at(batch, f_t.shape[2:])
        masks = class_masks(label, mask, self.num_classes)
        diff = (feature_variation(f_s, masks) - feature_variation(f_t, masks)).pow(2)
        return masked_mean(diff, None if mask is None else mask.flatten(1))
