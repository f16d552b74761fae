"""Datasets: ``@register_dataset`` classes yielding cases with labels and spacing."""

from __future__ import annotations

from kdbench.datasets.base import Case, SegDataset, SliceDataset
from kdbench.registry import Registry

DATASETS = Registry("dataset")
register_dataset = DATASETS.register


def create_dataset(name: str, **kwargs) -> SegDataset:
    """Build the registered dataset ``name`` (``root``, ``image_size``, ``targets``, options)."""
    return DATASETS.build(name, **kwargs)


def list_datasets(pattern: str = "*") -> list[str]:
    """Registered dataset names matching ``pattern``."""
    return DATASETS.names(pattern)


from kdbench.datasets import phantom  # noqa: E402,F401  (registers)
from kdbench.datasets import acdc, cvc, folder, idrid, isic, kits, lits, msd, segthor  # noqa: E402,F401  (register)

__all__ = ["DATASETS", "Case", "SegDataset", "SliceDataset", "create_dataset", "list_datasets",
           "register_dataset"]
