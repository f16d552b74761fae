"""Where a run's artefacts live, written so that a killed run or a full disk never corrupts them.

Layout: ``runs/<grid>/<budget>/<job-id>/`` holds ``job.json`` (config, timings, device,
threads), ``log.jsonl``, ``checkpoint.pt`` (model weights only), ``metrics.csv`` or
``profile.json``.  A job works in ``.staging/<job-id>/<host>.<pid>.<random>/`` under its
claim (:mod:`kdbench.benchmark.claims`); every file there is fsynced and the directory is
renamed into place only when complete, so a job directory that exists is finished, and a
run killed at any moment (even ``kill -9``) loses at most the jobs in flight.  Their
staging is removed by the next process that claims them.  A training job's resumable
state lives in ``.checkpoints/<job-id>/`` until the job is finished.  A failed job
leaves ``failed/<job-id>.txt`` (its traceback) and ``failed/<job-id>.json`` (job, kind,
one-line error, time); a job directory with ``job.json`` wins over a failure record.

Run-level files (``plan.json``, ``results.csv``/``.parquet``, ``leaderboard.md``) are
written to a temporary name unique to the writer (process and thread), fsynced and moved
into place with ``os.replace``, and the directory is fsynced after it: concurrent writers
never share a temporary file, a reader sees the old file or the new one, never a mix, and
a machine that loses power keeps one of the two.  A full disk (ENOSPC, EDQUOT, or torch's
short write) becomes one line, ``no space left on <path>: ...``, and leaves no temporary
file or half-written job behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from kdbench.benchmark import claims
from kdbench.errors import ConfigError, KdbenchError, RunFailure, full_disk_reason

def no_space(path: str | Path, exc: BaseException) -> RunFailure | None:
    """The one-line error (a :class:`RunFailure`, exit 1) for ``exc`` if it means the disk holding
    ``path`` is full, else ``None`` (see :func:`~kdbench.errors.full_disk_reason`)."""
    reason = full_disk_reason(exc)
    return None if reason is None else RunFailure(f"no space left on {path}: {reason}")


@contextmanager
def disk_errors(path: str | Path) -> Iterator[None]:
    """Turn a full disk raised inside the block into ``RunFailure("no space left on <path>: ...")``."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        error = no_space(path, exc)
        if error is None:
            raise
        raise error from exc


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _fsync(path: Path) -> None:
    """Flush a file, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file and directory under ``path`` (deepest first), and ``path`` itself."""
    for item in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if not item.is_symlink():
            _fsync(item)
    _fsync(path)


def _new_temp(path: Path) -> Path:
    """Create an empty temporary file beside ``path``, its name unique to this writer.

    ``O_EXCL`` guarantees no two writers (processes or threads) ever share it; unlike
    ``mkstemp`` the file gets the usual umask permissions.
    """
    while True:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A fresh temporary path beside ``path`` to write into; moved onto ``path`` when the block ends.

    The file is fsynced before ``os.replace``; on any error it is removed and ``path`` keeps
    its previous content.  A full disk is raised as ``no space left on <path>``.
    """
    path = Path(path)
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _new_temp(path)
        try:
            yield tmp
            _fsync(tmp)
            os.replace(tmp, path)
            _fsync(path.parent)
        except BaseException:
            _remove(tmp)
            raise


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


RERUN = "rerun `kdbench run --grid GRID` to write it again"


def read_json_file(path: str | Path, what: str, hint: str = RERUN) -> object:
    """The JSON in ``path``, or a one-line :class:`ConfigError` (exit 2) naming the file and what is
    wrong with it: missing, unreadable, not UTF-8, or not JSON (a truncated or binary file)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no {what}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: the {what} cannot be read ({one_line(exc.strerror or exc)})") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a readable {what} (not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset "
                          f"{exc.start}); {hint}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not a readable {what} (not JSON, perhaps cut short: {one_line(exc)}); "
                          f"{hint}") from None


def check_folder(path: str | Path, what: str) -> Path:
    """``path`` as a folder that can be made: a one-line :class:`ConfigError` naming the file in the way
    when ``path`` or one of its parents is a file (``--site-dir`` naming a file, ``--out`` under one)."""
    path = Path(path)
    for folder in [path, *path.parents]:
        if folder.exists():
            if not folder.is_dir():
                where = "is a file" if folder == path else f"is under {folder}, which is a file"
                raise ConfigError(f"{path}: {where}, not a folder; the {what} needs a folder there")
            break
    return path


def _plan_problem(data: object) -> str | None:
    """What makes ``data`` not a plan kdbench wrote, or ``None``."""
    if not isinstance(data, dict):
        return f"a {type(data).__name__}, not a mapping"
    for key, kind in (("jobs", list), ("grid", dict), ("budget", str)):
        if not isinstance(data.get(key), kind):
            return f"no '{key}' {kind.__name__}" if key not in data else f"'{key}' is not a {kind.__name__}"
    if not isinstance(data["grid"].get("name"), str) or not isinstance(data["grid"].get("leaderboard"), dict):
        return "its 'grid' has no name or leaderboard"
    for i, job in enumerate(data["jobs"]):
        if not (isinstance(job, dict) and isinstance(job.get("id"), str) and isinstance(job.get("kind"), str)
                and isinstance(job.get("config"), dict) and isinstance(job.get("meta"), dict)):
            return f"jobs[{i}] is not a job (id, kind, config, meta)"
    return None


def read_plan(run_dir: str | Path) -> dict:
    """``RUN_DIR/plan.json``, checked, or a one-line :class:`ConfigError` (exit 2) naming the path:
    a file given as the run directory, no plan, a plan that is truncated, binary, not a mapping,
    or has no jobs."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: a file, not a run directory (runs/<grid>/<budget>, which holds plan.json)")
    path = run_dir / "plan.json"
    if not path.exists():
        raise ConfigError(f"{run_dir}: not a run directory (no plan.json); `kdbench run --grid GRID` plans one")
    data = read_json_file(path, "plan")
    problem = _plan_problem(data)
    if problem:
        raise ConfigError(f"{path}: not a plan kdbench wrote ({problem}); {RERUN}")
    return data


class RunStore:
    """The artefact directory of one grid at one budget (``runs/<grid>/<budget>``)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.staging_root = self.root / ".staging"
        self.failed_root = self.root / "failed"

    def job_dir(self, job_id: str) -> Path:
        """Where a finished job's artefacts live."""
        return self.root / job_id

    def is_done(self, job_id: str) -> bool:
        """Whether the job finished (its directory holds ``job.json``)."""
        return (self.job_dir(job_id) / "job.json").is_file()

    def read_job(self, job_id: str) -> dict:
        """A finished job's ``job.json``; a one-line :class:`ConfigError` naming it when it is corrupt."""
        path = self.job_dir(job_id) / "job.json"
        hint = f"delete {path.parent} and rerun the grid to run that job again"
        data = read_json_file(path, "job record", hint)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: not a job record (a {type(data).__name__}, not a mapping); {hint}")
        return data

    def record_failure(self, job, message: str, traceback_text: str) -> bool:
        """Write ``failed/<id>.txt`` (the traceback) and ``failed/<id>.json`` (job, kind, one-line
        error, time) atomically.

        ``job`` has ``id`` and ``kind``.  Never raises for a disk problem (a full disk must not
        hide the job's own error): returns ``False`` when the record could not be written.
        """
        record = {"job": job.id, "kind": job.kind, "error": one_line(message), "time": time.time()}
        try:
            write_atomic(self.failed_root / f"{job.id}.txt", traceback_text)
            write_atomic(self.failed_root / f"{job.id}.json", json.dumps(record, indent=2))
        except (OSError, KdbenchError):
            return False
        return True

    def clear_failure(self, job_id: str) -> None:
        """Remove ``failed/<id>.txt`` and ``.json``: the job has since finished."""
        for suffix in (".txt", ".json"):
            _remove(self.failed_root / f"{job_id}{suffix}")

    def failures(self) -> dict[str, dict]:
        """The failure records of jobs that are not done, by job id.

        A record from an older kdbench (only the ``.txt``) gets the traceback's last line as
        its error; unreadable records are skipped.
        """
        out = {}
        if not self.failed_root.is_dir():
            return out
        for path in sorted(self.failed_root.glob("*.txt")):
            job_id = path.stem
            if self.is_done(job_id):
                continue
            try:
                record = json.loads(path.with_suffix(".json").read_text())
            except (OSError, ValueError):
                try:
                    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
                except OSError:
                    continue
                record = {"job": job_id, "kind": None, "error": one_line(lines[-1]) if lines else "failed"}
            out[job_id] = record
        return out

    def checkpoint_dir(self, job_id: str) -> Path:
        """Where a training job keeps its resumable state until it is finished
        (``.checkpoints/<job-id>``, outside staging so that it survives a kill)."""
        return self.root / ".checkpoints" / job_id

    @property
    def options(self) -> dict:
        """The run's options saved in ``plan.json`` (e.g. ``compile``); ``{}`` without a plan."""
        try:
            options = read_plan(self.root).get("options", {})
        except ConfigError:
            return {}
        return options if isinstance(options, dict) else {}

    def clean_staging(self) -> list[str]:
        """Remove the staging of every job whose claim can be taken (its writer is gone);
        returns the job ids whose staging was removed.  Jobs claimed by a live process,
        here or on another node, keep theirs."""
        removed = []
        if self.staging_root.is_dir():
            for path in sorted(self.staging_root.iterdir()):
                with claims.claim(self.root, path.name) as taken:
                    if taken:
                        shutil.rmtree(path, ignore_errors=True)
                        removed.append(path.name)
        return removed

    @contextmanager
    def staging(self, job_id: str) -> Iterator[Path]:
        """A private directory for a job in flight, renamed to the job directory on success.

        The caller holds the job's claim: any staging the job has from a dead claim is
        removed first.  Every file is fsynced before the rename, the run directory after it.
        Any error inside the block removes the directory; a full disk there, or while moving
        it into place, is raised as ``no space left on <job dir>: ...``.
        """
        parent = self.staging_root / job_id
        tmp = parent / f"{socket.gethostname().replace('.', '_')}.{os.getpid()}.{secrets.token_hex(4)}"
        final = self.job_dir(job_id)
        try:
            with disk_errors(final):
                shutil.rmtree(parent, ignore_errors=True)
                tmp.mkdir(parents=True)
                yield tmp
                if not final.exists():  # finished meanwhile by another process: keep the first result
                    fsync_tree(tmp)
                    os.rename(tmp, final)
                    _fsync(self.root)
        finally:
            shutil.rmtree(parent, ignore_errors=True)
