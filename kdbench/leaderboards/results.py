"""A run's results as tidy tables, built from the finished jobs (never edited by hand).

``results.csv`` (and ``results.parquet`` when pyarrow is installed) has one row per
trained model × case × target × metric, with the job's dataset, fold, seed, role,
model, method and teacher; ``profiles`` has one row per profiled architecture.  A run
directory is ``runs/<grid>/<budget>/``; :func:`find_runs` also accepts ``runs/<grid>``
(every budget run under it) and the older ``runs/<grid>`` run directory itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from kdbench.benchmark.store import RunStore, atomic_path, one_line, read_plan, write_atomic
from kdbench.errors import ConfigError, KdbenchError

RESULT_COLUMNS = ["job", "dataset", "fold", "seed", "role", "model", "model_label", "method", "method_label",
                  "teacher", "teacher_label", "case_id", "target", "metric", "value"]


def find_runs(path: str | Path) -> list[Path]:
    """The run directories ``path`` names: itself if it holds ``plan.json``, else every
    budget subdirectory (``<path>/<budget>/plan.json``) of a grid directory."""
    path = Path(path)
    if (path / "plan.json").is_file():
        return [path]
    runs = sorted(p.parent for p in path.glob("*/plan.json")) if path.is_dir() else []
    if not runs:
        raise KdbenchError(f"{path}: not a run directory (no plan.json in it or in a budget directory under it); "
                           "run `kdbench run --grid FILE` first")
    return runs


def job_records(run_dir: str | Path, plan: dict) -> dict[str, dict]:
    """``job.json`` of every finished job of the plan, by job id."""
    store = RunStore(run_dir)
    return {j["id"]: store.read_job(j["id"]) for j in plan["jobs"] if store.is_done(j["id"])}


METRIC_COLUMNS = ("case_id", "target", "metric", "value")
"""The columns of an evaluation job's ``metrics.csv``."""


def read_metrics(path: Path) -> pd.DataFrame:
    """An evaluation's ``metrics.csv``, or a one-line :class:`ConfigError` naming the file and what is
    wrong with it (unreadable, not CSV text, columns missing, values that are not numbers)."""
    hint = f"delete {path.parent} and rerun the grid to evaluate again"
    try:
        frame = pd.read_csv(path, keep_default_na=True)
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing from a finished evaluation; {hint}") from None
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable metrics table ({one_line(exc)}); {hint}") from None
    missing = [c for c in METRIC_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: not a metrics table (no column {', '.join(missing)}; expected "
                          f"{', '.join(METRIC_COLUMNS)}); {hint}")
    if not pd.api.types.is_numeric_dtype(frame["value"]):
        raise ConfigError(f"{path}: column 'value' holds text, not numbers; {hint}")
    return frame


def results_table(run_dir: str | Path) -> pd.DataFrame:
    """Every finished evaluation of the run's current plan, one row per case × target × metric."""
    plan = read_plan(run_dir)
    store = RunStore(run_dir)
    jobs = {j["id"]: j for j in plan["jobs"]}
    frames = []
    for job in plan["jobs"]:
        if job["kind"] != "evaluate" or not store.is_done(job["id"]):
            continue
        train = jobs[job["config"]["train"]]
        metrics = read_metrics(store.job_dir(job["id"]) / "metrics.csv")
        meta = train["meta"]
        for column in RESULT_COLUMNS[:11]:
            metrics[column] = train["id"] if column == "job" else meta.get(column)
        frames.append(metrics)
    if not frames:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    return pd.concat(frames, ignore_index=True)[RESULT_COLUMNS]


def profiles_table(run_dir: str | Path) -> pd.DataFrame:
    """One row per finished profile job: params, FLOPs, latency (median, p10, p90), memory, input,
    device, and the threads of the process that timed it (``job.json``)."""
    plan = read_plan(run_dir)
    store = RunStore(run_dir)
    rows = []
    for job in plan["jobs"]:
        if job["kind"] == "profile" and store.is_done(job["id"]):
            data = json.loads((store.job_dir(job["id"]) / "profile.json").read_text())
            threads = store.read_job(job["id"]).get("threads")
            rows.append({"profile": job["id"], "model": job["meta"]["model"], "threads": threads, **data})
    return pd.DataFrame(rows)


def write_results(run_dir: str | Path, frame: pd.DataFrame) -> list[Path]:
    """Write ``results.csv`` (and ``results.parquet`` if pyarrow is available) atomically,
    each through a temporary file of its own."""
    run_dir = Path(run_dir)
    written = [run_dir / "results.csv"]
    write_atomic(written[0], frame.to_csv(index=False))
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return written
    with atomic_path(run_dir / "results.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    return written + [run_dir / "results.parquet"]
