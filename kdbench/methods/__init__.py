"""Distillation methods: ``@register_method`` classes, one module per method.

``create_method("kd", student_roles=..., teacher_roles=..., num_classes=2, T=2.0)``
builds one.  Hyper-parameters are checked against the constructor's annotations and
declared ranges (:meth:`Method.validate_params`) — a grid at load time, a Python
caller here — so ``T="hot"``, ``T=0`` or a misspelt name fail with one line naming
what is allowed.  ``{"compose": [...]}`` combines methods (see :mod:`.compose`).
The method modules are imported on the first lookup or listing.
"""

from __future__ import annotations

from typing import Any

from kdbench.errors import ConfigError
from kdbench.methods.base import COMMON, Batch, Method, Outputs
from kdbench.params import signature_defaults
from kdbench.registry import Registry

#: The modules that register the built-in methods (imported on first use).
MODULES = ("at", "cirkd", "compose", "cwd", "dkd", "emkd", "ensemble", "fitnet", "ifvd", "kd", "local", "mimic",
           "none", "pa", "plckd", "skd", "spkd")

METHODS = Registry("method", modules=[f"{__name__}.{m}" for m in MODULES])
register_method = METHODS.register


def method_params(name: str) -> dict[str, Any]:
    """The hyper-parameters of method ``name`` and their defaults."""
    return signature_defaults(METHODS.get(name).obj, COMMON)


def validate_method_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` of method ``name`` checked by name, type and range (see :meth:`Method.validate_params`)."""
    return METHODS.get(name).obj.validate_params(params)


def method_defaults(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Every hyper-parameter of method ``name``: its defaults updated with the checked ``params``."""
    return {**method_params(name), **validate_method_params(name, params)}


def create_method(name: str, student_roles=None, teacher_roles=None, num_classes: int = 2,
                  **params: Any) -> Method:
    """Build the registered method ``name`` with hyper-parameter overrides ``params``."""
    cls = METHODS.get(name).obj
    try:
        params = cls.validate_params(params)
    except ConfigError as exc:
        raise ConfigError(f"method '{name}': {exc}") from None
    return cls(student_roles=student_roles, teacher_roles=teacher_roles, num_classes=num_classes, **params)


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching ``pattern``."""
    return METHODS.names(pattern)


__all__ = ["METHODS", "Batch", "Method", "Outputs", "create_method", "list_methods",
           "method_defaults", "method_params", "register_method", "validate_method_params"]
