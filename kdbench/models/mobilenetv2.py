"""MobileNetV2 as a light segmentation network, the way EMKD ran it.

Sandler et al., "MobileNetV2: Inverted residuals and linear bottlenecks", CVPR 2018.
timm's MobileNetV2 blocks (inverted residuals, ReLU6, 32-channel stem, 1280-channel
1×1 head), with the stride pattern of EMKD's official code: the strides of the 24- and
64-channel stages are 1, so the network stops at output stride 8 without dilation; a
1×1 convolution classifies the 1280-channel map and the logits are bilinearly
up-sampled to the input size.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from timm.models._efficientnet_builder import decode_arch_def, round_channels
from timm.models.efficientnet import EfficientNet
from torch import nn

from kdbench.models import register_model
from kdbench.models.roles import FeatureRole

#: (block, repeats, stride, expansion, channels) per stage; ``s1`` on stages 2 and 4 is
#: EMKD's change to the paper's MobileNetV2 (which has stride 2 there).
EMKD_ARCH = [
    ["ds_r1_k3_s1_c16"],
    ["ir_r2_k3_s1_e6_c24"],
    ["ir_r3_k3_s2_e6_c32"],
    ["ir_r4_k3_s1_e6_c64"],
    ["ir_r3_k3_s1_e6_c96"],
    ["ir_r3_k3_s2_e6_c160"],
    ["ir_r1_k3_s1_e6_c320"],
]


class MobileNetV2Seg(nn.Module):
    """MobileNetV2 features → 1×1 classifier → bilinear up-sampling.

    Args:
        in_channels: input channels.
        num_classes: output classes.
        width: channel multiplier (timm rounding to multiples of 8).
        arch: timm block strings of the stages (default: EMKD's output-stride-8 variant).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: float = 1.0,
                 arch: list[list[str]] | None = None):
        super().__init__()
        round_chs = partial(round_channels, multiplier=width)
        self.encoder = EfficientNet(
            block_args=decode_arch_def(arch or EMKD_ARCH),
            num_classes=0,
            global_pool="",
            num_features=round_chs(1280) if width < 1 else 1280,
            stem_size=32,
            in_chans=in_channels,
            round_chs_fn=round_chs,
            act_layer=nn.ReLU6,
            norm_layer=nn.BatchNorm2d,
        )
        self.stem_channels = self.encoder.conv_stem.out_channels
        self.num_features = self.encoder.num_features
        self.classifier = nn.Conv2d(self.num_features, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.encoder.forward_features(x))
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)


@register_model("mobilenetv2", paper="emkd_tmi2021", paper_name="MobileNetV2")
def mobilenetv2(in_channels: int = 1, num_classes: int = 2, width: float = 1.0) -> nn.Module:
    """MobileNetV2 (Sandler 2018), output stride 8, 1×1 classifier; EMKD student."""
    model = MobileNetV2Seg(in_channels, num_classes, width)
    model.feature_roles = {
        "low": FeatureRole("encoder.bn1", model.stem_channels, 2),
        "high": FeatureRole("encoder.bn2", model.num_features, 8),
        "pre_logits": FeatureRole("encoder.bn2", model.num_features, 8),
    }
    return model
