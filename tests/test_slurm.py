"""``kdbench run --executor slurm`` against a real one-node Slurm cluster on this machine.

``.ci/slurm-local.sh`` installs Debian's Slurm packages when missing and starts the cluster;
the tests need root for that and skip, saying why, without it.  They check that the
quickstart grid gives through Slurm exactly the results of the local executor, and that a
training job cancelled mid-run with ``scancel`` is finished by a resubmission that redoes
no finished job (and resumes the training from its checkpoint).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli, tiny_grid
from kdbench.benchmark.train import CHECKPOINT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm_cluster():
    """A running one-node cluster (``.ci/slurm-local.sh``, idempotent)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: .ci/slurm-local.sh installs Slurm and starts its daemons")
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        pytest.skip("no Slurm installed and no apt-get to install Debian's slurm-wlm")
    proc = subprocess.run([str(ROOT / ".ci" / "slurm-local.sh")], capture_output=True, text=True, timeout=600)
    if shutil.which("sbatch") is None:
        pytest.skip(f"Slurm could not be installed (apt unavailable?): {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, f"the local Slurm cluster did not start:\n{proc.stdout}\n{proc.stderr}"


def _results(run_dir: Path) -> list[dict]:
    with open(run_dir / "results.csv", newline="") as f:
        return sorted(csv.DictReader(f), key=lambda r: (r["job"], r["case_id"], r["target"], r["metric"]))


def _jobs(run_dir: Path) -> dict:
    return {p.parent.name: p for p in run_dir.glob("*/job.json")}


def _sacct_states(ids) -> dict[str, str]:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(ids)],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if line)


def test_quickstart_on_slurm_equals_local(slurm_cluster, tmp_path):
    grid = str(ROOT / "tables" / "quickstart.yaml")
    local = run_cli("run", "--grid", grid, "--budget", "smoke", "--threads", "1", "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr[-3000:]
    # one CPU per Slurm job, which is also each job's torch thread count, as --threads 1 above
    slurm_run = ("run", "--grid", grid, "--budget", "smoke", "--threads", "1", "--executor", "slurm",
                 "--set", "executor.cpus=1", "--out", str(tmp_path / "slurm"))
    slurm = run_cli(*slurm_run)
    assert slurm.returncode == 0, slurm.stderr[-3000:]
    local_dir, slurm_dir = tmp_path / "local" / "quickstart" / "smoke", tmp_path / "slurm" / "quickstart" / "smoke"

    submitted = json.loads((slurm_dir / ".slurm" / "jobs.json").read_text())
    assert set(submitted) == set(_jobs(local_dir)) == set(_jobs(slurm_dir))  # every kdbench job has its Slurm job
    students = [k for k in submitted if k.startswith(("student-tinyunet_kd-", "student-tinyunet_at-"))]
    assert len(students) == 2 and len({submitted[k] for k in students}) == 1  # a lockstep group is one Slurm job
    assert len(set(submitted.values())) == len(submitted) - 1
    assert set(_sacct_states(submitted.values()).values()) == {"COMPLETED"}
    for path in _jobs(slurm_dir).values():
        assert json.loads(path.read_text())["threads"] == 1
    assert _results(slurm_dir) == _results(local_dir)
    assert (slurm_dir / "leaderboard.md").is_file()
    # a second submission finds everything finished and submits nothing
    again = run_cli(*slurm_run)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((slurm_dir / ".slurm" / "jobs.json").read_text()) == submitted


def _wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}")
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def test_cancelled_training_job_is_finished_by_resubmission(slurm_cluster, tmp_path, write_grid):
    # The teacher trains long enough to be cancelled mid-run while other jobs finish beside it.
    grid = write_grid(tiny_grid(methods=["none", "kd"], teacher_train={"epochs": 10_000, "max_steps": 1200}))
    out = tmp_path / "runs"
    run = ("run", "--grid", str(grid), "--threads", "1", "--executor", "slurm", "--set", "executor.cpus=1",
           "--out", str(out))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KDBENCH_CHECKPOINT_SECONDS": "2"}
    run_dir = out / "tiny" / "paper"
    submissions = run_dir / ".slurm" / "jobs.json"

    log = tmp_path / "first.log"
    with open(log, "w") as sink:
        first = subprocess.Popen([str(Path(sys.executable).parent / "kdbench"), *run], env=env, stdout=sink,
                                 stderr=subprocess.STDOUT)
    try:
        teacher = _wait_for(lambda: submissions.is_file() and next(
            (k for k in json.loads(submissions.read_text()) if k.startswith("teacher-")), None),
            "the teacher's job was submitted", first)
        submitted = json.loads(submissions.read_text())
        _wait_for(lambda: (run_dir / ".checkpoints" / teacher / CHECKPOINT).is_file() and _jobs(run_dir),
                  "the teacher saved a checkpoint and another job finished", first)
        assert teacher not in _jobs(run_dir), "the teacher finished before it could be cancelled: train it longer"
        subprocess.run(["scancel", submitted[teacher]], check=True)
        finished = {k: (p.stat().st_mtime_ns, p.read_text()) for k, p in _jobs(run_dir).items()}
        first.wait(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    output = log.read_text()
    assert first.returncode == 1, output[-3000:]
    assert "CANCELLED" in output and "skipped" in output
    assert json.loads((run_dir / "failed" / f"{teacher}.json").read_text())["error"].startswith(
        f"Slurm job {submitted[teacher]} ended CANCELLED")

    again = run_cli(*run, env={"OMP_NUM_THREADS": "1", "KDBENCH_CHECKPOINT_SECONDS": "2"})
    assert again.returncode == 0, again.stderr[-3000:]
    plan = json.loads((run_dir / "plan.json").read_text())
    assert set(_jobs(run_dir)) == {j["id"] for j in plan["jobs"]}  # the grid is complete
    for job_id, (mtime, text) in finished.items():  # finished jobs were neither resubmitted nor rewritten
        path = run_dir / job_id / "job.json"
        assert (path.stat().st_mtime_ns, path.read_text()) == (mtime, text), job_id
        assert json.loads(submissions.read_text())[job_id] == submitted[job_id]
    assert json.loads(submissions.read_text())[teacher] != submitted[teacher]
    records = [json.loads(line) for line in (run_dir / teacher / "log.jsonl").read_text().splitlines()]
    resumed = [r for r in records if r.get("event") == "resume"]
    assert resumed and 0 < resumed[0]["step"] < 1200  # the resubmitted teacher went on from its checkpoint
    assert json.loads((run_dir / teacher / "job.json").read_text())["summary"]["steps"] == 1200


def test_a_partition_slurm_refuses_is_one_line(slurm_cluster, write_grid, tmp_path):
    grid = write_grid(tiny_grid())
    proc = run_cli("run", "--grid", str(grid), "--executor", "slurm", "--partition", "no-such-partition",
                   "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "partition=no-such-partition" in error[0] and "invalid partition" in error[0], \
        proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stderr.count("invalid partition specified") == 1
    assert subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip() == ""  # nothing left queued
