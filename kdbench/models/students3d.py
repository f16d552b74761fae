"""Small 3D students from the field: MONAI's ``UNet`` and ``DynUNet`` at stated sizes.

* ``unet3d-s`` — MONAI's residual ``UNet`` (Kerfoot et al., "Left-ventricle quantification
  using residual U-Net", STACOM 2018), the layout of MONAI's 3D segmentation tutorials
  (strided-conv encoder, two residual units per level, batch norm) at half their width.
* ``dynunet3d-s`` — MONAI's ``DynUNet``, the nnU-Net network (Isensee et al., Nature
  Methods 2021: two 3×3×3 conv-InstanceNorm-LeakyReLU units per level, strided-conv
  down-sampling, transposed-conv up-sampling) with four levels of 16–128 channels.

Both are used unchanged; their feature roles name MONAI's own module paths.
"""

from __future__ import annotations

from monai.networks.nets import DynUNet, UNet
from torch import nn

from kdbench.models import register_model
from kdbench.models.layers import scaled_all
from kdbench.models.roles import FeatureRole


@register_model("unet3d-s", dims=3)
def unet3d_s(in_channels: int = 1, num_classes: int = 2, width: float = 1.0) -> nn.Module:
    """MONAI residual UNet, 8–128 channels, 2 residual units per level: a 1.20 M-param 3D student.

    ``monai.networks.nets.UNet(spatial_dims=3, channels=(8, 16, 32, 64, 128),
    strides=(2, 2, 2, 2), num_res_units=2, norm="batch")``: MONAI's tutorial network
    (16–256 channels, 4.81 M) at half width, 1.20 M parameters with 2 classes at width 1
    (about a fifth of ``ens-unet3d``).  The first convolution is already strided, so every
    axis must be divisible by 16.  Roles: ``low`` the first (stride-2) level, ``high`` the
    stride-8 level, ``pre_logits`` the skip concatenation the last up-sampling block reads.
    """
    c = scaled_all((8, 16, 32, 64, 128), width)
    model = UNet(spatial_dims=3, in_channels=in_channels, out_channels=num_classes, channels=c,
                 strides=(2, 2, 2, 2), num_res_units=2, norm="batch")
    model.feature_roles = {
        "low": FeatureRole("model.0", c[0], 2),
        "high": FeatureRole("model.1.submodule.1.submodule.0", c[2], 8),
        "pre_logits": FeatureRole("model.1", 2 * c[0], 2),
    }
    return model


@register_model("dynunet3d-s", dims=3)
def dynunet3d_s(in_channels: int = 1, num_classes: int = 2, width: float = 1.0) -> nn.Module:
    """MONAI DynUNet (nnU-Net layout), 4 levels of 16–128 channels: a 1.40 M-param 3D student.

    ``monai.networks.nets.DynUNet(spatial_dims=3, kernel_size=[3, 3, 3, 3],
    strides=[1, 2, 2, 2], upsample_kernel_size=[2, 2, 2], filters=(16, 32, 64, 128))``
    with MONAI's defaults (instance norm, LeakyReLU 0.01, no deep supervision): 1.40 M
    parameters with 2 classes at width 1 (nnU-Net's own 3D full-resolution networks start
    at 32 channels, capped at 320, over 5–6 levels).  Every axis must be divisible by 8.  Roles:
    ``low`` the input block, ``high`` the stride-8 bottleneck, ``pre_logits`` the last
    up-sampling block, which the 1×1×1 output block reads.
    """
    c = scaled_all((16, 32, 64, 128), width)
    model = DynUNet(spatial_dims=3, in_channels=in_channels, out_channels=num_classes,
                    kernel_size=[3, 3, 3, 3], strides=[1, 2, 2, 2], upsample_kernel_size=[2, 2, 2],
                    filters=c)
    model.feature_roles = {
        "low": FeatureRole("input_block", c[0], 1),
        "high": FeatureRole("bottleneck", c[3], 8),
        "pre_logits": FeatureRole(f"upsamples.{len(c) - 2}", c[0], 1),
    }
    return model
