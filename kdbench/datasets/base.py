"""What a dataset provides: cases (volumes or images) with labels, spacing and targets.

A dataset is a collection of :class:`Case` s.  3D datasets are sliced to 2D for
training (:class:`SliceDataset`) and evaluated per case (volume), as in the papers;
2D datasets are cases of one slice.  Targets are named label sets, e.g.
``{"kidney": (1, 2), "tumour": (2,)}``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from kdbench.errors import DatasetError


@dataclass
class Case:
    """One case: image ``(S, C, H, W)`` float32, label ``(S, H, W)`` int64, spacing (z, y, x).

    Spacing is in the dataset's :attr:`SegDataset.spacing_unit` (mm, or pixels for 2D
    image sets without a physical pixel size).

    ``spacing`` is the spacing of the arrays held (after in-plane resampling to
    ``image_size``).  File datasets serve labels as uint8 arrays memory-mapped from the
    preparation cache (:class:`SliceDataset` returns them as int64); they also fill
    ``eval_label`` — the label ``(S, H0, W0)`` at the original in-plane resolution — and
    ``eval_spacing``, its spacing, so that a prediction resized back to ``(H0, W0)``
    (nearest neighbour, see :func:`kdbench.datasets.transforms.to_eval_resolution`) is
    scored per case at the original spacing.  Both stay ``None`` where the arrays held
    are already the ones to evaluate (phantom; 2D images unless asked otherwise).
    """

    case_id: str
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    eval_label: np.ndarray | None = None
    eval_spacing: tuple | None = None


class SegDataset(ABC):
    """Base class of registered datasets.

    Subclasses set ``classes`` (label value → name), ``default_targets`` and
    ``in_channels``, and implement :meth:`case_ids` and :meth:`load_case`.
    ``spacing_unit`` names the unit of every case's spacing, and so of HD95/ASSD:
    ``"mm"`` for scans, ``"px"`` for 2D images whose spacing is in pixels.
    """

    classes: tuple[str, ...] = ("background", "foreground")
    default_targets: dict[str, tuple[int, ...]] = {"foreground": (1,)}
    in_channels: int = 1
    is_volume: bool = True
    #: unit of ``Case.spacing`` and ``Case.eval_spacing``, hence of HD95 and ASSD ("mm" or "px")
    spacing_unit: str = "mm"
    #: fraction of cases held out for testing when ``folds == 1`` and there is no
    #: official split (``None``: the protocol's default); see ``kdbench.benchmark.splits``
    holdout: float | None = None

    def __init__(self, root: str | None = None, image_size: int = 64, targets=None):
        self.root = root
        self.image_size = image_size
        self.targets = self.resolve_targets(targets)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def resolve_targets(self, targets) -> dict[str, tuple[int, ...]]:
        """Targets as ``{name: label values}`` from a list of names or a mapping."""
        if targets is None:
            return dict(self.default_targets)
        if isinstance(targets, dict):
            out = {}
            for name, labels in targets.items():
                labels = (labels,) if isinstance(labels, (int, str)) else tuple(labels)
                out[name] = tuple(self._label_value(v, name) for v in labels)
            return out
        unknown = [t for t in targets if t not in self.default_targets]
        if unknown:
            raise DatasetError(
                f"dataset {type(self).__name__}: unknown target '{unknown[0]}' "
                f"(allowed: {', '.join(self.default_targets)}, or a mapping name → labels)"
            )
        return {t: self.default_targets[t] for t in targets}

    def _label_value(self, value, target: str) -> int:
        if isinstance(value, str):
            if value not in self.classes:
                raise DatasetError(f"target '{target}': unknown class '{value}' (classes: {', '.join(self.classes)})")
            return self.classes.index(value)
        if not 0 <= int(value) < len(self.classes):
            raise DatasetError(f"target '{target}': label {value} outside 0..{len(self.classes) - 1}")
        return int(value)

    @abstractmethod
    def case_ids(self) -> list[str]:
        """All case ids, sorted."""

    @abstractmethod
    def load_case(self, case_id: str) -> Case:
        """The case ``case_id``, preprocessed to ``image_size``."""

    def official_split(self) -> dict[str, list[str]] | None:
        """``{"train": [...], "test": [...]}`` where the dataset has an official split."""
        return None


class SliceDataset(Dataset):
    """The 2D slices of a list of cases, as ``(image (C,H,W), label (H,W))`` tensors."""

    def __init__(self, cases: list[Case]):
        self.cases = cases
        self.index = [(ci, s) for ci, case in enumerate(cases) for s in range(case.image.shape[0])]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        ci, s = self.index[i]
        case = self.cases[ci]
        return torch.from_numpy(case.image[s]), torch.from_numpy(np.asarray(case.label[s], dtype=np.int64))
