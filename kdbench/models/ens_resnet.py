"""The residual ensemble member of Noothout et al., "Knowledge distillation with
ensembles of convolutional neural networks for medical image segmentation", J. Med.
Imaging 9(5), 2022 (Fig. 2b), in its 2D form (the paper's ACDC setting).

A fully convolutional encoder-decoder with residual connections (He et al., CVPR 2016,
in the fully pre-activated form of He et al., ECCV 2016): a 3×3 conv to 32 channels, two
stride-2 3×3 convs doubling the channels, six pre-activated residual blocks at 128
channels (BN-ReLU-conv-BN-dropout-ReLU-conv), two stride-2 transposed convs back to full
resolution, then two 1×1 "dense" layers with dropout (p = 0.5).  Batch norm everywhere
but the dense and output layers.  1.96 M parameters with four classes (ACDC).
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.models import register_model
from kdbench.models.layers import scaled
from kdbench.models.roles import FeatureRole


class PreActResidualBlock(nn.Module):
    """``x + conv(ReLU(dropout(BN(conv(ReLU(BN(x)))))))`` with 3×3 (``dims=2``) or 3×3×3
    (``dims=3``) convolutions."""

    def __init__(self, channels: int, dropout: float = 0.5, dims: int = 2):
        super().__init__()
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
        self.body = nn.Sequential(
            norm(channels), nn.ReLU(),
            conv(channels, channels, 3, padding=1),
            norm(channels), nn.Dropout(dropout), nn.ReLU(),
            conv(channels, channels, 3, padding=1), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualSegNet(nn.Module):
    """Noothout et al.'s residual segmentation network (2D).

    Args:
        in_channels: input channels.
        num_classes: output classes.
        channels: channels of the first conv (doubled at each of ``downsamplings``).
        blocks: residual blocks at the lowest resolution.
        downsamplings: stride-2 convolutions (and as many transposed convolutions).
        dropout: dropout in the residual blocks and before the dense layers.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, channels: int = 32,
                 blocks: int = 6, downsamplings: int = 2, dropout: float = 0.5):
        super().__init__()
        c = channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1), nn.BatchNorm2d(c),
                                  nn.ReLU())
        down = []
        for i in range(downsamplings):
            c_in, c_out = c * 2 ** i, c * 2 ** (i + 1)
            down += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.down = nn.Sequential(*down)
        deep = c * 2 ** downsamplings
        self.deep_channels = deep
        self.blocks = nn.Sequential(*[PreActResidualBlock(deep, dropout) for _ in range(blocks)])
        up = []
        for i in range(downsamplings, 0, -1):
            c_in, c_out = c * 2 ** i, c * 2 ** (i - 1)
            up += [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1),
                   nn.BatchNorm2d(c_out), nn.ReLU()]
        self.up = nn.Sequential(*up)
        self.dense = nn.Sequential(nn.Dropout2d(dropout), nn.Conv2d(c, c, 1), nn.ReLU(),
                                   nn.Dropout2d(dropout))
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.down(self.stem(x)))
        return self.classifier(self.dense(self.up(x)))


@register_model("ens-resnet", paper="ensemblekd_jmi2022")
def ens_resnet(in_channels: int = 1, num_classes: int = 2, width: float = 1.0) -> nn.Module:
    """Ensemble-KD's residual member (Noothout 2022, Fig. 2b) in 2D: 6 pre-act blocks at 128."""
    c = scaled(32, width)
    model = ResidualSegNet(in_channels, num_classes, channels=c)
    model.feature_roles = {
        "low": FeatureRole("stem", c, 1),
        "high": FeatureRole("blocks", model.deep_channels, 4),
        "pre_logits": FeatureRole("dense", c, 1),
    }
    return model
