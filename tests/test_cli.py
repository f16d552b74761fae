"""The installed ``kdbench`` console script: exit codes, one-line errors, progress, budgets.

Every test runs the real console script (``run_cli``), never ``CliRunner``, so the exit
status a shell or CI pipeline sees is the one checked.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import run_cli, tiny_grid


def _one_error_line(result) -> str:
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


SLOW = pytest.mark.slow  # each call pays kdbench's start-up (seconds): CI runs these with `-m slow`


@pytest.mark.parametrize("args, expected", [
    (["run", "--grid", "GRID", "--budget", "turbo"], "'turbo' is not one of 'smoke', 'quick', 'paper'"),
    pytest.param(["run"], "Missing option '--grid'", marks=SLOW),
    (["run", "--grid", "GRID", "--device", "bogus"], "--device 'bogus': not a device"),
    pytest.param(["run", "--grid", "GRID", "--threads", "0"], "must be at least 1", marks=SLOW),
    pytest.param(["frobnicate"], "No such command 'frobnicate'", marks=SLOW),
    pytest.param(["profile", "nosuchnet"], "unknown model 'nosuchnet'", marks=SLOW),
    pytest.param(["leaderboard", "NOWHERE"], "not a run directory", marks=SLOW),
    (["run", "--grid", "GRID", "--partition", "gpu", "--time-limit", "30"],
     "--partition, --time-limit: options of --executor slurm (this run uses --executor local)"),
    pytest.param(["run", "--grid", "GRID", "--executor", "pbs"], "'pbs' is not one of 'local', 'slurm'", marks=SLOW),
    pytest.param(["run", "--grid", "GRID", "--workers", "0"], "--workers': Input should be greater than or equal to 1",
                 marks=SLOW),
    pytest.param(["run-job", "NOWHERE", "teacher-x"], "no plan.json", marks=SLOW),
    pytest.param(["export", "NOWHERE", "student-x", "--format", "tflite"], "'tflite' is not one of", marks=SLOW),
])
def test_usage_errors_are_one_line_and_exit_2(write_grid, tmp_path, args, expected):
    grid = str(write_grid(tiny_grid()))
    args = [grid if a == "GRID" else str(tmp_path / "nowhere") if a == "NOWHERE" else a for a in args]
    result = run_cli(*args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert expected in _one_error_line(result)


@SLOW
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_on_a_cpu_machine_is_a_one_line_error(write_grid):
    result = run_cli("run", "--grid", str(write_grid(tiny_grid())), "--device", "cuda", "--dry-run")
    assert result.returncode == 2
    assert "CUDA is not available" in _one_error_line(result)


@SLOW
def test_bare_command_shows_help_and_exits_0():
    result = run_cli()
    assert result.returncode == 0 and "Usage" in result.stdout + result.stderr


@pytest.mark.slow
def test_failed_jobs_exit_1_with_plain_progress_lines_and_recorded_threads(write_grid, tmp_path):
    """A job whose loss is infinite fails; the rest finishes; exit 1; piped stderr gets a line per job."""
    grid = write_grid(tiny_grid(students=[{"name": "enet", "width": 0.125}], teachers=[{"name": "tinyunet"}],
                                methods=["none", {"name": "kd", "weight": 1e39, "label": "boom"}]))
    out = tmp_path / "runs"
    result = run_cli("run", "--grid", str(grid), "--out", str(out), "--threads", "1")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("[")]
    plan = json.loads((out / "tiny" / "paper" / "plan.json").read_text())
    assert len(progress) == len(plan["jobs"])
    assert all("ETA" in line and "elapsed" in line for line in progress)
    assert any("failed" in line and "non-finite loss" in line for line in progress)
    assert progress[-1].startswith(f"[{len(plan['jobs'])}/{len(plan['jobs'])}]") and "ETA 0:00" in progress[-1]
    # ENet's max-unpool has no deterministic kernel: torch warns at every step, we say it once
    assert result.stderr.count("does not have a deterministic implementation") <= 1
    trained = [j for j in plan["jobs"] if j["kind"] in ("teacher", "student")]
    records = [json.loads((out / "tiny" / "paper" / j["id"] / "job.json").read_text())
               for j in trained if (out / "tiny" / "paper" / j["id"] / "job.json").is_file()]
    assert records and all(r["threads"] == 1 for r in records)


@SLOW
def test_diverged_teacher_fails_and_its_students_are_skipped(write_grid, tmp_path):
    """lr 1e10 ruins the weights; the teacher job must fail, not pass as trained."""
    grid = write_grid(tiny_grid(methods=["none", "kd"], teacher_train={"lr": 1e10, "schedule": "constant"}))
    result = run_cli("run", "--grid", str(grid), "--out", str(tmp_path / "runs"), "--threads", "1")
    assert result.returncode == 1
    failed = [line for line in result.stderr.splitlines() if "failed" in line and "teacher" in line]
    assert failed and ("diverged" in failed[0] or "non-finite" in failed[0]), result.stderr
    assert "skipped (a dependency failed)" in result.stderr
    board = next((tmp_path / "runs").rglob("leaderboard.md")).read_text()
    assert "**failed**" in board and "not run (teacher failed)" in board


@SLOW
def test_budgets_keep_their_own_run_directories_and_dry_run_says_what_changed(write_grid, tmp_path):
    grid = write_grid(tiny_grid(methods=["none"], teachers=[],
                                protocol={"seeds": [0, 1], "folds": 1, "test_fraction": 0.25}))
    out = tmp_path / "runs"
    dry = run_cli("run", "--grid", str(grid), "--out", str(out), "--budget", "smoke", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "seeds [0, 1] → [0]" in dry.stderr and "budget changed:" in dry.stderr
    assert "student tinyunet width 0.5 → 0.0625" in dry.stderr
    assert not out.exists()
    paper = run_cli("run", "--grid", str(grid), "--out", str(out), "--set", "protocol.seeds=[0]")
    assert paper.returncode == 0, paper.stderr
    plan_before = (out / "tiny" / "paper" / "plan.json").read_bytes()
    smoke = run_cli("run", "--grid", str(grid), "--out", str(out), "--budget", "smoke")
    assert smoke.returncode == 0, smoke.stderr
    assert (out / "tiny" / "paper" / "plan.json").read_bytes() == plan_before
    assert json.loads((out / "tiny" / "smoke" / "plan.json").read_text())["budget"] == "smoke"
    both = run_cli("leaderboard", str(out / "tiny"))
    assert both.returncode == 0 and both.stderr.count("leaderboard: ") == 2


@pytest.mark.slow
def test_a_full_disk_says_so_exits_1_and_leaves_nothing_half_written(write_grid, tmp_path):
    import subprocess

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs on this machine")
    try:
        result = run_cli("run", "--grid", str(write_grid(tiny_grid(methods=["none", "kd"]))),
                         "--out", str(small / "runs"), "--threads", "1")
        assert result.returncode == 1, result.stderr
        assert "no space left on" in result.stderr and "Traceback" not in result.stdout + result.stderr
        files = list(small.rglob("*"))
        assert not [p for p in files if p.name.endswith(".tmp")], files
        staging = small / "runs" / "tiny" / "paper" / ".staging"
        assert not staging.exists() or not any(staging.iterdir())
        for job in (p for p in (small / "runs" / "tiny" / "paper").iterdir() if p.is_dir() and "-" in p.name):
            assert (job / "job.json").is_file(), job  # a job directory that exists is complete
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


@pytest.mark.slow
def test_concurrent_leaderboard_renders_all_succeed(write_grid, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "runs"
    assert run_cli("run", "--grid", str(write_grid(tiny_grid(methods=["none"], teachers=[]))),
                   "--out", str(out)).returncode == 0
    exe = Path(sys.executable).parent / "kdbench"
    renders = [subprocess.Popen([str(exe), "leaderboard", str(out / "tiny")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for _ in range(8)]
    codes = [(p.wait(timeout=600), p.stderr.read()) for p in renders]
    assert all(code == 0 for code, _ in codes), codes
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@SLOW
def test_run_job_reports_a_finished_job_and_export_prints_path_diff_and_latency(write_grid, tmp_path):
    out = tmp_path / "runs"
    grid = write_grid(tiny_grid(methods=["none"], teachers=[]))
    assert run_cli("run", "--grid", str(grid), "--out", str(out), "--threads", "1", "--workers", "1").returncode == 0
    run_dir = out / "tiny" / "paper"
    plan = json.loads((run_dir / "plan.json").read_text())
    student = next(j["id"] for j in plan["jobs"] if j["kind"] == "student")
    again = run_cli("run-job", str(run_dir), student, "--threads", "1")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "already done"
    unknown = run_cli("run-job", str(run_dir), "student-nosuchjob")
    assert unknown.returncode == 2 and "no job 'student-nosuchjob'" in _one_error_line(unknown)
    target = tmp_path / "student.pt"
    exported = run_cli("export", str(run_dir), student, "--format", "torchscript", "--out", str(target))
    assert exported.returncode == 0, exported.stderr
    path, diff, latency = exported.stdout.strip().splitlines()
    assert path == str(target) and target.is_file()
    assert diff.startswith("max abs diff vs PyTorch: ") and float(diff.rsplit(" ", 1)[1]) <= 1e-4
    assert latency.startswith("latency: ") and latency.endswith(" ms") and float(latency.split()[1]) > 0


@SLOW
def test_bench_quick_prints_a_table_or_json_and_writes_the_json(tmp_path):
    figures = tmp_path / "bench" / "cpu.json"
    table = run_cli("bench", "--quick", "--device", "cpu", "--threads", "1", "--out", str(figures))
    assert table.returncode == 0, table.stderr
    result = json.loads(figures.read_text())
    assert set(result["steps"]) == {"kd", "at", "emkd"} and result["device"] == "cpu"
    rows = {line.split("│")[1].strip(): line for line in table.stdout.splitlines() if line.count("│") > 2}
    assert {"kd", "at", "emkd", "device", "help_s"} <= set(rows)
    assert f"{result['steps']['kd']['ratio']:.4g}" in rows["kd"]
    as_json = run_cli("bench", "--quick", "--device", "cpu", "--threads", "1", "--steps", "1", "--json")
    assert as_json.returncode == 0, as_json.stderr
    printed = json.loads(as_json.stdout)
    assert set(printed["steps"]) == {"kd", "at", "emkd"} and printed["setting"]["steps"] == 1
