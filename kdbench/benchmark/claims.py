"""Job claims: an exclusive lock per job, so that no job of a run ever runs twice at once.

A process claims a job by taking ``fcntl.flock`` on ``RUN_DIR/.claims/<job-id>.lock`` and
holds it for the job's whole life.  The operating system releases the lock when the
process ends, however it ends (``kill -9``, an OOM kill, a node that reboots: on NFS
through the lock manager, ``lockd``, where Linux turns ``flock`` into a POSIX lock), so a
claim never outlives its holder and needs no process id to be recovered.  Whoever holds a
job's claim may remove every staging directory of that job: a dead claim's leftovers are
recovered by the next process that claims the job.

The lock file holds ``host pid time`` of its last holder, for messages only.  Lock files
are never deleted (deleting one while another process waits on it would split the lock).
A process keeps one descriptor per claimed job and never opens a job's lock file twice,
so POSIX emulation (where closing any descriptor of a file drops the process's lock)
cannot release a claim early.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_HELD: dict[Path, int] = {}
"""Lock files this process holds → their open descriptors."""


def lock_path(run_dir: str | Path, job_id: str) -> Path:
    """``RUN_DIR/.claims/<job-id>.lock``."""
    return Path(run_dir) / ".claims" / f"{job_id}.lock"


def acquire(run_dir: str | Path, job_id: str, wait: bool = False) -> bool:
    """Claim ``job_id``; ``False`` when another process (or this one) holds it and ``wait`` is off."""
    path = lock_path(run_dir, job_id).absolute()
    if path in _HELD:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return False
    except BaseException:
        os.close(fd)
        raise
    _HELD[path] = fd
    try:  # who holds it, for messages only: a full disk must not refuse the claim
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} {os.getpid()} {time.time():.0f}\n".encode(), 0)
    except OSError:
        pass
    return True


def release(run_dir: str | Path, job_id: str) -> None:
    """Give up the claim on ``job_id`` (nothing if this process does not hold it)."""
    fd = _HELD.pop(lock_path(run_dir, job_id).absolute(), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def held(run_dir: str | Path, job_id: str) -> bool:
    """Whether this process holds the claim on ``job_id``."""
    return lock_path(run_dir, job_id).absolute() in _HELD


@contextmanager
def claim(run_dir: str | Path, job_id: str, wait: bool = False) -> Iterator[bool]:
    """Hold the claim on ``job_id`` inside the block; yields whether it was taken."""
    taken = acquire(run_dir, job_id, wait)
    try:
        yield taken
    finally:
        if taken:
            release(run_dir, job_id)


def holder(run_dir: str | Path, job_id: str) -> str:
    """``host pid`` of the claim's last holder, as written in its lock file ("" if none)."""
    if held(run_dir, job_id):  # never open a held lock file again (see the module's docstring)
        return f"{socket.gethostname()} {os.getpid()}"
    try:
        return " ".join(lock_path(run_dir, job_id).read_text().split()[:2])
    except OSError:
        return ""
