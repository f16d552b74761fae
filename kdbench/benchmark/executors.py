"""Where jobs run: one planned job under its claim, and the local executor over N devices.

* :func:`run_job` runs one job of an existing run directory (``kdbench run-job RUN_DIR
  JOB_ID``): it claims the job (:mod:`kdbench.benchmark.claims`), runs it unless it is
  finished, and records a failure.  Any number of processes, on any number of nodes
  sharing the run directory, can call it for the same job: one runs it, the others answer
  ``"running elsewhere"`` or ``"already done"``.
* :func:`claim_and_run_unit` runs a unit of work: one job, or the student jobs of a lockstep
  group (:mod:`kdbench.benchmark.lockstep`) trained together under all their claims.
* :func:`run_local` runs a plan's unfinished jobs in dependency order, unit by unit: in this process
  with one worker, else in K worker processes, each pinned to one device (one GPU each,
  ``CUDA_VISIBLE_DEVICES=<i>``, or the CPU) and started once for the whole run.  A job
  starts when all its dependencies are done; a failed job skips its dependants.  A job
  another process is running is waited for (polled) and never run twice.

Every job runs the same code with the same seeds wherever it runs, so a run's results do
not depend on the number of workers (with the same ``--threads`` on a CPU).
"""

from __future__ import annotations

import json
import os
import queue
import time
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from rich.console import Console
from rich.markup import escape

from kdbench.benchmark import claims
from kdbench.benchmark.plan import Job
from kdbench.benchmark.store import RunStore, disk_errors, one_line, read_plan
from kdbench.errors import ConfigError, KdbenchError, KdbenchNote, RunFailure

POLL_SECONDS = 0.5
"""How often a job another process is running is looked at again."""


@contextmanager
def notes_once(console: Console) -> Iterator[None]:
    """Show each distinct warning once (e.g. a kernel without a deterministic version
    warns at every step); :class:`KdbenchNote` s print as ``note: …``."""
    seen: set[tuple[type, str]] = set()

    def show(message, category, filename, lineno, file=None, line=None):
        key = (category, str(message))
        if key in seen:
            return
        seen.add(key)
        if issubclass(category, KdbenchNote):
            console.print(f"[yellow]note:[/] {escape(str(message))}", highlight=False)
        else:
            console.print(f"[dim]warning ({category.__name__}, shown once): {escape(' '.join(str(message).split()))}[/]",
                          highlight=False)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


FAILURE_CHARS = 300
"""Longest failure line: a library error's first line, without the C++ stack frames PyTorch appends."""


def failure_message(exc: BaseException) -> str:
    """The one line a failed job is reported with (the full traceback goes to ``failed/<job>.txt``)."""
    if isinstance(exc, KdbenchError):
        return one_line(str(exc)) or type(exc).__name__
    first = next((line for line in str(exc).splitlines() if line.strip()), "")
    text = one_line(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
    return text if len(text) <= FAILURE_CHARS else text[: FAILURE_CHARS - 1] + "…"


def planned_job(plan: dict, job_id: str, run_dir: str | Path) -> Job:
    """Job ``job_id`` of a ``plan.json``; a :class:`ConfigError` naming the run when it has none."""
    for data in plan["jobs"]:
        if data["id"] == job_id:
            return Job.from_dict(data)
    raise ConfigError(f"{Path(run_dir) / 'plan.json'}: no job '{job_id}' (its {len(plan['jobs'])} jobs are listed "
                      f"by `kdbench run --grid GRID --dry-run`)")


def claim_and_run(store: RunStore, job: Job, device: torch.device,
                  progress: Callable[[int, int], None] = lambda step, total: None,
                  failed_since: float | None = None) -> str:
    """Run ``job`` under its claim: ``"done"``, ``"already done"`` or ``"running elsewhere"``.

    Done-ness is checked again once the claim is held, so a job finished by another
    process while this one waited is ``"already done"``, never run again.  With
    ``failed_since``, a failure another process recorded since then is raised (once
    seen running elsewhere, a job is not retried by a concurrent run).  A failure is
    recorded (``failed/<id>``) before the claim is released and raised as one-line
    :class:`RunFailure`; a success removes the record an earlier attempt left.
    """
    if store.is_done(job.id):
        return "already done"
    missing = [d for d in job.deps if not store.is_done(d)]
    if missing:
        raise RunFailure(f"job {job.id}: its dependency {missing[0]} is not finished; run it first")
    with disk_errors(claims.lock_path(store.root, job.id)):
        taken = claims.acquire(store.root, job.id)
    if not taken:
        return "running elsewhere"
    try:
        if store.is_done(job.id):
            return "already done"
        record = store.failures().get(job.id) if failed_since is not None else None
        if record and record.get("time", 0) >= failed_since:
            raise RunFailure(f"{record['error']} (failed in another process)")
        try:
            from kdbench.benchmark.jobs import execute_job

            execute_job(job, store, device, progress)
            store.clear_failure(job.id)
        except Exception as exc:  # recorded while the claim is held, then raised as one line
            if store.is_done(job.id):  # it failed after it was in place: the job is finished
                return "done"
            message = failure_message(exc)
            store.record_failure(job, message, traceback.format_exc())
            raise RunFailure(message) from exc
    finally:
        claims.release(store.root, job.id)
    return "done"


Outcome = tuple[str, str, str]
"""``(job id, status, error)``: ``done``, ``already done``, ``running elsewhere`` or ``failed``."""


def claim_and_run_unit(store: RunStore, unit: list[Job], device: torch.device,
                       progress: Callable[[str, int, int], None] = lambda job, step, total: None,
                       failed_since: dict[str, float] | None = None) -> list[Outcome]:
    """Run a unit of work: one job (:func:`claim_and_run`), or the students of a lockstep group.

    Each job of a group is claimed first; those finished or running elsewhere are left out,
    the rest train together (:func:`~kdbench.benchmark.jobs.run_lockstep`, alone when one is
    left) and every claim is released at the end.  A job that fails fails alone, recorded as
    :func:`claim_and_run` records it; an error of the whole group (its teacher or data) fails
    every job it held.  Returns one outcome per job.
    """
    since = failed_since or {}
    if len(unit) == 1:
        job = unit[0]
        try:
            return [(job.id, claim_and_run(store, job, device, lambda s, t: progress(job.id, s, t),
                                           since.get(job.id)), "")]
        except RunFailure as exc:
            return [(job.id, "failed", str(exc))]
    outcomes: list[Outcome] = []
    held: list[Job] = []
    try:
        for job in unit:
            if store.is_done(job.id):
                outcomes.append((job.id, "already done", ""))
                continue
            missing = [d for d in job.deps if not store.is_done(d)]
            if missing:
                outcomes.append((job.id, "failed", f"job {job.id}: its dependency {missing[0]} is not finished"))
                continue
            with disk_errors(claims.lock_path(store.root, job.id)):
                taken = claims.acquire(store.root, job.id)
            if not taken:
                outcomes.append((job.id, "running elsewhere", ""))
                continue
            held.append(job)
            record = store.failures().get(job.id) if job.id in since else None
            if store.is_done(job.id) or (record and record.get("time", 0) >= since[job.id]):
                held.pop()
                claims.release(store.root, job.id)
                outcomes.append((job.id, "already done", "") if store.is_done(job.id) else
                                (job.id, "failed", f"{record['error']} (failed in another process)"))
        if len(held) == 1:
            job = held[0]
            errors = {job.id: _run_alone(store, job, device, lambda s, t: progress(job.id, s, t))}
        elif held:
            from kdbench.benchmark.jobs import run_lockstep

            try:
                errors = run_lockstep(held, store, device, progress)
            except Exception as exc:  # the group's own inputs (its teacher, its data): every job fails
                errors = {job.id: exc for job in held}
        else:
            errors = {}
        for job in held:
            error = errors[job.id]
            if error is None:
                store.clear_failure(job.id)
                outcomes.append((job.id, "done", ""))
            elif store.is_done(job.id):
                outcomes.append((job.id, "done", ""))
            else:
                message = failure_message(error)
                store.record_failure(job, message, "".join(traceback.format_exception(error)))
                outcomes.append((job.id, "failed", message))
    finally:
        for job in held:
            claims.release(store.root, job.id)
    return outcomes


def _run_alone(store: RunStore, job: Job, device: torch.device, progress) -> BaseException | None:
    """Run ``job`` (its claim held); its error, or ``None``."""
    from kdbench.benchmark.jobs import execute_job

    try:
        execute_job(job, store, device, progress)
    except Exception as exc:
        return exc
    return None


def set_threads(threads: int | None) -> None:
    """torch's intra-op thread count for this process (``None``: torch's default)."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads {threads}: must be at least 1")
        torch.set_num_threads(threads)


def run_job(run_dir: str | Path, job_id: str, device: str | None = None, threads: int | None = None,
            console: Console | None = None) -> str:
    """Run one planned job of ``run_dir`` (``kdbench run-job RUN_DIR JOB_ID``), claiming it first.

    Returns ``"done"``, ``"already done"`` or ``"running elsewhere"``; raises
    :class:`RunFailure` when the job (or a missing dependency) fails, :class:`ConfigError`
    for a missing ``plan.json`` or an unknown job id.  Run options saved in ``plan.json``
    (``compile``) reach the job through :attr:`RunStore.options`.
    """
    from kdbench.benchmark.profile import resolve_device

    plan = read_plan(run_dir)
    job = planned_job(plan, job_id, run_dir)
    set_threads(threads)
    dev = resolve_device(device)
    with notes_once(console or Console(stderr=True)):
        return claim_and_run(RunStore(run_dir), job, dev)


def run_jobs(run_dir: str | Path, job_ids: list[str], device: str | None = None, threads: int | None = None,
             console: Console | None = None) -> list[Outcome]:
    """Run planned jobs of ``run_dir`` (``kdbench run-job RUN_DIR JOB_ID…``): the students among
    them that form lockstep groups (at most the run's ``--lockstep``) train together, every
    other job alone, each under its claim.  Returns one outcome per job; failures are recorded,
    not raised.  A missing plan or an unknown job id is a :class:`ConfigError`."""
    from kdbench.benchmark.lockstep import LOCKSTEP_MAX, lockstep_units
    from kdbench.benchmark.profile import resolve_device

    plan = read_plan(run_dir)
    jobs = [planned_job(plan, job_id, run_dir) for job_id in dict.fromkeys(job_ids)]
    set_threads(threads)
    dev = resolve_device(device)
    store = RunStore(run_dir)
    outcomes: list[Outcome] = []
    with notes_once(console or Console(stderr=True)):
        for unit in lockstep_units(jobs, int(store.options.get("lockstep", LOCKSTEP_MAX))):
            outcomes += claim_and_run_unit(store, unit, dev)
    return outcomes


def worker_devices(device: str | None, workers: int | None) -> list[tuple[str | None, str | None]]:
    """``(device, CUDA_VISIBLE_DEVICES)`` of each worker.

    With CUDA and no GPU index named, one worker per visible GPU by default, worker ``i``
    pinned to GPU ``i mod N`` (an index into an inherited ``CUDA_VISIBLE_DEVICES``);
    otherwise ``workers`` (default 1) workers on ``device``.
    """
    from kdbench.benchmark.profile import resolve_device

    if workers is not None and workers < 1:
        raise ConfigError(f"--workers {workers}: must be at least 1")
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        count = torch.cuda.device_count()
        inherited = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
        visible = [v.strip() for v in inherited.split(",")][:count] if inherited else [str(i) for i in range(count)]
        return [("cuda", visible[i % count]) for i in range(workers or count)]
    return [(device, None)] * (workers or 1)


def worker_main(argv: list[str] | None = None) -> None:
    """A worker process (``python -m kdbench.benchmark.executors RUN_DIR DEVICE THREADS``): runs
    the units named on its stdin (``<job-id>[,<job-id>…] <failed-since>`` lines: one job, or a
    lockstep group), one at a time, until stdin closes, and reports on its stdout as JSON lines
    (ready, progress, each job's outcome, the unit's end); anything the jobs print goes to stderr."""
    import sys

    run_dir, device, threads = argv or sys.argv[1:]
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def send(**message) -> None:
        channel.write(json.dumps(message) + "\n")

    from kdbench.benchmark.profile import resolve_device

    set_threads(int(threads) if threads != "-" else None)
    dev = resolve_device(device if device != "-" else None)
    store = RunStore(run_dir)
    jobs = {j["id"]: Job.from_dict(j) for j in read_plan(run_dir)["jobs"]}
    send(ready=True)
    with notes_once(Console(stderr=True)):
        for line in sys.stdin:
            ids, since = line.split()
            unit = [jobs[job_id] for job_id in ids.split(",")]
            last: dict[str, float] = {}

            def progress(job_id: str, step: int, total: int) -> None:
                if time.monotonic() - last.get(job_id, 0.0) > 0.5 or step == total:
                    last[job_id] = time.monotonic()
                    send(job=job_id, step=step, total=total)

            try:
                outcomes = claim_and_run_unit(store, unit, dev, progress,
                                              {j.id: float(since) for j in unit} if since != "-" else None)
            except Exception as exc:
                outcomes = [(j.id, "failed", failure_message(exc)) for j in unit]
            for job_id, status, error in outcomes:
                send(job=job_id, status=status, error=error)
            send(unit_done=True)


class InProcess:
    """One slot: each unit runs here, in this process, when it is submitted.  The slot is busy
    until its outcomes are polled, so that each job's line is told when it ends, before the
    next unit starts (and its time is its own)."""

    def __init__(self, store: RunStore, device: torch.device, progress: Callable[[str, int, int], None]):
        self.store, self.device, self.progress = store, device, progress
        self.outcomes: list[Outcome] = []

    def free(self) -> bool:
        return not self.outcomes

    def submit(self, unit: list[Job], failed_since: dict[str, float]) -> None:
        self.outcomes += claim_and_run_unit(self.store, unit, self.device, self.progress, failed_since)

    def poll(self, timeout: float) -> list[tuple[str, str, str]]:
        if not self.outcomes:
            time.sleep(timeout)
        out, self.outcomes = self.outcomes, []
        return out

    def close(self) -> None:
        pass


class WorkerPool:
    """K worker processes (:func:`worker_main`), each pinned to one device, started once for the run.

    A worker that dies (an out-of-memory kill) fails its job, unless the job was already in
    place, and is replaced; one that dies before it is ready stops the run.
    """

    def __init__(self, store: RunStore, devices: list[tuple[str | None, str | None]], threads: int | None,
                 progress: Callable[[str, int, int], None]):
        self.store, self.threads, self.progress = store, threads, progress
        self.messages: queue.Queue = queue.Queue()
        self.workers = [self._start(d) for d in devices]

    def _start(self, device: tuple[str | None, str | None]) -> dict:
        import subprocess
        import sys
        import threading

        name, visible = device
        env = dict(os.environ, **({"CUDA_VISIBLE_DEVICES": visible} if visible is not None else {}))
        process = subprocess.Popen([sys.executable, "-m", "kdbench.benchmark.executors", str(self.store.root),
                                    name or "-", str(self.threads) if self.threads else "-"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        worker = {"device": device, "process": process, "job": None, "ready": False}

        def read() -> None:
            for line in process.stdout:
                self.messages.put((worker, json.loads(line)))

        worker["reader"] = threading.Thread(target=read, daemon=True)
        worker["reader"].start()
        return worker

    def free(self) -> bool:
        return any(w["job"] is None for w in self.workers)

    def submit(self, unit: list[Job], failed_since: dict[str, float]) -> None:
        worker = next(w for w in self.workers if w["job"] is None)
        worker["job"], worker["reported"] = unit, set()
        since = min((failed_since[j.id] for j in unit if j.id in failed_since), default=None)
        worker["process"].stdin.write(f"{','.join(j.id for j in unit)} {since if since is not None else '-'}\n")
        worker["process"].stdin.flush()

    def poll(self, timeout: float) -> list[tuple[str, str, str]]:
        out = []
        try:
            worker, message = self.messages.get(timeout=timeout)
            while True:
                if "ready" in message:
                    worker["ready"] = True
                elif "unit_done" in message:
                    worker["job"] = None
                elif "status" in message:
                    worker["reported"].add(message["job"])
                    out.append((message["job"], message["status"], message["error"]))
                else:
                    self.progress(message["job"], message["step"], message["total"])
                worker, message = self.messages.get_nowait()
        except queue.Empty:
            pass
        for i, worker in enumerate(self.workers):
            process, job = worker["process"], worker["job"]
            if process.poll() is None or worker["reader"].is_alive() or not self.messages.empty():
                continue
            if not worker["ready"]:
                raise RunFailure(f"a worker process could not start (exit code {process.returncode}); "
                                 "its error is above")
            for unfinished in [j for j in job or () if j.id not in worker["reported"]]:
                if self.store.is_done(unfinished.id):
                    out.append((unfinished.id, "done", ""))
                else:
                    message = f"its worker process died (exit code {process.returncode}; out of memory?)"
                    self.store.record_failure(unfinished, message, message + "\n")
                    out.append((unfinished.id, "failed", message))
            self.workers[i] = self._start(worker["device"])
        return out

    def close(self) -> None:
        """Let idle workers exit; stop any still running a job (the run was interrupted)."""
        import subprocess

        for worker in self.workers:
            try:
                worker["process"].stdin.close()
            except OSError:
                pass
            if worker["job"] is not None:
                worker["process"].terminate()
        for worker in self.workers:
            try:
                worker["process"].wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker["process"].kill()
                worker["process"].wait()
            worker["reader"].join(timeout=10)
            worker["process"].stdout.close()


def run_local(jobs: list[Job], store: RunStore, slots, finished: Callable[[Job, str, str], None],
              started: Callable[[Job], None] = lambda job: None, lockstep: int = 1) -> None:
    """Run ``jobs`` (unfinished jobs in dependency order) on ``slots`` (:class:`InProcess` or
    :class:`WorkerPool`), as units of work (:func:`~kdbench.benchmark.lockstep.lockstep_units`:
    lockstep groups of at most ``lockstep`` students): a unit starts when its jobs' dependencies
    are done, a failed or skipped dependency skips a job, a job running elsewhere is looked at
    again every :data:`POLL_SECONDS` (alone).

    ``finished(job, status, error)`` is called once per job with ``"done"``, ``"already done"``,
    ``"failed"`` or ``"skipped"``.
    """
    from kdbench.benchmark.lockstep import lockstep_units

    by_id = {j.id: j for j in jobs}
    state = {j.id: "pending" for j in jobs}
    units = lockstep_units(jobs, lockstep)
    elsewhere: dict[str, float] = {}
    tried: dict[str, float] = {}

    def ok(dep: str) -> bool:
        return state.get(dep) in ("done", "already done") or (dep not in state and store.is_done(dep))

    try:
        while any(s in ("pending", "running") for s in state.values()):
            for unit in units:
                for job in unit:
                    if state[job.id] == "pending" and any(state.get(d) in ("failed", "skipped") for d in job.deps):
                        state[job.id] = "skipped"
                        finished(job, "skipped", "")
                ready = [j for j in unit if state[j.id] == "pending" and all(ok(d) for d in j.deps)
                         and time.monotonic() - tried.get(j.id, -1e9) >= POLL_SECONDS]
                if not ready:
                    continue
                if not slots.free():
                    break
                for job in ready:
                    state[job.id] = "running"
                    started(job)
                slots.submit(ready, elsewhere)
            for job_id, status, error in slots.poll(POLL_SECONDS if "running" in state.values() else 0.05):
                if status == "running elsewhere":
                    state[job_id] = "pending"
                    elsewhere.setdefault(job_id, time.time())
                    tried[job_id] = time.monotonic()
                    continue
                state[job_id] = status
                finished(by_id[job_id], status, error)
    finally:
        slots.close()


if __name__ == "__main__":
    worker_main()
