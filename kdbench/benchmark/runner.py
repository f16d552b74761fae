"""Run a grid: plan it, execute the jobs that are not finished, render the leaderboard.

``run_grid`` is what ``kdbench run`` calls.  Jobs run in dependency order, in this
process, on one device.  A finished job is never redone or rewritten; a failed job is
reported (``failed/<job-id>.txt``) and only the jobs depending on it are skipped.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kdbench.benchmark.grid import GridSpec
from kdbench.benchmark.jobs import execute_job
from kdbench.benchmark.plan import Plan, build_plan
from kdbench.benchmark.profile import device_name, resolve_device
from kdbench.benchmark.store import RunStore, write_atomic
from kdbench.errors import KdbenchError


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


def save_plan(plan: Plan, run_dir: Path, device: str) -> None:
    """``plan.json``: the resolved grid, budget, device and every job (read by ``kdbench leaderboard``)."""
    data = {"grid": plan.grid.model_dump(mode="json"), "budget": plan.budget, "device": device,
            "jobs": [j.to_dict() for j in plan.jobs]}
    write_atomic(run_dir / "plan.json", json.dumps(data, indent=2, default=str))


def run_grid(grid: GridSpec, out: str | Path = "runs", budget: str | None = None, device: str | None = None,
             dry_run: bool = False, console: Console | None = None) -> RunResult:
    """Plan ``grid`` and run every job whose result is missing; render the leaderboard."""
    from kdbench.leaderboards.render import write_leaderboard

    console = console or Console(stderr=True)
    dev = resolve_device(device)
    dev_name = device_name(dev)
    plan = build_plan(grid, budget, device=dev_name)
    run_dir = Path(out) / grid.name
    store = RunStore(run_dir)
    result = RunResult(run_dir, plan)
    if dry_run:
        console.print(plan_table(plan, store))
        return result
    run_dir.mkdir(parents=True, exist_ok=True)
    store.clean_staging()
    save_plan(plan, run_dir, dev_name)
    blocked: set[str] = set()
    todo = [j for j in plan.jobs if not store.is_done(j.id)]
    result.done = [j.id for j in plan.jobs if store.is_done(j.id)]
    console.print(f"[bold]{grid.name}[/]: {len(plan.jobs)} jobs, {len(result.done)} already done, "
                  f"{len(todo)} to run on {dev_name} (budget {plan.budget})")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        overall = progress.add_task("all jobs", total=len(todo))
        for job in todo:
            if any(d in blocked or d in result.failed for d in job.deps):
                blocked.add(job.id)
                result.skipped.append(job.id)
                progress.advance(overall)
                continue
            task = progress.add_task(escape(describe(job)), total=None)
            try:
                execute_job(job, store, dev, lambda step, total: progress.update(task, completed=step, total=total))
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # a failed job must not stop the others
                message = str(exc) if isinstance(exc, KdbenchError) else f"{type(exc).__name__}: {exc}"
                result.failed[job.id] = message
                write_atomic(run_dir / "failed" / f"{job.id}.txt", traceback.format_exc())
                progress.console.print(f"[red]failed[/] {escape(describe(job))}: {escape(message)}")
            else:
                result.done.append(job.id)
            progress.update(task, visible=False)
            progress.advance(overall)
    if result.failed:
        console.print(f"[red]{len(result.failed)} job(s) failed[/], {len(result.skipped)} skipped; "
                      f"tracebacks in {run_dir / 'failed'}")
    result.leaderboard = write_leaderboard(run_dir)
    return result
