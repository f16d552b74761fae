"""Segmentation models: ``@register_model`` factories that return plain ``nn.Module`` s.

Every factory takes ``in_channels``, ``num_classes`` and ``width`` (a channel multiplier,
1.0 = the paper's configuration) and returns a model whose ``forward(x)`` gives logits
and whose ``feature_roles`` names the ``low`` / ``high`` / ``pre_logits`` taps.

The model modules (and timm, segmentation-models-pytorch, MONAI with them) are
imported on the first lookup or listing, not with this package; torchvision's
workaround (:mod:`kdbench._compat`) runs just before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdbench._compat import import_torchvision
from kdbench.models.roles import ROLES, FeatureRole, FeatureTaps, feature_roles
from kdbench.registry import Registry

if TYPE_CHECKING:
    from torch import nn

#: The modules that register the built-in models (imported on first use).
MODULES = ("deeplab", "enet", "ens_dilated", "ens_resnet", "ens_resnet3d", "espnet", "mobilenetv2", "pspnet",
           "raunet", "resnet", "students3d", "transunet", "unet", "unet3d", "unetpp")

MODELS = Registry("model", modules=[f"{__name__}.{m}" for m in MODULES], prepare=import_torchvision)
register_model = MODELS.register


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` (timm-style)."""
    return MODELS.build(name, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching ``pattern``."""
    return MODELS.names(pattern)


__all__ = ["MODELS", "ROLES", "FeatureRole", "FeatureTaps", "create_model", "feature_roles",
           "list_models", "register_model"]
