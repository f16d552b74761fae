"""Run a grid's jobs on a Slurm cluster through submitit (``kdbench run --executor slurm``).

Every unit of work that is not finished becomes one Slurm job, submitted with submitit in
the plan's order: a kdbench job, or the students of a lockstep group
(:mod:`kdbench.benchmark.lockstep`), which train together in one Slurm job and share their
teacher's forward.  A job's dependencies become Slurm dependencies (``afterok``), so Slurm
starts it only once they succeeded, and ``--kill-on-invalid-dep=yes`` cancels it as soon
as one of them failed (it is reported ``skipped``).  Each Slurm job runs
:func:`kdbench.benchmark.executors.run_job` on the shared run directory: results land
where the local executor puts them, and the job's claim (a file lock) keeps two
submissions from running one job twice.

Resubmitting a grid redoes nothing finished: finished jobs are not submitted, and a job
whose Slurm job from an earlier submission is still pending or running is watched rather
than submitted again (``RUN_DIR/.slurm/jobs.json`` maps kdbench jobs to Slurm jobs).  A
Slurm job that finds its kdbench job claimed by a process outside Slurm waits for it.
A job that reaches its time limit or is pre-empted is requeued by submitit and resumes
from its last training checkpoint.

Options (``docs/slurm.md``): ``partition``, ``time`` (minutes), ``gpus`` and ``cpus`` per
job, ``account``; the grid's ``executor:`` block under the command line's.  ``folder``
holds submitit's scripts and logs (default ``RUN_DIR/.slurm``); ``poll`` is the seconds
between two looks at the queue; ``device`` and ``threads`` are passed to ``run_job``
(``threads`` defaults to ``cpus``).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from pathlib import Path

import submitit
from rich.console import Console
from rich.markup import escape
from submitit.core.utils import FailedJobError

from kdbench.benchmark.lockstep import LOCKSTEP_MAX, lockstep_units
from kdbench.benchmark.plan import Plan
from kdbench.benchmark.store import RunStore, one_line, write_atomic
from kdbench.errors import ConfigError

OPTIONS = ("partition", "time", "gpus", "account", "cpus")
"""Slurm settings a grid's ``executor:`` block and the command line give."""
POLL_SECONDS = 10.0
"""Default seconds between two looks at the queue (one ``sacct`` call each)."""
ALIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED",
                   "PREEMPTED"})
"""Slurm job states of a job that may still run."""


def merged_options(plan: Plan, options: dict | None) -> dict:
    """The grid's ``executor:`` block updated with the ``options`` that are set (the command line wins)."""
    merged = plan.grid.executor.model_dump()
    merged.update({k: v for k, v in (options or {}).items() if v is not None})
    return merged


class SlurmTask(submitit.helpers.Checkpointable):
    """What one Slurm job runs: a unit of work, ``run_job(run_dir, job_id)`` for one job (its
    status; a failure is raised, so that ``afterok`` holds its dependants) or ``run_jobs`` for
    the students of a lockstep group (their statuses; a student that fails is recorded and
    fails alone, its dependants are cancelled by the submitting process).

    While another process outside this submission holds a job's claim (``"running
    elsewhere"``), it waits and tries again, so the jobs depending on it start only once
    it is finished.  Being checkpointable, it is requeued on a time-out or pre-emption.
    """

    def __init__(self, run_dir: Path, job_ids: list[str], device: str | None, threads: int | None, poll: float):
        self.run_dir, self.job_ids, self.device, self.threads, self.poll = run_dir, job_ids, device, threads, poll

    def __call__(self) -> str | dict[str, str]:
        from kdbench.benchmark.executors import run_job, run_jobs

        todo, statuses = list(self.job_ids), {}
        while True:
            if len(self.job_ids) == 1:
                statuses[todo[0]] = run_job(self.run_dir, todo[0], device=self.device, threads=self.threads)
            else:
                statuses.update({job_id: status for job_id, status, _ in
                                 run_jobs(self.run_dir, todo, device=self.device, threads=self.threads)})
            todo = [job_id for job_id in todo if statuses[job_id] == "running elsewhere"]
            if not todo:
                return statuses[self.job_ids[0]] if len(self.job_ids) == 1 else statuses
            time.sleep(self.poll)


class _Executor(submitit.SlurmExecutor):
    """submitit's Slurm executor, leaving ``--time`` out when no limit is asked for (submitit
    would ask for 5 minutes), so the partition's default time limit applies."""

    def __init__(self, folder: Path, time_limit: int | None):
        super().__init__(folder)
        self.time_limit = time_limit

    def _make_submission_file_text(self, command: str, uid: str) -> str:
        text = super()._make_submission_file_text(command, uid)
        return text if self.time_limit else re.sub(r"(?m)^#SBATCH --time=.*\n", "", text)


def _slurm_parameters(options: dict) -> dict:
    """submitit's ``SlurmExecutor`` parameters for ``options``."""
    names = {"partition": "partition", "time": "time", "gpus": "gpus_per_node", "account": "account",
             "cpus": "cpus_per_task"}
    return {names[k]: options[k] for k in OPTIONS if options.get(k)}


def _previous(folder: Path) -> dict[str, str]:
    """kdbench job id → Slurm job id of earlier submissions (``jobs.json``)."""
    try:
        data = json.loads((folder / "jobs.json").read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _adopt(folder: Path, previous: dict[str, str], todo: list) -> dict[str, submitit.SlurmJob]:
    """The Slurm jobs of earlier submissions that are still pending or running, for jobs in ``todo``."""
    candidates = {j.id: submitit.SlurmJob(folder=folder, job_id=previous[j.id]) for j in todo if j.id in previous}
    if not candidates:
        return {}
    submitit.SlurmJob.watcher.update()
    return {k: sjob for k, sjob in candidates.items()
            if sjob.watcher.get_state(sjob.job_id, mode="cache").split()[0].upper() in ALIVE}


def _submit(executor: _Executor, task: SlurmTask, name: str, parameters: dict, deps: list[str]) -> submitit.SlurmJob:
    extra = {"kill-on-invalid-dep": "yes"}
    if deps:
        extra["dependency"] = "afterok:" + ":".join(deps)
    executor.update_parameters(job_name=name, additional_parameters=extra, **parameters)
    with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's errors; they are raised too
        return executor.submit(task)


def _error_line(text: str) -> str:
    """The exception line of a traceback submitit reports (a kdbench error without its class name)."""
    parts = re.split(r"\n-{10,}\n", text)
    lines = [line for line in (parts[1] if len(parts) > 2 else text).splitlines() if line.strip()]
    return one_line(re.sub(r"^kdbench\.errors\.\w+: ", "", lines[-1])) if lines else "failed"


def run_on_slurm(plan: Plan, store: RunStore, options: dict | None, console: Console | None = None) -> dict[str, str]:
    """Run the plan's unfinished jobs as Slurm jobs and wait for them; job id → ``"done"``,
    ``"failed: <one line>"`` or ``"skipped"`` (a dependency failed), for every job of the plan.

    ``options``: see the module's docstring; unset ones come from the grid's ``executor:``
    block.  A failed job is recorded in ``failed/`` like a local failure.  Interrupting the
    wait leaves the Slurm jobs running; running the grid again waits for them.
    """
    console = console or Console(stderr=True)
    options = merged_options(plan, options)
    folder = Path(options.get("folder") or store.root / ".slurm").absolute()
    poll = float(options.get("poll") or POLL_SECONDS)
    threads = options.get("threads") or options.get("cpus")
    statuses = {j.id: "done" for j in plan.jobs if store.is_done(j.id)}
    todo = [j for j in plan.jobs if j.id not in statuses]
    if not todo:
        return statuses
    folder.mkdir(parents=True, exist_ok=True)
    try:
        executor = _Executor(folder, options.get("time"))
    except RuntimeError as exc:
        raise ConfigError(f"--executor slurm: no Slurm on this machine ({one_line(str(exc))}); "
                          "run on a cluster's login node, or see docs/slurm.md for a local test cluster") from None
    previous = _previous(folder)
    jobs = _adopt(folder, previous, todo)
    adopted = len(jobs)
    parameters = _slurm_parameters(options)
    root = store.root.absolute()
    submitted = []
    for unit in lockstep_units([j for j in todo if j.id not in jobs], int(store.options.get("lockstep", LOCKSTEP_MAX))):
        deps = list(dict.fromkeys(jobs[d].job_id for job in unit for d in job.deps if d in jobs))
        try:
            task = SlurmTask(root, [j.id for j in unit], options.get("device"), threads, poll)
            sjob = _submit(executor, task, f"kdbench:{unit[0].id}" + (f"+{len(unit) - 1}" if len(unit) > 1 else ""),
                           parameters, deps)
        except (FailedJobError, OSError) as exc:  # sbatch's own message
            for sjob in submitted:
                sjob.cancel(check=False)
            raise ConfigError(f"--executor slurm: sbatch refused job {unit[0].id} "
                              f"({', '.join(f'{k}={v}' for k, v in parameters.items()) or 'no options'}): "
                              f"{one_line(str(exc))}") from None
        submitted.append(sjob)
        for job in unit:  # a lockstep group is one Slurm job
            jobs[job.id] = sjob
            previous[job.id] = sjob.job_id
        write_atomic(folder / "jobs.json", json.dumps(previous, indent=2))
    where = ", ".join(f"{k} {v}" for k, v in parameters.items()) or "the default partition"
    console.print(f"Slurm: {len(submitted)} Slurm job(s) submitted for {len(jobs) - adopted} job(s), {adopted} "
                  f"still queued from an earlier "
                  f"submission ({where}); logs in {folder}", highlight=False)
    return _wait(plan, store, jobs, statuses, poll, console)


def _wait(plan: Plan, store: RunStore, jobs: dict[str, submitit.SlurmJob], statuses: dict[str, str], poll: float,
          console: Console) -> dict[str, str]:
    from kdbench.benchmark.runner import describe

    pending = dict(jobs)
    seen: dict[str, str] = {}
    total, started = len(jobs), time.time()
    try:
        while pending:
            submitit.SlurmJob.watcher.update()
            for job in [j for j in plan.jobs if j.id in pending]:
                sjob = pending[job.id]
                state = sjob.watcher.get_state(sjob.job_id, mode="cache")
                if any(statuses.get(d, "done") != "done" for d in job.deps) and not sjob.done():
                    sjob.cancel(check=False)  # a dependency failed: Slurm would keep it pending otherwise
                    state = "CANCELLED"
                elif not sjob.done():
                    if seen.get(job.id) != state and state not in ("UNKNOWN", "PENDING"):
                        seen[job.id] = state  # e.g. RUNNING, REQUEUED
                        console.print(f"{escape(describe(job))}: Slurm job {sjob.job_id} {state}", highlight=False)
                    continue
                if any(d in pending for d in job.deps):
                    continue  # told after its dependencies
                statuses[job.id] = _outcome(job, sjob, state, statuses, store)
                del pending[job.id]
                console.print(f"[{total - len(pending)}/{total}] {escape(describe(job))}: "
                              f"{escape(statuses[job.id])} · elapsed {time.time() - started:.0f} s", highlight=False)
            if pending:
                time.sleep(poll)
    except KeyboardInterrupt:
        console.print("Slurm: stopped waiting; the Slurm jobs go on. Run the same command again to wait for "
                      "them (nothing finished is redone).", highlight=False)
        raise
    return statuses


def _outcome(job, sjob: submitit.SlurmJob, state: str, statuses: dict[str, str], store: RunStore) -> str:
    """The status of a finished Slurm job: ``run_job``'s, its failure, or ``skipped``."""
    if store.is_done(job.id):
        return "done"
    if sjob.paths.result_pickle.exists():
        error = sjob.exception()
        if error is None and not store.failures().get(job.id):
            return "done"  # "already done" elsewhere
        record = store.failures().get(job.id)  # run_job(s) records a failing job itself
        if record:
            return f"failed: {record['error']}"
        message, log = _error_line(str(error)), str(error)
    elif any(statuses.get(d, "done") != "done" for d in job.deps):
        return "skipped"
    else:  # killed, cancelled, out of time or memory: no result
        log = sjob.paths.stderr.read_text(errors="replace") if sjob.paths.stderr.exists() else ""
        message = f"Slurm job {sjob.job_id} ended {state} (log: {sjob.paths.stderr})"
    store.record_failure(job, message, log)
    return f"failed: {message}"
