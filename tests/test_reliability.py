"""Issue 21's reliability gaps, each reproduced through the installed ``kdbench`` console script:
the exit code, one line on stderr, no traceback, and nothing lost or written outside the run
directory or cache.  Unit tests of the pieces (the log's rewind, a full disk's short write) sit
beside them."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, tiny_grid
from PIL import Image
from runbuild import make_run

from kdbench.benchmark.jobs import JsonLog
from kdbench.datasets import fakes
from kdbench.datasets.prepare import cache_write_error
from kdbench.errors import full_disk_reason


def one_error_line(result, code: int) -> str:
    """The single stderr line of a refused command; asserts the exit code and no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its content hash: to show a refusal wrote nothing."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- a count option that would hang --------------------------------------------------------------

def test_a_huge_phantom_case_count_is_refused_at_once(write_grid, tmp_path):
    grid = write_grid(tiny_grid(datasets=[{"name": "phantom", "options": {"cases": 10**12}}]))
    start = time.monotonic()
    result = run_cli("run", "--grid", str(grid), "--out", str(tmp_path / "runs"), "--dry-run")
    line = one_error_line(result, 2)
    assert time.monotonic() - start < 60
    assert f"{grid}: datasets[0].options.cases = 1000000000000: Input should be less than or equal to 10000" in line
    assert not (tmp_path / "runs").exists()


# -- widths that would build no network, or a false label -----------------------------------------

@pytest.mark.parametrize("width, problem", [(1e300, "less than or equal to 8"),
                                            pytest.param(1e-9, "greater than or equal to 0.015625",
                                                         marks=pytest.mark.slow)])
def test_widths_are_bounded_where_the_grid_loads(write_grid, tmp_path, width, problem):
    grid = write_grid(tiny_grid(students=[{"name": "tinyunet", "width": width}]))
    line = one_error_line(run_cli("run", "--grid", str(grid), "--out", str(tmp_path / "runs"), "--dry-run"), 2)
    assert f"{grid}: students[0].width = " in line and problem in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_width_too_narrow_as_trained_at_the_budget_is_refused(write_grid, tmp_path):
    grid = write_grid(tiny_grid(students=[{"name": "tinyunet", "width": 0.1}]))  # × smoke's 0.125 = 0.0125
    line = one_error_line(run_cli("run", "--grid", str(grid), "--budget", "smoke", "--out", str(tmp_path / "runs"),
                                  "--dry-run"), 2)
    assert "students[0].width = 0.1: × budget smoke's width 0.125 = 0.0125 as trained (allowed: 0.015625 to 8" in line


# -- bad run directories --------------------------------------------------------------------------

CORRUPT_PLANS = {
    "truncated": (lambda text: text[:100].encode(), "not a readable plan (not JSON, perhaps cut short"),
    "binary": (lambda text: bytes(range(256)) * 2, "not a readable plan (not UTF-8 text: byte 0x80 at offset 128)"),
    "list": (lambda text: b"[1, 2]", "not a plan kdbench wrote (a list, not a mapping)"),
    "no_jobs": (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "jobs"}).encode(),
                "not a plan kdbench wrote (no 'jobs' list)"),
}
COMMANDS = {
    "export": lambda run, tmp: ("export", str(run), "student-tinyunet_kd"),
    "run-job": lambda run, tmp: ("run-job", str(run), "student-tinyunet_kd"),
    "leaderboard": lambda run, tmp: ("leaderboard", str(run)),
    "docs build": lambda run, tmp: ("docs", "build", str(run), "--site-dir", str(tmp / "site")),
}


@pytest.mark.parametrize("command, damage", [pytest.param(c, d, marks=() if (c, d) == ("export", "list")
                                                          else pytest.mark.slow)
                                             for c in COMMANDS for d in CORRUPT_PLANS])
def test_a_corrupt_plan_is_bad_input_in_one_line(tmp_path, damage, command):
    run = make_run(tmp_path / "run")
    make, problem = CORRUPT_PLANS[damage]
    (run / "plan.json").write_bytes(make((run / "plan.json").read_text()))
    before = snapshot(tmp_path)
    line = one_error_line(run_cli(*COMMANDS[command](run, tmp_path)), 2)
    assert line.startswith(f"error: {run / 'plan.json'}: {problem}"), line
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", [c if c == "run-job" else pytest.param(c, marks=pytest.mark.slow)
                                     for c in COMMANDS])
def test_a_file_given_as_the_run_directory(tmp_path, command):
    path = tmp_path / "not-a-run"
    path.write_text("x")
    line = one_error_line(run_cli(*COMMANDS[command](path, tmp_path)), 2)
    assert str(path) in line and ("a file, not a run directory" in line or "no plan.json" in line), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-run"]


@pytest.mark.slow
def test_corrupt_records_in_a_run_name_the_file(tmp_path):
    run = make_run(tmp_path / "run")
    evaluation = next(p for p in sorted(run.glob("evaluate-*")))
    (evaluation / "metrics.csv").write_bytes(b'\x00\xff,,"\n')
    line = one_error_line(run_cli("leaderboard", str(run)), 2)
    assert line.startswith(f"error: {evaluation / 'metrics.csv'}: not a readable metrics table"), line
    (evaluation / "metrics.csv").write_text("case_id,value\nc1,0.5\n")
    line = one_error_line(run_cli("leaderboard", str(run)), 2)
    assert f"{evaluation / 'metrics.csv'}: not a metrics table (no column target, metric" in line
    shutil.rmtree(run)
    run = make_run(tmp_path / "run")
    teacher = next(p for p in sorted(run.glob("teacher-*")))
    (teacher / "job.json").write_text('{"trunc')
    line = one_error_line(run_cli("leaderboard", str(run)), 2)
    assert line.startswith(f"error: {teacher / 'job.json'}: not a readable job record (not JSON"), line


@pytest.mark.slow
def test_a_file_in_the_way_of_an_output_folder(tmp_path):
    run = make_run(tmp_path / "run")
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    line = one_error_line(run_cli("docs", "build", str(run), "--site-dir", str(blocker)), 2)
    assert line == f"error: {blocker}: is a file, not a folder; the site needs a folder there"
    student = next(p.name for p in run.glob("student-*"))
    line = one_error_line(run_cli("export", str(run), student, "--out", str(blocker / "model.onnx")), 2)
    assert line == f"error: {blocker}: is a file, not a folder; the exported model needs a folder there"
    assert blocker.read_text() == "keep me"


# -- a real tiny run: checkpoints, resume, failures -------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny grid (teacher, none, kd at a handful of steps) through the console script."""
    root = tmp_path_factory.mktemp("trained")
    grid = root / "grid.yaml"
    grid.write_text(json.dumps(tiny_grid(methods=["none", "kd"])))
    result = run_cli("run", "--grid", str(grid), "--out", str(root / "runs"), "--threads", "1")
    assert result.returncode == 0, result.stderr
    return grid, root / "runs" / "tiny" / "paper"


@pytest.mark.slow
def test_a_checkpoint_weights_only_refuses_leaves_out_the_overlays_only(trained, tmp_path):
    grid, source = trained
    run = tmp_path / "run"
    shutil.copytree(source, run)
    student = next(p for p in run.glob("student-tinyunet_kd-*"))
    (run / "pictures" / "overlays.png").unlink()
    script = ("import os, sys, torch\n"
              "class Payload:\n"
              "    def __reduce__(self):\n"
              "        return (os.system, ('touch ' + sys.argv[2],))\n"
              "torch.save({'weight': Payload()}, sys.argv[1])\n")
    executed = tmp_path / "executed"
    subprocess.run([os.sys.executable, "-c", script, str(student / "checkpoint.pt"), str(executed)], check=True)
    result = run_cli("leaderboard", str(run))
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert notes == [f"note: overlays left out: {student / 'checkpoint.pt'}: cannot be loaded (it holds objects other "
                     "than tensors, which weights_only loading refuses; replace it by rerunning its job)"]
    assert "Traceback" not in result.stderr and not executed.exists()
    assert "\n| kd " in result.stdout and not (run / "pictures" / "overlays.png").exists()
    assert (run / "pictures" / "curves.png").exists()


def planned(grid: Path, out: Path) -> tuple[Path, str]:
    """The run directory of a tiny grid under ``out`` and the id its teacher job gets on this CPU."""
    from kdbench.benchmark.grid import load_grid
    from kdbench.benchmark.plan import build_plan

    return out / "tiny" / "paper", build_plan(load_grid(grid)).of_kind("teacher")[0].id


@pytest.mark.slow
def test_a_checkpoint_that_is_a_directory_is_moved_aside(write_grid, tmp_path):
    grid, out = write_grid(tiny_grid(methods=["none"])), tmp_path / "runs"
    run_dir, teacher = planned(grid, out)
    blocked = run_dir / ".checkpoints" / teacher / "state.pt"
    (blocked / "inside").mkdir(parents=True)
    result = run_cli("run", "--grid", str(grid), "--out", str(out), "--threads", "1",
                     env={"KDBENCH_CHECKPOINT_SECONDS": "0"})
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "state.pt is not a file" in line]
    assert len(notes) == 1 and "moved it aside to state.pt.bad-" in notes[0], result.stderr
    assert (run_dir / teacher / "job.json").is_file() and "Traceback" not in result.stderr


def test_the_log_keeps_every_attempt_up_to_its_resume(tmp_path):
    log = JsonLog(tmp_path / "ck" / "log.jsonl")

    def attempt(first: int, last: int, resume: int | None) -> None:
        log({"event": "resume", "step": resume} if resume else {"event": "start", "step": 0})
        for step in range(first, last + 1):
            log({"event": "step", "step": step})

    attempt(1, 180, None)   # killed at 180; its checkpoint was saved at 167
    attempt(168, 370, 167)  # killed at 370; saved at 357
    with log.path.open("a") as fh:
        fh.write('{"event": "step", "st')  # a line cut short by the kill
    attempt(358, 400, 357)
    records = [json.loads(line) for line in log.path.read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "step"] == list(range(1, 401))
    assert [(r["event"], r["step"]) for r in records if r["event"] != "step"] == [
        ("start", 0), ("resume", 167), ("resume", 357)]
    attempt(1, 3, None)  # a checkpoint that could not be used: training starts again
    assert [r["step"] for r in map(json.loads, log.path.read_text().splitlines())] == [0, 1, 2, 3]


@pytest.mark.slow
def test_a_killed_teacher_keeps_its_whole_loss_curve(write_grid, tmp_path):
    grid = write_grid(tiny_grid(methods=["none"], train={"epochs": 400, "batch_size": 2, "image_size": 32,
                                                         "max_steps": 400}))
    out = tmp_path / "runs"
    run_dir, teacher = planned(grid, out)
    log = run_dir / ".checkpoints" / teacher / "log.jsonl"
    command = [str(Path(os.sys.executable).parent / "kdbench"), "run", "--grid", str(grid), "--out", str(out),
               "--threads", "1"]
    env = {**os.environ, "KDBENCH_CHECKPOINT_SECONDS": "0", "OMP_NUM_THREADS": "1"}
    for kill_after in (100, 250):  # two attempts killed once their log reaches these steps
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline:
            steps = [json.loads(line).get("step", 0) for line in log.read_text().splitlines()[:-1]] \
                if log.exists() else []
            if steps and max(steps) >= kill_after:
                break
            time.sleep(0.05)
        process.kill()
        process.wait()
    assert not (run_dir / teacher / "job.json").exists()
    result = run_cli("run", "--grid", str(grid), "--out", str(out), "--threads", "1")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (run_dir / teacher / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["event"] == "step"]
    assert steps == [1, *range(50, 401, 50)], steps
    resumes = [r["step"] for r in records if r["event"] == "resume"]
    assert len(resumes) >= 2 and resumes == sorted(resumes) and records[0]["event"] == "start"


@pytest.mark.slow
def test_a_rerun_that_succeeds_removes_the_failure_record(write_grid, tmp_path):
    grid, out = write_grid(tiny_grid(methods=["none"])), tmp_path / "runs"
    run_dir, teacher = planned(grid, out)
    (run_dir / ".staging").mkdir(parents=True)
    (run_dir / ".staging" / teacher).write_text("in the way")  # the teacher's staging cannot be made
    failed = run_cli("run", "--grid", str(grid), "--out", str(out), "--threads", "1")
    assert failed.returncode == 1
    assert sorted(p.name for p in (run_dir / "failed").iterdir()) == [f"{teacher}.json", f"{teacher}.txt"]
    (run_dir / ".staging" / teacher).unlink()  # the fault is gone: the same job now succeeds
    result = run_cli("run", "--grid", str(grid), "--out", str(out), "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert (run_dir / teacher / "job.json").is_file() and not list((run_dir / "failed").iterdir())


# -- data: empty masks, a full disk under the cache -------------------------------------------------

def empty_masks(root: Path) -> Path:
    fakes.make_folder(root, cases=4)
    for mask in (root / "masks").iterdir():
        Image.fromarray(np.zeros((24, 24), dtype=np.uint8)).save(mask)
    return root


def test_a_dataset_of_empty_masks_is_refused_by_check(tmp_path):
    root = empty_masks(tmp_path / "data")
    result = run_cli("datasets", "check", "folder", "--root", str(root), env={"KDBENCH_CACHE": str(tmp_path / "c")})
    assert result.returncode == 1, result.stderr
    assert f"dataset folder: all 4 masks under {root} are empty (no foreground label)" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.slow
def test_a_run_on_empty_masks_warns_once(write_grid, tmp_path):
    root = empty_masks(tmp_path / "data")
    grid = write_grid(tiny_grid(datasets=[{"name": "folder", "root": str(root)}], methods=["none"],
                                leaderboard={"metrics": ["dice"]}))
    result = run_cli("run", "--grid", str(grid), "--out", str(tmp_path / "runs"), "--threads", "1",
                     env={"KDBENCH_CACHE": str(tmp_path / "cache")})
    notes = [line for line in result.stderr.splitlines() if "masks under" in line]
    assert notes == [f"note: dataset folder: all 4 masks under {root} are empty (no foreground label): nothing "
                     "to learn, and Dice is undefined (NaN); check the masks and the option mask_threshold"]


def test_numpys_short_write_is_a_full_disk(tmp_path):
    short = OSError("6144 requested and 3968 written")
    assert full_disk_reason(short) == "the write stopped short (6144 requested and 3968 written)"
    assert str(cache_write_error(short, tmp_path, "preparing img0")).startswith(
        f"no space left on {tmp_path} while preparing img0; free some space")
    assert full_disk_reason(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
    assert full_disk_reason(OSError(errno.EACCES, "Permission denied")) is None


@pytest.mark.slow
def test_a_full_disk_under_the_cache_says_so(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=80k", "tmpfs", str(cache)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("a small tmpfs cannot be mounted here (needs root)")
    try:
        root = fakes.make_folder(tmp_path / "data", cases=6, size=(256, 256))
        result = run_cli("datasets", "prepare", "folder", "--root", str(root), "--image-size", "256",
                         env={"KDBENCH_CACHE": str(cache)})
        line = one_error_line(result, 1)
        assert line.startswith(f"error: no space left on {cache / 'folder'}/"), line
        assert "requested and" not in line
        assert not [p for p in cache.rglob("*") if p.name.startswith(".tmp-")]  # no half-written case
    finally:
        subprocess.run(["umount", str(cache)], check=True)
