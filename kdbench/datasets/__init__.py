"""Datasets: ``@register_dataset`` classes yielding cases with labels and spacing.

The dataset modules are imported on the first lookup or listing, and torch with the
base classes (``Case``, ``SegDataset``, ``SliceDataset``) on first access, so the
command line can mount ``kdbench datasets`` without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from kdbench.registry import Registry

if TYPE_CHECKING:
    from kdbench.datasets.base import SegDataset

#: The modules that register the built-in datasets (imported on first use).
MODULES = ("phantom", "acdc", "cvc", "folder", "idrid", "isic", "kits", "lits", "msd", "segthor")

DATASETS = Registry("dataset", modules=[f"{__name__}.{m}" for m in MODULES])
register_dataset = DATASETS.register


def create_dataset(name: str, **kwargs) -> SegDataset:
    """Build the registered dataset ``name`` (``root``, ``image_size``, ``targets``, options)."""
    return DATASETS.build(name, **kwargs)


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching ``pattern``."""
    return DATASETS.names(pattern)


def __getattr__(name: str):
    """``Case``, ``SegDataset`` and ``SliceDataset`` from :mod:`.base`, imported on first access (PEP 562)."""
    if name in ("Case", "SegDataset", "SliceDataset"):
        return getattr(importlib.import_module(f"{__name__}.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DATASETS", "Case", "SegDataset", "SliceDataset", "create_dataset", "list_datasets",
           "register_dataset"]
