"""The ``kdbench`` command line (Typer).  Thin: it parses, then calls library functions.

Every :class:`~kdbench.errors.KdbenchError` is printed as one red line on stderr and
exits with status 2 — never a traceback.
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

from kdbench.errors import KdbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark knowledge distillation for medical image segmentation.")
out = Console()
err = Console(stderr=True, soft_wrap=True)


def _mount_datasets_app() -> None:
    from kdbench.datasets.cli import datasets_app

    app.add_typer(datasets_app, name="datasets")


_mount_datasets_app()


class Budget(str, Enum):
    smoke = "smoke"
    quick = "quick"
    paper = "paper"


class Kind(str, Enum):
    methods = "methods"
    models = "models"
    datasets = "datasets"


@app.command()
def run(
    grid: Path = typer.Option(..., "--grid", "-g", help="Grid file (tables/*.yaml)."),
    out_dir: Path = typer.Option(Path("runs"), "--out", help="Runs directory; results go to OUT/<grid name>/."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Replace the grid's datasets with this one."),
    budget: Optional[Budget] = typer.Option(None, "--budget", help="Budget preset (default: the grid's)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a grid field: key=value (repeatable)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 … (default: cuda if available)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (job, depends on, status) and stop."),
) -> None:
    """Run a grid: train teachers once, distil every student with every method, evaluate, profile."""
    from kdbench.benchmark.grid import load_grid
    from kdbench.benchmark.runner import run_grid

    spec = load_grid(grid, overrides, dataset=dataset)
    result = run_grid(spec, out_dir, budget=budget.value if budget else None, device=device, dry_run=dry_run,
                      console=err)
    if dry_run:
        return
    print(result.leaderboard.read_text())
    err.print(f"leaderboard: {result.leaderboard}")
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

        from kdbench.benchmark.profile import count_params
        from kdbench.models import create_model

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
def leaderboard(run_dir: Path = typer.Argument(..., help="A run directory (runs/<grid>).")) -> None:
    """Render the leaderboard of a run directory from its results."""
    from kdbench.leaderboards.render import write_leaderboard

    path = write_leaderboard(run_dir)
    print(path.read_text())
    err.print(f"leaderboard: {path}")


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
    runs: int = typer.Option(50, "--runs", help="Timed runs for the latency median (≥ 50 recommended)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda … (default: cuda if available)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Params (M), FLOPs (G), latency and peak memory of a model at an input size."""
    from kdbench.benchmark.profile import profile_model, resolve_device
    from kdbench.models import create_model

    shape = parse_shape(input_shape)
    net = create_model(model, in_channels=shape[1], num_classes=num_classes, width=width)
    result = {"model": model, "width": width, **profile_model(net, shape, resolve_device(device), runs=runs)}
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
    """Versions and the device kdbench would use."""
    import torch

    import kdbench
    from kdbench.benchmark.profile import device_name, resolve_device

    rows = {"kdbench": kdbench.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "cuda available": str(torch.cuda.is_available()), "device": device_name(resolve_device())}
    for name in ("torchvision", "segmentation_models_pytorch", "timm", "monai", "nibabel", "pandas"):
        try:
            rows[name] = __import__(name).__version__
        except Exception as exc:  # report, don't fail
            rows[name] = f"unavailable ({exc.__class__.__name__})"
    for key, value in rows.items():
        out.print(f"{key:<30} {value}")


def main() -> None:
    """Console-script entry point: one-line errors, no tracebacks."""
    try:
        app(standalone_mode=False)
    except KdbenchError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
