"""The U-Net-like ensemble member of Noothout et al., "Knowledge distillation with ensembles
of convolutional neural networks for medical image segmentation", J. Med. Imaging 9(5),
2022 (Fig. 2a), in its 3D form (the paper's SegTHOR and brain MRI setting; 72³ patches,
batch 4).

A 3D U-Net after Çiçek et al. (MICCAI 2016): four stages of two zero-padded 3×3×3
conv-BN-ReLU units (32, 64, 128, 256 channels) with 2×2×2 max-pooling between them, a
symmetric decoder whose 2×2×2 transposed convolutions halve the channels before the skip
concatenation, and a 1×1×1 classifier.  It is the 2D ``ens-unet`` with every operation
made volumetric; the conv-BN-ReLU units and up-sampling are MONAI blocks.
"""

from __future__ import annotations

from monai.networks.blocks import Convolution, UpSample
from torch import nn

from kdbench.models import register_model
from kdbench.models.layers import scaled_all
from kdbench.models.unet import EncoderDecoder


def double_conv3d(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two zero-padded 3×3×3 ``Conv3d → BatchNorm3d → ReLU`` units (MONAI ``Convolution``)."""
    return nn.Sequential(*(Convolution(3, c_in, out_channels, kernel_size=3, act="relu", norm="batch")
                           for c_in in (in_channels, out_channels)))


class UNet3D(EncoderDecoder):
    """3D U-Net with batch normalisation and transposed-convolution up-sampling.

    Args:
        in_channels: input channels.
        num_classes: output classes (logits channels).
        channels: channels of the encoder stages, shallow to deep; ``len(channels) - 1``
            max-poolings, so every axis must be divisible by ``2 ** (len(channels) - 1)``.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2,
                 channels: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        self.channels = tuple(channels)
        stages = [double_conv3d(in_channels, channels[0])]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            stages.append(nn.Sequential(nn.MaxPool3d(2), double_conv3d(c_in, c_out)))
        self.encoders = nn.ModuleList(stages)
        self.ups = nn.ModuleList(UpSample(3, c_deep, c_skip, scale_factor=2, mode="deconv")
                                 for c_deep, c_skip in zip(channels[:0:-1], channels[-2::-1]))
        self.decoders = nn.ModuleList(double_conv3d(2 * c_skip, c_skip) for c_skip in channels[-2::-1])
        self.head = nn.Conv3d(channels[0], num_classes, kernel_size=1)


@register_model("ens-unet3d", paper="ensemblekd_jmi2022", dims=3)
def ens_unet3d(in_channels: int = 1, num_classes: int = 2, width: float = 1.0) -> nn.Module:
    """Ensemble-KD's U-Net-like member (Noothout 2022, Fig. 2a) in 3D: 32–256 channels, 5.60 M params.

    5.60 M parameters at width 1 with 5 classes (SegTHOR); the paper's Table 1 lists
    5.64 M for its distilled U-Net (and 6 × 5.64 = 33.84 M for the uniform ensemble),
    0.7 % more.  Inputs
    must be divisible by 8 along every axis (the paper trains on 72³ patches, batch 4).
    """
    model = UNet3D(in_channels, num_classes, scaled_all((32, 64, 128, 256), width))
    model.feature_roles = model.default_roles()
    return model
