"""ENet (Paszke et al., "ENet: A deep neural network architecture for real-time semantic
segmentation", arXiv:1606.02147, 2016).

The paper's Table 1: an initial block (a 3×3 stride-2 convolution concatenated with a
max-pooled copy of the input, 16 channels), bottleneck stage 1 (downsampling to 64
channels + 4 regular), stages 2 and 3 (downsampling to 128 only in stage 2; regular,
dilated 2/4/8/16 and asymmetric 5×1·1×5 bottlenecks), and a decoder of up-sampling
bottlenecks (max-unpooling with the encoder's indices) to 64 and 16 channels and a 2×2
transposed-convolution classifier.  Bottlenecks project to 1/4 of their channels, use
PReLU and spatial dropout.  As in EMKD's code (and most ports), a downsampling bottleneck
projects its max-pooled shortcut with a 1×1 conv-BN where the paper zero-pads the missing
channels (9.6 k parameters more), and each PReLU learns one slope.  0.35 M parameters
with two classes, as EMKD Table II lists.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.models import register_model
from kdbench.models.layers import scaled
from kdbench.models.roles import FeatureRole


def _bn_prelu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.PReLU()]


class InitialBlock(nn.Module):
    """``cat(conv3×3/2(x), maxpool2(x)) → BN → PReLU``; ``out_channels`` in total."""

    def __init__(self, in_channels: int, out_channels: int = 16):
        super().__init__()
        if out_channels <= in_channels:
            raise ValueError(f"ENet's initial block needs more than {in_channels} output channels")
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1,
                              bias=False)
        self.pool = nn.MaxPool2d(2, stride=2)
        self.norm = nn.Sequential(*_bn_prelu(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(torch.cat([self.conv(x), self.pool(x)], dim=1))


class Bottleneck(nn.Module):
    """Regular, dilated or asymmetric ENet bottleneck (1×1 → conv → 1×1, residual)."""

    def __init__(self, channels: int, dilation: int = 1, asymmetric: bool = False,
                 dropout: float = 0.1, reduction: int = 4):
        super().__init__()
        inner = max(1, channels // reduction)
        if asymmetric:
            middle = [nn.Conv2d(inner, inner, (5, 1), padding=(2, 0), bias=False),
                      nn.Conv2d(inner, inner, (1, 5), padding=(0, 2), bias=False)]
        else:
            middle = [nn.Conv2d(inner, inner, 3, padding=dilation, dilation=dilation, bias=False)]
        self.branch = nn.Sequential(
            nn.Conv2d(channels, inner, 1, bias=False), *_bn_prelu(inner),
            *middle, *_bn_prelu(inner),
            nn.Conv2d(inner, channels, 1, bias=False), nn.BatchNorm2d(channels),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.branch(x))


class DownsamplingBottleneck(nn.Module):
    """ENet downsampling bottleneck; returns the output and the max-pooling indices."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.1,
                 reduction: int = 4):
        super().__init__()
        inner = max(1, in_channels // reduction)
        self.pool = nn.MaxPool2d(2, stride=2, return_indices=True)
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                      nn.BatchNorm2d(out_channels))
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, inner, 1, bias=False), *_bn_prelu(inner),
            nn.Conv2d(inner, inner, 2, stride=2, bias=False), *_bn_prelu(inner),
            nn.Conv2d(inner, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, indices = self.pool(x)
        return self.act(self.shortcut(pooled) + self.branch(x)), indices


class UpsamplingBottleneck(nn.Module):
    """ENet up-sampling bottleneck: max-unpooling with the encoder's indices + a
    transposed-convolution branch."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.1,
                 reduction: int = 4):
        super().__init__()
        inner = max(1, in_channels // reduction)
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                      nn.BatchNorm2d(out_channels))
        self.unpool = nn.MaxUnpool2d(2)
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, inner, 1, bias=False), *_bn_prelu(inner),
            nn.ConvTranspose2d(inner, inner, 2, stride=2, bias=False), *_bn_prelu(inner),
            nn.Conv2d(inner, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU()

    def forward(self, x: torch.Tensor, indices: torch.Tensor,
                output_size: tuple[int, int] | None = None) -> torch.Tensor:
        shortcut = self.unpool(self.shortcut(x), indices, output_size=output_size)
        return self.act(shortcut + self.branch(x))


def _stage(channels: int, dropout: float) -> nn.Sequential:
    """Stages 2/3 of ENet (without the downsampling bottleneck)."""
    return nn.Sequential(
        Bottleneck(channels, dropout=dropout),
        Bottleneck(channels, dilation=2, dropout=dropout),
        Bottleneck(channels, asymmetric=True, dropout=dropout),
        Bottleneck(channels, dilation=4, dropout=dropout),
        Bottleneck(channels, dropout=dropout),
        Bottleneck(channels, dilation=8, dropout=dropout),
        Bottleneck(channels, asymmetric=True, dropout=dropout),
        Bottleneck(channels, dilation=16, dropout=dropout),
    )


class ENet(nn.Module):
    """ENet (Paszke et al. 2016).

    Args:
        in_channels: input channels.
        num_classes: output classes.
        channels: widths of the initial block, stage 1 and stages 2–3 (16, 64, 128).
        dropout: spatial dropout of stage 1 (the paper: 0.01); later stages use 0.1.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2,
                 channels: tuple[int, int, int] = (16, 64, 128), dropout: float = 0.01):
        super().__init__()
        c0, c1, c2 = channels
        self.channels = tuple(channels)
        self.initial = InitialBlock(in_channels, c0)
        self.down1 = DownsamplingBottleneck(c0, c1, dropout=dropout)
        self.stage1 = nn.Sequential(*[Bottleneck(c1, dropout=dropout) for _ in range(4)])
        self.down2 = DownsamplingBottleneck(c1, c2)
        self.stage2 = _stage(c2, 0.1)
        self.stage3 = _stage(c2, 0.1)
        self.up4 = UpsamplingBottleneck(c2, c1)
        self.stage4 = nn.Sequential(Bottleneck(c1), Bottleneck(c1))
        self.up5 = UpsamplingBottleneck(c1, c0)
        self.stage5 = Bottleneck(c0)
        self.classifier = nn.ConvTranspose2d(c0, num_classes, 2, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.initial(x)
        size1 = x.shape[2:]
        x, indices1 = self.down1(x)
        x = self.stage1(x)
        size2 = x.shape[2:]
        x, indices2 = self.down2(x)
        x = self.stage3(self.stage2(x))
        x = self.stage4(self.up4(x, indices2, size2))
        x = self.stage5(self.up5(x, indices1, size1))
        return self.classifier(x)


@register_model("enet", paper="emkd_tmi2021", paper_name="ENet")
def enet(in_channels: int = 1, num_classes: int = 2, width: float = 1.0) -> nn.Module:
    """ENet (Paszke 2016), real-time encoder-decoder, 0.35 M params; EMKD's student."""
    c0 = max(scaled(16, width), in_channels + 1)
    model = ENet(in_channels, num_classes, channels=(c0, scaled(64, width), scaled(128, width)))
    c2 = model.channels[2]
    model.feature_roles = {
        "low": FeatureRole("initial", c0, 2),
        "high": FeatureRole("stage3", c2, 8),
        "pre_logits": FeatureRole("stage5", c0, 2),
    }
    return model
