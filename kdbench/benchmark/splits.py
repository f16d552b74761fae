"""Case-level splits, as the benchmark uses them: see :mod:`kdbench.datasets.splits`.

The functions live with the datasets, which check their own splits without importing
the benchmark (issue 11, start-up).
"""

from kdbench.datasets.splits import DEFAULT_TEST_FRACTION, dataset_split, kfold_cases, split_cases

__all__ = ["DEFAULT_TEST_FRACTION", "dataset_split", "kfold_cases", "split_cases"]
