"""Small helpers shared by the model factories: channel scaling and conv-norm-act units."""

from __future__ import annotations

import math

from torch import nn


def scaled(channels: int, width: float, minimum: int = 4, divisor: int = 1) -> int:
    """``channels × width`` rounded to a multiple of ``divisor``, at least ``minimum``.

    ``width = 1`` returns ``channels`` unchanged (the paper configuration).
    """
    if width == 1.0:
        return channels
    value = int(round(channels * width / divisor)) * divisor
    return max(minimum, value)


def scaled_all(channels: tuple[int, ...], width: float, minimum: int = 4,
               divisor: int = 1) -> tuple[int, ...]:
    """:func:`scaled` applied to every entry of ``channels``."""
    return tuple(scaled(c, width, minimum, divisor) for c in channels)


def group_count(channels: int, groups: int = 32) -> int:
    """``groups`` when it divides ``channels`` (always at paper width), else the largest
    common divisor, so GroupNorm also works at toy widths."""
    return groups if channels % groups == 0 else math.gcd(groups, channels)


class ConvBNReLU(nn.Sequential):
    """``Conv2d → BatchNorm2d → ReLU``; ``padding`` keeps the size for odd kernels."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, dilation: int = 1, bias: bool = False):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                      dilation=dilation, bias=bias),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two 3×3 ``Conv → BN → ReLU`` units: the block of U-Net and UNet++."""

    def __init__(self, in_channels: int, out_channels: int, mid_channels: int | None = None,
                 bias: bool = True):
        mid = mid_channels or out_channels
        super().__init__(ConvBNReLU(in_channels, mid, 3, bias=bias),
                         ConvBNReLU(mid, out_channels, 3, bias=bias))
