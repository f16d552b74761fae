"""U-Net teachers and students on segmentation-models-pytorch.

The encoder is timm's ResNet (through smp's ``tu-`` universal encoder, no pretrained
weights), whose stage channels and stem width scale with ``width``; the decoder is
smp's U-Net decoder (Ronneberger et al., MICCAI 2015), scaled the same way.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
from torch import nn

from kdbench.models import register_model
from kdbench.models.roles import FeatureRole


def _scaled(values: tuple[int, ...], width: float, minimum: int = 4) -> tuple[int, ...]:
    return tuple(max(minimum, int(round(v * width))) for v in values)


def smp_resnet_unet(
    encoder: str,
    channels: tuple[int, ...],
    decoder_channels: tuple[int, ...],
    in_channels: int,
    num_classes: int,
    width: float,
) -> nn.Module:
    """An smp U-Net on a width-scaled timm ResNet, with ``feature_roles`` declared."""
    channels = _scaled(channels, width)
    decoder_channels = _scaled(decoder_channels, width)
    stem = channels[0]
    model = smp.Unet(
        f"tu-{encoder}",
        encoder_weights=None,
        in_channels=in_channels,
        classes=num_classes,
        decoder_channels=decoder_channels,
        channels=channels,
        stem_width=stem,
    )
    model.feature_roles = {
        "low": FeatureRole("encoder.model.act1", stem, 2),
        "high": FeatureRole("encoder.model.layer2", channels[1], 8),
        "pre_logits": FeatureRole("decoder", decoder_channels[-1], 1),
    }
    return model


@register_model("unet", paper_params_M=None)
def unet(in_channels: int = 1, num_classes: int = 2, width: float = 1.0) -> nn.Module:
    """U-Net with a ResNet-34 encoder (smp); the spine's teacher, 24.4 M params at width 1."""
    return smp_resnet_unet("resnet34", (64, 128, 256, 512), (256, 128, 64, 32, 16),
                           in_channels, num_classes, width)


@register_model("tinyunet")
def tinyunet(in_channels: int = 1, num_classes: int = 2, width: float = 1.0) -> nn.Module:
    """Tiny U-Net with a narrow ResNet-18 encoder (smp); a toy student, 0.1 M params at width 1."""
    return smp_resnet_unet("resnet18", (8, 16, 32, 64), (32, 16, 8, 8, 8),
                           in_channels, num_classes, width)
