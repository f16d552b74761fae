"""Case-level splits: official, seeded hold-out, or k-fold cross-validation.

Splits are always by case (volume, or image for 2D sets), never by slice, so no case
leaks between train and test.  The split seed is the protocol's ``split_seed``,
separate from the training seeds, so every seed of a fold sees the same cases.

* **official** — a dataset's own partition into labelled training and test cases
  (``SegDataset.official_split()``), used when ``folds == 1``: ACDC training/testing,
  ISIC 2018, CVC-EndoSceneStill, IDRiD.  Challenges whose test labels were never
  published (LiTS: 131 labelled training volumes, 70 unlabelled test volumes; KiTS19:
  210/90; SegTHOR: 40/20; the MSD) have no usable official test set: their "official"
  data are the labelled training cases, split as below.
* **hold-out** — a seeded random ``test_fraction`` of the cases (at least one); a
  dataset's ``holdout`` attribute gives the papers' fraction (KiTS19: 42 of 210 = 0.2,
  as EMKD; LiTS: 0.2, one fold of EMKD's 5-fold protocol).
* **k-fold** — ``folds = k``: a seeded permutation of the cases dealt into k folds;
  fold ``i`` is the test set of split ``i`` (EMKD: 5-fold CV on LiTS's 131 cases).
"""

from __future__ import annotations

import numpy as np

from kdbench.errors import ConfigError, DatasetError

DEFAULT_TEST_FRACTION = 0.25


def kfold_cases(case_ids: list[str], folds: int, seed: int = 0) -> list[list[str]]:
    """The ``folds`` test sets of a seeded k-fold partition of ``case_ids`` (each sorted)."""
    ids = sorted(case_ids)
    if folds < 2:
        raise ConfigError(f"protocol: k-fold needs folds ≥ 2, got {folds}")
    if folds > len(ids):
        raise ConfigError(f"protocol: folds = {folds} but the dataset has only {len(ids)} cases")
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    return [sorted(order[f::folds]) for f in range(folds)]


def split_cases(case_ids: list[str], folds: int = 1, fold: int = 0, seed: int = 0,
                test_fraction: float = DEFAULT_TEST_FRACTION,
                official: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """``{"train": [...], "test": [...]}`` for one fold.

    ``folds == 1``: the official split if the dataset has one, else a seeded hold-out
    of ``test_fraction`` of the cases.  ``folds == k``: fold ``fold`` of a seeded k-fold
    partition of the cases.
    """
    ids = sorted(case_ids)
    if folds == 1 and official is not None:
        train, test = sorted(official.get("train", [])), sorted(official.get("test", []))
        for part, members in (("train", train), ("test", test)):
            if not members:
                raise ConfigError(f"protocol: the official split has an empty {part} set "
                                  f"({len(train)} train / {len(test)} test cases)")
        both = set(train) & set(test)
        if both:
            raise DatasetError(f"official split: case '{sorted(both)[0]}' is in both train and test")
        return {"train": train, "test": test}
    if not 0 <= fold < folds:
        raise ConfigError(f"protocol: fold {fold} outside 0..{folds - 1}")
    if not ids:
        raise ConfigError("protocol: the dataset has no cases to split")
    if folds == 1:
        if not 0 < test_fraction < 1:
            raise ConfigError(f"protocol: test_fraction = {test_fraction}; needs 0 < test_fraction < 1")
        order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
        n_test = max(1, int(round(test_fraction * len(ids))))
        test = order[:n_test]
    else:
        test = kfold_cases(ids, folds, seed)[fold]
    test_set = set(test)
    train = [c for c in ids if c not in test_set]
    if not train or not test:
        raise ConfigError(f"protocol: split of {len(ids)} cases leaves an empty train or test set")
    return {"train": train, "test": sorted(test)}


def dataset_split(dataset, folds: int = 1, fold: int = 0, seed: int = 0, test_fraction: float | None = None,
                  max_cases: int | None = None) -> dict[str, list[str]]:
    """The split of a dataset for one fold, with the dataset's own conventions.

    Uses the dataset's official split (``folds == 1``), its ``holdout`` fraction when
    ``test_fraction`` is not given, and — with ``max_cases`` (smoke budgets) — keeps at
    most that many cases, taken from the official train and test parts in proportion so
    that neither is emptied.
    """
    ids = sorted(dataset.case_ids())
    official = dataset.official_split() if folds == 1 else None
    if official is not None:
        known = set(ids)
        unknown = [c for part in official.values() for c in part if c not in known]
        if unknown:
            raise DatasetError(f"dataset {getattr(dataset, 'name', type(dataset).__name__)}: official split names "
                               f"case '{unknown[0]}', which is not among its {len(ids)} cases")
    if max_cases and len(ids) > max_cases:
        if official is not None:
            train, test = sorted(official["train"]), sorted(official["test"])
            n_test = min(len(test), max(1, int(round(max_cases * len(test) / len(ids)))))
            n_train = max(1, max_cases - n_test)
            official = {"train": train[:n_train], "test": test[:n_test]}
            ids = sorted(official["train"] + official["test"])
        else:
            ids = ids[:max_cases]
    if test_fraction is None:
        test_fraction = getattr(dataset, "holdout", None) or DEFAULT_TEST_FRACTION
    return split_cases(ids, folds, fold, seed, test_fraction, official)
