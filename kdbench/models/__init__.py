"""Segmentation models: ``@register_model`` factories that return plain ``nn.Module`` s.

Every factory takes ``in_channels``, ``num_classes`` and ``width`` (a channel multiplier,
1.0 = the paper's configuration) and returns a model whose ``forward(x)`` gives logits
and whose ``feature_roles`` names the ``low`` / ``high`` / ``pre_logits`` taps.
"""

from __future__ import annotations

from torch import nn

from kdbench.models.roles import ROLES, FeatureRole, FeatureTaps, feature_roles
from kdbench.registry import Registry

MODELS = Registry("model")
register_model = MODELS.register


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` (timm-style)."""
    return MODELS.build(name, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching ``pattern``."""
    return MODELS.names(pattern)


from kdbench.models import (  # noqa: E402,F401  (register)
    deeplab, enet, ens_dilated, ens_resnet, espnet, mobilenetv2, pspnet, raunet, resnet,
    transunet, unet, unetpp,
)

__all__ = ["MODELS", "ROLES", "FeatureRole", "FeatureTaps", "create_model", "feature_roles",
           "list_models", "register_model"]
