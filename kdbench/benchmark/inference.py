"""Whole-volume inference: Gaussian-weighted sliding windows (3D) and tri-planar averaging (2D on volumes).

* :func:`sliding_window` runs a 3D network over a whole volume of any size with
  MONAI's :func:`~monai.inferers.sliding_window_inference` (patches of the training
  patch size, ``overlap`` between neighbours, Gaussian importance weights as in
  nnU-Net; a volume smaller than the patch is padded by MONAI and cropped back).
* :func:`tri_planar` runs a 2D network over every axial, coronal and sagittal slice
  of a volume and averages the three soft-max probability maps, as Noothout et al.
  (J. Med. Imaging 2022, Sec. 3.3) do for their dilated network.
* :class:`TriPlanar` and :class:`SliceWise` wrap a 2D network so that it takes and
  returns 5-D tensors, e.g. as a 2D member of an ensemble of 3D networks.
"""

from __future__ import annotations

import torch
from monai.inferers import sliding_window_inference
from monai.transforms import DivisiblePad
from torch import nn

DIVISIBLE = 32
"""Each 2D slice is padded (at its end) to a multiple of this before a 2D network sees it:
coronal and sagittal slices of a volume with few slices are smaller than any network's stride."""


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def sliding_window(model: nn.Module, volume: torch.Tensor, patch: tuple[int, int, int] | list[int],
                   overlap: float = 0.5, sw_batch_size: int = 4, device: torch.device | str | None = None
                   ) -> torch.Tensor:
    """Logits ``(K, D, H, W)`` of a 3D network over the whole ``volume`` ``(C, D, H, W)`` (on the CPU).

    Windows of ``patch`` voxels overlap by ``overlap`` and are blended with Gaussian
    weights (MONAI ``mode="gaussian"``); ``sw_batch_size`` windows run at once on
    ``device`` (default: the model's).  Windows are stitched on the CPU, so only a
    batch of windows occupies the accelerator.
    """
    device = torch.device(device) if device is not None else next(model.parameters(), torch.empty(0)).device
    model.eval()
    x = volume.unsqueeze(0).float()

    def run(batch: torch.Tensor) -> torch.Tensor:
        with _autocast(device):
            return model(batch.to(device)).float()

    out = sliding_window_inference(x, roi_size=tuple(int(p) for p in patch), sw_batch_size=sw_batch_size,
                                   predictor=run, overlap=overlap, mode="gaussian", padding_mode="constant",
                                   sw_device=device, device=torch.device("cpu"))
    return out[0]


@torch.no_grad()
def plane_probabilities(model: nn.Module, volume: torch.Tensor, axis: int, batch_size: int = 16,
                        divisible: int = DIVISIBLE, device: torch.device | str | None = None) -> torch.Tensor:
    """Soft-max probabilities ``(K, D, H, W)`` of a 2D network run on every slice across ``axis``
    (0: axial, 1: coronal, 2: sagittal) of ``volume`` ``(C, D, H, W)``."""
    device = torch.device(device) if device is not None else next(model.parameters(), torch.empty(0)).device
    model.eval()
    dim = axis + 1
    slices = volume.float().movedim(dim, 0)  # (N, C, a, b)
    a, b = slices.shape[-2:]
    pad = DivisiblePad(k=divisible, method="end", mode="constant")
    probs = []
    for start in range(0, slices.shape[0], batch_size):
        chunk = torch.stack([torch.as_tensor(pad(s)) for s in slices[start:start + batch_size]])
        with _autocast(device):
            logits = model(chunk.to(device)).float()
        probs.append(torch.softmax(logits[..., :a, :b], dim=1).cpu())
    return torch.cat(probs).movedim(0, dim)  # (K, ...) with the slice axis back in place


def tri_planar(model: nn.Module, volume: torch.Tensor, batch_size: int = 16, divisible: int = DIVISIBLE,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Mean of the axial, coronal and sagittal soft-max probabilities ``(K, D, H, W)`` of a 2D
    network on ``volume`` ``(C, D, H, W)`` (Noothout et al.: three probability maps, averaged)."""
    maps = [plane_probabilities(model, volume, axis, batch_size, divisible, device) for axis in range(3)]
    return torch.stack(maps).mean(0)


class TriPlanar(nn.Module):
    """A 2D network applied tri-planarly to 5-D input ``(B, C, D, H, W)``.

    Returns the log of the averaged probabilities, so that a soft-max of its output
    (what a teacher's consumers take) is the tri-planar mean.
    """

    def __init__(self, model: nn.Module, divisible: int = DIVISIBLE):
        super().__init__()
        self.model, self.divisible = model, divisible

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = [tri_planar(self.model, v, divisible=self.divisible, device=x.device) for v in x]
        return torch.stack(probs).to(x.device).clamp_min(1e-8).log()


class SliceWise(nn.Module):
    """A 2D network applied to every axial slice of 5-D input: ``(B, C, D, H, W)`` → ``(B, K, D, H, W)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, d, h, w = x.shape
        logits = self.model(x.movedim(2, 1).reshape(b * d, c, h, w))
        return logits.reshape(b, d, -1, h, w).movedim(2, 1)
