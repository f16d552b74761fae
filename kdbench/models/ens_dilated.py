"""The dilated ensemble member of Noothout et al., "Knowledge distillation with ensembles
of convolutional neural networks for medical image segmentation", J. Med. Imaging 9(5),
2022 (Fig. 2c), after Yu & Koltun (ICLR 2016) and Wolterink et al. (RAMBO/HVSMR 2016).

A 2D network without pooling: two 3×3 convs, five 3×3 convs with dilation 2, 4, 8, 16,
32 and a last 3×3 conv (32 channels each, ReLU; receptive field 131×131), then two 1×1
"dense" layers (96 and 192 channels) each preceded by batch norm and dropout (p = 0.5),
and a 1×1 classifier.  The paper classifies the centre of 186×186 patches with
unpadded convolutions; here every convolution is zero-padded so that a whole image is
segmented at its own size (same parameters).  0.09 M parameters, as the paper's Table 1
lists for its ACDC networks.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.models import register_model
from kdbench.models.layers import scaled
from kdbench.models.roles import FeatureRole


def _conv_relu(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=dilation,
                                   dilation=dilation), nn.ReLU())


class DilatedCNN(nn.Module):
    """Context-aggregation CNN with exponentially growing dilation.

    Args:
        in_channels: input channels.
        num_classes: output classes.
        channels: channels of every 3×3 layer (32).
        dilations: dilation factors of the middle layers (receptive field 131 for
            2…32, 67 for 2…16, 35 for 2…8).
        dense: channels of the two 1×1 dense layers.
        dropout: dropout before each dense layer.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, channels: int = 32,
                 dilations: tuple[int, ...] = (2, 4, 8, 16, 32),
                 dense: tuple[int, int] = (96, 192), dropout: float = 0.5):
        super().__init__()
        c = channels
        self.features = nn.Sequential(
            _conv_relu(in_channels, c), _conv_relu(c, c),
            *[_conv_relu(c, c, d) for d in dilations],
            _conv_relu(c, c),
        )
        self.dense = nn.Sequential(
            nn.BatchNorm2d(c), nn.Dropout2d(dropout), nn.Conv2d(c, dense[0], 1), nn.ReLU(),
            nn.BatchNorm2d(dense[0]), nn.Dropout2d(dropout), nn.Conv2d(dense[0], dense[1], 1),
            nn.ReLU(),
        )
        self.classifier = nn.Conv2d(dense[1], num_classes, 1)
        self.receptive_field = 1 + 2 * (3 + sum(dilations))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dense(self.features(x)))


@register_model("ens-dilated", paper="ensemblekd_jmi2022")
def ens_dilated(in_channels: int = 1, num_classes: int = 2, width: float = 1.0) -> nn.Module:
    """Ensemble-KD's dilated member (Noothout 2022, Fig. 2c): 2D, receptive field 131."""
    c = scaled(32, width)
    dense = (scaled(96, width), scaled(192, width))
    model = DilatedCNN(in_channels, num_classes, channels=c, dense=dense)
    model.feature_roles = {
        "low": FeatureRole("features.0", c, 1),
        "high": FeatureRole("features", c, 1),
        "pre_logits": FeatureRole("dense", dense[1], 1),
    }
    return model
