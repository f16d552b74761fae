"""Run a grid: plan it, execute the jobs that are not finished, render the leaderboard.

``run_grid`` is what ``kdbench run`` calls.  Jobs run in dependency order, each under its
claim (:mod:`kdbench.benchmark.claims`): in this process on one device, in K local worker
processes (one per visible GPU by default, ``--workers K``), or on a Slurm cluster
(``--executor slurm``, :mod:`kdbench.benchmark.slurm`).  Before a local run, its time on
this device is estimated (:mod:`kdbench.benchmark.estimate`).  A finished job is never
redone or rewritten; a failed job is recorded (``failed/<job-id>.txt`` and ``.json``) and
only the jobs depending on it are skipped.  Each budget of a grid has its own run directory, ``OUT/<grid>/<budget>/``,
so a smoke run never touches the plan or results of a paper run.

Progress: in a terminal, a live bar per job and an overall ETA; otherwise (``nohup``,
a redirected log, CI) one plain line per finished job with elapsed time and ETA.
Warnings are shown once each; :class:`~kdbench.errors.KdbenchNote` s as ``note:``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kdbench.benchmark.executors import InProcess, WorkerPool, notes_once, run_local, set_threads, worker_devices
from kdbench.benchmark.grid import GridSpec
from kdbench.benchmark.lockstep import LOCKSTEP_MAX, lockstep_units
from kdbench.benchmark.plan import Plan, build_plan
from kdbench.benchmark.profile import device_name, resolve_device
from kdbench.benchmark.store import RunStore, write_atomic
from kdbench.errors import ConfigError
from kdbench.lock import environment_drift

EXECUTORS = ("local", "slurm")


@dataclass
class RunResult:
    """What a run did."""

    run_dir: Path
    plan: Plan
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    leaderboard: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


def describe(job) -> str:
    """A short human label for a job."""
    m = job.meta
    where = f"{m.get('dataset', '')} f{m.get('fold', '')} s{m.get('seed', '')}" if "fold" in m else m.get("dataset", "")
    if job.kind == "profile":
        return f"profile {m['model_label']}"
    if m.get("role") == "student":
        teacher = f" ← {m['teacher_label']}" if m.get("teacher_label") else ""
        what = f"{m['model_label']} [{m['method_label']}]{teacher}"
    else:
        what = m.get("model_label", "")
    return f"{job.kind} {what} · {where}"


def plan_table(plan: Plan, store: RunStore) -> Table:
    """The plan as a table: job, what it is, depends on, status."""
    table = Table(title=f"plan: {plan.grid.name} (budget {plan.budget}, {len(plan.jobs)} jobs)")
    for column in ("job", "what", "depends on", "status"):
        table.add_column(column, overflow="fold")
    for job in plan.jobs:
        status = "done" if store.is_done(job.id) else "pending"
        table.add_row(job.id, escape(describe(job)), ", ".join(job.deps) or "—", status)
    return table


def effective_lines(plan: Plan) -> list[str]:
    """What the budget runs and what it changed from the grid, as short lines."""
    e = plan.effective
    steps = f", at most {e['max_steps']} steps" if e.get("max_steps") else ""
    widths = ", ".join(f"{w:g}" for w in e["student_width"])
    lines = [f"budget {plan.budget}: epochs {e['epochs']}{steps}, image {e['image_size']}², batch {e['batch_size']}, "
             f"student width {widths}, seeds {e['seeds']}, folds {e['folds']}"]
    lines.append("budget changed: " + ("; ".join(e["changed"]) if e["changed"] else "nothing (the grid's own recipe)"))
    return lines


def versions() -> dict[str, str]:
    """Versions of Python, kdbench and the libraries a result depends on (provenance)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for package in ("kdbench", "torch", "segmentation-models-pytorch", "timm", "monai", "numpy"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


def save_plan(plan: Plan, run_dir: Path, device: str, options: dict | None = None) -> None:
    """``plan.json``: the resolved grid and its hash, budget, effective settings, the planning
    device, package versions and how they differ from kdbench's lock, the run's ``options`` (``compile``; read back by every job
    through :attr:`RunStore.options`) and every job.

    ``grid_sha256`` hashes the resolved grid (the file with its ``--set`` overrides and
    ``--dataset``), so two runs with one hash ran the same grid.
    """
    grid = plan.grid.model_dump(mode="json")
    digest = hashlib.sha256(json.dumps(grid, sort_keys=True).encode()).hexdigest()
    data = {"grid": grid, "grid_sha256": digest, "budget": plan.budget, "device": device,
            "versions": versions(), "environment": environment_drift(), "effective": plan.effective, "options": options or {},
            "jobs": [j.to_dict() for j in plan.jobs]}
    write_atomic(run_dir / "plan.json", json.dumps(data, indent=2, default=str))


def run_dir_of(grid: GridSpec, out: str | Path, budget: str | None = None) -> Path:
    """``OUT/<grid name>/<budget>``: each budget of a grid keeps its own plan and results."""
    return Path(out) / grid.name / (budget or grid.budget)


def precision_of(device: torch.device) -> str:
    """The training precision on ``device``: bf16 autocast on CUDA (see ``train_model``), else fp32."""
    return "bf16-autocast" if device.type == "cuda" else "fp32"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class Eta:
    """Remaining time from the mean duration of finished jobs of the same kind, shared by ``workers``."""

    def __init__(self, jobs: list, workers: int = 1):
        self.remaining = {j.id: j.kind for j in jobs}
        self.workers = workers
        self.seconds: dict[str, list[float]] = {}

    def finished(self, job, seconds: float | None) -> None:
        self.remaining.pop(job.id, None)
        if seconds is not None:
            self.seconds.setdefault(job.kind, []).append(seconds)

    def estimate(self) -> float | None:
        """Seconds left, or ``None`` until a job has finished."""
        if not self.seconds:
            return None
        overall = [s for v in self.seconds.values() for s in v]
        mean = {k: sum(v) / len(v) for k, v in self.seconds.items()}
        fallback = sum(overall) / len(overall)
        return sum(mean.get(kind, fallback) for kind in self.remaining.values()) / self.workers

    def text(self) -> str:
        left = self.estimate()
        return "ETA –" if left is None else f"ETA {_clock(left)}"


def run_grid(grid: GridSpec, out: str | Path = "runs", budget: str | None = None, device: str | None = None,
             dry_run: bool = False, console: Console | None = None, threads: int | None = None,
             workers: int | None = None, executor: str = "local", executor_options: dict | None = None,
             compile: bool = False, lockstep: int = LOCKSTEP_MAX) -> RunResult:
    """Plan ``grid`` and run every job whose result is missing; render the leaderboard.

    ``threads`` sets torch's intra-op thread count for this process and every worker (on a
    busy 2-core machine one thread can train several times faster than two); each job
    records the count it ran with.  ``workers`` jobs run at once (default: one per visible
    GPU, else 1; one runs in this process).  ``executor="slurm"`` submits the plan to Slurm
    with ``executor_options`` (partition, time, gpus, account; see
    :func:`kdbench.benchmark.slurm.run_on_slurm`).  ``compile`` trains with ``torch.compile``;
    it is saved in ``plan.json`` under ``options``.  ``lockstep`` students of one teacher
    source, data, fold, seed and recipe train together, sharing each batch and teacher forward
    (:mod:`kdbench.benchmark.lockstep`; 1: each alone).
    """
    from kdbench.benchmark.estimate import estimate_lines, estimate_plan
    from kdbench.leaderboards.render import write_leaderboard

    console = console or Console(stderr=True)
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    set_threads(threads)
    dev = resolve_device(device)
    dev_name = device_name(dev)
    slots = worker_devices(device, workers) if executor == "local" else []
    with notes_once(console):
        plan = build_plan(grid, budget, device=dev_name, precision=precision_of(dev))
        run_dir = run_dir_of(grid, out, plan.budget)
        store = RunStore(run_dir)
        result = RunResult(run_dir, plan)
        todo = [j for j in plan.jobs if not store.is_done(j.id)]
        if dry_run:
            for line in effective_lines(plan):
                console.print(escape(line), highlight=False)
            if executor == "local":
                for line in estimate_lines(estimate_plan(plan.jobs, todo, dev), plan.budget, dev_name, len(slots),
                                           len(todo)):
                    console.print(line, highlight=False)
            console.print(lockstep_line(todo, lockstep), highlight=False)
            console.print(plan_table(plan, store))
            return result
        run_dir.mkdir(parents=True, exist_ok=True)
        store.clean_staging()
        if lockstep < 1:
            raise ConfigError(f"--lockstep {lockstep}: must be at least 1 (1 trains each student alone)")
        save_plan(plan, run_dir, dev_name, {"compile": compile, "lockstep": lockstep})
        if executor == "slurm":
            given = {k: v for k, v in {"threads": threads, "device": device}.items() if v is not None}
            _run_slurm(plan, store, {**given, **(executor_options or {})}, result, console)
        else:
            for line in estimate_lines(estimate_plan(plan.jobs, todo, dev), plan.budget, dev_name, len(slots),
                                           len(todo)):
                console.print(line, highlight=False)
            _execute(plan, store, dev, dev_name, slots, threads, result, console, lockstep)
        if result.failed:
            console.print(f"[red]{len(result.failed)} job(s) failed[/], {len(result.skipped)} skipped; "
                          f"tracebacks in {run_dir / 'failed'}")
        result.leaderboard = write_leaderboard(run_dir)
    return result


def _run_slurm(plan: Plan, store: RunStore, options: dict, result: RunResult, console: Console) -> None:
    """Hand the plan to Slurm and fold the job statuses it returns into ``result``."""
    from kdbench.benchmark.slurm import run_on_slurm

    for job_id, status in run_on_slurm(plan, store, options, console).items():
        if status == "done":
            result.done.append(job_id)
        elif status == "skipped":
            result.skipped.append(job_id)
        else:
            result.failed[job_id] = status.split(":", 1)[-1].strip() or status


def lockstep_line(jobs: list, lockstep: int) -> str:
    """One line: how the students among ``jobs`` are grouped to share their teacher's forward."""
    groups = [u for u in lockstep_units(jobs, lockstep) if u[0].kind == "student"]
    together = [len(u) for u in groups if len(u) > 1]
    if not together:
        return "lockstep: every student trains alone"
    alone = sum(1 for u in groups if len(u) == 1)
    return (f"lockstep: {sum(together)} students in {len(together)} group(s) of {', '.join(map(str, together))} "
            f"sharing each batch and teacher forward (at most {lockstep}; --lockstep 1: each alone)"
            + (f"; {alone} alone" if alone else ""))


def _execute(plan: Plan, store: RunStore, dev: torch.device, dev_name: str, slots: list, threads: int | None,
             result: RunResult, console: Console, lockstep: int = LOCKSTEP_MAX) -> None:
    todo = [j for j in plan.jobs if not store.is_done(j.id)]
    result.done = [j.id for j in plan.jobs if store.is_done(j.id)]
    where = dev_name if len(slots) == 1 else f"{len(slots)} workers ({', '.join(sorted({_slot(s) for s in slots}))})"
    console.print(f"[bold]{escape(plan.grid.name)}[/]: {len(plan.jobs)} jobs, {len(result.done)} already done, "
                  f"{len(todo)} to run on {escape(where)} (budget {plan.budget}) → {store.root}", highlight=False)
    for line in effective_lines(plan):
        console.print(escape(line), highlight=False)
    console.print(lockstep_line(todo, lockstep), highlight=False)
    eta = Eta(todo, len(slots))
    started = time.time()
    live = console.is_terminal
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[eta]}"))
    with Progress(*columns, console=console, transient=False, disable=not live) as progress:
        overall = progress.add_task("all jobs", total=len(todo), eta=eta.text())
        tasks: dict[str, tuple[int, float]] = {}
        count = [0]

        def begin(job) -> None:
            if job.id not in tasks:
                tasks[job.id] = (progress.add_task(escape(describe(job)), total=None, eta=""), time.time())

        def advance(job_id: str, step: int, total: int) -> None:
            if job_id in tasks:
                progress.update(tasks[job_id][0], completed=step, total=total)

        def finished(job, status: str, error: str) -> None:
            task, t0 = tasks.pop(job.id, (None, None))
            if status == "skipped":
                result.skipped.append(job.id)
                eta.finished(job, None)
                line = "skipped (a dependency failed)"
            else:
                eta.finished(job, time.time() - t0)
                progress.update(task, visible=False)
                if status == "failed":
                    result.failed[job.id] = error
                    line = f"[red]failed[/]: {escape(error)}"
                else:
                    result.done.append(job.id)
                    line = "done" if status == "done" else "already done (by another process)"
                line += f" in {time.time() - t0:.1f} s"
            count[0] += 1
            progress.update(overall, advance=1, eta=eta.text())
            if not live or line.startswith("[red]"):
                progress.console.print(f"[{count[0]}/{len(todo)}] {escape(describe(job))}: {line} · elapsed "
                                       f"{_clock(time.time() - started)} · {eta.text()}", highlight=False)

        runner = InProcess(store, dev, advance) if len(slots) == 1 else WorkerPool(store, slots, threads, advance)
        run_local(todo, store, runner, finished, begin, lockstep)


def _slot(slot: tuple[str | None, str | None]) -> str:
    device, visible = slot
    return f"GPU {visible}" if visible is not None else (device or "cpu")
