"""Run-level writes: unique temporary files under concurrency, a full disk as one line
that names the path, nothing half-written left behind, failure records that never crash."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from kdbench.benchmark import store as store_module
from kdbench.benchmark.store import RunStore, atomic_path, disk_errors, write_atomic
from kdbench.errors import KdbenchError, RunFailure
from kdbench.leaderboards.render import write_leaderboard
from kdbench.leaderboards.results import write_results

from runbuild import make_run


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name)


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _denied(*args, **kwargs):
    raise PermissionError(errno.EACCES, "Permission denied")


def _render_many(run_dir: str) -> list[str]:
    errors = []
    for _ in range(10):
        try:
            write_leaderboard(run_dir)
        except Exception as exc:  # every failure is reported to the parent
            errors.append(f"{type(exc).__name__}: {exc}")
    return errors


@pytest.mark.slow
def test_concurrent_renders_of_one_run_all_succeed(tmp_path):
    run = make_run(tmp_path / "run", seeds=(0, 1))
    with multiprocessing.get_context("fork").Pool(8) as pool:
        errors = pool.map(_render_many, [str(run)] * 8)
    assert errors == [[]] * 8
    assert _leftovers(run) == []
    assert json.loads((run / "leaderboard.json").read_text())[0]["dataset"] == "phantom"
    assert len(pd.read_parquet(run / "results.parquet")) == len(pd.read_csv(run / "results.csv")) > 0
    assert (run / "leaderboard.md").read_text().startswith("# Leaderboard: tiny")


def test_threads_never_share_a_temporary_file(tmp_path):
    path = tmp_path / "shared.txt"
    errors, texts = [], [f"writer {i}\n" * 200 for i in range(8)]

    def write(text: str) -> None:
        for _ in range(25):
            try:
                write_atomic(path, text)
            except Exception as exc:  # collected, asserted empty below
                errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert path.read_text() in texts and _leftovers(tmp_path) == []


def test_atomic_write_is_fsynced_and_keeps_permissions(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    path = tmp_path / "a" / "plan.json"
    write_atomic(path, "{}")
    assert path.read_text() == "{}" and synced
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_full_disk_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "leaderboard.md"
    path.write_text("previous")
    monkeypatch.setattr(os, "fsync", _full)
    with pytest.raises(RunFailure) as caught:
        write_atomic(path, "new" * 1000)
    message = str(caught.value)
    assert message == f"no space left on {path}: No space left on device" and "\n" not in message
    assert isinstance(caught.value, KdbenchError) and caught.value.exit_code == 1
    assert path.read_text() == "previous" and _leftovers(tmp_path) == []


def test_full_disk_while_writing_parquet(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"value": [1.0, 2.0]})
    write_results(tmp_path, frame)
    before = (tmp_path / "results.parquet").read_bytes()

    def half_written(self, path, **kwargs):
        Path(path).write_bytes(b"PAR1 half")
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_written)
    with pytest.raises(RunFailure, match=f"no space left on {tmp_path / 'results.parquet'}: "):
        write_results(tmp_path, pd.DataFrame({"value": [3.0]}))
    assert (tmp_path / "results.parquet").read_bytes() == before and _leftovers(tmp_path) == []


def test_other_errors_pass_through_and_still_clean_up(tmp_path):
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "x.csv") as tmp:
            tmp.write_text("partial")
            raise ValueError("not a disk problem")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError) as caught, disk_errors(tmp_path):
        raise OSError(errno.EACCES, "Permission denied")
    assert not isinstance(caught.value, KdbenchError)


def test_staging_turns_a_full_disk_into_one_line_and_removes_the_job(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(RunFailure) as caught:
        with store.staging("teacher-x") as out:
            (out / "log.jsonl").write_text("{}\n")
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert str(caught.value) == f"no space left on {tmp_path / 'teacher-x'}: Disk quota exceeded"
    assert not (tmp_path / "teacher-x").exists() and list((tmp_path / ".staging").iterdir()) == []


def test_staging_names_torchs_short_write(tmp_path):
    # torch.save loses the errno on a full disk and says "unexpected pos N vs M"; /dev/full is a full disk
    store = RunStore(tmp_path)
    with pytest.raises(RunFailure) as caught:
        with store.staging("student-y") as out:
            (out / "checkpoint.pt").symlink_to("/dev/full")
            torch.save({"w": torch.zeros(50_000)}, out / "checkpoint.pt")
    message = str(caught.value)
    assert message.startswith(f"no space left on {tmp_path / 'student-y'}: the write stopped short (")
    assert "\n" not in message and not (tmp_path / "student-y").exists()


def test_staging_rename_on_a_full_disk(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    monkeypatch.setattr(os, "rename", _full)
    with pytest.raises(RunFailure, match="no space left on"):
        with store.staging("evaluate-z") as out:
            (out / "job.json").write_text("{}")
    assert not store.is_done("evaluate-z") and list((tmp_path / ".staging").iterdir()) == []


def test_staging_success_moves_the_job_into_place(tmp_path):
    store = RunStore(tmp_path)
    with store.staging("profile-p") as out:
        (out / "job.json").write_text("{}")
    assert store.is_done("profile-p") and list((tmp_path / ".staging").iterdir()) == []


def test_failure_record_is_written_atomically(tmp_path):
    store = RunStore(tmp_path)
    job = SimpleNamespace(id="student-kd-1", kind="student")
    assert store.record_failure(job, "non-finite loss\nat step 2", "Traceback ...\nRuntimeError: boom\n")
    record = json.loads((tmp_path / "failed" / "student-kd-1.json").read_text())
    assert record["job"] == "student-kd-1" and record["kind"] == "student"
    assert record["error"] == "non-finite loss at step 2" and isinstance(record["time"], float)
    assert (tmp_path / "failed" / "student-kd-1.txt").read_text().endswith("RuntimeError: boom\n")
    assert store.failures() == {"student-kd-1": record}
    (tmp_path / "student-kd-1").mkdir()
    (tmp_path / "student-kd-1" / "job.json").write_text("{}")
    assert store.failures() == {}  # a finished job wins over its old failure record


def test_failure_record_on_a_full_disk_returns_false(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    monkeypatch.setattr(os, "fsync", _full)
    assert store.record_failure(SimpleNamespace(id="teacher-t", kind="teacher"), "boom", "tb") is False
    assert _leftovers(tmp_path) == [] and list((tmp_path / "failed").iterdir()) == []
    monkeypatch.setattr(store_module, "write_atomic", _denied)
    assert store.record_failure(SimpleNamespace(id="teacher-t", kind="teacher"), "boom", "tb") is False


def test_old_failure_records_read_their_last_line(tmp_path):
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "teacher-old.txt").write_text("Traceback (most recent call last):\n  ...\nValueError: bad\n\n")
    assert RunStore(tmp_path).failures() == {"teacher-old": {"job": "teacher-old", "kind": None, "error": "ValueError: bad"}}
