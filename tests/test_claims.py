"""Job claims: one process runs a job, a dead claim is recovered with its staging."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from kdbench.benchmark import claims
from kdbench.benchmark.store import RunStore

HOLD = textwrap.dedent("""
    import sys, time
    from kdbench.benchmark import claims
    from kdbench.benchmark.store import RunStore
    run_dir, job = sys.argv[1], sys.argv[2]
    if claims.acquire(run_dir, job):
        store = RunStore(run_dir)
        with store.staging(job) as out:
            (out / "partial").write_text("x")
            print("claimed", flush=True)
            time.sleep(60)
    else:
        print("refused", flush=True)
""")


def _holder(run_dir, job):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), job], stdout=subprocess.PIPE, text=True)
    return process, process.stdout.readline().strip()


def test_a_claim_excludes_every_other_holder_until_released(tmp_path):
    assert claims.acquire(tmp_path, "teacher-a")
    assert not claims.acquire(tmp_path, "teacher-a")  # not twice in one process either
    process, said = _holder(tmp_path, "teacher-a")
    process.wait()
    assert said == "refused"
    assert claims.holder(tmp_path, "teacher-a").endswith(str(os.getpid()))
    claims.release(tmp_path, "teacher-a")
    with claims.claim(tmp_path, "teacher-a") as taken:
        assert taken


def test_two_processes_racing_for_a_job_one_wins(tmp_path):
    racers = [subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "student-x"], stdout=subprocess.PIPE,
                               text=True) for _ in range(2)]
    said = sorted(p.stdout.readline().strip() for p in racers)
    for p in racers:
        p.kill()
        p.wait()
    assert said == ["claimed", "refused"]


def test_a_killed_holders_claim_is_recoverable_and_its_staging_removed(tmp_path):
    process, said = _holder(tmp_path, "student-y")
    assert said == "claimed"
    store = RunStore(tmp_path)
    assert store.clean_staging() == []  # a live holder keeps its staging
    assert any((tmp_path / ".staging" / "student-y").iterdir())
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.time() + 10
    while not claims.acquire(tmp_path, "student-y") and time.time() < deadline:
        time.sleep(0.05)
    claims.release(tmp_path, "student-y")
    assert store.clean_staging() == ["student-y"]
    assert not (tmp_path / ".staging" / "student-y").exists()
