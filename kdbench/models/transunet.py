"""TransUNet (Chen et al., "TransUNet: Transformers make strong encoders for medical
image segmentation", arXiv:2102.04306, 2021), PLC-KD's teacher.

The R50-ViT-B/16 hybrid encoder of Dosovitskiy et al. (ICLR 2021) built from timm parts —
a ResNet-50 v2 trunk with weight-standardised convolutions and group norm (stages 3, 4,
9 → 1024 channels at stride 16), a 1×1 patch embedding to 768 channels, learned
position embeddings and 12 pre-norm transformer blocks (12 heads, MLP ratio 4) — and the
paper's cascaded upsampler: a 3×3 conv to 512 channels, then four ×2 up-sampling blocks
(two 3×3 conv-BN-ReLU each; smp's U-Net block) to 256, 128, 64, 16 channels that
concatenate the trunk's stride-8, stride-4 and stride-2 features, and a 3×3 classifier.
No class token.  Position embeddings are stored for ``img_size`` (224 in the paper) and
resampled for other input sizes (multiples of 16).  ≈105 M parameters.
"""

from __future__ import annotations

from functools import partial

import torch
from segmentation_models_pytorch.base.modules import Conv2dReLU
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoderBlock
from timm.layers import GroupNormAct, StdConv2dSame, resample_abs_pos_embed, trunc_normal_
from timm.models.resnetv2 import ResNetV2
from timm.models.vision_transformer import Block
from torch import nn

from kdbench.models import register_model
from kdbench.models.layers import group_count, scaled, scaled_all
from kdbench.models.roles import FeatureRole


def _group_norm_act(num_channels: int, **kwargs) -> GroupNormAct:
    """GroupNorm(32) + ReLU; fewer groups only where the channels are not a multiple of 32."""
    return GroupNormAct(num_channels, num_groups=group_count(num_channels), **kwargs)


class TransUNet(nn.Module):
    """R50-ViT hybrid encoder with TransUNet's cascaded upsampler.

    Args:
        in_channels: input channels.
        num_classes: output classes.
        img_size: input size the position embeddings are stored for.
        trunk_layers: bottleneck blocks of the ResNet-50 stages used (3, 4, 9).
        trunk_channels: output channels of those stages.
        stem_channels: channels of the 7×7 stem.
        embed_dim, depth, num_heads, mlp_ratio: the ViT-B/16 transformer.
        head_channels: channels of the conv after the transformer.
        decoder_channels: channels of the four up-sampling blocks.
        n_skip: how many trunk features (stride 8, 4, 2) the decoder concatenates.
        dropout: dropout on the embeddings and in the MLPs (the paper: 0.1).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, img_size: int = 224,
                 trunk_layers: tuple[int, ...] = (3, 4, 9),
                 trunk_channels: tuple[int, ...] = (256, 512, 1024), stem_channels: int = 64,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, head_channels: int = 512,
                 decoder_channels: tuple[int, int, int, int] = (256, 128, 64, 16),
                 n_skip: int = 3, dropout: float = 0.1):
        super().__init__()
        self.trunk = ResNetV2(
            layers=list(trunk_layers), channels=tuple(trunk_channels), stem_chs=stem_channels,
            num_classes=0, global_pool="", in_chans=in_channels, preact=False, stem_type="same",
            conv_layer=partial(StdConv2dSame, eps=1e-8), norm_layer=_group_norm_act,
        )
        info = self.trunk.feature_info
        self.stride = info[-1]["reduction"]
        self.grid = (img_size // self.stride, img_size // self.stride)
        self.patch_embed = nn.Conv2d(info[-1]["num_chs"], embed_dim, kernel_size=1)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], embed_dim))
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, proj_drop=dropout,
                  norm_layer=partial(nn.LayerNorm, eps=1e-6))
            for _ in range(depth)
        ])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        trunc_normal_(self.pos_embed, std=0.02)

        # cascaded upsampler: skips at stride 8, 4, 2 (deepest first), then none
        skip_channels = [f["num_chs"] for f in info[-2::-1]][:n_skip]
        skip_channels += [0] * (len(decoder_channels) - len(skip_channels))
        self.n_skip = n_skip
        self.conv_more = Conv2dReLU(embed_dim, head_channels, kernel_size=3, padding=1)
        in_chs = [head_channels, *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(
            UnetDecoderBlock(c_in, c_skip, c_out, interpolation_mode="bilinear")
            for c_in, c_skip, c_out in zip(in_chs, skip_channels, decoder_channels)
        )
        self.classifier = nn.Conv2d(decoder_channels[-1], num_classes, 3, padding=1)

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stem = self.trunk.stem
        x = stem.norm(stem.conv(x))
        features = [x]
        x = stem.pool(x)
        for stage in self.trunk.stages:
            x = stage(x)
            features.append(x)
        return features[-1], features[:-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        deep, features = self._trunk(x)
        tokens = self.patch_embed(deep)
        b, c, h, w = tokens.shape
        pos = self.pos_embed
        if (h, w) != self.grid:
            pos = resample_abs_pos_embed(pos, new_size=(h, w), old_size=self.grid,
                                         num_prefix_tokens=0)
        tokens = self.pos_drop(tokens.flatten(2).transpose(1, 2) + pos)
        tokens = self.norm(self.blocks(tokens))
        y = self.conv_more(tokens.transpose(1, 2).reshape(b, c, h, w))
        skips = features[::-1][:self.n_skip]
        for i, block in enumerate(self.decoder):
            skip = skips[i] if i < len(skips) else None
            target = skip.shape[2:] if skip is not None else (y.shape[2] * 2, y.shape[3] * 2)
            y = block(y, target[0], target[1], skip)
        if y.shape[2:] != size:
            raise ValueError(f"TransUNet needs inputs divisible by {self.stride}, got {tuple(size)}")
        return self.classifier(y)


@register_model("transunet", paper="plckd_miccai2024", paper_name="TransUNet")
def transunet(in_channels: int = 1, num_classes: int = 2, width: float = 1.0, *,
              img_size: int = 224) -> nn.Module:
    """TransUNet (Chen 2021): R50-ViT-B/16 hybrid encoder + cascaded upsampler; PLC-KD teacher."""
    heads = 12
    model = TransUNet(
        in_channels, num_classes, img_size=img_size,
        trunk_channels=scaled_all((256, 512, 1024), width, minimum=8, divisor=8),
        stem_channels=scaled(64, width, minimum=8, divisor=8),
        embed_dim=heads * scaled(64, width, minimum=4),
        num_heads=heads,
        head_channels=scaled(512, width),
        decoder_channels=scaled_all((256, 128, 64, 16), width),
    )
    info = model.trunk.feature_info
    model.feature_roles = {
        "low": FeatureRole("trunk.stem.norm", info[0]["num_chs"], 2),
        "high": FeatureRole("trunk.stages.1", info[2]["num_chs"], 8),
        "pre_logits": FeatureRole(f"decoder.{len(model.decoder) - 1}",
                                  model.classifier.in_channels, 1),
    }
    return model
