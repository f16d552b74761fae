"""Run a grid: plan it, execute the jobs that are not finished, render the leaderboard.

``run_grid`` is what ``kdbench run`` calls.  Jobs run in dependency order, in this
process, on one device.  A finished job is never redone or rewritten; a failed job is
recorded (``failed/<job-id>.txt`` and ``.json``) and only the jobs depending on it are
skipped.  Each budget of a grid has its own run directory, ``OUT/<grid>/<budget>/``,
so a smoke run never touches the plan or results of a paper run.

Progress: in a terminal, a live bar per job and an overall ETA; otherwise (``nohup``,
a redirected log, CI) one plain line per finished job with elapsed time and ETA.
Warnings are shown once each; :class:`~kdbench.errors.KdbenchNote` s as ``note:``.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kdbench.benchmark.grid import GridSpec
from kdbench.benchmark.jobs import execute_job
from kdbench.benchmark.plan import Plan, build_plan
from kdbench.benchmark.profile import device_name, resolve_device
from kdbench.benchmark.store import RunStore, one_line, write_atomic
from kdbench.errors import ConfigError, KdbenchError, KdbenchNote


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


def save_plan(plan: Plan, run_dir: Path, device: str) -> None:
    """``plan.json``: the resolved grid and its hash, budget, effective settings, the planning
    device, package versions and every job.

    ``grid_sha256`` hashes the resolved grid (the file with its ``--set`` overrides and
    ``--dataset``), so two runs with one hash ran the same grid.
    """
    grid = plan.grid.model_dump(mode="json")
    digest = hashlib.sha256(json.dumps(grid, sort_keys=True).encode()).hexdigest()
    data = {"grid": grid, "grid_sha256": digest, "budget": plan.budget, "device": device,
            "versions": versions(), "effective": plan.effective, "jobs": [j.to_dict() for j in plan.jobs]}
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
    """Remaining time from the mean duration of finished jobs of the same kind."""

    def __init__(self, jobs: list):
        self.remaining = {j.id: j.kind for j in jobs}
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
        return sum(mean.get(kind, fallback) for kind in self.remaining.values())

    def text(self) -> str:
        left = self.estimate()
        return "ETA –" if left is None else f"ETA {_clock(left)}"


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


def _failure_message(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, KdbenchError) else f"{type(exc).__name__}: {exc}"
    return one_line(text) or type(exc).__name__


def run_grid(grid: GridSpec, out: str | Path = "runs", budget: str | None = None, device: str | None = None,
             dry_run: bool = False, console: Console | None = None, threads: int | None = None) -> RunResult:
    """Plan ``grid`` and run every job whose result is missing; render the leaderboard.

    ``threads`` sets torch's intra-op thread count for this process (on a busy 2-core
    machine one thread can train several times faster than two); each job records the
    count it ran with.
    """
    from kdbench.leaderboards.render import write_leaderboard

    console = console or Console(stderr=True)
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads {threads}: must be at least 1")
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    dev_name = device_name(dev)
    with notes_once(console):
        plan = build_plan(grid, budget, device=dev_name, precision=precision_of(dev))
        run_dir = run_dir_of(grid, out, plan.budget)
        store = RunStore(run_dir)
        result = RunResult(run_dir, plan)
        if dry_run:
            for line in effective_lines(plan):
                console.print(escape(line), highlight=False)
            console.print(plan_table(plan, store))
            return result
        run_dir.mkdir(parents=True, exist_ok=True)
        store.clean_staging()
        save_plan(plan, run_dir, dev_name)
        _execute(plan, store, dev, dev_name, result, console)
        if result.failed:
            console.print(f"[red]{len(result.failed)} job(s) failed[/], {len(result.skipped)} skipped; "
                          f"tracebacks in {run_dir / 'failed'}")
        result.leaderboard = write_leaderboard(run_dir)
    return result


def _execute(plan: Plan, store: RunStore, dev: torch.device, dev_name: str, result: RunResult,
             console: Console) -> None:
    todo = [j for j in plan.jobs if not store.is_done(j.id)]
    result.done = [j.id for j in plan.jobs if store.is_done(j.id)]
    console.print(f"[bold]{escape(plan.grid.name)}[/]: {len(plan.jobs)} jobs, {len(result.done)} already done, "
                  f"{len(todo)} to run on {dev_name} (budget {plan.budget}) → {store.root}", highlight=False)
    for line in effective_lines(plan):
        console.print(escape(line), highlight=False)
    eta = Eta(todo)
    started = time.time()
    live = console.is_terminal
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[eta]}"))
    with Progress(*columns, console=console, transient=False, disable=not live) as progress:
        overall = progress.add_task("all jobs", total=len(todo), eta=eta.text())
        for n, job in enumerate(todo, 1):
            if any(d in result.skipped or d in result.failed for d in job.deps):
                result.skipped.append(job.id)
                eta.finished(job, None)
                status = "skipped (a dependency failed)"
            else:
                task = progress.add_task(escape(describe(job)), total=None, eta="")
                t0 = time.time()
                try:
                    execute_job(job, store, dev, lambda step, total: progress.update(task, completed=step, total=total))
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # a failed job must not stop the others
                    message = _failure_message(exc)
                    result.failed[job.id] = message
                    store.record_failure(job, message, traceback.format_exc())
                    status = f"[red]failed[/]: {escape(message)}"
                else:
                    result.done.append(job.id)
                    status = "done"
                eta.finished(job, time.time() - t0)
                progress.update(task, visible=False)
                status += f" in {time.time() - t0:.1f} s"
            progress.update(overall, advance=1, eta=eta.text())
            if not live or status.startswith("[red]"):
                progress.console.print(f"[{n}/{len(todo)}] {escape(describe(job))}: {status} · elapsed "
                                       f"{_clock(time.time() - started)} · {eta.text()}", highlight=False)
