"""Case-level splits: official, seeded hold-out, or k-fold cross-validation.

Splits are always by case (volume), never by slice, so no case leaks between train
and test.  The split seed is the protocol's ``split_seed``, separate from the training
seeds, so every seed of a fold sees the same cases.
"""

from __future__ import annotations

import numpy as np

from kdbench.errors import ConfigError


def split_cases(case_ids: list[str], folds: int = 1, fold: int = 0, seed: int = 0,
                test_fraction: float = 0.25, official: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """``{"train": [...], "test": [...]}`` for one fold.

    ``folds == 1``: the official split if the dataset has one, else a seeded hold-out
    of ``test_fraction`` of the cases.  ``folds == k``: fold ``fold`` of a seeded k-fold
    partition of the cases.
    """
    ids = sorted(case_ids)
    if folds == 1 and official is not None:
        return {"train": list(official["train"]), "test": list(official["test"])}
    if not 0 <= fold < folds:
        raise ConfigError(f"protocol: fold {fold} outside 0..{folds - 1}")
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    if folds == 1:
        n_test = max(1, int(round(test_fraction * len(ids))))
        test = order[:n_test]
    else:
        if folds > len(ids):
            raise ConfigError(f"protocol: folds = {folds} but the dataset has only {len(ids)} cases")
        test = order[fold::folds]
    test_set = set(test)
    train = [c for c in ids if c not in test_set]
    if not train or not test:
        raise ConfigError(f"protocol: split of {len(ids)} cases leaves an empty train or test set")
    return {"train": train, "test": sorted(test)}
