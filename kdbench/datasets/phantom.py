"""The built-in phantom: deterministic synthetic CT-like volumes.

Each case is a small volume of ``slices`` axial slices: a body outline, an organ (a
warped ellipsoid with texture) and one or two tumours inside it whose intensity differs
from the organ's by only ``contrast`` across a blurred boundary, under Gaussian noise
and a smooth bias field.  Organ and tumour sizes and positions, and the voxel spacing,
vary per case.  Everything is a function of ``(seed, case index)``, so every machine
builds the same cases.  Labels: 0 background, 1 organ, 2 tumour; targets
``organ = {1, 2}`` and ``tumour = {2}`` (as LiTS/KiTS define liver and kidney).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

import numpy as np
from pydantic import Field

from kdbench.datasets import register_dataset
from kdbench.datasets.base import Case, SegDataset
from kdbench.errors import DatasetError


def _smooth_field(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, terms: int = 3) -> np.ndarray:
    """A low-frequency random field on the grid (sum of a few random cosines)."""
    field = np.zeros_like(yy)
    for _ in range(terms):
        fy, fx = rng.uniform(0.5, 2.0, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        field += np.cos(np.pi * (fy * yy + fx * xx) + phase)
    return field / terms


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_phantom_case(index: int, seed: int, size: int, slices: int, noise: float, contrast: float) -> Case:
    """Build phantom case ``index`` (deterministic in ``seed`` and ``index``)."""
    rng = np.random.default_rng([seed, index])
    spacing = (float(rng.uniform(1.5, 3.0)), *(2 * [float(rng.uniform(0.6, 1.0) * 256 / size)]))
    lin = np.linspace(-1.0, 1.0, size, dtype=np.float64)
    yy, xx = np.meshgrid(lin, lin, indexing="ij")
    zz = np.linspace(-1.0, 1.0, slices)

    body_r = rng.uniform(0.8, 0.95, size=2)
    organ_c = rng.uniform(-0.2, 0.2, size=2)
    organ_r = rng.uniform(0.4, 0.6, size=2)
    organ_rz = rng.uniform(0.9, 1.4)
    warp_amp, warp_phase = rng.uniform(0.05, 0.15), rng.uniform(0, 2 * np.pi)
    n_tumours = int(rng.integers(1, 3))
    tumours = []
    for _ in range(n_tumours):
        r = rng.uniform(0.1, 0.22)
        offset = rng.uniform(-0.5, 0.5, size=2) * (organ_r - r)
        tumours.append((organ_c + offset, r, rng.uniform(-0.4, 0.4), rng.uniform(0.5, 0.9)))
    texture = _smooth_field(rng, 4 * yy, 4 * xx, terms=4)
    bias = _smooth_field(rng, yy, xx, terms=2)

    image = np.empty((slices, 1, size, size), dtype=np.float32)
    label = np.zeros((slices, size, size), dtype=np.int64)
    theta = np.arctan2(yy - organ_c[0], xx - organ_c[1])
    edge = 4.0 / size  # width of the blurred tumour boundary, in normalised units
    for s, z in enumerate(zz):
        body = ((yy / body_r[0]) ** 2 + (xx / body_r[1]) ** 2) <= 1.0
        zscale = max(0.0, 1.0 - (z / organ_rz) ** 2)
        radius = np.sqrt(((yy - organ_c[0]) / organ_r[0]) ** 2 + ((xx - organ_c[1]) / organ_r[1]) ** 2)
        radius = radius / (1.0 + warp_amp * np.cos(3 * theta + warp_phase))
        organ = radius <= np.sqrt(zscale) if zscale > 0 else np.zeros_like(body)
        tumour_soft = np.zeros_like(yy)
        tumour = np.zeros_like(body)
        for centre, r, tz, rz in tumours:
            tscale = max(0.0, 1.0 - ((z - tz) / rz) ** 2)
            if tscale <= 0:
                continue
            dist = np.sqrt((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) - r * np.sqrt(tscale)
            tumour |= (dist <= 0) & organ
            tumour_soft = np.maximum(tumour_soft, _sigmoid(-dist / edge) * organ)
        intensity = 0.15 * body + 0.45 * organ + 0.04 * texture * organ - contrast * tumour_soft
        intensity = intensity + 0.05 * bias + rng.normal(0.0, noise, size=yy.shape)
        image[s, 0] = intensity.astype(np.float32)
        label[s][organ] = 1
        label[s][tumour] = 2
    return Case(case_id=f"phantom_{index:03d}", image=image, label=label, spacing=spacing)


@lru_cache(maxsize=512)
def _cached_case(index: int, seed: int, size: int, slices: int, noise: float, contrast: float) -> Case:
    return make_phantom_case(index, seed, size, slices, noise, contrast)


MAX_CASES = 10_000
"""Most phantom cases (each is built on demand; a grid names a count, never a list)."""
MAX_SLICES = 512
"""Most slices per phantom case."""


@register_dataset("phantom")
class Phantom(SegDataset):
    """Built-in synthetic CT-like volumes: organ with a low-contrast tumour (no download)."""

    classes = ("background", "organ", "tumour")
    default_targets = {"organ": (1, 2), "tumour": (2,)}
    in_channels = 1
    is_volume = True

    def __init__(self, root: str | None = None, image_size: int = 64, targets=None,
                 cases: Annotated[int, Field(ge=2, le=MAX_CASES)] = 24,
                 slices: Annotated[int, Field(ge=1, le=MAX_SLICES)] = 8,
                 seed: Annotated[int, Field(ge=0, lt=2**32)] = 0,
                 noise: Annotated[float, Field(ge=0, le=10)] = 0.1,
                 contrast: Annotated[float, Field(ge=-10, le=10)] = 0.3):
        super().__init__(root=root, image_size=image_size, targets=targets)
        if not 2 <= cases <= MAX_CASES:
            raise DatasetError(f"phantom: cases = {cases}; needs 2 (one to train, one to test) to {MAX_CASES}")
        if not 1 <= slices <= MAX_SLICES or image_size < 16:
            raise DatasetError(f"phantom: slices = {slices}, image_size = {image_size}; need 1 ≤ slices ≤ "
                               f"{MAX_SLICES}, image_size ≥ 16")
        self.num_cases, self.slices, self.seed = cases, slices, seed
        self.noise, self.contrast = noise, contrast

    def case_ids(self) -> list[str]:
        return [f"phantom_{i:03d}" for i in range(self.num_cases)]

    def load_case(self, case_id: str) -> Case:
        try:
            index = int(case_id.rsplit("_", 1)[1])
        except (IndexError, ValueError):
            raise DatasetError(f"phantom: no case '{case_id}'") from None
        if not 0 <= index < self.num_cases:
            raise DatasetError(f"phantom: no case '{case_id}' (cases: 0..{self.num_cases - 1})")
        return _cached_case(index, self.seed, self.image_size, self.slices, self.noise, self.contrast)
