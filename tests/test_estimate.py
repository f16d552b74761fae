"""The time estimate printed before a run."""

from __future__ import annotations

import pytest
import torch

from kdbench.benchmark.estimate import estimate_lines, estimate_plan, human, planned_steps
from kdbench.benchmark.grid import load_grid
from kdbench.benchmark.plan import build_plan

from conftest import run_cli, tiny_grid


def test_estimate_is_positive_and_scales_with_steps(write_grid):
    short = build_plan(load_grid(write_grid(tiny_grid())))
    long = build_plan(load_grid(write_grid(tiny_grid(train={"batch_size": 2, "image_size": 32,
                                                             "epochs": 100, "max_steps": None}), name="long.yaml")))
    cpu = torch.device("cpu")
    a, b = estimate_plan(short.jobs, short.jobs, cpu), estimate_plan(long.jobs, long.jobs, cpu)
    assert a.seconds > 0 and a.unknown == 0
    assert b.seconds > 5 * a.seconds  # 150× the training steps
    # 3 training cases of 2 slices, batch 2: 3 steps per epoch; max_steps caps them
    assert planned_steps(long.of_kind("student")[0].config) == 300
    assert planned_steps(short.of_kind("student")[0].config) == 2


def test_3d_jobs_are_estimated_by_patch_and_window():
    """A 3D grid: training by patches per case, sliding-window evaluation by its windows."""
    from pathlib import Path

    from kdbench.benchmark.estimate import _forward_passes

    plan = build_plan(load_grid(Path(__file__).parents[1] / "tables" / "quick3d.yaml", dataset="phantom"), "smoke")
    student = plan.of_kind("student")[0].config
    assert planned_steps(student) == student["train"]["max_steps"]
    evaluate = next(j.config for j in plan.of_kind("evaluate") if j.config["inference"]["mode"] == "sliding_window")
    windows = _forward_passes(evaluate)
    slices = _forward_passes({**evaluate, "inference": {"mode": "slices"}})
    assert 0 < windows < slices  # a 32³ window covers many slices
    estimate = estimate_plan(plan.jobs, plan.jobs, torch.device("cpu"))
    assert estimate.unknown == 0 and estimate.seconds > 0


def test_paper_on_a_cpu_warns_with_jobs_and_estimate():
    from kdbench.benchmark.estimate import Estimate

    lines = estimate_lines(Estimate(3 * 7 * 86400, "cpu"), "paper", "CPU x86_64 (2 threads)", 1, 102)
    assert lines[0] == "estimated time: ~3 weeks on CPU x86_64 (2 threads) (102 jobs)"
    assert "budget paper on a CPU: 102 jobs, estimated ~3 weeks" in lines[1] and "--budget quick" in lines[1]
    assert len(estimate_lines(Estimate(10, "cuda"), "paper", "GPU", 1, 3)) == 1
    assert estimate_lines(Estimate(0, "cpu"), "paper", "CPU", 1, 0) == []
    partial = estimate_lines(Estimate(7, "cpu", unknown=7), "quick", "CPU", 1, 10)
    assert partial == ["estimated time: unknown: 7 of 10 jobs cannot be estimated yet (data not prepared, or a "
                       "step failed); the other 3 take ~7 s on CPU"]
    assert estimate_lines(Estimate(0, "cpu", unknown=4), "quick", "CPU", 2, 4)[0].endswith(
        "(data not prepared, or a step failed) on CPU, 2 workers")
    assert [human(s) for s in (5, 600, 7200, 4 * 86400)] == ["~5 s", "~10 min", "~2.0 h", "~4 days"]


@pytest.mark.slow
def test_dry_run_shows_the_estimate_and_the_paper_warning(write_grid, tmp_path):
    result = run_cli("run", "--grid", str(write_grid(tiny_grid())), "--out", str(tmp_path / "runs"), "--dry-run",
                     "--device", "cpu")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stderr.split())
    assert "estimated time: ~" in text and "budget paper on a CPU: 10 jobs" in text
    assert not (tmp_path / "runs").exists()
