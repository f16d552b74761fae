"""Significance, gap closed, the range aggregate and reproducible rendering of leaderboards.

The Wilcoxon p-values are checked against ``scipy.stats.wilcoxon`` on hand-made per-case
values; Holm against a hand computation; gap closed and the marks on hand-built run
directories (``runbuild.make_run``).
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from kdbench.benchmark.grid import load_grid
from kdbench.errors import ConfigError
from kdbench.leaderboards.render import leaderboard_blocks, render_markdown, write_leaderboard
from kdbench.leaderboards.stats import MIN_NONZERO, holm, significance_mark, wilcoxon_vs_baseline

from conftest import tiny_grid
from runbuild import header_line, make_run, table

A = np.array([0.71, 0.64, 0.80, 0.55, 0.69, 0.77, 0.62, 0.74])
D = np.array([0.05, -0.012, 0.09, 0.04, 0.08, 0.07, 0.021, 0.14])  # all non-zero, no ties in |d|, up but one
B = A - D


def cases(values, fold: int = 0, seed: int = 0, ids=None) -> pd.DataFrame:
    """Per-case results of one run: ``fold, seed, case_id, value``."""
    ids = ids if ids is not None else [f"c{i}" for i in range(len(values))]
    return pd.DataFrame({"fold": fold, "seed": seed, "case_id": ids, "value": list(values)})


def test_wilcoxon_is_scipys_paired_test_by_case_id():
    ours = cases(A)
    baseline = cases(B).iloc[::-1]  # another order: pairs are found by case, not by position
    test = wilcoxon_vs_baseline(ours, baseline)
    assert test["p"] == pytest.approx(wilcoxon(A, B).pvalue, rel=1e-12)
    assert test["p"] == pytest.approx(wilcoxon(A - B).pvalue, rel=1e-12)
    assert test["pairs"] == test["nonzero"] == 8 and test["note"] is None
    assert test["median_diff"] == pytest.approx(np.median(A - B)) and test["median_diff"] > 0
    swapped = wilcoxon_vs_baseline(baseline, ours)
    assert swapped["p"] == pytest.approx(test["p"]) and swapped["median_diff"] < 0


def test_wilcoxon_pairs_each_case_within_its_run_and_drops_unpaired_or_missing():
    ours = pd.concat([cases(A, seed=0), cases(A[::-1], seed=1)])
    baseline = pd.concat([cases(B, seed=0), cases(B + 0.3, seed=1)])  # the same case ids in both runs
    diff = np.concatenate([A - B, A[::-1] - B - 0.3])
    test = wilcoxon_vs_baseline(ours, baseline)
    assert test["pairs"] == 16  # each case with itself in its own run, not with every run's
    assert test["p"] == pytest.approx(wilcoxon(diff).pvalue, rel=1e-12)
    assert test["median_diff"] == pytest.approx(np.median(diff))
    # a case only one side has, and a NaN value, leave the test
    extra = pd.concat([cases(A), cases([0.9], ids=["only-here"])])
    holed = cases(np.where(np.arange(8) == 3, np.nan, B))
    test = wilcoxon_vs_baseline(extra, holed)
    keep = np.arange(8) != 3
    assert test["pairs"] == 7 and test["p"] == pytest.approx(wilcoxon(A[keep] - B[keep]).pvalue, rel=1e-12)


def test_all_ties_give_p_one_as_scipy_does_without_its_warning():
    with pytest.warns(RuntimeWarning):  # scipy divides 0 by 0 on its way to p = 1
        assert wilcoxon(A - A).pvalue == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        test = wilcoxon_vs_baseline(cases(A), cases(A))
    assert test == {"p": 1.0, "pairs": 8, "nonzero": 0, "median_diff": 0.0, "note": "identical"}
    assert significance_mark(holm([test["p"]])[0], test["median_diff"]) == ""


def test_too_few_cases_give_no_p_value():
    assert MIN_NONZERO == 6
    # five cases that all differ in one direction: scipy's exact p cannot go below 0.0625
    five = wilcoxon_vs_baseline(cases(A[:5]), cases(A[:5] - 0.1 * np.arange(1, 6)))
    assert wilcoxon(0.1 * np.arange(1, 6)).pvalue == pytest.approx(0.0625)
    assert math.isnan(five["p"]) and five["note"] == "too few cases" and five["nonzero"] == 5
    one = wilcoxon_vs_baseline(cases(A[:1]), cases(B[:1]))
    assert math.isnan(one["p"]) and one["note"] == "too few cases" and one["pairs"] == 1
    identical_one = wilcoxon_vs_baseline(cases(A[:1]), cases(A[:1]))  # one pair: too few, not "identical"
    assert math.isnan(identical_one["p"]) and identical_one["note"] == "too few cases"
    none = wilcoxon_vs_baseline(cases(A), cases(B, seed=1))  # no run in common
    assert none["pairs"] == 0 and math.isnan(none["p"]) and math.isnan(none["median_diff"])
    # nine cases, three unchanged: six non-zero differences is enough, and scipy drops the zeros too
    changed = np.where(np.arange(9) < 3, 0.0, 0.01 * np.arange(9))
    nine = wilcoxon_vs_baseline(cases(0.5 + changed), cases(np.full(9, 0.5)))
    assert nine["nonzero"] == 6 and nine["p"] == pytest.approx(wilcoxon(changed).pvalue, rel=1e-12)
    # five non-zero among many zeros: too few
    sparse = np.where(np.arange(12) < 7, 0.0, 0.01 * np.arange(12))
    assert math.isnan(wilcoxon_vs_baseline(cases(0.5 + sparse), cases(np.full(12, 0.5)))["p"])


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    # sorted 0.01 ×4, 0.02 ×3, 0.03 ×2 → monotone, then 0.5 ×1 stays 0.5
    assert holm([0.5, 0.03, 0.01, 0.02]) == pytest.approx([0.5, 0.06, 0.04, 0.06])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1, never below an earlier one
    adjusted = holm([0.02, math.nan, 0.01])  # NaN: not tested, not counted in m
    assert adjusted[[0, 2]] == pytest.approx([0.02, 0.02]) and math.isnan(adjusted[1])
    assert holm([]).size == 0 and np.isnan(holm([math.nan])).all()


def test_significance_mark():
    assert significance_mark(0.004, 0.1) == "**↑"
    assert significance_mark(0.03, -0.1) == "*↓"
    assert significance_mark(0.01, 0.1) == "*↑"  # 0.01 is not below 0.01
    assert significance_mark(0.05, 0.1) == "" and significance_mark(math.nan, 0.1) == ""


def _value(level: dict, deltas: dict | None = None):
    """Per-case Dice: a row level plus a hand-made per-case difference."""
    deltas = deltas or {}

    def value(row: str, fold: int, seed: int, case: int) -> float:
        return level[row] + 0.01 * seed + (deltas[row][case] if row in deltas else 0.0) + 0.001 * case

    return value


EIGHT = [f"c{i}" for i in range(8)]


def test_leaderboard_marks_rows_with_holm_adjusted_wilcoxon_and_gap_closed(tmp_path):
    kd = D  # clearly up in every case but one
    at = np.array([0.01, -0.02, 0.015, -0.005, 0.03, -0.012, 0.004, -0.02])  # no consistent direction
    value = _value({"teacher": 0.9, "none": 0.6, "kd": 0.6, "at": 0.6}, {"kd": kd, "at": at})
    run = make_run(tmp_path / "run", methods=("none", "kd", "at"), cases=EIGHT, value=value)
    (block,) = leaderboard_blocks(run)
    rows = {r["row"]: r for r in block["rows"]}
    p = {name: wilcoxon(d).pvalue for name, d in (("kd", kd), ("at", at))}
    by_hand = {"kd": min(1, 2 * min(p.values())), "at": max(min(1, 2 * min(p.values())), max(p.values()))}
    assert p["kd"] < p["at"]
    for name in ("kd", "at"):
        cell = rows[name]["cells"]["organ/dice"]
        assert cell["p"] == pytest.approx(p[name], rel=1e-9) and cell["pairs"] == 8
        assert cell["p_holm"] == pytest.approx(by_hand[name], rel=1e-9)
    assert by_hand["kd"] < 0.05 <= by_hand["at"]
    none = rows["none"]["cells"]["organ/dice"]
    assert math.isnan(none["p"]) and none["gap_closed"] == pytest.approx(0.0)
    assert math.isnan(rows["teacher: teacher"]["cells"]["organ/dice"]["gap_closed"])
    gap = (rows["kd"]["cells"]["organ/dice"]["mean"] - none["mean"]) / (0.9 - 0.6)
    assert rows["kd"]["cells"]["organ/dice"]["gap_closed"] == pytest.approx(gap)
    assert gap == pytest.approx(np.mean(kd) / 0.3)
    # HD95 = 10 × (1 − Dice): the same test, the other direction, the same share of the gap
    hd95 = rows["kd"]["cells"]["organ/hd95"]
    assert hd95["p"] == pytest.approx(wilcoxon(-10 * kd).pvalue, rel=1e-6) and hd95["median_diff"] < 0
    assert hd95["gap_closed"] == pytest.approx(gap)

    text = render_markdown(run)
    header, *cells = table(text)
    kd_row = next(r for r in cells if r[0] == "kd")
    mark = significance_mark(by_hand["kd"], 1.0).replace("*", "\\*")
    assert kd_row[header.index("organ Dice (± case std)")].endswith(f"** {mark}")
    assert "\\*" not in kd_row[header.index("organ HD95 (mm, ± case std)")]  # marks on the primary metric only
    assert kd_row[header.index("organ gap closed")] == f"{gap:.0%}"
    assert kd_row[header.index("organ ΔDice")] == f"{np.mean(kd):+.3f}"
    at_row = next(r for r in cells if r[0] == "at")
    assert "\\*" not in at_row[header.index("organ Dice (± case std)")]
    assert next(r for r in cells if r[0] == "none")[header.index("organ gap closed")] == "0%"
    line = header_line(text, "Significance")
    assert "Holm" in line and "Wilcoxon signed-rank" in line and "Noothout" in line and "no row is tested" not in line


def test_untested_rows_are_said_so_in_the_header(tmp_path):
    text = render_markdown(make_run(tmp_path / "run"))  # three cases: too few to test
    assert "no row is tested here: none has 6 cases that differ" in header_line(text, "Significance")
    assert "\\*" not in "\n".join("|".join(r) for r in table(text))


def test_gap_closed_uses_each_rows_own_teacher_and_is_empty_without_a_gap(tmp_path):
    value = _value({"big": 0.9, "small": 0.8, "none": 0.6, "kd ← big": 0.75, "kd ← small": 0.75})
    run = make_run(tmp_path / "two", teachers=("big", "small"), value=value)
    (block,) = leaderboard_blocks(run)
    rows = {r["row"]: r["cells"]["organ/dice"] for r in block["rows"]}
    assert rows["kd ← big"]["gap_closed"] == pytest.approx(0.15 / 0.3)
    assert rows["kd ← small"]["gap_closed"] == pytest.approx(0.15 / 0.2)
    assert math.isnan(rows["none"]["gap_closed"])  # two teachers and none is no one's student
    header, *cells = table(render_markdown(run))
    assert [r[header.index("organ gap closed")] for r in cells if r[0].startswith("kd")] == ["50%", "75%"]

    barely = table(render_markdown(make_run(tmp_path / "barely", value=_value({"teacher": 0.9, "none": 0.6,
                                                                                "kd": 0.5997}))))
    assert next(r for r in barely[1:] if r[0] == "kd")[barely[0].index("organ gap closed")] == "0%"  # not "-0%"

    flat = make_run(tmp_path / "flat", value=_value({"teacher": 0.6004, "none": 0.6, "kd": 0.7}))
    (block,) = leaderboard_blocks(flat)
    assert all(math.isnan(r["cells"]["organ/dice"]["gap_closed"]) for r in block["rows"])
    header, *cells = table(render_markdown(flat))
    assert {r[header.index("organ gap closed")] for r in cells} == {""}


def test_range_aggregate_shows_min_to_max_over_runs(tmp_path):
    run = make_run(tmp_path / "run", seeds=(0, 1, 2), aggregate="range")
    text = render_markdown(run)
    header, *cells = table(text)
    column = header.index("organ Dice (min–max over runs)")
    means = [np.mean([0.7 + 0.02 * s + 0.1 * (i - 1) for i in range(3)]) for s in (0, 1, 2)]
    kd = next(r for r in cells if r[0] == "kd")
    assert kd[column].startswith(f"**{min(means):.3f}–{max(means):.3f}**")
    assert "min–max over the 3 (fold, seed) runs" in header_line(text, "Range") and "last epochs" in text
    assert "- **±:**" not in text
    (block,) = leaderboard_blocks(run)
    cell = next(r for r in block["rows"] if r["row"] == "kd")["cells"]["organ/dice"]
    assert (cell["min"], cell["max"]) == (pytest.approx(min(means)), pytest.approx(max(means)))
    one = table(render_markdown(make_run(tmp_path / "one", aggregate="range")))
    assert next(r for r in one[1:] if r[0] == "kd")[one[0].index("organ Dice (min–max over runs)")] == "**0.700**"


def test_grid_aggregate_field(write_grid):
    board = {"metrics": ["dice"], "cost": ["params"]}
    assert load_grid(write_grid(tiny_grid(leaderboard=board))).leaderboard.aggregate == "mean"
    ranged = load_grid(write_grid(tiny_grid(leaderboard={**board, "aggregate": "range"})))
    assert ranged.leaderboard.aggregate == "range"
    with pytest.raises(ConfigError, match="aggregate"):
        load_grid(write_grid(tiny_grid(leaderboard={**board, "aggregate": "last_epochs"})))


def test_rendering_twice_is_byte_identical_and_json_carries_the_tests(tmp_path):
    value = _value({"teacher": 0.9, "none": 0.6, "kd": 0.6}, {"kd": D})
    run = make_run(tmp_path / "run", seeds=(0, 1), cases=EIGHT, value=value)
    write_leaderboard(run)
    first = {name: (run / name).read_bytes() for name in ("leaderboard.md", "leaderboard.json", "results.csv")}
    write_leaderboard(run)
    assert {name: (run / name).read_bytes() for name in first} == first
    assert render_markdown(run).encode() == first["leaderboard.md"]
    assert "|:--" in first["leaderboard.md"].decode()  # written by tabulate's pipe format
    (block,) = json.loads(first["leaderboard.json"])
    kd = next(r for r in block["rows"] if r["row"] == "kd")["cells"]["organ/dice"]
    assert kd["p"] == kd["p_holm"] == pytest.approx(wilcoxon(np.concatenate([D, D])).pvalue, rel=1e-9)
    assert kd["pairs"] == 16 and kd["gap_closed"] == pytest.approx(np.mean(D) / 0.3)
