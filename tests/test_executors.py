"""run_job on a planned run directory, and the local executor's workers."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from kdbench.benchmark.executors import run_job, worker_devices
from kdbench.benchmark.grid import load_grid
from kdbench.benchmark.runner import run_grid, run_dir_of, save_plan
from kdbench.benchmark.plan import build_plan
from kdbench.benchmark.store import RunStore
from kdbench.errors import ConfigError, RunFailure

from conftest import tiny_grid


@pytest.fixture
def planned(write_grid, tmp_path):
    """A planned, unrun run directory of a one-student grid."""
    grid = load_grid(write_grid(tiny_grid(methods=["none"], teachers=[])))
    plan = build_plan(grid)
    run_dir = run_dir_of(grid, tmp_path / "runs", plan.budget)
    run_dir.mkdir(parents=True)
    save_plan(plan, run_dir, "cpu", {"compile": False})
    return plan, run_dir


def test_run_job_runs_a_planned_job_once(planned):
    plan, run_dir = planned
    profile = plan.of_kind("profile")[0]
    assert run_job(run_dir, profile.id, device="cpu", threads=1) == "done"
    record = json.loads((run_dir / profile.id / "job.json").read_text())
    assert record["id"] == profile.id and record["threads"] == 1
    assert run_job(run_dir, profile.id, device="cpu") == "already done"


def test_run_job_waits_for_dependencies_and_claims(planned):
    plan, run_dir = planned
    evaluate = plan.of_kind("evaluate")[0]
    with pytest.raises(RunFailure, match="is not finished"):
        run_job(run_dir, evaluate.id, device="cpu")
    student = plan.of_kind("student")[0]
    code = (f"from kdbench.benchmark import claims; import time; claims.acquire({str(run_dir)!r}, {student.id!r}); "
            "print('held', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run_job(run_dir, student.id, device="cpu") == "running elsewhere"
    finally:
        holder.kill()
        holder.wait()
    assert not (run_dir / student.id).exists()


def test_run_job_names_a_missing_plan_or_job(planned, tmp_path):
    _, run_dir = planned
    with pytest.raises(ConfigError, match="no plan.json"):
        run_job(tmp_path / "nowhere", "x")
    with pytest.raises(ConfigError, match="no job 'nope'"):
        run_job(run_dir, "nope")


def test_worker_devices_on_a_cpu():
    assert worker_devices("cpu", None) == [("cpu", None)]
    assert worker_devices("cpu", 3) == [("cpu", None)] * 3
    with pytest.raises(ConfigError, match="--workers 0"):
        worker_devices("cpu", 0)


def test_run_options_are_read_back_from_the_plan(planned):
    plan, run_dir = planned
    assert RunStore(run_dir).options == {"compile": False}
    save_plan(plan, run_dir, "cpu", {"compile": True})
    assert RunStore(run_dir).options == {"compile": True}
    assert RunStore(run_dir / "elsewhere").options == {}


@pytest.mark.slow
def test_two_workers_overlap_and_equal_one_worker(write_grid, tmp_path):
    grid = load_grid(write_grid(tiny_grid(train={"epochs": 1, "batch_size": 2, "image_size": 32, "max_steps": 6})))
    one = run_grid(grid, tmp_path / "one", device="cpu", threads=1)
    two = run_grid(grid, tmp_path / "two", device="cpu", threads=1, workers=2)
    assert one.ok and two.ok and sorted(one.done) == sorted(two.done)
    pd.testing.assert_frame_equal(pd.read_csv(one.run_dir / "results.csv"), pd.read_csv(two.run_dir / "results.csv"))
    spans = sorted((r["started"], r["started"] + r["seconds"]) for r in
                   (json.loads(p.read_text()) for p in two.run_dir.glob("*/job.json")))
    assert any(b0 < a1 for (_, a1), (b0, _) in zip(spans, spans[1:])), spans  # two jobs ran at once


@pytest.mark.slow
def test_two_runs_on_one_run_directory_run_every_job_once(write_grid, tmp_path):
    path = write_grid(tiny_grid(train={"epochs": 1, "batch_size": 2, "image_size": 32, "max_steps": 6}))
    out = tmp_path / "runs"
    exe = [sys.executable, "-m", "kdbench"]
    runs = [subprocess.Popen([*exe, "run", "--grid", str(path), "--out", str(out), "--threads", "1"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=900), p.stdout.read(), p.stderr.read()) for p in runs]
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    run_dir = out / "tiny" / "paper"
    plan = json.loads((run_dir / "plan.json").read_text())
    assert all((run_dir / job["id"] / "job.json").is_file() for job in plan["jobs"])
    lines = [line for _, _, err in results for line in err.splitlines() if ": done in" in line]
    assert len(lines) == len(plan["jobs"])  # each job ran in exactly one of the two processes
    assert not (run_dir / "failed").exists()
