"""Where a run's artefacts live, written so that a killed run never corrupts them.

Layout: ``runs/<grid>/<job-id>/`` holds ``job.json`` (config, timings, device),
``log.jsonl``, ``checkpoint.pt`` (model weights only), ``metrics.csv`` or
``profile.json``.  A job works in ``runs/<grid>/.staging/<job-id>.<pid>/`` and the
directory is renamed into place only when complete, so a job directory that exists is
finished, and a run killed at any moment (even ``kill -9``) loses at most the job in
flight.  Run-level files (``plan.json``, ``results.csv``, ``leaderboard.md``) are
replaced atomically.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    """The artefact directory of one grid (``runs/<grid>``)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.staging_root = self.root / ".staging"

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def is_done(self, job_id: str) -> bool:
        return (self.job_dir(job_id) / "job.json").is_file()

    def read_job(self, job_id: str) -> dict:
        return json.loads((self.job_dir(job_id) / "job.json").read_text())

    def clean_staging(self) -> list[str]:
        """Remove work left behind by runs that were killed; returns what was removed."""
        removed = []
        if self.staging_root.is_dir():
            for path in self.staging_root.iterdir():
                pid = path.name.rsplit(".", 1)[-1]
                if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
                    continue
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        return removed

    @contextmanager
    def staging(self, job_id: str) -> Iterator[Path]:
        """A private directory for a job in flight, renamed to the job directory on success."""
        tmp = self.staging_root / f"{job_id}.{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        final = self.job_dir(job_id)
        if final.exists():  # finished meanwhile by another process: keep the first result
            shutil.rmtree(tmp, ignore_errors=True)
            return
        os.rename(tmp, final)
