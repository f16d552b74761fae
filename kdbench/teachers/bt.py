"""Boundary Transform, BT (Wang et al., PLC-KD, MICCAI 2024, Sec. 2.3).

The lesion's boundary band (the lesion pixels within ``delta`` pixels inward of its
contour) and its interior (the rest of the lesion) exchange the values of equal numbers
of randomly chosen pixels; the label is unchanged.  The boundary-aware assistant TA_b
trains on such images.  "Lesion" is foreground, ``label != 0`` (all foreground classes
together).  Images ``(B, C, *spatial)`` and label maps ``(B, *spatial)`` may be 2D or 3D.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_DELTA = 3
"""Band width δ in pixels.  Not given in the paper: 3 px is about the width of a blurred lesion
edge at the benchmark's 64–256 px resolutions (the phantom's tumour edge spans ~4/size of the
field of view), and it leaves an interior in every lesion wider than 7 px."""

DEFAULT_FRACTION = 1.0
"""Fraction of ``min(|band|, |interior|)`` pixels swapped per image.  Not given in the paper
("an equal number of pixels" from both regions): 1.0 swaps as many as the smaller region
has, the strongest transform the description allows."""


def erode(mask: torch.Tensor, delta: int) -> torch.Tensor:
    """Binary erosion of ``mask`` ``(B, *spatial)`` by a (2δ+1)-wide square (cube in 3D).

    Computed as ``not maxpool(not mask)``.  Max-pooling pads with −∞, so the outside of
    the image does not erode: a lesion cut by the image frame has no band along the
    frame, where its true contour is unknown.
    """
    if delta == 0:
        return mask.clone()
    pool = {3: F.max_pool2d, 4: F.max_pool3d}[mask.dim()]
    outside = (~mask)[:, None].float()
    return pool(outside, kernel_size=2 * delta + 1, stride=1, padding=delta)[:, 0] == 0


def boundary_band(mask: torch.Tensor, delta: int = DEFAULT_DELTA) -> torch.Tensor:
    """The boundary band: lesion pixels within ``delta`` pixels (chessboard distance) inward of the contour.

    ``band = mask ∧ ¬erode(mask, δ)`` for a boolean ``(B, *spatial)`` mask, 2D or 3D.  The
    paper finds the contour and dilates it δ pixels towards the interior; this band is
    δ pixels wide counting the contour pixel itself (the paper leaves that count open).
    """
    if delta < 0:
        raise ValueError(f"delta = {delta}; needs delta >= 0")
    mask = mask.bool()
    return mask & ~erode(mask, delta)


@torch.no_grad()
def bt_images(images: torch.Tensor, labels: torch.Tensor, delta: int, generator: torch.Generator,
              fraction: float = DEFAULT_FRACTION) -> torch.Tensor:
    """BT images (PLC-KD Sec. 2.3): band and interior pixels exchange values, per image.

    For each image, ``n = floor(fraction · min(|band|, |interior|))`` band pixels and ``n``
    interior pixels (interior = lesion ∧ ¬band) are drawn without replacement and pair-wise
    swap their values (all channels).  Pixels outside the lesion never change, and the
    image's multiset of pixel values is preserved.  Returns a new tensor.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction = {fraction}; needs 0 <= fraction <= 1")
    lesion = labels != 0
    band = boundary_band(lesion, delta)
    interior = lesion & ~band
    out = images.clone(memory_format=torch.contiguous_format)
    for b in range(len(images)):
        pixels = out[b].view(images.shape[1], -1)  # (C, positions), a view of out
        where_band = band[b].flatten().nonzero()[:, 0]
        where_inner = interior[b].flatten().nonzero()[:, 0]
        n = int(fraction * min(len(where_band), len(where_inner)))
        if n == 0:
            continue
        pick_band = where_band[_choose(len(where_band), n, generator, images.device)]
        pick_inner = where_inner[_choose(len(where_inner), n, generator, images.device)]
        band_values = pixels[:, pick_band].clone()
        pixels[:, pick_band] = pixels[:, pick_inner]
        pixels[:, pick_inner] = band_values
    return out


def _choose(n: int, k: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``k`` distinct random indices below ``n`` (drawn on the generator's device)."""
    return torch.randperm(n, generator=generator, device=generator.device)[:k].to(device)


class BTTransform:
    """The per-batch transform of TA_b's training loop: ``(image, label, generator) -> (image, label)``.

    Returns ``(bt_images(image, label, delta, generator, fraction), label)``.

    Args:
        delta: band width δ in pixels (``DEFAULT_DELTA``; not given in the paper).
        fraction: share of the possible swaps made (``DEFAULT_FRACTION``; not given in the paper).
    """

    def __init__(self, delta: int = DEFAULT_DELTA, fraction: float = DEFAULT_FRACTION):
        if delta < 0 or not 0.0 <= fraction <= 1.0:
            raise ValueError(f"delta = {delta}, fraction = {fraction}; need delta >= 0, 0 <= fraction <= 1")
        self.delta = delta
        self.fraction = fraction

    def __call__(self, image: torch.Tensor, label: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return bt_images(image, label, self.delta, generator, self.fraction), label
