"""``kdbench datasets ...``: prepare and check datasets on disk.

    kdbench datasets prepare kits19 --root /data/kits19 --image-size 384 --set window=[-200,300]
    kdbench datasets check lits17 --root /data/LiTS

Errors in what the user gave (a missing root, a malformed layout, a bad file, an
unknown option) are one red line on stderr and exit status 2; a cache that cannot be
written (a full disk) exits 1.  ``check`` lists every problem it finds, one per line,
and exits 1 if there is any.  Notes (e.g. JPEG masks binarised at 127) are printed once
each, as ``note:`` lines on stderr.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Iterator

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kdbench.errors import ConfigError, KdbenchError, KdbenchNote

datasets_app = typer.Typer(
    help="Prepare (decode, check and cache once) and check datasets on disk: LiTS17, KiTS19, ACDC, SegTHOR, "
         "MSD / nnU-Net folders, ISIC 2018, CVC-EndoSceneStill, IDRiD, any image folder.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
out = Console()
err = Console(stderr=True)

NAME = typer.Argument(..., help="Registered dataset name (see `kdbench list datasets`).")
ROOT = typer.Option(..., "--root", help="The folder holding the dataset as distributed.")
SETS = typer.Option([], "--set", help="Dataset option key=value (repeatable), e.g. window=[-60,140] slices=foreground.")


def parse_sets(pairs: list[str]) -> dict:
    """``["window=[-60,140]", "slices=all"]`` → ``{"window": [-60, 140], "slices": "all"}`` (values as YAML)."""
    options = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        key, text = pair.split("=", 1)
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        options[key.strip()] = value
    return options


def fail(exc: KdbenchError) -> None:
    """Print ``exc`` as one red line on stderr; exit 1 if the cache cannot be written, else 2 (bad input)."""
    from kdbench.datasets.prepare import CacheWriteError

    err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(1 if isinstance(exc, CacheWriteError) else 2)


@contextlib.contextmanager
def notes() -> Iterator[None]:
    """Print each distinct :class:`KdbenchNote` raised inside once, as a ``note:`` line on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KdbenchNote)
        try:
            yield
        finally:
            seen = set()
            for w in caught:
                if not issubclass(w.category, KdbenchNote):
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
                elif str(w.message) not in seen:
                    seen.add(str(w.message))
                    err.print(f"note: {escape(str(w.message))}", highlight=False, soft_wrap=True)


def build(name: str, root: Path, image_size: int, sets: list[str]):
    from kdbench.datasets import create_dataset

    return create_dataset(name, root=str(root), image_size=image_size, **parse_sets(sets))


def _progress() -> Progress:
    """A progress bar on stderr, shown only on a terminal (redirected, stderr holds only notes and errors)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[case]}"), console=err, transient=False, disable=not err.is_terminal)


@datasets_app.command("prepare")
def prepare(
    name: str = NAME,
    root: Path = ROOT,
    image_size: int = typer.Option(256, "--image-size", help="Slice size to prepare (the grid's train.image_size)."),
    sets: list[str] = SETS,
    workers: int = typer.Option(1, "--workers", min=1, help="Prepare this many cases in parallel processes."),
) -> None:
    """Decode, check and preprocess a dataset once into the cache ($KDBENCH_CACHE or ~/.cache/kdbench)."""
    from kdbench.datasets.prepare import prepare_dataset
    from kdbench.datasets.progress import PrepareProgress

    try:
        with notes():
            dataset = build(name, root, image_size, sets)
        with _progress() as bar:
            task = bar.add_task(f"prepare {name}", total=None, case="")

            plain = PrepareProgress(name)  # lines every few seconds where the bar is not shown

            def tick(done: int, total: int, case_id: str) -> None:
                bar.update(task, completed=done, total=total, case=case_id)
                if not err.is_terminal:
                    plain(done, total, case_id)

            folder = prepare_dataset(dataset, progress=tick, workers=workers)
            prepared = bar.tasks[0].completed if bar.tasks[0].total is not None else 0
            if not prepared:
                bar.update(task, total=1, completed=1, case="up to date")
        cases = dataset.ensure_prepared()["cases"]
        slices = sum(entry["slices"] for entry in cases.values())
        fresh = f"{int(prepared)} prepared now" if prepared else "all up to date"
        out.print(f"{name}: {len(cases)} cases ({fresh}), {slices} slices of {image_size}×{image_size} in "
                  f"{escape(str(folder))}", highlight=False, soft_wrap=True)
    except KdbenchError as exc:
        fail(exc)


@datasets_app.command("check")
def check(name: str = NAME, root: Path = ROOT, sets: list[str] = SETS,
          folds: int = typer.Option(1, "--folds", min=1, help="Also check that a k-fold split is possible.")) -> None:
    """Check a dataset's layout, files, labels and split; list every problem (exit 1 if any)."""
    from kdbench.datasets.check import check_dataset

    try:
        with notes():
            dataset = build(name, root, 256, sets)
        with _progress() as bar:
            task = bar.add_task(f"check {name}", total=None, case="")
            problems = check_dataset(dataset, progress=lambda d, t, c: bar.update(task, completed=d, total=t, case=c),
                                     folds=folds)
    except KdbenchError as exc:
        fail(exc)
    n = len(dataset.discovery().sources)
    if problems:
        for line in problems:
            out.print(f"[red]✗[/] {escape(line)}", highlight=False, soft_wrap=True)
        out.print(f"{name}: {len(problems)} problem(s) in {escape(str(dataset.root_path))} ({n} cases found)",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    official = dataset.official_split()
    split = f"official split {len(official['train'])}/{len(official['test'])}" if official else "no official split"
    out.print(f"{name}: ok — {n} cases, {split}, classes {', '.join(dataset.classes)}", highlight=False, soft_wrap=True)
