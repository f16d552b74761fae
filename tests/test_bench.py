"""``kdbench bench`` (issue 11, item 5): every figure is there, and the minimal loop it compares
kdbench's step with does the same math (so the ratio is honest).  No timing is asserted."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from conftest import ROOT

from kdbench.benchmark.bench import METHODS, contest, figures_markdown, quickstart_setting, run_bench, time_command


@pytest.mark.slow  # starts `import kdbench` and the console script in fresh processes
def test_quick_bench_reports_every_figure():
    result = run_bench(quick=True, threads=1)
    json.dumps(result)  # JSON-serialisable as it is
    assert result["device"] == "cpu" and result["threads"] == 1
    assert result["torch"] == torch.__version__ and result["cpu"] and result["date"]
    assert set(result["steps"]) == set(METHODS)
    for figures in result["steps"].values():
        for key in ("kdbench_ms", "minimal_ms", "student_only_ms", "ratio", "ratio_student_only"):
            assert math.isfinite(figures[key]) and figures[key] > 0, key
        assert figures["ratio"] == pytest.approx(figures["kdbench_ms"] / figures["minimal_ms"])
    for pair in ("quickstart", "paper"):
        figure = result["lockstep"][pair]
        assert [m for m in figure if m.isdigit()] == ["1", "3"]
        for m in ("1", "3"):
            assert figure[m]["separate_s"] > 0 and figure[m]["ratio"] == pytest.approx(
                figure[m]["lockstep_s"] / figure[m]["separate_s"])
    assert result["lockstep"]["paper"]["setting"]["teacher"] == "raunet width 1"
    assert result["plan_jobs"] > 0
    for key in ("plan_1000_jobs_s", "import_s", "help_s"):
        assert math.isfinite(result[key]) and result[key] > 0, key


def test_full_bench_grid_plans_about_1000_jobs():
    from kdbench.benchmark.bench import time_plan

    seconds, jobs = time_plan(1000)
    assert 900 <= jobs <= 1100 and seconds > 0


@pytest.mark.parametrize("method", METHODS)
def test_minimal_loop_computes_kdbench_losses(method):
    """Step 0 (same weights, same batch): the hand-written loss terms equal kdbench's, and after
    one step each the students still agree (the same update)."""
    c = contest(method, quickstart_setting(quick=True), torch.device("cpu"))
    for step in range(2):
        ours, theirs = c.kdbench(c.image, c.label, step, 2), c.minimal(c.image, c.label)
        assert set(ours) == {*theirs, "loss"} and len(theirs) > 1
        theirs["loss"] = sum(theirs.values())
        for name in ours:
            assert float(ours[name]) == pytest.approx(float(theirs[name]), rel=1e-4, abs=1e-6), (step, name)


def test_student_only_step_has_no_distillation_term():
    c = contest("kd", quickstart_setting(quick=True), torch.device("cpu"))
    assert set(c.student_only(c.image, c.label, 0, 1)) == {"seg", "loss"}


def test_time_command_times_a_fresh_process():
    assert 0 < time_command([sys.executable, "-c", "pass"], repeat=1) < 60


def test_docs_table_is_rendered_from_the_recorded_json(tmp_path):
    from kdbench.site import BENCH_MARKER, on_page_markdown

    steps = {m: {"kdbench_ms": 12.5, "minimal_ms": 11.0, "student_only_ms": 8.25, "ratio": 12.5 / 11.0,
                 "ratio_student_only": 12.5 / 8.25} for m in METHODS}
    record = {"device": "cpu", "device_name": "CPU test (3 threads)", "threads": 3, "torch": "9.9", "cpu": "Test CPU",
              "date": "2030-01-02T03:04:05+00:00", "steps": steps, "plan_1000_jobs_s": 0.25, "plan_jobs": 998,
              "import_s": 1.5, "help_s": 0.75}
    (tmp_path / "cpu.json").write_text(json.dumps(record))
    table = figures_markdown(tmp_path)
    assert "CPU test (3 threads) (Test CPU)" in table and "2030-01-02" in table
    assert table.count("12.5 / 11.0 ms (**1.14×**; 1.52× student-only)") == len(METHODS)
    assert "0.25 s (998 jobs)" in table and "1.50 s" in table and "0.75 s" in table
    assert "No figures" in figures_markdown(tmp_path / "none")
    page = (ROOT / "docs" / "bench.md").read_text()
    assert BENCH_MARKER in page
    assert BENCH_MARKER not in on_page_markdown(page, None, {}, None)
