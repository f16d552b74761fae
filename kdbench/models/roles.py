"""Feature roles and forward-hook taps (the torchdistill way: models stay plain).

Every registered model carries ``model.feature_roles``: a dict from role name to
:class:`FeatureRole` (module path, channels, stride w.r.t. the input).  The roles are

* ``low`` — the earliest stage (the stem output, before the first pooling),
* ``high`` — a mid/late encoder stage,
* ``pre_logits`` — the decoder/head feature right before the classifier.

:class:`FeatureTaps` reads them with forward hooks while the model runs its ordinary
``forward``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kdbench.errors import KdbenchError

ROLES = ("low", "high", "pre_logits")


@dataclass(frozen=True)
class FeatureRole:
    """Where a role's feature map comes from and what shape it has."""

    path: str
    channels: int
    stride: int


def feature_roles(model: nn.Module) -> dict[str, FeatureRole]:
    """The roles a model declares (``model.feature_roles``)."""
    roles = getattr(model, "feature_roles", None)
    if not isinstance(roles, dict):
        raise KdbenchError(f"model {type(model).__name__} declares no feature_roles")
    return roles


class FeatureTaps:
    """Forward hooks that record the output of the modules behind ``roles``.

    Use as a context manager; after a forward pass, ``taps.features[role]`` holds the
    tensor (gradients flow through it as usual)::

        with FeatureTaps(model, ["low", "pre_logits"]) as taps:
            logits = model(x)
        taps.features["low"]
    """

    def __init__(self, model: nn.Module, roles: list[str] | tuple[str, ...]):
        declared = feature_roles(model) if roles else {}
        self.features: dict[str, torch.Tensor] = {}
        self._handles = []
        for role in roles:
            if role not in declared:
                raise KdbenchError(
                    f"model {type(model).__name__} has no feature role '{role}' "
                    f"(declared: {', '.join(declared)})"
                )
            module = model.get_submodule(declared[role].path)
            self._handles.append(module.register_forward_hook(self._hook(role)))

    def _hook(self, role: str):
        def hook(_module, _inputs, output):
            if isinstance(output, (list, tuple)):
                output = output[-1]
            self.features[role] = output

        return hook

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> "FeatureTaps":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
