"""The built-in phantom: deterministic, labelled, with spacing; splits by case."""

from __future__ import annotations

import numpy as np
import pytest

from kdbench import create_dataset
from kdbench.benchmark.splits import split_cases
from kdbench.errors import DatasetError


def test_deterministic_and_varied():
    a = create_dataset("phantom", image_size=32, cases=4).load_case("phantom_001")
    b = create_dataset("phantom", image_size=32, cases=4).load_case("phantom_001")
    c = create_dataset("phantom", image_size=32, cases=4).load_case("phantom_002")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
    assert not np.array_equal(a.label, c.label) and a.spacing != c.spacing
    assert a.image.shape == (8, 1, 32, 32) and a.label.shape == (8, 32, 32)


def test_tumour_inside_organ_with_low_contrast():
    ds = create_dataset("phantom", image_size=64, cases=6)
    for cid in ds.case_ids():
        case = ds.load_case(cid)
        assert set(np.unique(case.label)) <= {0, 1, 2} and (case.label == 2).any()
        organ = case.image[:, 0][case.label == 1].mean()
        tumour = case.image[:, 0][case.label == 2].mean()
        noise = case.image[:, 0][case.label == 1].std()
        assert 0 < organ - tumour < 3 * noise  # visible only against the noise, not trivially


def test_targets_and_errors():
    ds = create_dataset("phantom", targets={"lesion": ["tumour"]})
    assert ds.targets == {"lesion": (2,)}
    with pytest.raises(DatasetError, match="unknown target 'liver'"):
        create_dataset("phantom", targets=["liver"])
    with pytest.raises(DatasetError, match="cases = 1"):
        create_dataset("phantom", cases=1)


def test_splits_are_by_case_and_cover_everything():
    ids = [f"c{i}" for i in range(10)]
    folds = [split_cases(ids, folds=5, fold=f, seed=0) for f in range(5)]
    tests = [set(s["test"]) for s in folds]
    assert set().union(*tests) == set(ids) and sum(len(t) for t in tests) == len(ids)
    for s in folds:
        assert not set(s["train"]) & set(s["test"])
    assert split_cases(ids, seed=0) == split_cases(ids, seed=0) != split_cases(ids, seed=1)
