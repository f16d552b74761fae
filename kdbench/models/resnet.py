"""ResNet-18 as a light segmentation network, the way EMKD ran it.

He et al., "Deep residual learning for image recognition", CVPR 2016.  timm's ResNet-18
without pooling and fully connected layer; a 1×1 convolution classifies the stride-32
map and the logits are bilinearly up-sampled to the input size (FCN-32s style, EMKD's
official code).
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from kdbench.models import register_model
from kdbench.models.layers import scaled_all
from kdbench.models.roles import FeatureRole


class ResNetFCN(nn.Module):
    """timm ResNet features → 1×1 classifier → bilinear up-sampling.

    Args:
        in_channels: input channels.
        num_classes: output classes.
        encoder: a timm ResNet name.
        channels: channels of the four stages (the stem has ``channels[0]``).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, encoder: str = "resnet18",
                 channels: tuple[int, int, int, int] = (64, 128, 256, 512)):
        super().__init__()
        self.encoder = timm.create_model(encoder, pretrained=False, features_only=True,
                                         in_chans=in_channels, channels=channels,
                                         stem_width=channels[0])
        self.feature_channels = tuple(self.encoder.feature_info.channels())
        self.classifier = nn.Conv2d(self.feature_channels[-1], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.encoder(x)[-1])
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)


@register_model("resnet18", paper="emkd_tmi2021", paper_name="ResNet18")
def resnet18(in_channels: int = 1, num_classes: int = 2, width: float = 1.0) -> nn.Module:
    """ResNet-18 (He 2016) with a 1×1 classifier at stride 32 (FCN-32s); EMKD student."""
    model = ResNetFCN(in_channels, num_classes, channels=scaled_all((64, 128, 256, 512), width))
    stem, _, c2, _, c4 = model.feature_channels
    model.feature_roles = {
        "low": FeatureRole("encoder.act1", stem, 2),
        "high": FeatureRole("encoder.layer2", c2, 8),
        "pre_logits": FeatureRole("encoder.layer4", c4, 32),
    }
    return model
