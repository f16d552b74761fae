"""kdbench: a benchmark suite and leaderboard toolkit for knowledge distillation in
medical image segmentation.

The public API mirrors timm: ``create_model`` / ``list_models``, ``create_method`` /
``list_methods``, ``create_dataset`` / ``list_datasets``, plus ``load_grid``,
``build_plan`` and ``run_grid`` for whole benchmarks.

Importing ``kdbench`` imports no torch: each public name is looked up in its
subpackage on first access (PEP 562), so the command line starts fast (issue 11).
"""

from __future__ import annotations

import importlib

__version__ = "0.4.0"

#: Public name → the module that defines it.
_API = {
    "create_dataset": "kdbench.datasets", "list_datasets": "kdbench.datasets", "register_dataset": "kdbench.datasets",
    "create_method": "kdbench.methods", "list_methods": "kdbench.methods", "register_method": "kdbench.methods",
    "create_model": "kdbench.models", "list_models": "kdbench.models", "register_model": "kdbench.models",
}

__all__ = ["__version__", *sorted(_API)]


def __getattr__(name: str):
    """Import a public name from its subpackage on first access (PEP 562)."""
    if name not in _API:
        raise AttributeError(f"module 'kdbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazily imported public ones included."""
    return sorted({*globals(), *_API})
