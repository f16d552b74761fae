"""Pair-wise affinity distillation (Liu et al., "Structured knowledge distillation for semantic segmentation", CVPR 2019)."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import AfterValidator

from kdbench.errors import ConfigError
from kdbench.methods import register_method
from kdbench.methods.base import Method, Roles, detached, resize_to
from kdbench.params import NonNegative, Positive


def pool_problem(pool: dict) -> str | None:
    """What is wrong with a PA pooling spec (``{kernel: k}``, k a whole number ≥ 1, or ``{fraction: f}``, 0 < f ≤ 1)."""
    if len(pool) != 1 or not ({"kernel", "fraction"} & pool.keys()):
        return "give exactly one of 'kernel' (e.g. {kernel: 2}) or 'fraction' (e.g. {fraction: 0.5})"
    kernel, fraction = pool.get("kernel"), pool.get("fraction")
    if kernel is not None and not (float(kernel).is_integer() and kernel >= 1):
        return f"kernel = {kernel}: give a whole number ≥ 1"
    if fraction is not None and not 0 < fraction <= 1:
        return f"fraction = {fraction}: give a fraction of the map in (0, 1]"
    return None


def _pool(pool: dict) -> dict:
    problem = pool_problem(pool)
    if problem:
        raise ValueError(problem)
    return pool


Pool = Annotated[dict[Literal["kernel", "fraction"], Positive], AfterValidator(_pool)]
"""A pooling spec: ``{kernel: k}`` (k ≥ 1, whole) or ``{fraction: f}`` (0 < f ≤ 1)."""


def check_pool(pool: dict) -> dict:
    """Validate a PA pooling spec: ``{kernel: k}`` or ``{fraction: f}``."""
    pool = dict(pool)
    problem = pool_problem(pool)
    if problem:
        raise ConfigError(f"pool = {pool}: {problem}")
    return pool


def max_pool(feature: torch.Tensor, pool: dict) -> torch.Tensor:
    """Max-pool with stride = kernel and ``ceil_mode``: a fixed kernel, or a fraction of the map."""
    if "kernel" in pool:
        kernel = (int(pool["kernel"]),) * (feature.dim() - 2)
    else:
        kernel = tuple(max(1, int(size * pool["fraction"])) for size in feature.shape[2:])
    pool_fn = F.max_pool2d if feature.dim() == 4 else F.max_pool3d
    return pool_fn(feature, kernel, stride=kernel, ceil_mode=True)


def affinity(feature: torch.Tensor) -> torch.Tensor:
    """``A = Fᵀ F`` of the C-normalised feature, per image → ``(B, positions, positions)``."""
    f = F.normalize(feature.flatten(2), dim=1)
    return f.transpose(1, 2) @ f


def pair_affinity_loss(f_s: torch.Tensor, f_t: torch.Tensor, pool: dict) -> torch.Tensor:
    """``mean((A_s − A_t)²)`` after resizing the student to the teacher and pooling both."""
    f_s = resize_to(f_s, f_t.shape[2:])
    return (affinity(max_pool(f_s, pool)) - affinity(max_pool(f_t, pool))).pow(2).mean()


@register_method("pa")
class PA(Method):
    """PA: match pair-wise affinities between pooled feature positions (Liu et al. 2019).

    Liu et al., CVPR 2019, Sec. 3.1 (pair-wise distillation): max-pool F (stride =
    kernel, ceil mode), L2-normalise along C, ``A = Fᵀ F`` (positions × positions, per
    image),
    ``L = Σ_layers mean((A_s − A_t)²)`` over images and position pairs.  The
    student's feature is bilinearly resized to the teacher's size first; channel
    counts may differ (no adapter).

    Defaults: layer ``pre_logits``, ``weight = 10`` (CIRKD), ``pool = {kernel: 2}``
    (``{fraction: 0.5}`` pools with a kernel half the map, as the original code).
    Taps ``layers``.  Caveat: the affinity is quadratic in the pooled positions.
    """

    def __init__(self, layers: Roles = ("pre_logits",), weight: NonNegative = 10.0,
                 pool: Pool = {"kernel": 2}, **common):  # noqa: B006 (read-only, copied)
        super().__init__(**common)
        self.layers = tuple(layers)
        self.weight = weight
        self.pool = check_pool(pool)

    @property
    def taps(self):
        return self.layers

    def forward(self, student, teacher, batch):
        teacher = detached(teacher)
        total = sum(pair_affinity_loss(student.features[r], teacher.features[r], self.pool) for r in self.layers)
        return {"pa": self.weight * total}
