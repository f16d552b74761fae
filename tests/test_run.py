"""End to end: run a grid, rerun without training, survive kill -9, render leaderboards."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdbench.benchmark.grid import load_grid
from kdbench.benchmark.runner import run_grid
from kdbench.leaderboards.render import leaderboard_blocks

from conftest import run_cli, tiny_grid


def _digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """The tiny grid run once through the command line."""
    root = tmp_path_factory.mktemp("e2e")
    grid = root / "tiny.yaml"
    import yaml

    grid.write_text(yaml.safe_dump(tiny_grid()))
    result = run_cli("run", "--grid", str(grid), "--out", str(root / "runs"))
    return grid, root / "runs" / "tiny" / "paper", result


def test_run_prints_leaderboard_with_rows_and_costs(finished_run):
    _, run_dir, result = finished_run
    assert result.returncode == 0, result.stderr
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    rows = [line.split("|")[1].strip() for line in table[1:]]
    assert rows == ["teacher: teacher", "none", "kd", "at"]
    header = table[0]
    for column in ("organ Dice", "tumour Dice", "tumour ΔDice", "Params (M)", "FLOPs (G)", "Latency (ms)"):
        assert column in header
    assert "Budget:** paper" in result.stdout and "Input size:** 1×1×32×32" in result.stdout
    assert "Trained on:** CPU" in result.stdout and "Seeds:** 0" in result.stdout
    assert f"leaderboard: {run_dir / 'leaderboard.md'}" in result.stderr
    for block in leaderboard_blocks(run_dir):
        for row in block["rows"]:
            for cell in row["cells"].values():
                if cell["n"]:
                    assert np.isfinite(cell["mean"])
            assert row["cost"]["params"] > 0 and row["cost"]["latency"] > 0


def test_results_table_is_tidy(finished_run):
    _, run_dir, _ = finished_run
    frame = pd.read_csv(run_dir / "results.csv")
    assert list(frame.columns)[-4:] == ["case_id", "target", "metric", "value"]
    # 4 trained models × 1 test case × 2 targets × 6 metrics
    assert len(frame) == 4 * 1 * 2 * 6
    assert set(frame["method_label"].dropna()) == {"none", "kd", "at"}
    assert (run_dir / "results.parquet").is_file()
    dice = frame[(frame.metric == "dice") & (frame.target == "organ")]["value"]
    assert dice.notna().all() and dice.between(0, 1).all()


def test_student_log_has_named_terms_and_checkpoint_is_weights_only(finished_run):
    _, run_dir, _ = finished_run
    import torch

    plan = json.loads((run_dir / "plan.json").read_text())
    kd_job = next(j for j in plan["jobs"] if j["kind"] == "student" and j["meta"]["method"] == "kd")
    records = [json.loads(line) for line in (run_dir / kd_job["id"] / "log.jsonl").read_text().splitlines()]
    assert records[0]["event"] == "start" and records[1]["event"] == "step"
    assert {"seg", "kd", "loss", "lr"} <= set(records[1])
    state = torch.load(run_dir / kd_job["id"] / "checkpoint.pt", weights_only=True)
    assert all(not key.startswith(("adapter", "method")) for key in state)


@pytest.mark.slow
def test_second_run_trains_nothing_and_prints_the_same_table(finished_run):
    grid, run_dir, first = finished_run
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if (p / "job.json").is_file()}
    again = run_cli("run", "--grid", str(grid), "--out", str(run_dir.parent.parent))
    assert again.returncode == 0, again.stderr
    assert "0 to run" in again.stderr
    assert again.stdout == first.stdout
    assert before == {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if (p / "job.json").is_file()}


@pytest.mark.slow
def test_leaderboard_command_rerenders(finished_run):
    _, run_dir, first = finished_run
    result = run_cli("leaderboard", str(run_dir))
    assert result.returncode == 0 and result.stdout == first.stdout
    missing = run_cli("leaderboard", str(run_dir / "nope"))
    assert missing.returncode == 2 and "not a run directory" in missing.stderr


def test_same_grid_same_device_same_numbers(write_grid, tmp_path):
    grid = load_grid(write_grid(tiny_grid(methods=["none"], teachers=[])))
    a = run_grid(grid, tmp_path / "a")
    b = run_grid(grid, tmp_path / "b")
    fa = pd.read_csv(a.run_dir / "results.csv")
    fb = pd.read_csv(b.run_dir / "results.csv")
    pd.testing.assert_frame_equal(fa, fb)


def test_failed_job_is_reported_and_others_finish(write_grid, tmp_path):
    # a weight beyond float32 makes the loss infinite: that job fails, the rest of the grid still runs
    grid = load_grid(write_grid(tiny_grid(methods=["none", {"name": "kd", "weight": 1e39, "label": "boom"}],
                                          train={"epochs": 1, "batch_size": 2, "image_size": 32, "max_steps": 2})))
    result = run_grid(grid, tmp_path)
    failed = [result.plan.job(j) for j in result.failed]
    assert [j.meta["method_label"] for j in failed] == ["boom"]
    assert "non-finite loss" in next(iter(result.failed.values()))
    assert (tmp_path / "tiny" / "paper" / "failed").is_dir()
    assert any(result.plan.job(j).meta.get("method") == "none" for j in result.done)


@pytest.mark.slow
def test_kill_9_loses_at_most_the_job_in_flight(write_grid, tmp_path):
    path = write_grid(tiny_grid(methods=["none", "kd", "at"],
                                train={"epochs": 1, "batch_size": 2, "image_size": 32, "max_steps": 12}))
    out = tmp_path / "runs"
    run_dir = out / "tiny" / "paper"
    exe = Path(sys.executable).parent / "kdbench"
    process = subprocess.Popen([str(exe), "run", "--grid", str(path), "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:  # wait for a finished training job and another one in flight
            finished = [p for p in run_dir.glob("*-*/job.json") if p.parent.name.startswith(("teacher", "student"))]
            staging = list((run_dir / ".staging").glob("*")) if (run_dir / ".staging").is_dir() else []
            if finished and any(s.name.startswith(("teacher", "student")) for s in staging):
                break
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert finished, "no job finished before the deadline"
    done_before = {p.name: _digest(p) for p in run_dir.iterdir() if p.is_dir() and p.name[0] != "." and
                   (p / "job.json").is_file()}
    rerun = run_cli("run", "--grid", str(path), "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr
    for name, digest in done_before.items():
        assert _digest(run_dir / name) == digest
    plan = json.loads((run_dir / "plan.json").read_text())
    assert all((run_dir / j["id"] / "job.json").is_file() for j in plan["jobs"])
    assert not any((run_dir / ".staging").iterdir())
