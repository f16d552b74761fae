"""Efficient medical image segmentation based on knowledge distillation (Qin et al., IEEE TMI 2021)."""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import AfterValidator

from kdbench.errors import ConfigError
from kdbench.methods import register_method
from kdbench.methods.base import Method, Roles, class_masks, class_prototypes, detached, labels_at, resize_to
from kdbench.methods.kd import pixel_kd
from kdbench.params import NonNegative, Positive

PARTS = ("pmd", "imd", "rad")


def _parts(parts: tuple[str, ...]) -> tuple[str, ...]:
    if not parts or any(part not in PARTS for part in parts):
        raise ValueError(f"choose a non-empty subset of {', '.join(PARTS)}")
    return parts


Parts = Annotated[tuple[str, ...], AfterValidator(_parts)]
"""A non-empty selection of ``pmd``, ``imd`` and ``rad``."""


def importance_map(feature: torch.Tensor, p: float) -> torch.Tensor:
    """``a(F) = L2-normalise(flatten(mean_c |F|^p))`` → ``(B, positions)``."""
    return F.normalize(feature.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def region_contrast(feature: torch.Tensor, masks: torch.Tensor, eps: float) -> torch.Tensor:
    """Cosine similarity between the class prototypes of every pair of classes ``(B, K, K)``."""
    prototypes = class_prototypes(feature.flatten(2), masks, eps)
    return F.cosine_similarity(prototypes[:, :, None], prototypes[:, None], dim=-1)


def region_affinity_loss(f_s: torch.Tensor, f_t: torch.Tensor, masks: torch.Tensor, eps: float) -> torch.Tensor:
    """``mean_b mean_pairs (cos_s − cos_t)²`` over the pairs of classes present in each image.

    Images with fewer than two classes present have no pair and are left out of the
    mean over images; the loss is 0 when no image has a pair.
    """
    present = masks.sum(dim=2) > 0
    k = masks.shape[1]
    upper = torch.ones(k, k, dtype=torch.bool, device=masks.device).triu(diagonal=1)
    pairs = (present[:, :, None] & present[:, None, :] & upper).to(f_s.dtype)
    diff = (region_contrast(f_s, masks, eps) - region_contrast(f_t, masks, eps)).pow(2)
    per_image = (diff * pairs).sum(dim=(1, 2))
    n_pairs = pairs.sum(dim=(1, 2))
    has_pair = n_pairs > 0
    if not has_pair.any():
        return f_s.new_zeros(())
    return (per_image[has_pair] / n_pairs[has_pair]).mean()


@register_method("emkd", example="{name: emkd, parts: [pmd, rad], label: emkd_pmd_rad}")
class EMKD(Method):
    """EMKD: prediction-map, importance-map and region-affinity distillation (Qin et al. 2021).

    Qin et al., "Efficient medical image segmentation based on knowledge
    distillation", IEEE TMI 40(12), 2021, Eq. 9: ``L = L_seg + α·PMD + β1·IMD + β2·RAD``,
    each part switchable (``parts``; EMKD Tables IV–V run every subset).

    * ``pmd`` (Eq. 1): pixel-wise KD at temperature T, per-pixel batchmean × T², as the
      ``kd`` method.  (The official code views logits as (−1, 2) without a permute,
      which equals this only for two classes.)
    * ``imd`` (Eqs. 2–5): importance map ``a(F) = L2-normalise(flatten(mean_c |F|^p))``
      after bilinearly resizing the student's feature to the teacher's size;
      ``IMD = Σ_layers mean_b Σ_positions (a_s − a_t)²``.  p = 4 as the official code
      (Eq. 3 itself sums |F|).
    * ``rad`` (Eqs. 6–8): one-hot labels nearest-resized to the (teacher-size) feature;
      class prototypes ``r_k = Σ F·m_k / (Σ m_k + ε)``; region contrast = cosine
      similarity between the prototypes of every pair of classes present in the image
      (one scalar for two classes, all pairs for more);
      ``RAD = Σ_layers mean_b mean_pairs (cos_s − cos_t)²``.  Absent classes drop out;
      an image with fewer than two classes present is left out of ``mean_b`` and the
      term is 0 when no image has a pair.  ε in every division, unlike the official
      code, where one all-foreground slice makes the batch NaN.

    Defaults (official code; paper Sec. III-D): ``alpha = 0.1``, ``beta1 = beta2 =
    0.9``, ``T = 4``, ``p = 4``; layers ``low`` (the stem output, before the first
    pooling) and ``high`` (the second encoder stage), "the first and the last
    embedding pairs of the same size".  Taps ``layers`` when ``imd`` or ``rad`` is on.
    Table VI doubles α, β1, β2.
    """

    def __init__(self, parts: Parts = PARTS, alpha: NonNegative = 0.1, beta1: NonNegative = 0.9,
                 beta2: NonNegative = 0.9, T: Positive = 4.0, p: Positive = 4.0,
                 layers: Roles = ("low", "high"), eps: Positive = 1e-6, **common):
        super().__init__(**common)
        unknown = [part for part in parts if part not in PARTS]
        if unknown or not parts:
            raise ConfigError(f"emkd: parts = {list(parts)}: choose a non-empty subset of {', '.join(PARTS)}")
        self.parts = tuple(parts)
        self.alpha, self.beta1, self.beta2 = alpha, beta1, beta2
        self.T, self.p, self.eps = T, p, eps
        self.layers = tuple(layers)

    @property
    def taps(self):
        return self.layers if {"imd", "rad"} & set(self.parts) else ()

    def forward(self, student, teacher, batch):
        teacher = detached(teacher)
        terms = {}
        if "pmd" in self.parts:
            _, mask = labels_at(batch, student.logits.shape[2:])
            terms["pmd"] = self.alpha * pixel_kd(student.logits, teacher.logits, self.T, mask)
        imd = rad = 0.0
        for role in self.taps:
            f_t = teacher.features[role]
            f_s = resize_to(student.features[role], f_t.shape[2:])
            if "imd" in self.parts:
                imd = imd + (importance_map(f_s, self.p) - importance_map(f_t, self.p)).pow(2).sum(dim=1).mean()
            if "rad" in self.parts:
                label, mask = labels_at(batch, f_t.shape[2:])
                masks = class_masks(label, mask, self.num_classes)
                rad = rad + region_affinity_loss(f_s, f_t, masks, self.eps)
        if "imd" in self.parts:
            terms["imd"] = self.beta1 * imd
        if "rad" in self.parts:
            terms["rad"] = self.beta2 * rad
        return terms
