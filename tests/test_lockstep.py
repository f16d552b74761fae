"""Students in lockstep: one teacher forward per batch, and results equal to training each alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_cli, tiny_grid

from kdbench.benchmark.grid import load_grid
from kdbench.benchmark.lockstep import lockstep_key, lockstep_units
from kdbench.benchmark.plan import build_plan
from kdbench.benchmark.runner import run_grid
from kdbench.benchmark.train import Member, TeacherForward, seed_everything, train_model, train_models
from kdbench.datasets.phantom import make_phantom_case
from kdbench.methods import create_method
from kdbench.models import create_model

METHODS = ["none", "kd", "at", "fitnet", "skd"]  # fitnet: an adapter; skd: a critic and random noise


def students(run_dir: Path) -> dict[str, dict]:
    """Each finished student's weights, by method label."""
    plan = json.loads((run_dir / "plan.json").read_text())
    return {j["meta"]["method_label"]: torch.load(run_dir / j["id"] / "checkpoint.pt", weights_only=True)
            for j in plan["jobs"] if j["kind"] == "student" and (run_dir / j["id"] / "job.json").is_file()}


def assert_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def grid_of(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(tiny_grid(**{"methods": METHODS, **changes}), sort_keys=False))
    return path


def test_students_in_lockstep_equal_students_trained_alone(tmp_path):
    grid = load_grid(grid_of(tmp_path, train={"epochs": 2, "batch_size": 2, "image_size": 32, "max_steps": 6}))
    together = run_grid(grid, tmp_path / "together", lockstep=12)
    alone = run_grid(grid, tmp_path / "alone", lockstep=1)
    assert together.ok and alone.ok
    a, b = students(together.run_dir), students(alone.run_dir)
    assert set(a) == set(METHODS)
    for method in METHODS:
        assert_equal(a[method], b[method])
    records = {label: json.loads((together.run_dir / j.id / "job.json").read_text())
               for j in together.plan.of_kind("student") for label in [j.meta["method_label"]]}
    group = records["kd"]["lockstep"]
    assert len(group) == 4 and "lockstep" not in records["none"]  # none has no teacher: its own unit
    assert (together.run_dir / "results.csv").read_text() == (alone.run_dir / "results.csv").read_text()


def test_groups_are_students_of_one_teacher_data_seed_and_recipe(tmp_path):
    grid = load_grid(grid_of(tmp_path, protocol={"seeds": [0, 1], "folds": 1, "test_fraction": 0.25}))
    plan = build_plan(grid)
    units = lockstep_units(plan.jobs, 12)
    groups = [u for u in units if len(u) > 1]
    assert len(groups) == 2 and all(len(g) == 4 for g in groups)  # kd, at, fitnet, skd per seed
    for group in groups:
        assert len({(j.config["seed"], j.config["teacher"]) for j in group}) == 1
    assert all(lockstep_key(j) is None for j in plan.jobs if j.kind != "student")
    assert [len(u) for u in lockstep_units(plan.jobs, 3) if len(u) > 1] == [3, 3]
    assert all(len(u) == 1 for u in lockstep_units(plan.jobs, 1))
    assert sum(len(u) for u in units) == len(plan.jobs)


def test_one_teacher_forward_per_batch(monkeypatch):
    calls = []
    real = TeacherForward.__call__

    def counted(self, image, label):
        calls.append(self.taps)
        return real(self, image, label)

    monkeypatch.setattr(TeacherForward, "__call__", counted)
    cases = [make_phantom_case(i, 0, 32, 2, 0.1, 0.3) for i in range(2)]
    recipe = {"epochs": 1, "optimizer": "adam", "lr": 1e-3, "min_lr": 1e-6, "weight_decay": 0.0, "schedule": "cosine",
              "batch_size": 2, "image_size": 32, "augmentation": {"rotate": True, "flip": True}, "max_steps": 2}
    seed_everything(1)
    teacher = create_model("tinyunet", in_channels=1, num_classes=3)
    members = []
    for name in ("kd", "at", "fitnet"):
        seed_everything(0)
        model = create_model("tinyunet", in_channels=1, num_classes=3, width=0.5)
        members.append(Member(model, create_method(name, student_roles=model.feature_roles,
                                                   teacher_roles=teacher.feature_roles, num_classes=3)))
    train_models(members, cases, recipe, 0, torch.device("cpu"), teacher)
    assert len(calls) == 2  # two steps, one forward each, whatever the number of students
    assert set(calls[0]) == {t for m in members for t in m.method.taps}
    alone = create_model("tinyunet", in_channels=1, num_classes=3, width=0.5)
    calls.clear()
    train_model(alone, cases, recipe, 0, torch.device("cpu"), method=create_method(
        "kd", student_roles=alone.feature_roles, teacher_roles=teacher.feature_roles, num_classes=3), teacher=teacher)
    assert len(calls) == 2


@pytest.mark.slow
def test_a_diverging_student_fails_alone(tmp_path):
    methods = ["none", "kd", {"name": "kd", "weight": 1e38, "label": "kd_diverges"}, "at"]
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(tiny_grid(methods=methods), sort_keys=False))
    result = run_cli("run", "--grid", str(grid), "--out", str(tmp_path / "runs"), "--threads", "1")
    assert result.returncode == 1, result.stderr
    failed = [line for line in result.stderr.splitlines() if "failed" in line and "kd_diverges" in line]
    assert failed and ("non-finite" in failed[0] or "diverged" in failed[0]), result.stderr
    run_dir = tmp_path / "runs" / "tiny" / "paper"
    done = students(run_dir)
    assert set(done) == {"none", "kd", "at"}  # the others of its group finished, with results
    assert "| kd " in result.stdout and "| at " in result.stdout
    labels = {j["id"]: j["meta"].get("method_label") for j in json.loads((run_dir / "plan.json").read_text())["jobs"]}
    failures = [json.loads(p.read_text())["job"] for p in (run_dir / "failed").glob("*.json")]
    assert [labels[f] for f in failures] == ["kd_diverges"]


SCRIPT_ENV = {"KDBENCH_CHECKPOINT_SECONDS": "0", "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_a_killed_lockstep_group_resumes_every_student_to_the_same_weights(tmp_path):
    grid = grid_of(tmp_path, methods=["kd", "at", "fitnet"],
                   train={"epochs": 200, "batch_size": 2, "image_size": 32, "max_steps": 300})
    out = tmp_path / "killed"
    run_dir = out / "tiny" / "paper"
    command = [str(Path(sys.executable).parent / "kdbench"), "run", "--grid", str(grid), "--out", str(out),
               "--threads", "1"]
    plan = build_plan(load_grid(grid))
    group = [j.id for j in plan.of_kind("student")]
    states = [run_dir / ".checkpoints" / job_id / "state.pt" for job_id in group]
    process = subprocess.Popen(command, env={**os.environ, **SCRIPT_ENV}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not all(p.exists() for p in states) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # some more steps and saves
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert all(p.exists() for p in states) and not any((run_dir / job_id / "job.json").exists() for job_id in group)
    rerun = run_cli("run", "--grid", str(grid), "--out", str(out), "--threads", "1", env=SCRIPT_ENV)
    assert rerun.returncode == 0, rerun.stderr
    uninterrupted = run_cli("run", "--grid", str(grid), "--out", str(tmp_path / "whole"), "--threads", "1",
                            "--lockstep", "1", env=SCRIPT_ENV)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    resumed, whole = students(run_dir), students(tmp_path / "whole" / "tiny" / "paper")
    for method in ("kd", "at", "fitnet"):
        assert_equal(resumed[method], whole[method])
    for job_id in group:
        records = [json.loads(line) for line in (run_dir / job_id / "log.jsonl").read_text().splitlines()]
        assert any(r["event"] == "resume" and r["step"] > 0 for r in records), job_id
        assert [r["step"] for r in records if r["event"] == "step"] == [1, *range(50, 301, 50)]


@pytest.mark.slow
def test_run_job_runs_a_group_and_reports_each_job(tmp_path):
    grid = grid_of(tmp_path, methods=["none", "kd", "at"])
    out = tmp_path / "runs"
    assert run_cli("run", "--grid", str(grid), "--out", str(out), "--set", "train.max_steps=2",
                   "--threads", "1").returncode == 0
    run_dir = out / "tiny" / "paper"
    plan = json.loads((run_dir / "plan.json").read_text())
    ids = [j["id"] for j in plan["jobs"] if j["kind"] == "student" and j["meta"]["method"] != "none"]
    for job_id in ids:
        for path in (run_dir / job_id).iterdir():
            path.unlink()
        (run_dir / job_id).rmdir()
    result = run_cli("run-job", str(run_dir), *ids, "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{job_id}: done" for job_id in ids]
    assert json.loads((run_dir / ids[0] / "job.json").read_text())["lockstep"] == ids
    again = run_cli("run-job", str(run_dir), *ids)
    assert again.stdout.splitlines() == [f"{job_id}: already done" for job_id in ids]


@pytest.mark.slow
def test_each_job_line_is_told_when_its_job_ends(tmp_path):
    """With one in-process worker and stderr in a file, a job's line appears before the next job
    ends, and says the job's own duration (0.3.0 told them only after later jobs had run)."""
    grid = grid_of(tmp_path, methods=["none", "kd"], train={"epochs": 1, "batch_size": 2, "image_size": 32,
                                                            "max_steps": 12})
    out, log = tmp_path / "runs", tmp_path / "stderr.txt"
    command = [str(Path(sys.executable).parent / "kdbench"), "run", "--grid", str(grid), "--out", str(out),
               "--threads", "1"]
    seen: dict[str, float] = {}
    with log.open("w") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        while process.poll() is None:
            for line in log.read_text().splitlines():
                if " done in " in line:
                    seen.setdefault(line.split("] ", 1)[1].split(": done in")[0], time.time())
            time.sleep(0.01)
    assert process.returncode == 0, log.read_text()
    run_dir = out / "tiny" / "paper"
    from kdbench.benchmark.runner import describe
    from kdbench.benchmark.plan import Job

    ends = []
    for job in map(Job.from_dict, json.loads((run_dir / "plan.json").read_text())["jobs"]):
        record = json.loads((run_dir / job.id / "job.json").read_text())
        ends.append((record["started"] + record["seconds"], describe(job), record["seconds"]))
    ends.sort()
    lines = {line.split("] ", 1)[1].split(": done in")[0]: float(line.split("done in ")[1].split(" s")[0])
             for line in log.read_text().splitlines() if " done in " in line}
    for (end, name, seconds), (next_end, _, _) in zip(ends, ends[1:]):
        assert seen[name] <= next_end + 0.05, f"{name}: told {seen[name] - end:.2f} s after its end"
    for end, name, seconds in ends:
        assert lines[name] <= seconds + 1.0, (name, lines[name], seconds)
