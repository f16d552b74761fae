"""A run's results as tidy tables, built from the finished jobs (never edited by hand).

``results.csv`` (and ``results.parquet`` when pyarrow is installed) has one row per
trained model × case × target × metric, with the job's dataset, fold, seed, role,
model, method and teacher; ``profiles`` has one row per profiled architecture.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from kdbench.benchmark.store import RunStore, write_atomic
from kdbench.errors import KdbenchError

RESULT_COLUMNS = ["job", "dataset", "fold", "seed", "role", "model", "model_label", "method", "method_label",
                  "teacher", "teacher_label", "case_id", "target", "metric", "value"]


def load_plan(run_dir: str | Path) -> dict:
    """The ``plan.json`` a run wrote."""
    path = Path(run_dir) / "plan.json"
    if not path.is_file():
        raise KdbenchError(f"{run_dir}: not a run directory (no plan.json); run `kdbench run --grid FILE` first")
    return json.loads(path.read_text())


def results_table(run_dir: str | Path) -> pd.DataFrame:
    """Every finished evaluation of the run's current plan, one row per case × target × metric."""
    plan = load_plan(run_dir)
    store = RunStore(run_dir)
    jobs = {j["id"]: j for j in plan["jobs"]}
    frames = []
    for job in plan["jobs"]:
        if job["kind"] != "evaluate" or not store.is_done(job["id"]):
            continue
        train = jobs[job["config"]["train"]]
        metrics = pd.read_csv(store.job_dir(job["id"]) / "metrics.csv", keep_default_na=True)
        meta = train["meta"]
        for column in RESULT_COLUMNS[:11]:
            metrics[column] = train["id"] if column == "job" else meta.get(column)
        frames.append(metrics)
    if not frames:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    return pd.concat(frames, ignore_index=True)[RESULT_COLUMNS]


def profiles_table(run_dir: str | Path) -> pd.DataFrame:
    """One row per finished profile job: params, FLOPs, latency, memory, input, device."""
    plan = load_plan(run_dir)
    store = RunStore(run_dir)
    rows = []
    for job in plan["jobs"]:
        if job["kind"] == "profile" and store.is_done(job["id"]):
            data = json.loads((store.job_dir(job["id"]) / "profile.json").read_text())
            rows.append({"profile": job["id"], "model": job["meta"]["model"], **data})
    return pd.DataFrame(rows)


def write_results(run_dir: str | Path, frame: pd.DataFrame) -> list[Path]:
    """Write ``results.csv`` (and ``results.parquet`` if pyarrow is available) atomically."""
    run_dir = Path(run_dir)
    written = [run_dir / "results.csv"]
    write_atomic(written[0], frame.to_csv(index=False))
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return written
    tmp = run_dir / ".results.parquet.tmp"
    frame.to_parquet(tmp, index=False)
    tmp.replace(run_dir / "results.parquet")
    return written + [run_dir / "results.parquet"]
