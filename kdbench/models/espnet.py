"""ESPNet (Mehta et al., "ESPNet: Efficient spatial pyramid of dilated convolutions for
semantic segmentation", ECCV 2018).

The efficient spatial pyramid (ESP) module reduces with a 1×1 (or 3×3 stride-2)
convolution to N/K channels, applies K = 5 parallel 3×3 convolutions with dilation
1, 2, 4, 8, 16, merges them with hierarchical feature fusion (running sums) and a
concatenation, and adds the input when shapes allow.  The encoder (ESPNet-C) reinforces
every level with the average-pooled input; the decoder fuses levels with the paper's
reduced up-sampling modules.  Defaults p = 2, q = 3 (the configuration of the paper's
code and of EMKD); 0.18 M parameters with two classes.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.models import register_model
from kdbench.models.layers import scaled
from kdbench.models.roles import FeatureRole


class BNPReLU(nn.Sequential):
    """Batch norm (eps 1e-3, as in the paper's code) and per-channel PReLU."""

    def __init__(self, channels: int):
        super().__init__(nn.BatchNorm2d(channels, eps=1e-3), nn.PReLU(channels))


class ConvBNPReLU(nn.Sequential):
    """``k×k conv (stride s) → BN → PReLU``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                   padding=kernel_size // 2, bias=False),
                         BNPReLU(out_channels))


class ESPModule(nn.Module):
    """Efficient spatial pyramid: reduce → split into 5 dilated branches → HFF → merge.

    Args:
        in_channels: input channels.
        out_channels: output channels (split into 5 branches; the first takes the rest).
        stride: 2 for the downsampling variant (3×3 stride-2 reduction, no residual).
        residual: add the input to the merged branches (needs equal channels, stride 1).
    """

    dilations = (1, 2, 4, 8, 16)

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 residual: bool = True):
        super().__init__()
        k = len(self.dilations)
        n = out_channels // k
        if n < 1:
            raise ValueError(f"an ESP module needs at least {k} output channels, got {out_channels}")
        first = out_channels - (k - 1) * n
        kernel = 3 if stride == 2 else 1
        self.reduce = nn.Conv2d(in_channels, n, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.branches = nn.ModuleList(
            nn.Conv2d(n, first if i == 0 else n, 3, padding=d, dilation=d, bias=False)
            for i, d in enumerate(self.dilations)
        )
        self.residual = residual and stride == 1 and in_channels == out_channels
        self.act = BNPReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        outs = [branch(reduced) for branch in self.branches]
        fused = [outs[0]]
        total = outs[1]
        fused.append(total)
        for out in outs[2:]:  # hierarchical feature fusion
            total = total + out
            fused.append(total)
        merged = torch.cat(fused, dim=1)
        if self.residual:
            merged = merged + x
        return self.act(merged)


class InputPyramid(nn.Module):
    """The input average-pooled ``times`` times by 3×3 / stride 2 (input reinforcement)."""

    def __init__(self, times: int):
        super().__init__()
        self.pools = nn.Sequential(*[nn.AvgPool2d(3, stride=2, padding=1) for _ in range(times)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pools(x)


class ESPNet(nn.Module):
    """ESPNet (Mehta et al. 2018): ESPNet-C encoder and the light-weight decoder.

    Args:
        in_channels: input channels.
        num_classes: output classes.
        channels: widths of level 1, level 2 and level 3 (16, 64, 128).
        p, q: ESP modules at level 2 and level 3 (depth multipliers).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2,
                 channels: tuple[int, int, int] = (16, 64, 128), p: int = 2, q: int = 3):
        super().__init__()
        c1, c2, c3 = channels
        self.channels = tuple(channels)
        # encoder (ESPNet-C)
        self.level1 = ConvBNPReLU(in_channels, c1, 3, stride=2)
        self.input2 = InputPyramid(1)
        self.input4 = InputPyramid(2)
        self.fuse1 = BNPReLU(c1 + in_channels)
        self.down2 = ESPModule(c1 + in_channels, c2, stride=2)
        self.level2 = nn.Sequential(*[ESPModule(c2, c2) for _ in range(p)])
        self.fuse2 = BNPReLU(2 * c2 + in_channels)
        self.down3 = ESPModule(2 * c2 + in_channels, c3, stride=2)
        self.level3 = nn.Sequential(*[ESPModule(c3, c3) for _ in range(q)])
        self.fuse3 = BNPReLU(2 * c3)
        self.project3 = nn.Conv2d(2 * c3, num_classes, 1, bias=False)
        # decoder (reduced up-sampling modules)
        k = max(num_classes, len(ESPModule.dilations))  # an ESP module needs ≥ 5 channels
        self.norm3 = nn.BatchNorm2d(num_classes, eps=1e-3)
        self.up3 = nn.ConvTranspose2d(num_classes, num_classes, 2, stride=2, bias=False)
        self.project2 = nn.Conv2d(2 * c2 + in_channels, num_classes, 1, bias=False)
        self.merge2 = nn.Sequential(BNPReLU(2 * num_classes),
                                    ESPModule(2 * num_classes, k, residual=False))
        self.up2 = nn.Sequential(nn.ConvTranspose2d(k, num_classes, 2, stride=2, bias=False),
                                 BNPReLU(num_classes))
        self.merge1 = ConvBNPReLU(c1 + in_channels + num_classes, num_classes, 3)
        self.classifier = nn.ConvTranspose2d(num_classes, num_classes, 2, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.fuse1(torch.cat([self.level1(x), self.input2(x)], dim=1))
        down2 = self.down2(out1)
        out2 = self.fuse2(torch.cat([self.level2(down2), down2, self.input4(x)], dim=1))
        down3 = self.down3(out2)
        out3 = self.fuse3(torch.cat([down3, self.level3(down3)], dim=1))
        y = self.up3(self.norm3(self.project3(out3)))
        y = self.up2(self.merge2(torch.cat([self.project2(out2), y], dim=1)))
        y = self.merge1(torch.cat([y, out1], dim=1))
        return self.classifier(y)


@register_model("espnet", paper="emkd_tmi2021", paper_name="ESPNet")
def espnet(in_channels: int = 1, num_classes: int = 2, width: float = 1.0, *,
           p: int = 2, q: int = 3) -> nn.Module:
    """ESPNet (Mehta 2018), efficient spatial pyramids of dilated convs, 0.18 M params."""
    c1, c2, c3 = (scaled(c, width, minimum=8) for c in (16, 64, 128))
    model = ESPNet(in_channels, num_classes, channels=(c1, c2, c3), p=p, q=q)
    model.feature_roles = {
        "low": FeatureRole("level1", c1, 2),
        "high": FeatureRole("fuse3", 2 * c3, 8),
        "pre_logits": FeatureRole("merge1", num_classes, 2),
    }
    return model
