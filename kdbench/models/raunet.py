"""RA-UNet as EMKD ran it: a ResNet-34 LinkNet with augmented attention modules.

EMKD (Qin et al., IEEE TMI 2021) cites RA-UNet as Jin et al., "RA-UNet: A hybrid deep
attention-aware network to extract liver and tumor in CT scans", Front. Bioeng.
Biotechnol. 2020 (a 3D residual attention U-Net).  The network in EMKD's official code,
whose 22.1 M parameters Table II reports, is the 2D RAUNet of Ni et al., "RAUNet: Residual
attention U-Net for semantic segmentation of cataract surgical instruments", ICONIP 2019:

* encoder: ResNet-34 (timm; no pretrained weights here),
* decoder: LinkNet blocks (Chaurasia & Culurciello, VCIP 2017 — 1×1 reduce to C/4,
  4×4 transposed conv ×2, 1×1 expand; smp's block),
* skip fusion: the augmented attention module (AAM) — global-average-pooled decoder and
  encoder features give channel weights (softmax over channels) that re-weight a 1×1
  projection of the encoder feature, added to the decoder feature,
* head: 3×3 transposed conv ×2 to 32 channels, 3×3 conv, 1×1 classifier.

The pooled 1×1 branches of the AAM carry a bias instead of batch norm (batch norm of a
1×1 map fails at batch size 1 in training); the head's last conv is 1×1 so the output is
exactly the input size.  Both change the count by well under 0.1 %.
"""

from __future__ import annotations

import timm
import torch
from segmentation_models_pytorch.decoders.linknet.decoder import DecoderBlock as LinknetBlock
from torch import nn

from kdbench.models import register_model
from kdbench.models.layers import scaled, scaled_all
from kdbench.models.roles import FeatureRole


class AugmentedAttention(nn.Module):
    """Augmented attention module (AAM) of Ni et al. 2019.

    ``out = high + proj(low) · softmax_c(W(gap(high)) + W'(gap(low)))`` where ``high`` is
    the decoder feature and ``low`` the encoder feature of the same size.
    """

    def __init__(self, high_channels: int, low_channels: int):
        super().__init__()
        c = high_channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.high_weight = nn.Sequential(nn.Conv2d(high_channels, c, 1), nn.ReLU(inplace=True))
        self.low_weight = nn.Sequential(nn.Conv2d(low_channels, c, 1), nn.ReLU(inplace=True))
        self.mix = nn.Conv2d(c, c, 1)
        self.project = nn.Sequential(nn.Conv2d(low_channels, c, 1, bias=False),
                                     nn.BatchNorm2d(c), nn.ReLU(inplace=True))

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        weight = self.high_weight(self.pool(high)) + self.low_weight(self.pool(low))
        weight = torch.softmax(self.mix(weight), dim=1)
        return high + self.project(low) * weight


class RAUNet(nn.Module):
    """RAUNet (Ni et al. 2019): ResNet encoder, LinkNet decoder, AAM skip fusion.

    Args:
        in_channels: input channels.
        num_classes: output classes.
        encoder: a timm ResNet name (``resnet34`` in the paper).
        channels: channels of the four ResNet stages.
        head_channels: channels of the final up-sampling head.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, encoder: str = "resnet34",
                 channels: tuple[int, int, int, int] = (64, 128, 256, 512), head_channels: int = 32):
        super().__init__()
        self.encoder = timm.create_model(encoder, pretrained=False, features_only=True,
                                         in_chans=in_channels, channels=channels,
                                         stem_width=channels[0])
        stem, c1, c2, c3, c4 = self.encoder.feature_info.channels()
        self.channels = (stem, c1, c2, c3, c4)
        self.decoder4 = LinknetBlock(c4, c3)
        self.decoder3 = LinknetBlock(c3, c2)
        self.decoder2 = LinknetBlock(c2, c1)
        self.decoder1 = LinknetBlock(c1, c1)
        self.attention3 = AugmentedAttention(c3, c3)
        self.attention2 = AugmentedAttention(c2, c2)
        self.attention1 = AugmentedAttention(c1, c1)
        self.head = nn.Sequential(
            nn.ConvTranspose2d(c1, head_channels, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(head_channels, head_channels, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(f"RA-UNet needs input sizes divisible by 32, got {tuple(x.shape[-2:])}")
        _, e1, e2, e3, e4 = self.encoder(x)
        d = self.attention3(self.decoder4(e4), e3)
        d = self.attention2(self.decoder3(d), e2)
        d = self.attention1(self.decoder2(d), e1)
        d = self.decoder1(d)
        return self.classifier(self.head(d))


@register_model("raunet", paper="emkd_tmi2021", paper_name="RA-UNet")
def raunet(in_channels: int = 1, num_classes: int = 2, width: float = 1.0) -> nn.Module:
    """RA-UNet (EMKD's teacher T1): ResNet-34 LinkNet with augmented attention (Ni 2019)."""
    model = RAUNet(in_channels, num_classes, channels=scaled_all((64, 128, 256, 512), width),
                   head_channels=scaled(32, width))
    stem, _, c2, _, _ = model.channels
    model.feature_roles = {
        "low": FeatureRole("encoder.act1", stem, 2),
        "high": FeatureRole("encoder.layer2", c2, 8),
        "pre_logits": FeatureRole("head", model.head[-2].out_channels, 1),
    }
    return model
