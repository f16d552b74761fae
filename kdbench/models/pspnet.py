"""PSPNet (Zhao et al., "Pyramid scene parsing network", CVPR 2017).

A dilated ResNet-50 (output stride 8; deep 3×3 stem of 64-64-128 channels, as in the
paper's ResNet and in EMKD's code) from timm, smp's pyramid pooling module (bins 1, 2,
3, 6; each a 1×1 conv to C/4), then the paper's 3×3 conv-BN-ReLU bottleneck to 512
channels, dropout and a 1×1 classifier; logits are bilinearly up-sampled ×8.  smp's own
``PSPNet`` fuses with a 1×1 conv instead of the 3×3 one (29.8 M parameters at this
encoder); the 3×3 fusion is what gives EMKD Table II's 46.7 M.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from segmentation_models_pytorch.base.modules import Conv2dReLU
from segmentation_models_pytorch.decoders.pspnet.decoder import PSPModule
from torch import nn

from kdbench.models import register_model
from kdbench.models.layers import scaled, scaled_all
from kdbench.models.roles import FeatureRole


class PSPNet(nn.Module):
    """PSPNet on a dilated timm ResNet.

    Args:
        in_channels: input channels.
        num_classes: output classes.
        encoder: a timm ResNet name (``resnet50`` in EMKD).
        channels: bottleneck widths of the four ResNet stages (outputs are 4× these).
        stem_width: width of the deep stem's first convolutions.
        output_stride: 8 (the paper) or 16.
        bins: pyramid pooling bin sizes.
        psp_channels: channels after the 3×3 fusion convolution.
        dropout: dropout before the classifier.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, encoder: str = "resnet50",
                 channels: tuple[int, int, int, int] = (64, 128, 256, 512), stem_width: int = 64,
                 output_stride: int = 8, bins: tuple[int, ...] = (1, 2, 3, 6),
                 psp_channels: int = 512, dropout: float = 0.1):
        super().__init__()
        self.encoder = timm.create_model(
            encoder, pretrained=False, features_only=True, in_chans=in_channels,
            output_stride=output_stride, stem_type="deep", stem_width=stem_width,
            channels=channels,
        )
        self.feature_channels = tuple(self.encoder.feature_info.channels())
        deep = self.feature_channels[-1]
        self.psp = PSPModule(deep, sizes=tuple(bins))
        pooled = deep + len(bins) * (deep // len(bins))
        self.bottleneck = Conv2dReLU(pooled, psp_channels, kernel_size=3, padding=1)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(psp_channels, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        feature = self.encoder(x)[-1]
        logits = self.classifier(self.dropout(self.bottleneck(self.psp(feature))))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


@register_model("pspnet", paper="emkd_tmi2021", paper_name="PSPNet")
def pspnet(in_channels: int = 1, num_classes: int = 2, width: float = 1.0) -> nn.Module:
    """PSPNet (Zhao 2017) on a dilated ResNet-50, output stride 8; EMKD teacher T2."""
    model = PSPNet(in_channels, num_classes, channels=scaled_all((64, 128, 256, 512), width),
                   stem_width=scaled(64, width), psp_channels=scaled(512, width))
    stem, _, _, _, deep = model.feature_channels
    model.feature_roles = {
        "low": FeatureRole("encoder.act1", stem, 2),
        "high": FeatureRole("encoder.layer4", deep, 8),
        "pre_logits": FeatureRole("bottleneck", model.bottleneck[0].out_channels, 8),
    }
    return model
