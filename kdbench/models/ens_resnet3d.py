"""The residual ensemble member of Noothout et al., "Knowledge distillation with ensembles
of convolutional neural networks for medical image segmentation", J. Med. Imaging 9(5),
2022 (Fig. 2b), in its 3D form (the paper's SegTHOR and brain MRI setting; 64³ patches,
batch 12).

The 2D ``ens-resnet`` with every operation made volumetric: a 3×3×3 conv to 32 channels,
two stride-2 3×3×3 convs doubling the channels, six fully pre-activated residual blocks
at 128 channels (He et al., ECCV 2016: BN-ReLU-conv-BN-dropout-ReLU-conv), two stride-2
3×3×3 transposed convs back to full resolution, then two 1×1×1 "dense" layers with
dropout (p = 0.5).  Batch norm everywhere but the dense and output layers; the
conv-BN-ReLU units are MONAI ``Convolution`` blocks.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

from kdbench.models import register_model
from kdbench.models.ens_resnet import PreActResidualBlock
from kdbench.models.layers import scaled
from kdbench.models.roles import FeatureRole


class ResidualSegNet3d(nn.Module):
    """Noothout et al.'s residual segmentation network (3D).

    Args:
        in_channels: input channels.
        num_classes: output classes.
        channels: channels of the first conv (doubled at each of ``downsamplings``).
        blocks: residual blocks at the lowest resolution.
        downsamplings: stride-2 convolutions (and as many transposed convolutions); every
            axis must be divisible by ``2 ** downsamplings`` for an output of the input's size.
        dropout: dropout in the residual blocks and before the dense layers.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, channels: int = 32,
                 blocks: int = 6, downsamplings: int = 2, dropout: float = 0.5):
        super().__init__()
        c = channels
        unit = dict(kernel_size=3, act="relu", norm="batch")
        self.stem = Convolution(3, in_channels, c, **unit)
        self.down = nn.Sequential(*(Convolution(3, c * 2 ** i, c * 2 ** (i + 1), strides=2, **unit)
                                    for i in range(downsamplings)))
        deep = c * 2 ** downsamplings
        self.deep_channels = deep
        self.blocks = nn.Sequential(*[PreActResidualBlock(deep, dropout, dims=3) for _ in range(blocks)])
        self.up = nn.Sequential(*(Convolution(3, c * 2 ** i, c * 2 ** (i - 1), strides=2, is_transposed=True,
                                              **unit) for i in range(downsamplings, 0, -1)))
        self.dense = nn.Sequential(nn.Dropout3d(dropout), nn.Conv3d(c, c, 1), nn.ReLU(),
                                   nn.Dropout3d(dropout))
        self.classifier = nn.Conv3d(c, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.down(self.stem(x)))
        return self.classifier(self.dense(self.up(x)))


@register_model("ens-resnet3d", paper="ensemblekd_jmi2022", dims=3)
def ens_resnet3d(in_channels: int = 1, num_classes: int = 2, width: float = 1.0) -> nn.Module:
    """Ensemble-KD's residual member (Noothout 2022, Fig. 2b) in 3D: 6 pre-act blocks at 128, 5.87 M params.

    5.87 M parameters at width 1 with 5 classes (SegTHOR).  The paper's Table 1 does not
    list it alone; its diverse SegTHOR ensemble, 2 × (U-Net 3D + ResNet 3D + dilated 2D)
    = 23.17 M, leaves 5.86 M per ResNet after the 5.64 M U-Net and the 0.09 M dilated
    network (brain, 7 classes: 5.87 M).  Inputs divisible by 4 along every axis keep their size (the paper trains on
    64³ patches, batch 12).
    """
    c = scaled(32, width)
    model = ResidualSegNet3d(in_channels, num_classes, channels=c)
    model.feature_roles = {
        "low": FeatureRole("stem", c, 1),
        "high": FeatureRole("blocks", model.deep_channels, 4),
        "pre_logits": FeatureRole("dense", c, 1),
    }
    return model
