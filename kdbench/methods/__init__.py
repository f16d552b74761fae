"""Distillation methods: ``@register_method`` classes, one module per method.

``create_method("kd", student_roles=..., teacher_roles=..., num_classes=2, T=2.0)``
builds one; hyper-parameters a method does not take are refused with the list of
those it does.  ``{"compose": [...]}`` combines methods (see :mod:`.compose`).
"""

from __future__ import annotations

import inspect
from typing import Any

from kdbench.errors import ConfigError
from kdbench.methods.base import Batch, Method, Outputs
from kdbench.registry import Registry

METHODS = Registry("method")
register_method = METHODS.register

_COMMON = ("student_roles", "teacher_roles", "num_classes")


def method_params(name: str) -> dict[str, Any]:
    """The hyper-parameters of method ``name`` and their defaults."""
    sig = inspect.signature(METHODS.get(name).obj.__init__)
    return {
        p.name: p.default
        for p in list(sig.parameters.values())[1:]
        if p.name not in _COMMON and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }


def create_method(name: str, student_roles=None, teacher_roles=None, num_classes: int = 2,
                  **params: Any) -> Method:
    """Build the registered method ``name`` with hyper-parameter overrides ``params``."""
    allowed = method_params(name)
    cls = METHODS.get(name).obj
    unknown = [k for k in params if k not in allowed]
    if unknown:  # every method takes ``**common``, so its signature alone cannot refuse them
        raise ConfigError(
            f"method '{name}' has no parameter '{unknown[0]}' (allowed: {', '.join(allowed) or 'none'})"
        )
    return cls(student_roles=student_roles, teacher_roles=teacher_roles, num_classes=num_classes, **params)


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching ``pattern``."""
    return METHODS.names(pattern)


from kdbench.methods import (  # noqa: E402,F401  (register)
    at, cirkd, compose, cwd, dkd, emkd, fitnet, ifvd, kd, local, mimic, none, pa, skd, spkd)

__all__ = ["METHODS", "Batch", "Method", "Outputs", "create_method", "list_methods",
           "method_params", "register_method"]
