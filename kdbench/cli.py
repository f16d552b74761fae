"""The ``kdbench`` command line (Typer).  Thin: it parses, then calls library functions.

Every :class:`~kdbench.errors.KdbenchError` is printed as one red line on stderr and
exits with status 2 — never a traceback.

Start-up (issue 11): at the top level this module imports only Typer, Rich and the
standard library; each command imports the library code it calls, so ``kdbench --help``
loads no torch.
"""

from __future__ import annotations

import json
import platform
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kdbench.benchmark.lockstep import LOCKSTEP_MAX
from kdbench.errors import KdbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark knowledge distillation for medical image segmentation.")
out = Console()
err = Console(stderr=True, soft_wrap=True)


def _mount_datasets_app() -> None:
    from kdbench.datasets.cli import datasets_app

    app.add_typer(datasets_app, name="datasets")


_mount_datasets_app()

docs_app = typer.Typer(no_args_is_help=True, help="Build the documentation site with chosen runs published.")
app.add_typer(docs_app, name="docs")


@docs_app.command("build")
def docs_build(
    run_dirs: list[Path] = typer.Argument(None, help="Runs to publish: run directories (runs/<grid>/<budget>) or "
                                                     "directories of runs. None: the committed phantom smoke results."),
    site_dir: Path = typer.Option(Path("site"), "--site-dir", help="Where the site is written."),
) -> None:
    """Build the site (mkdocs, strict) with one leaderboard page per run and its pictures."""
    from kdbench.site import build_site

    err.print(f"site: {build_site(run_dirs or [], site_dir)}", highlight=False)


@docs_app.command("export")
def docs_export(run_dir: Path = typer.Argument(..., help="A run directory (runs/<grid>/<budget>)."),
                dest: Path = typer.Argument(..., help="Where to copy it, e.g. docs-results/quickstart/smoke.")) -> None:
    """Copy a run's publishable files (plans, metrics, profiles, logs, leaderboard, pictures; no checkpoints)."""
    from kdbench.site import export_run

    err.print(f"{len(export_run(run_dir, dest))} files copied to {dest}", highlight=False)


class Budget(str, Enum):
    smoke = "smoke"
    quick = "quick"
    paper = "paper"


class Kind(str, Enum):
    methods = "methods"
    models = "models"
    datasets = "datasets"


class Executor(str, Enum):
    local = "local"
    slurm = "slurm"


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"


def _threads(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise typer.BadParameter(f"{value}: must be at least 1")
    return value


THREADS_HELP = ("torch CPU threads for this process (default: torch's). On a busy machine fewer can be "
                "much faster; every job records the count it ran with.")


@app.command()
def run(
    grid: Path = typer.Option(..., "--grid", "-g", help="Grid file (tables/*.yaml)."),
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Runs directory; results go to OUT/<grid name>/<budget>/."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Replace the grid's datasets with this one."),
    budget: Optional[Budget] = typer.Option(None, "--budget", help="Budget preset (default: the grid's)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a grid field: key=value (repeatable)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 … (default: cuda if available)."),
    threads: Optional[int] = typer.Option(None, "--threads", callback=_threads, help=THREADS_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", metavar="",
                                 help="Print what the budget runs, its time estimate and the plan (job, depends on, "
                                      "status); run nothing."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                          help="Jobs run at once (default: one per visible GPU, else 1)."),
    executor: Executor = typer.Option(Executor.local, "--executor",
                                      help="local: this machine; slurm: one Slurm job per kdbench job (submitit)."),
    partition: Optional[str] = typer.Option(None, "--partition", help="Slurm partition (--executor slurm)."),
    time_limit: Optional[int] = typer.Option(None, "--time-limit", min=1, metavar="MINUTES",
                                             help="Slurm time limit of each job in minutes (--executor slurm)."),
    gpus: Optional[int] = typer.Option(None, "--gpus", min=0, help="GPUs per Slurm job (--executor slurm)."),
    account: Optional[str] = typer.Option(None, "--account", help="Slurm account to charge (--executor slurm)."),
    compile_: bool = typer.Option(False, "--compile", metavar="", help="Train with torch.compile."),
    lockstep: int = typer.Option(LOCKSTEP_MAX, "--lockstep", min=1, metavar="N",
                                 help="Students of one teacher, data, fold, seed and recipe trained together, "
                                      "sharing each batch and teacher forward (at most N a group; 1: each alone)."),
) -> None:
    """Run a grid: train teachers once, distil every student with every method, evaluate, profile.

    Exit status: 0 all jobs finished, 1 some job failed, 2 bad input.
    """
    options = {key: value for key, value in
               {"partition": partition, "time": time_limit, "gpus": gpus, "account": account}.items()
               if value is not None}
    if options and executor is not Executor.slurm:
        flags = {"partition": "--partition", "time": "--time-limit", "gpus": "--gpus", "account": "--account"}
        raise KdbenchError(f"{', '.join(flags[k] for k in options)}: options of --executor slurm "
                           f"(this run uses --executor {executor.value})")
    from kdbench.benchmark.grid import load_grid
    from kdbench.benchmark.runner import run_grid

    spec = load_grid(grid, overrides, dataset=dataset)
    result = run_grid(spec, out_dir, budget=budget.value if budget else None, device=device, dry_run=dry_run,
                      console=err, threads=threads, workers=workers, executor=executor.value,
                      executor_options=options, compile=compile_, lockstep=lockstep)
    if dry_run:
        return
    print(result.leaderboard.read_text())
    err.print(f"leaderboard: {result.leaderboard}", highlight=False)
    if not result.ok:
        raise typer.Exit(1)


@app.command("list")
def list_(kind: Kind = typer.Argument(..., help="methods, models or datasets"),
          pattern: str = typer.Argument("*", help="Shell-style filter, e.g. 'res*'.")) -> None:
    """List registered methods, models or datasets with one-line descriptions."""
    from kdbench.datasets import DATASETS
    from kdbench.methods import METHODS
    from kdbench.models import MODELS

    registry = {"methods": METHODS, "models": MODELS, "datasets": DATASETS}[kind.value]
    table = Table(show_header=True, header_style="bold")
    table.add_column(kind.value[:-1])
    if kind is Kind.models:
        import torch

        from kdbench.models import create_model
        from kdbench.models.cost import count_params

        table.add_column("params (M)", justify="right")
    table.add_column("description")
    for entry in registry.entries(pattern):
        cells = [entry.name]
        if kind is Kind.models:
            with torch.device("meta"):  # shapes only: no weights are allocated
                cells.append(f"{count_params(create_model(entry.name)) / 1e6:.3g}")
        table.add_row(*cells, entry.description)
    out.print(table)


@app.command()
def leaderboard(run_dir: Path = typer.Argument(..., help="A run directory: runs/<grid>/<budget>, or runs/<grid> "
                                                         "for every budget run of that grid.")) -> None:
    """Render the leaderboard of a run directory from its results."""
    from kdbench.benchmark.executors import notes_once
    from kdbench.leaderboards.render import write_leaderboard
    from kdbench.leaderboards.results import find_runs

    with notes_once(err):
        for run in find_runs(run_dir):
            path = write_leaderboard(run)
            print(path.read_text())
            err.print(f"leaderboard: {path}", highlight=False)


@app.command("run-job")
def run_job(run_dir: Path = typer.Argument(..., help="A run directory with a plan.json (runs/<grid>/<budget>)."),
            job_ids: list[str] = typer.Argument(..., help="Job ids of its plan (see `kdbench run --dry-run`); "
                                                          "students of one lockstep group train together."),
            device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 … (default: cuda if "
                                                                        "available)."),
            threads: Optional[int] = typer.Option(None, "--threads", callback=_threads, help=THREADS_HELP)) -> None:
    """Run planned jobs of a run directory, each claimed first; print done, already done or running elsewhere.

    With one job id the line is its status; with several, one `<job id>: <status>` line each.
    Exit status: 0 every job is done or another process holds it, 1 one failed, 2 bad input.
    """
    from kdbench.benchmark.executors import run_job as run_planned_job
    from kdbench.benchmark.executors import run_jobs

    if len(job_ids) == 1:
        print(run_planned_job(run_dir, job_ids[0], device=device, threads=threads, console=err))
        return
    outcomes = run_jobs(run_dir, job_ids, device=device, threads=threads, console=err)
    for job_id, status, error in outcomes:
        print(f"{job_id}: {status}" + (f" ({error})" if error else ""))
    if any(status == "failed" for _, status, _ in outcomes):
        raise typer.Exit(1)


@app.command()
def bench(
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print the figures as JSON on stdout."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Also write the figures as JSON to this file."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda … (default: cuda if available)."),
    threads: Optional[int] = typer.Option(None, "--threads", callback=_threads, help=THREADS_HELP),
    steps: int = typer.Option(20, "--steps", min=1, help="Timed steps per distillation step measured (median)."),
    quick: bool = typer.Option(False, "--quick", metavar="", help="A few steps on a tiny batch: checks, not figures."),
    grid: bool = typer.Option(True, "--grid/--no-grid",
                              help="Also the grid figure: M students trained separately vs in lockstep (minutes)."),
) -> None:
    """Time a distillation step (kd, at, emkd) against a minimal PyTorch loop, students in lockstep, planning,
    start-up."""
    from kdbench.benchmark.bench import run_bench

    result = run_bench(device=device, threads=threads, steps=steps, quick=quick, grid=grid)
    text = json.dumps(result, indent=2)
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text + "\n")
        err.print(f"figures: {out_file}", highlight=False)
    if as_json:
        print(text)
        return
    measures, tables = {}, {}
    for pair, figure in result.pop("lockstep", {}).items():
        tables[f"lockstep, {pair}: {figure['setting']['teacher']} → {figure['setting']['student']}, "
               f"{figure['steps']} steps"] = {f"M = {m}": figure[m] for m in figure if m.isdigit()}
    for key, value in result.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            tables[key] = value
        elif isinstance(value, dict):
            measures.update({f"{key}.{k}": {"value": v} for k, v in value.items()})
        else:
            measures[key] = {"value": value}
    for title, rows in {"measure": measures, **tables}.items():
        out.print(_table(title, rows))


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _table(title: str, rows: dict[str, dict]) -> Table:
    """A table with one row per ``rows`` key and a column per key of the row dicts."""
    table = Table(show_header=True, header_style="bold")
    columns = list(dict.fromkeys(k for row in rows.values() for k in row))
    table.add_column(title)
    for column in columns:
        table.add_column(column, justify="right")
    for name, row in rows.items():
        table.add_row(name, *(_cell(row.get(c, "")) for c in columns))
    return table


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A run directory (runs/<grid>/<budget>)."),
    job_id: str = typer.Argument(..., help="A finished training job of its plan (a student or a teacher)."),
    fmt: ExportFormat = typer.Option(ExportFormat.onnx, "--format", help="onnx or torchscript."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="Where to write the model (default: in the run)."),
) -> None:
    """Export a trained model to ONNX or TorchScript; check it against PyTorch and time it."""
    from kdbench.export import export_job

    result = export_job(run_dir, job_id, fmt=fmt.value, out=out_path)
    print(result["path"])
    print(f"max abs diff vs PyTorch: {result['max_abs_diff']:.3g}")
    print(f"latency: {result['latency_ms']:.3g} ms")


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1x1x512x512"`` → ``(1, 1, 512, 512)``."""
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise KdbenchError(f"--input {text!r}: expected BxCxHxW, e.g. 1x1x512x512") from None
    if len(shape) not in (4, 5) or min(shape) < 1:
        raise KdbenchError(f"--input {text!r}: expected BxCxHxW (or BxCxDxHxW) with positive sizes")
    return shape


@app.command()
def profile(
    model: str = typer.Argument(..., help="A registered model name."),
    input_shape: str = typer.Option("1x1x512x512", "--input", help="Input shape BxCxHxW."),
    num_classes: int = typer.Option(2, "--classes", help="Output classes."),
    width: float = typer.Option(1.0, "--width", help="Width multiplier (1 = the paper's configuration)."),
    runs: int = typer.Option(50, "--runs", min=1, help="Timed runs for the latency median (≥ 50 recommended)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda … (default: cuda if available)."),
    threads: Optional[int] = typer.Option(None, "--threads", callback=_threads, help=THREADS_HELP),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print JSON."),
) -> None:
    """Params (M), FLOPs (G), latency and peak memory of a model at an input size."""
    import torch

    from kdbench.benchmark.profile import device_name, profile_model, resolve_device
    from kdbench.models import create_model

    shape = parse_shape(input_shape)
    if threads is not None:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    if num_classes < 1 or not 0 < width < float("inf"):
        raise KdbenchError(f"--classes {num_classes} / --width {width}: need at least 1 class and a width > 0")
    net = create_model(model, in_channels=shape[1], num_classes=num_classes, width=width)
    with err.status(f"profiling {model} at {input_shape} on {device_name(dev)}: FLOPs, {runs} timed runs, memory …"):
        if not err.is_terminal:
            err.print(f"profiling {model} at {input_shape} on {device_name(dev)} ({runs} timed runs) …",
                      highlight=False)
        result = {"model": model, "width": width, **profile_model(net, shape, dev, runs=runs)}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"{model} at {input_shape}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    out.print(table)


@app.command()
def info() -> None:
    """Versions, the device kdbench would use, and how this environment differs from kdbench's lock."""
    import torch

    import kdbench
    from kdbench._compat import import_torchvision
    from kdbench.benchmark.profile import device_name, resolve_device
    from kdbench.lock import drift_text, environment_drift

    rows = {"kdbench": kdbench.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "cuda available": str(torch.cuda.is_available()), "device": device_name(resolve_device())}
    for name in ("torchvision", "segmentation_models_pytorch", "timm", "monai", "nibabel", "pandas"):
        try:
            if name == "torchvision":
                import_torchvision()  # as the models import it (see kdbench/_compat.py)
            rows[name] = __import__(name).__version__
        except Exception as exc:  # report, don't fail
            rows[name] = f"unavailable ({exc.__class__.__name__})"
    rows["environment"] = drift_text(environment_drift())
    for key, value in rows.items():
        out.print(f"{key:<30} {value}", highlight=False, soft_wrap=True)


def _usage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a command-line usage error (click's or Typer's own classes)."""
    return hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)


def _one_line(text) -> str:
    from kdbench.benchmark.store import one_line

    return one_line(str(text).replace("Value error, ", ""))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: exit codes that tell the truth, one-line errors.

    0 success · 1 a failure (failed jobs, problems found, a full disk) · 2 bad input
    (grid, option, data) · 130 interrupted.  Errors are one line on stderr; an
    unexpected internal error also prints one line, and its traceback only when
    ``KDBENCH_DEBUG=1``.

    OpenMP threads sleep instead of spin-waiting (``OMP_WAIT_POLICY=PASSIVE``) unless the
    environment says otherwise, set here before torch loads; worker processes inherit it.
    Measured on 2 cores (U-Net ×0.25 teacher step, 64², batch 8): idle, 164 ms with the default
    against 169 ms passive; beside one busy process, 548 ms against 279 ms (1 thread: 261 ms).
    """
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        code = app(args=argv, standalone_mode=False)
    except KdbenchError as exc:
        err.print(f"[red]error:[/] {escape(_one_line(exc))}", highlight=False)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `kdbench`: the help was shown
            sys.exit(0)
        if _usage_error(exc):  # a bad option, a missing argument
            where = getattr(getattr(exc, "ctx", None), "command_path", "kdbench")
            err.print(f"[red]error:[/] {escape(_one_line(exc.format_message()))} (see `{where} --help`)",
                      highlight=False)
            sys.exit(exc.exit_code)
        if os.environ.get("KDBENCH_DEBUG"):
            raise
        err.print(f"[red]internal error:[/] {escape(_one_line(f'{type(exc).__name__}: {exc}'))} "
                  "(set KDBENCH_DEBUG=1 for the traceback)", highlight=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)
