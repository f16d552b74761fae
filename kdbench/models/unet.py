"""U-Nets: the classic U-Net of the papers and a tiny smp U-Net for quick runs.

* :class:`UNet` — Ronneberger et al., "U-Net: Convolutional networks for biomedical
  image segmentation", MICCAI 2015: a VGG-style encoder of double 3×3 convolutions and
  max-pooling, a symmetric decoder with skip concatenation.  Batch normalisation follows
  every convolution, as in the implementations the papers ran.  Two up-sampling modes:
  ``"conv"`` (nearest ×2, then a 3×3 conv-BN-ReLU halving the channels — EMKD's
  U-Net, 34.5 M parameters) and ``"deconv"`` (a 2×2 transposed convolution, as in
  Ronneberger et al. and Noothout et al.'s U-Net-like ensemble member).
* ``tinyunet`` — smp's U-Net decoder on a narrow timm ResNet-18; a toy student.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
from torch import nn

from kdbench.models import register_model
from kdbench.models.layers import ConvBNReLU, DoubleConv, scaled_all
from kdbench.models.roles import FeatureRole


class EncoderDecoder(nn.Module):
    """The U-Net wiring shared by the 2D and 3D U-Nets: ``encoders`` (stage outputs kept as
    skips), then per decoder level ``decoders[i](cat(skip, ups[i](x)))``, then ``head``."""

    channels: tuple[int, ...]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.encoders:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        for up, decoder in zip(self.ups, self.decoders):
            x = decoder(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)

    def default_roles(self) -> dict[str, FeatureRole]:
        """``low``: first stage; ``high``: the stride-8 stage; ``pre_logits``: last decoder block."""
        deep = min(3, len(self.channels) - 1)
        return {
            "low": FeatureRole("encoders.0", self.channels[0], 1),
            "high": FeatureRole(f"encoders.{deep}", self.channels[deep], 2 ** deep),
            "pre_logits": FeatureRole(f"decoders.{len(self.decoders) - 1}", self.channels[0], 1),
        }


class UNet(EncoderDecoder):
    """Classic U-Net (Ronneberger et al., MICCAI 2015) with batch normalisation.

    Args:
        in_channels: input channels.
        num_classes: output classes (logits channels).
        channels: channels of the encoder stages, shallow to deep; ``len(channels) - 1``
            max-poolings, so inputs must be divisible by ``2 ** (len(channels) - 1)``.
        upsample: ``"conv"`` (nearest ×2 + 3×3 conv-BN-ReLU) or ``"deconv"``
            (2×2 transposed convolution).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2,
                 channels: tuple[int, ...] = (64, 128, 256, 512, 1024), upsample: str = "conv"):
        super().__init__()
        if upsample not in ("conv", "deconv"):
            raise ValueError(f"upsample must be 'conv' or 'deconv', got {upsample!r}")
        self.channels = tuple(channels)
        stages = [DoubleConv(in_channels, channels[0])]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            stages.append(nn.Sequential(nn.MaxPool2d(2), DoubleConv(c_in, c_out)))
        self.encoders = nn.ModuleList(stages)
        ups, decoders = [], []
        for c_deep, c_skip in zip(channels[:0:-1], channels[-2::-1]):
            if upsample == "conv":
                ups.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                         ConvBNReLU(c_deep, c_skip, 3, bias=True)))
            else:
                ups.append(nn.ConvTranspose2d(c_deep, c_skip, kernel_size=2, stride=2))
            decoders.append(DoubleConv(2 * c_skip, c_skip))
        self.ups = nn.ModuleList(ups)
        self.decoders = nn.ModuleList(decoders)
        self.head = nn.Conv2d(channels[0], num_classes, kernel_size=1)


@register_model("unet", paper="emkd_tmi2021", paper_name="UNet",
                used_by=("emkd_tmi2021", "plckd_miccai2024"))
def unet(in_channels: int = 1, num_classes: int = 2, width: float = 1.0, *,
         upsample: str = "conv") -> nn.Module:
    """U-Net (Ronneberger 2015), 64–1024 channels, BN; EMKD Table II and PLC-KD's student."""
    model = UNet(in_channels, num_classes, scaled_all((64, 128, 256, 512, 1024), width),
                 upsample=upsample)
    model.feature_roles = model.default_roles()
    return model


@register_model("ens-unet", paper="ensemblekd_jmi2022")
def ens_unet(in_channels: int = 1, num_classes: int = 2, width: float = 1.0) -> nn.Module:
    """Ensemble-KD's U-Net-like member (Noothout 2022, Fig. 2a) in 2D: 32–256 channels."""
    model = UNet(in_channels, num_classes, scaled_all((32, 64, 128, 256), width),
                 upsample="deconv")
    model.feature_roles = model.default_roles()
    return model


def smp_resnet_unet(
    encoder: str,
    channels: tuple[int, ...],
    decoder_channels: tuple[int, ...],
    in_channels: int,
    num_classes: int,
    width: float,
) -> nn.Module:
    """An smp U-Net on a width-scaled timm ResNet, with ``feature_roles`` declared."""
    channels = scaled_all(channels, width)
    decoder_channels = scaled_all(decoder_channels, width)
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
    # timm's 7×7 stem keeps 64 channels whatever ``stem_width`` says: read them back
    _, stem_out, _, layer2, *_ = model.encoder.out_channels
    model.feature_roles = {
        "low": FeatureRole("encoder.model.act1", stem_out, 2),
        "high": FeatureRole("encoder.model.layer2", layer2, 8),
        "pre_logits": FeatureRole("decoder", decoder_channels[-1], 1),
    }
    return model


@register_model("tinyunet")
def tinyunet(in_channels: int = 1, num_classes: int = 2, width: float = 1.0) -> nn.Module:
    """Tiny U-Net with a narrow ResNet-18 encoder (smp); a toy student, 0.24 M params at width 1."""
    return smp_resnet_unet("resnet18", (8, 16, 32, 64), (32, 16, 8, 8, 8),
                           in_channels, num_classes, width)
