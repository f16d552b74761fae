"""Per-case metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdbench.benchmark.evaluate import case_metrics, evaluate_model, mask_metrics
from kdbench.datasets.base import Case


def test_perfect_prediction():
    ref = np.zeros((3, 16, 16), bool)
    ref[1, 4:10, 4:10] = True
    m = mask_metrics(ref, ref, (2.0, 1.0, 1.0))
    assert m["dice"] == 1.0 and m["iou"] == 1.0 and m["voe"] == 0.0 and m["rvd"] == 0.0
    assert m["hd95"] == 0.0 and m["assd"] == 0.0


def test_overlap_metrics_by_hand():
    ref = np.zeros((1, 10, 10), bool)
    pred = np.zeros((1, 10, 10), bool)
    ref[0, 0:4, 0:4] = True   # 16 voxels
    pred[0, 2:4, 0:4] = True  # 8 voxels, all inside
    m = mask_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert m["dice"] == pytest.approx(2 * 8 / 24)
    assert m["iou"] == pytest.approx(8 / 16)
    assert m["voe"] == pytest.approx(0.5)
    assert m["rvd"] == pytest.approx((8 - 16) / 16)


def test_surface_distances_use_spacing():
    ref = np.zeros((1, 20, 20), bool)
    ref[0, 5:10, 5:10] = True
    pred = np.roll(ref, 2, axis=2)  # shifted by 2 voxels along x
    unit = mask_metrics(pred, ref, (1.0, 1.0, 1.0))
    scaled = mask_metrics(pred, ref, (1.0, 1.0, 3.0))
    assert unit["hd95"] == pytest.approx(2.0)
    assert scaled["hd95"] == pytest.approx(6.0)
    assert 0 < unit["assd"] < unit["hd95"]


def test_empty_conventions():
    empty = np.zeros((2, 8, 8), bool)
    some = empty.copy()
    some[0, 2:4, 2:4] = True
    both_empty = mask_metrics(empty, empty, (1, 1, 1))
    assert all(math.isnan(v) for v in both_empty.values())
    false_positive = mask_metrics(some, empty, (1, 1, 1))
    assert false_positive["dice"] == 0.0 and math.isnan(false_positive["hd95"])
    missed = mask_metrics(empty, some, (1, 1, 1))
    assert missed["dice"] == 0.0 and missed["rvd"] == -1.0 and math.isnan(missed["assd"])


def test_targets_are_label_sets():
    ref = np.zeros((1, 8, 8), int)
    ref[0, 1:7, 1:7] = 1
    ref[0, 3:5, 3:5] = 2
    pred = ref.copy()
    pred[pred == 2] = 1  # tumour called organ: organ is still perfect, tumour is missed
    rows = {(r["target"], r["metric"]): r["value"] for r in case_metrics(pred, ref, (1, 1, 1),
                                                                          {"organ": (1, 2), "tumour": (2,)})}
    assert rows[("organ", "dice")] == 1.0 and rows[("tumour", "dice")] == 0.0


class _Oracle(torch.nn.Module):
    """Predicts the label stored in the image's channel (a perfect model)."""

    def forward(self, x):
        return torch.nn.functional.one_hot(x[:, 0].long(), 3).permute(0, 3, 1, 2).float()


def test_evaluate_model_reassembles_cases_and_original_resolution():
    label = np.zeros((3, 16, 16), np.int64)
    label[:, 4:12, 4:12] = 1
    label[1, 6:9, 6:9] = 2
    case = Case("c0", label[:, None].astype(np.float32), label, (2.0, 1.0, 1.0))
    frame = evaluate_model(_Oracle(), [case], {"organ": (1, 2), "tumour": (2,)}, torch.device("cpu"))
    assert set(frame["case_id"]) == {"c0"} and len(frame) == 2 * 6
    assert (frame[frame.metric == "dice"]["value"] == 1.0).all()
    big = np.kron(label, np.ones((1, 2, 2), np.int64))  # the same case at twice the in-plane resolution
    case.eval_label, case.eval_spacing = big, (2.0, 0.5, 0.5)
    frame = evaluate_model(_Oracle(), [case], {"tumour": (2,)}, torch.device("cpu"))
    assert frame.set_index("metric").loc["dice", "value"] == 1.0
