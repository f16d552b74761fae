"""Check a dataset on disk and report every problem at once.

:func:`check_dataset` looks at the layout (expected files, missing labels, stray
files), then decodes and preprocesses every case exactly as preparation would — shapes
and affines of image and label, complete (not truncated) files, label values within the
declared classes — then refuses a dataset whose every mask is empty, and finally checks
the split.  Unlike preparation, it does not stop at, or skip,
the first bad case: it returns one line per problem, naming the file.  It writes
nothing.
"""

from __future__ import annotations

from typing import Callable

from kdbench.datasets.base import SegDataset
from kdbench.datasets.prepare import PreparedDataset, no_foreground_problem
from kdbench.datasets.splits import dataset_split
from kdbench.errors import KdbenchError


def check_dataset(dataset: SegDataset, progress: Callable[[int, int, str], None] | None = None,
                  folds: int = 1) -> list[str]:
    """Every problem of ``dataset`` (one line each, naming the file); ``[]`` when all is well."""
    if not isinstance(dataset, PreparedDataset):
        return []
    found = dataset.discovery()
    problems = list(found.problems)
    good, foreground = [], []
    for i, source in enumerate(found.sources, 1):
        try:
            arrays = dataset.prepared_case(source)
        except KdbenchError as exc:
            problems.append(str(exc))
        else:
            good.append(source.case_id)
            label = arrays.eval_label if arrays.eval_label is not None else arrays.label
            foreground.append(bool(label.any()))
        if progress is not None:
            progress(i, len(found.sources), source.case_id)
    if not found.sources:
        problems.append(dataset.layout_error(found))
        return problems
    empty = no_foreground_problem(dataset.name, dataset.root_path, foreground)
    if empty:
        problems.append(empty)
    try:
        _split_of(dataset, good, folds)
    except KdbenchError as exc:
        problems.append(f"dataset {dataset.name}: {exc}")
    return problems


class _Listed:
    """A dataset seen through a fixed list of case ids (checks the split without preparing)."""

    def __init__(self, dataset: PreparedDataset, ids: list[str]):
        self.dataset, self.ids = dataset, ids
        self.name = dataset.name
        self.holdout = dataset.holdout

    def case_ids(self) -> list[str]:
        return list(self.ids)

    def official_split(self):
        official = self.dataset.official_split()
        if official is None:
            return None
        keep = set(self.ids)
        return {part: [c for c in members if c in keep] for part, members in official.items()}


def _split_of(dataset: PreparedDataset, ids: list[str], folds: int) -> None:
    listed = _Listed(dataset, ids)
    for fold in range(folds):
        dataset_split(listed, folds=folds, fold=fold)
