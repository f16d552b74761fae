"""UNet++ (Zhou et al., "UNet++: A nested U-Net architecture for medical image
segmentation", DLMIA 2018; IEEE TMI 39(6) 2020).

Nodes ``X[i, j]`` (depth ``i``, ``j`` convolution blocks along the skip pathway) are
double 3×3 conv-BN-ReLU blocks; ``X[i, j]`` sees every earlier node of its row
concatenated with the bilinearly up-sampled ``X[i+1, j-1]``.  The prediction comes from
``X[0, 4]`` (no deep supervision, as in EMKD's runs).  smp's ``UnetPlusPlus`` puts the
nested decoder on an ImageNet encoder instead; this is the paper's own VGG-style network.

EMKD Table II lists UNet++ at 20.6 M parameters: that is this network with a base width
of 48 channels (48–768); the usual base of 32 gives 9.2 M and 64 gives 36.6 M.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.models import register_model
from kdbench.models.layers import DoubleConv, scaled
from kdbench.models.roles import FeatureRole


class UNetPlusPlus(nn.Module):
    """Nested U-Net with dense skip pathways (Zhou et al. 2018).

    Args:
        in_channels: input channels.
        num_classes: output classes.
        base_channels: channels of depth 0; depth ``i`` has ``base · 2**i``.
        depth: number of max-poolings (the paper: 4); inputs must be divisible by
            ``2 ** depth``.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, base_channels: int = 48,
                 depth: int = 4):
        super().__init__()
        self.depth = depth
        self.channels = tuple(base_channels * 2 ** i for i in range(depth + 1))
        c = self.channels
        blocks = {"x0_0": DoubleConv(in_channels, c[0])}
        for i in range(1, depth + 1):
            blocks[f"x{i}_0"] = DoubleConv(c[i - 1], c[i])
        for j in range(1, depth + 1):
            for i in range(depth + 1 - j):
                blocks[f"x{i}_{j}"] = DoubleConv(j * c[i] + c[i + 1], c[i])
        self.blocks = nn.ModuleDict(blocks)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Conv2d(c[0], num_classes, kernel_size=1)

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: dict[tuple[int, int], torch.Tensor] = {(0, 0): self.blocks["x0_0"](x)}
        for i in range(1, self.depth + 1):
            nodes[(i, 0)] = self.blocks[f"x{i}_0"](self.pool(nodes[(i - 1, 0)]))
            # the skip pathways that become computable once X[i, 0] exists
            for j in range(1, i + 1):
                row = i - j
                inputs = [nodes[(row, k)] for k in range(j)] + [self._up(nodes[(row + 1, j - 1)])]
                nodes[(row, j)] = self.blocks[f"x{row}_{j}"](torch.cat(inputs, dim=1))
        return self.head(nodes[(0, self.depth)])


@register_model("unetpp", paper="emkd_tmi2021", paper_name="UNet++")
def unetpp(in_channels: int = 1, num_classes: int = 2, width: float = 1.0, *,
           base_channels: int = 48) -> nn.Module:
    """UNet++ (Zhou 2018), nested VGG-style U-Net, base 48 channels; EMKD teacher T3."""
    base = scaled(base_channels, width)
    model = UNetPlusPlus(in_channels, num_classes, base_channels=base)
    c = model.channels
    model.feature_roles = {
        "low": FeatureRole("blocks.x0_0", c[0], 1),
        "high": FeatureRole("blocks.x3_0", c[3], 8),
        "pre_logits": FeatureRole("blocks.x0_4", c[0], 1),
    }
    return model
