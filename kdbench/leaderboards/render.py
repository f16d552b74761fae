"""Markdown leaderboards rendered from a run's results, beside the papers' numbers.

One table per dataset × student: the teacher(s), the student trained alone (``none``)
and every method; per target and metric the mean ± std (the column names which std) or,
with ``leaderboard.aggregate: range``, the min–max over runs; on the primary metric a
significance mark vs. ``none`` (paired Wilcoxon signed-rank test over cases, Holm-corrected
across the table's rows, :mod:`kdbench.leaderboards.stats`), Δ vs. ``none`` and the share
of the teacher–student gap closed; the best student value **bold** and the second
<u>underlined</u>, the published numbers of the table the grid reproduces, and
params/FLOPs/latency (median, p10–p90, flagged when unstable)/memory, and — when a row's
network was exported with ``kdbench export`` — its ONNX latency (:data:`EXPORTED_LATENCY`).
Tables are written with pandas' ``DataFrame.to_markdown`` (tabulate).

The header says exactly what the numbers are: the budget (smoke and quick are never
paper-scale) and what it changed, the epochs, steps, batch, image size and widths the
jobs were trained with (from their configs, not the row labels), seeds and folds, the
device and threads that trained them (from each job's ``job.json``, so re-rendering
elsewhere changes nothing), the unit of HD95/ASSD (mm, or px where the data has no
physical spacing), what ± means, and the provenance the plan recorded (grid hash, package
versions).  A row whose training or evaluation failed reads
**failed** with the error in a note; a row skipped because its teacher failed reads
"not run (teacher failed)".  See ``docs/leaderboards.md``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from kdbench.benchmark.evaluate import LOWER_IS_BETTER
from kdbench.benchmark.store import RunStore, read_plan, write_atomic
from kdbench.export import export_records
from kdbench.leaderboards.paper import paper_results
from kdbench.leaderboards.results import find_runs, job_records, profiles_table, results_table, write_results
from kdbench.leaderboards.stats import MIN_NONZERO, holm, significance_mark, wilcoxon_vs_baseline
from kdbench.lock import drift_text

METRIC_NAMES = {"dice": "Dice", "iou": "IoU", "voe": "VOE", "rvd": "RVD", "hd95": "HD95", "assd": "ASSD"}
DISTANCES = {"hd95", "assd"}
PAPER_METRICS = {"dice": [("dice", 1.0), ("dice_pct", 0.01)], "iou": [("iou_pct", 0.01)], "voe": [("voe", 1.0)],
                 "rvd": [("rvd", 1.0)], "hd95": [("hd_mm", 1.0)], "assd": [("msd_mm", 1.0)]}
COST_COLUMNS = {"params": ("Params (M)", "params_M", "{:.3g}"), "flops": ("FLOPs (G)", "flops_G", "{:.3g}"),
                "latency": ("Latency (ms)", "latency_ms", "{:.2f}"), "memory": ("Peak mem (MB)", "peak_mem_MB", "{:.1f}"),
                "time": ("Time/case (s)", "seconds_per_case", "{:.3g}")}
#: published cost columns (Noothout et al. Table 1): paper metric and the scale to our unit
PAPER_COSTS = {"params": [("params_M", 1.0)], "flops": [("flops_G", 1.0)], "memory": [("gpu_mem_GB", 1024.0)], "time": [("seconds_per_scan", 1.0)]}
LATENCY_SPREAD = "Latency p10–p90 (ms)"
#: the cost column of exported networks: shown when a row has an ONNX export record
#: (``RUN_DIR/exports/<job>.onnx.json``, :func:`kdbench.export.export_records`), whatever ``leaderboard.cost`` says
EXPORTED_LATENCY = "ONNX latency (ms)"
UNSTABLE_RATIO = 2.0  # p90/p10 above this: the timing is not trustworthy
UNSTABLE_NOTE = (f"⚠ unstable timing: p90/p10 > {UNSTABLE_RATIO:g}, the machine was busy while it was timed; "
                 "re-profile on an idle machine.")
PAPERS = {"emkd_tmi2021": "Qin et al., IEEE TMI 2021 (EMKD)", "plckd_miccai2024": "Wang et al., MICCAI 2024 (PLC-KD)",
          "ensemblekd_jmi2022": "Noothout et al., J. Med. Imaging 2022 (ensemble KD)"}
BUDGET_NOTE = {"smoke": "smoke — a plumbing check, NOT paper-scale", "quick": "quick — reduced, NOT paper-scale",
               "paper": "paper — the grid's full recipe"}
TRAINED = ("teacher", "assistant", "student")  # job kinds that train a network
SPREAD_NAME = {"cases": "± case std", "runs": "± run std", "range": "min–max over runs"}
VERSION_NAMES = {"segmentation-models-pytorch": "smp"}  # short names in the provenance line
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def metric_name(metric: str, unit: str = "mm") -> str:
    """Column name of a metric; HD95 and ASSD carry their unit (``mm``, ``px``, or ``mm/px mixed``)."""
    return f"{METRIC_NAMES[metric]} ({unit})" if metric in DISTANCES else METRIC_NAMES[metric]


def _digits(metric: str) -> int:
    return 2 if metric in DISTANCES else 3


def _fmt(value: float | None, metric: str) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.{_digits(metric)}f}"


def _finite(value) -> float | None:
    return float(value) if value is not None and pd.notna(value) and np.isfinite(float(value)) else None


def summarise(values: pd.DataFrame) -> dict:
    """One row × target × metric: the mean over (fold, seed) runs of the per-run case means, the
    std over runs (``run_std``, NaN with one run), the std over all test cases (``case_std``) and
    the lowest and highest per-run mean (``min``, ``max``: the ``range`` aggregate)."""
    values = values.dropna(subset=["value"])
    if values.empty:
        return {"mean": math.nan, "run_std": math.nan, "case_std": math.nan, "min": math.nan, "max": math.nan,
                "runs": 0, "n": 0}
    runs = values.groupby(["fold", "seed"])["value"].mean()
    return {"mean": float(runs.mean()), "run_std": float(runs.std(ddof=0)) if len(runs) > 1 else math.nan,
            "case_std": float(values["value"].std(ddof=0)), "min": float(runs.min()), "max": float(runs.max()),
            "runs": len(runs), "n": len(values)}


def _rows(grid: dict, jobs: list[dict], dataset: str, student: str) -> list[dict]:
    """Leaderboard rows: teachers first (the grid's, then ensembles a method built),
    then ``none``, then each method (per teacher source)."""
    trains = [j for j in jobs if j["kind"] in ("teacher", "student", "ensemble") and j["meta"]["dataset"] == dataset]
    rows = []

    def teacher_row(label: str, model: str, ids: list[str]) -> None:
        rows.append({"row": f"teacher: {label}", "kind": "teacher", "jobs": ids, "model": model,
                     "method": "teacher", "method_label": "teacher", "teacher": model, "teacher_label": label,
                     "profile": next(j["meta"]["profile"] for j in trains if j["id"] == ids[0])})

    for t in grid["teachers"]:
        label = t["label"] or t["name"]
        ids = [j["id"] for j in trains if j["kind"] == "teacher" and j["meta"].get("role") == "teacher"
               and j["meta"]["model_label"] == label]
        if ids:
            teacher_row(label, t["name"], ids)
    for label in dict.fromkeys(j["meta"]["model_label"] for j in trains if j["kind"] == "ensemble"):
        teacher_row(label, label, [j["id"] for j in trains if j["kind"] == "ensemble" and j["meta"]["model_label"] == label])
    grid_teachers = {t["label"] or t["name"] for t in grid["teachers"]}
    for m in grid["methods"]:
        mine = [j for j in trains if j["kind"] == "student" and j["meta"]["model_label"] == student
                and j["meta"]["method_label"] == m["label"]]
        for teacher in sorted({j["meta"]["teacher_label"] or "" for j in mine}):
            group = [j for j in mine if (j["meta"]["teacher_label"] or "") == teacher]
            named = teacher and (len(grid_teachers) > 1 or teacher not in grid_teachers)  # another source
            name = m["label"] + (f" ← {teacher}" if named else "")
            rows.append({"row": name, "kind": "student", "jobs": [j["id"] for j in group], "model": group[0]["meta"]["model"],
                         "method": m["name"], "method_label": m["label"], "teacher": group[0]["meta"]["teacher"],
                         "teacher_label": teacher or None, "profile": group[0]["meta"]["profile"]})
    return rows


def _paper_lookup(ref: dict | None, row: dict, metric: str, columns: dict = PAPER_METRICS) -> dict[str, str]:
    """Published values for a row: ``{"LiTS17 liver_tumor": "0.685 ± 0.004", ...}``."""
    if not ref:
        return {}
    df = paper_results()
    df = df[(df["paper"] == ref["paper"]) & (df["table"] == str(ref["table"]))]
    names = ref.get("names", {})
    model = names.get(row["model"], row["model"])
    teacher = names.get(row["teacher"], row["teacher"]) if row["teacher"] else ""
    if row["kind"] == "teacher":
        match = df[(df["method"] == "teacher") & (df["teacher"] == model)]
        if match.empty:
            match = df[(df["method"] == "none") & (df["student"] == model)]
    elif row["method"] == "none":
        match = df[(df["method"] == "none") & (df["student"] == model)]
    else:
        match = df[df["method"].isin([row["method_label"], row["method"]]) & (df["student"] == model)
                   & (df["teacher"] == teacher)]
    if match.empty:  # rows the paper names by themselves (Noothout et al.: "ensemble(U)", "distilled(U)")
        name = model if row["kind"] == "teacher" else row["method_label"]
        match = df[(df["method"] == name) & df["student"].fillna("").eq("")]
    out = {}
    for paper_metric, scale in columns[metric]:
        for _, r in match[match["metric"] == paper_metric].iterrows():
            key = f"{r['dataset']} {r['target']}".strip()
            spread = f" ± {_fmt(r['spread'] * scale, metric)}" if pd.notna(r["spread"]) else ""
            out.setdefault(key, f"{_fmt(r['value'] * scale, metric)}{spread}")
    return out


class _Progress:
    """Which jobs of a plan finished, failed, or were skipped because a dependency failed."""

    def __init__(self, jobs: list[dict], done: set[str], failures: dict[str, dict]):
        self.jobs = {j["id"]: j for j in jobs}
        self.evaluation = {j["config"]["train"]: j["id"] for j in jobs if j["kind"] == "evaluate"}
        self.done, self.failures = done, failures

    def blocker(self, job_id: str) -> str | None:
        """The failed job that kept ``job_id`` from running (through its dependencies), if any."""
        if job_id in self.done or job_id in self.failures:
            return None
        for dep in self.jobs[job_id]["deps"] if job_id in self.jobs else ():
            if dep in self.failures:
                return dep
            if (upstream := self.blocker(dep)) is not None:
                return upstream
        return None

    def row(self, train_ids: list[str]) -> dict:
        """A row's state: finished runs, failures (stage, job, error) and runs not run, per (fold, seed)."""
        finished, failed, skipped = 0, [], []
        for train_id in train_ids:
            meta = self.jobs[train_id]["meta"]
            where = {"fold": meta.get("fold"), "seed": meta.get("seed")}
            evaluation = self.evaluation.get(train_id)
            if train_id in self.done and evaluation in self.done:
                finished += 1
            elif train_id in self.failures:
                failed.append({**where, "stage": "training", "job": train_id,
                               "error": self.failures[train_id]["error"]})
            elif train_id in self.done and evaluation in self.failures:
                failed.append({**where, "stage": "evaluation", "job": evaluation,
                               "error": self.failures[evaluation]["error"]})
            elif (cause := self.blocker(train_id)) is not None:
                kind = self.jobs[cause]["kind"] if cause in self.jobs else "dependency"
                skipped.append({**where, "job": train_id, "because": cause, "reason": f"{kind} failed"})
        expected = len(train_ids)
        if finished == expected:
            status = "done"
        elif finished:
            status = "partial"
        else:
            status = "failed" if failed else "not run" if skipped else "pending"
        return {"status": status, "finished": finished, "expected": expected, "failed": failed, "skipped": skipped}


def _device_text(records: list[dict]) -> str:
    """Distinct (device, threads) of job records, e.g. ``cpu (x86_64), 1 thread``."""
    def one(device: str, threads) -> str:
        if threads and device.lower().startswith("cpu") and "thread" not in device:
            return f"{device}, {threads} thread{'' if threads == 1 else 's'}"
        return device

    counts = Counter((r.get("device") or "unknown device", r.get("threads")) for r in records)
    if len(counts) == 1:
        return one(*next(iter(counts)))
    return "; ".join(f"{one(*key)} ({n} job{'' if n == 1 else 's'})" for key, n in counts.items())


def _spacing_unit(evaluations: list[dict]) -> str:
    """The HD95/ASSD unit of a dataset's finished evaluations: ``px``, ``mm`` or ``mm/px mixed``.

    A record without ``spacing_unit`` (an older kdbench) counts as mm.
    """
    units = {(r.get("summary") or {}).get("spacing_unit") or "mm" for r in evaluations}
    return "mm/px mixed" if len(units) > 1 else units.pop() if units else "mm"


def _cost(profiles: pd.DataFrame, profile_id: str) -> dict:
    """A row's cost: params, FLOPs, latency (median, p10, p90, unstable flag), memory."""
    if not len(profiles) or profile_id not in profiles.index:
        return {}
    p = profiles.loc[profile_id]
    cost = {k: v for k, (_, col, _) in COST_COLUMNS.items() if (v := _finite(p.get(col))) is not None}
    p10, p90 = _finite(p.get("latency_p10_ms")), _finite(p.get("latency_p90_ms"))
    if p10 is not None and p90 is not None:
        cost.update(latency_p10=p10, latency_p90=p90, latency_unstable=bool(p10 <= 0 or p90 / p10 > UNSTABLE_RATIO))
    return cost


def _compare(rows: list[dict], frames: list[dict[str, pd.DataFrame]]) -> None:
    """Add to every cell its comparison with ``none``, the student trained alone.

    ``p``: the paired Wilcoxon signed-rank test over cases (:func:`wilcoxon_vs_baseline`; with
    ``pairs``, ``median_diff`` and ``test_note``); ``p_holm``: ``p`` Holm-adjusted across the
    block's student rows other than ``none``, per target and metric; ``gap_closed``: (row − none)
    / (teacher − none) of the means, with the block's one teacher row or else the row's own
    teacher, NaN when that gap is below the metric's last shown digit.  Rows that are not
    compared (teachers, ``none`` itself for the test) keep NaN.
    """
    baseline = next((i for i, r in enumerate(rows) if r["kind"] == "student" and r["method"] == "none"), None)
    teachers = [r for r in rows if r["kind"] == "teacher"]
    tested = [i for i, r in enumerate(rows) if r["kind"] == "student" and i != baseline]
    for key in rows[0]["cells"] if rows else ():
        for r in rows:
            r["cells"][key].update(p=math.nan, p_holm=math.nan, pairs=0, median_diff=math.nan, test_note=None,
                                   gap_closed=math.nan)
        if baseline is None:
            continue
        for i in tested:
            test = wilcoxon_vs_baseline(frames[i][key], frames[baseline][key])
            rows[i]["cells"][key].update(p=test["p"], pairs=test["pairs"], median_diff=test["median_diff"],
                                         test_note=test["note"])
        for i, adjusted in zip(tested, holm([rows[i]["cells"][key]["p"] for i in tested])):
            rows[i]["cells"][key]["p_holm"] = float(adjusted)
        base = rows[baseline]["cells"][key]["mean"]
        smallest = 10.0 ** -_digits(key.split("/")[1])
        for r in rows:
            teacher = teachers[0] if len(teachers) == 1 else next(
                (t for t in teachers if t["teacher_label"] == r["teacher_label"]), None)
            if r["kind"] != "student" or teacher is None:
                continue
            gap = teacher["cells"][key]["mean"] - base
            if np.isfinite(gap) and abs(gap) >= smallest and np.isfinite(r["cells"][key]["mean"]):
                r["cells"][key]["gap_closed"] = float((r["cells"][key]["mean"] - base) / gap)


def _setup(plan: dict, dataset: str, student: str, rows: list[dict], records: dict[str, dict],
           profiles: pd.DataFrame) -> dict:
    """What the block's numbers are: recipes, widths, seeds, folds, devices, unit, ± convention."""
    jobs = [j for j in plan["jobs"] if j["meta"].get("dataset") == dataset]
    students = [j for j in jobs if j["kind"] == "student" and j["meta"]["model_label"] == student]
    teachers = [j for j in jobs if j["kind"] == "teacher" and j["meta"].get("role", "teacher") == "teacher"]
    first = students[0]["config"]
    specs = {role: {s["label"] or s["name"]: s["width"] for s in plan["grid"][f"{role}s"]}
             for role in ("student", "teacher")}

    def recipe(job: dict) -> dict:
        train = job["config"]["train"]
        return {"epochs": train["epochs"], "max_steps": train.get("max_steps"), "batch_size": train["batch_size"]}

    def width(label: str, job: dict) -> dict:
        return {"label": label, "width": job["config"]["model"]["width"], "grid_width": specs[job["kind"]].get(label)}

    trained = [records[j["id"]] for j in jobs if j["kind"] in TRAINED and j["id"] in records
               and (j["kind"] != "student" or j["meta"]["model_label"] == student)]
    evaluations = [records[j["id"]] for j in jobs if j["kind"] == "evaluate" and j["id"] in records]
    profiled = [{"device": p.get("device"), "threads": _finite(p.get("threads")) and int(p["threads"])}
                for pid in dict.fromkeys(r["profile"] for r in rows)
                if len(profiles) and pid in profiles.index for p in [profiles.loc[pid]]]
    runs = max((r["expected"] for r in rows), default=1)
    effective = plan.get("effective")
    return {
        "grid_sha256": plan.get("grid_sha256"),
        "versions": plan.get("versions"),
        "environment": plan.get("environment"),
        "job_environments": sorted({d for r in trained + evaluations for d in r.get("environment") or ()}),
        "aggregate": plan["grid"]["leaderboard"].get("aggregate", "mean"),
        "budget": plan["budget"],
        "changed": effective.get("changed") if effective else None,
        "student_recipe": recipe(students[0]),
        "teacher_recipe": recipe(teachers[0]) if teachers else None,
        "max_cases": first["split"].get("max_cases"),
        "image_size": first["dataset"]["image_size"],
        "patch": (first.get("volume") or {}).get("patch"),
        "input": [1, first["model"]["in_channels"],
                  *((first.get("volume") or {}).get("patch") or [first["dataset"]["image_size"]] * 2)],
        "student_width": width(student, students[0]),
        "teacher_widths": [width(label, next(j for j in teachers if j["meta"]["model_label"] == label))
                           for label in dict.fromkeys(j["meta"]["model_label"] for j in teachers)],
        "seeds": sorted({j["config"]["seed"] for j in students}),
        "folds": sorted({j["config"]["split"]["fold"] for j in students}),
        "of_folds": first["split"]["folds"],
        "trained_on": _device_text(trained) if trained else None,
        "profiled_on": _device_text(profiled) if profiled else None,
        "spacing_unit": _spacing_unit(evaluations),
        "runs": runs,
        "spread": "range" if plan["grid"]["leaderboard"].get("aggregate") == "range"
        else "runs" if runs > 1 else "cases",
    }


def leaderboard_blocks(run_dir: str | Path, results: pd.DataFrame | None = None) -> list[dict]:
    """The leaderboard as data: one block per dataset × student (also written as JSON).

    ``results`` is the run's :func:`results_table`, read from the job directories when not given.
    Each block carries ``setup`` (what the header states) and each row its ``status``
    (done, partial, failed, not run, pending), failures and runs not run.
    """
    plan = read_plan(run_dir)
    grid, jobs = plan["grid"], plan["jobs"]
    results = results_table(run_dir) if results is None else results
    profiles = profiles_table(run_dir)
    profiles = profiles.set_index("profile") if len(profiles) else profiles
    records = job_records(run_dir, plan)
    exports = export_records(run_dir)
    progress = _Progress(jobs, set(records), RunStore(run_dir).failures())
    spec = grid["leaderboard"]
    metrics = spec["metrics"]
    blocks = []
    for ds in dict.fromkeys(j["meta"]["dataset"] for j in jobs if j["kind"] == "student"):
        ds_targets = next(j["config"]["dataset"]["targets"] for j in jobs if j["kind"] == "student"
                          and j["meta"]["dataset"] == ds)
        targets = [t for t in (spec["targets"] or ds_targets) if t in ds_targets] or list(ds_targets)
        for s in grid["students"]:
            student = s["label"] or s["name"]
            rows, frames = [], []
            for row in _rows(grid, jobs, ds, student):
                sub = results[results["job"].isin(row["jobs"])]
                frames.append({f"{t}/{m}": sub[(sub["target"] == t) & (sub["metric"] == m)]
                               for t in targets for m in metrics})
                cells = {key: summarise(frame) for key, frame in frames[-1].items()}
                paper = {m: _paper_lookup(spec["reproduces"], row, m) for m in metrics}
                paper_cost = {c: _paper_lookup(spec["reproduces"], row, c, PAPER_COSTS) for c in spec["cost"]
                              if c in PAPER_COSTS}
                cost = _cost(profiles, row["profile"])
                times = [records[j["id"]]["summary"].get("seconds_per_case") for j in jobs
                         if j["kind"] == "evaluate" and j["config"]["train"] in row["jobs"] and j["id"] in records]
                if [t for t in times if t is not None]:
                    cost["time"] = float(np.mean([t for t in times if t is not None]))
                if onnx := [exports[j]["latency_ms"] for j in row["jobs"] if j in exports]:
                    cost["onnx_latency"] = float(np.median(onnx))
                rows.append({**{k: row[k] for k in ("row", "kind", "model", "method", "method_label", "teacher_label",
                                                    "profile")},
                             "cells": cells, "cost": cost, "paper": paper, "paper_cost": paper_cost,
                             **progress.row(row["jobs"])})
            _compare(rows, frames)
            if rows:
                blocks.append({"dataset": ds, "student": student, "targets": targets, "metrics": metrics,
                               "setup": _setup(plan, ds, student, rows, records, profiles), "rows": rows})
    return blocks


def _recipe_text(recipe: dict) -> str:
    steps = f", at most {recipe['max_steps']} steps" if recipe.get("max_steps") else ""
    return f"{recipe['epochs']} epoch{'' if recipe['epochs'] == 1 else 's'}{steps}, batch {recipe['batch_size']}"


def _width_text(role: str, w: dict) -> str:
    text = f"{role} `{w['label']}` ×{w['width']:g}"
    if w["grid_width"] is not None and not math.isclose(w["width"], w["grid_width"]):
        text += f" (the grid's ×{w['grid_width']:g} scaled by the budget ×{w['width'] / w['grid_width']:g})"
    return text


def _header(plan: dict, block: dict) -> list[str]:
    """The lines that say what the block's numbers are (see ``docs/leaderboards.md``)."""
    grid, setup = plan["grid"], block["setup"]
    title = grid["leaderboard"]["title"] or grid["name"]
    changed = setup["changed"]
    budget = BUDGET_NOTE[setup["budget"]]
    if setup["budget"] == "paper" and changed:
        budget = "paper — the grid's recipe with the grid's own caps for this budget (below)"
    if changed is None:
        changed_text = "not recorded (this plan was written by an older kdbench)"
    else:
        changed_text = "; ".join(changed) if changed else "nothing — the grid's recipe as written"
    training = f"students {_recipe_text(setup['student_recipe'])}"
    if setup["teacher_recipe"] and setup["teacher_recipe"] != setup["student_recipe"]:
        training += f"; teachers {_recipe_text(setup['teacher_recipe'])}"
    elif setup["teacher_recipe"]:
        training = f"students and teachers {_recipe_text(setup['student_recipe'])}"
    training += f"; image size {setup['image_size']}"
    if setup["patch"]:
        training += f"; 3D patches of {'×'.join(map(str, setup['patch']))}"
    if setup["max_cases"]:
        training += f"; at most {setup['max_cases']} cases"
    widths = [_width_text("student", setup["student_width"])]
    widths += [_width_text("teacher", w) for w in setup["teacher_widths"]]
    scaled = any(w["grid_width"] is not None and not math.isclose(w["width"], w["grid_width"])
                 for w in [setup["student_width"], *setup["teacher_widths"]])
    primary = block["metrics"][0]
    spread = (f"std over the {setup['runs']} (fold, seed) runs of their per-run means (columns marked "
              f"{SPREAD_NAME['runs']}; a row with one finished run shows none)"
              if setup["spread"] == "runs" else
              f"std over the test cases of the one (fold, seed) run (columns marked {SPREAD_NAME['cases']})")
    lines = [f"## {title} — {block['dataset']} · student {block['student']}", "",
             f"- **Dataset:** {block['dataset']} (targets: {', '.join(block['targets'])}); per-case metrics on each "
             f"fold's test cases",
             f"- **Budget:** {budget}",
             f"- **Budget changed:** {changed_text}",
             f"- **Trained with:** {training}",
             f"- **Widths as trained:** {', '.join(widths)}"
             + (" — row labels are the grid's, as typed" if scaled else ""),
             f"- **Input size:** {'×'.join(map(str, setup['input']))} (FLOPs and latency are per forward pass at "
             f"this size, batch 1)",
             f"- **Seeds:** {', '.join(map(str, setup['seeds']))} · **Folds:** {', '.join(map(str, setup['folds']))} "
             f"of {setup['of_folds']}",
             f"- **Trained on:** {setup['trained_on'] or '– (no training job has finished)'}"]
    if setup["profiled_on"]:
        lines.append(f"- **Profiled on:** {setup['profiled_on']}")
    if any("onnx_latency" in r["cost"] for r in block["rows"]):
        lines.append(f"- **{EXPORTED_LATENCY[:-5]}:** of the networks exported with `kdbench export` (onnxruntime on "
                     "the CPU, batch 1, one thread, median of its timed runs; a row's median over its exported runs; "
                     "`exports/<job>.onnx.json` says where it was timed)")
    lines += _provenance(setup)
    if setup["aggregate"] == "range":
        lines.append(f"- **Range:** min–max over the {setup['runs']} (fold, seed) runs of their per-run means "
                     f"(columns marked {SPREAD_NAME['range']}; a row with one finished run shows its mean). EMKD gives "
                     "the range over the last epochs of each fold; only final checkpoints are evaluated here. "
                     "leaderboard.json holds mean, run_std and case_std too")
    else:
        lines.append(f"- **±:** {spread}; leaderboard.json holds both (run_std, case_std)")
    if setup["spacing_unit"] == "px":
        lines.append("- **HD95/ASSD in pixels:** this dataset has no physical spacing")
    elif setup["spacing_unit"] != "mm":
        lines.append("- **HD95/ASSD:** some evaluations are in mm and some in pixels — do not compare them")
    lines.append(f"- Δ vs. `none`, the student trained alone; **gap closed:** (row − `none`) / (teacher − `none`) "
                 f"of the {METRIC_NAMES[primary]} means, the share of the teacher–student gap the method closes "
                 "(empty when that gap is below the last digit shown); best student **bold**, second <u>underlined</u>.")
    lines.append(_significance_text(block))
    ref = grid["leaderboard"]["reproduces"]
    if ref:
        lines.append(f"- **Paper columns:** {PAPERS.get(ref['paper'], ref['paper'])}, Table {ref['table']} — "
                     "published on the paper's own data and scale; shown for reference, not as this run's result.")
    return lines


def _provenance(setup: dict) -> list[str]:
    """Header lines naming the grid hash and the package versions the plan recorded."""
    digest = setup.get("grid_sha256")
    versions = setup.get("versions")
    grid = (f"sha256 `{digest}` (the resolved grid: the file with its `--set` and `--dataset`)" if digest
            else "not recorded (this plan was written by an older kdbench)")
    packages = (", ".join(f"{VERSION_NAMES.get(name, name)} {version}" for name, version in versions.items())
                if versions else "not recorded (this plan was written by an older kdbench)")
    environment = setup.get("environment")
    lock = (drift_text(environment) if environment
            else "not compared with a lock (this plan was written by an older kdbench)")
    lines = [f"- **Grid:** {grid}", f"- **Versions:** {packages}", f"- **Environment:** {lock}"]
    planned = set((environment or {}).get("differs") or ())
    jobs = [d for d in setup.get("job_environments") or () if d not in planned]
    if jobs:
        lines.append(f"- **Jobs ran where the environment differs from the lock:** {'; '.join(jobs)}")
    return lines


def _significance_text(block: dict) -> str:
    """The header line that says what the mark beside a primary-metric cell means."""
    primary = METRIC_NAMES[block["metrics"][0]]
    text = (f"- **Significance:** marks on the {primary} cells: `*` p < 0.05, `**` p < 0.01 after Holm correction "
            f"across the table's student rows (per target), from a two-sided paired Wilcoxon signed-rank test over the test "
            f"cases against `none`, each case paired with itself in the same (fold, seed) run (Noothout et al.); "
            f"↑/↓: the median paired difference is positive/negative; no mark: not significant, or not tested "
            f"(fewer than {MIN_NONZERO} cases that differ: p could not fall below 0.05)")
    keys = [f"{t}/{block['metrics'][0]}" for t in block["targets"]]
    if not any(np.isfinite(r["cells"][k]["p"]) for r in block["rows"] for k in keys):
        text += f" — no row is tested here: none has {MIN_NONZERO} cases that differ from `none`"
    return text


def render_markdown(run_dir: str | Path) -> str:
    """The run's leaderboard(s) as markdown, linking the pictures already written beside it."""
    from kdbench.leaderboards.plots import picture_markdown

    blocks = leaderboard_blocks(run_dir)
    return _markdown(read_plan(run_dir), blocks, picture_markdown(run_dir, blocks))


def _label(row: dict, note: str) -> str:
    """The row's first cell: its label, how many runs finished, and a note marker."""
    extra = []
    if row["status"] in ("partial", "pending"):
        extra.append(f"{row['finished']}/{row['expected']} runs")
        if row["failed"]:
            extra.append(f"{len(row['failed'])} failed")
        if row["skipped"]:
            extra.append(f"{len(row['skipped'])} not run: {row['skipped'][0]['reason']}")
    return row["row"] + (f" ({', '.join(extra)})" if extra else "") + note


def _failure_note(row: dict) -> str:
    return "; ".join(f"{f['stage']} failed (fold {f['fold']}, seed {f['seed']}): {f['error']} — `failed/{f['job']}.txt`"
                     for f in row["failed"])


def _cell(cell: dict, metric: str, aggregate: str, spread: str) -> str:
    """A metric cell as shown: ``mean ± std``, or ``min–max`` over runs with the ``range`` aggregate
    (a cell with one run shows its mean alone)."""
    if aggregate == "range":
        if cell["runs"] > 1:
            return f"{_fmt(cell['min'], metric)}–{_fmt(cell['max'], metric)}"
        return _fmt(cell["mean"], metric)
    std = cell["run_std"] if spread == "runs" else cell["case_std"]
    return _fmt(cell["mean"], metric) + (f" ± {_fmt(std, metric)}" if np.isfinite(std) else "")


def _markdown(plan: dict, blocks: list[dict], pictures: list[list[str]] | None = None) -> str:
    """The page: a title, then per block its header lines, its table (``DataFrame.to_markdown``),
    its numbered notes and its pictures (markdown image lines, see ``plots.picture_markdown``)."""
    cost_keys = plan["grid"]["leaderboard"]["cost"]
    out = [f"# Leaderboard: {plan['grid']['name']} · budget {plan['budget']}", ""]
    if plan["grid"].get("description"):
        out += [plan["grid"]["description"], ""]
    for i, block in enumerate(blocks):
        out += _header(plan, block) + [""]
        metrics, targets, rows, setup = block["metrics"], block["targets"], block["rows"], block["setup"]
        unit, spread, aggregate = setup["spacing_unit"], setup["spread"], setup["aggregate"]
        primary = metrics[0]

        def ours(m: str) -> str:
            name = metric_name(m, unit)
            return f"{name[:-1]}, {SPREAD_NAME[spread]})" if name.endswith(")") else f"{name} ({SPREAD_NAME[spread]})"

        paper_keys = list(dict.fromkeys(k for r in rows for m in metrics for k in r["paper"][m]))
        columns = ["Row"]
        for target in targets:
            columns += [f"{target} {ours(m)}" for m in metrics]
            columns += [f"{target} Δ{metric_name(primary, unit)}", f"{target} gap closed"]
        columns += [f"paper {k} {metric_name(m)}" for m in metrics for k in paper_keys
                    if any(k in r["paper"][m] for r in rows)]
        for c in cost_keys:
            columns += [COST_COLUMNS[c][0]] + ([LATENCY_SPREAD] if c == "latency" else [])
        paper_cost = [(c, k) for c in cost_keys if c in PAPER_COSTS
                      for k in dict.fromkeys(k for r in rows for k in r["paper_cost"].get(c, {}))]
        columns += [" ".join(filter(None, ("paper", k, COST_COLUMNS[c][0]))) for c, k in paper_cost]
        exported = any("onnx_latency" in r["cost"] for r in rows)
        columns += [EXPORTED_LATENCY] if exported else []
        ranks = {}
        students = [r for r in rows if r["kind"] == "student"]
        for key in (f"{t}/{m}" for t in targets for m in metrics):
            metric = key.split("/")[1]
            values = sorted({round(r["cells"][key]["mean"], _digits(metric)) for r in students
                             if np.isfinite(r["cells"][key]["mean"])},
                            key=(lambda v: abs(v)) if metric == "rvd" else None, reverse=metric not in LOWER_IS_BETTER)
            ranks[key] = values[:2]
        baseline = next((r for r in rows if r["method"] == "none"), None)
        table = []
        notes, unstable = [], False
        for r in rows:
            mark = ""
            if r["failed"]:
                notes.append(_failure_note(r))
                mark = str(len(notes)).translate(_SUPERSCRIPT)
            cells = [_label(r, mark)]
            status = ("**failed**" if r["status"] == "failed" else
                      f"not run ({r['skipped'][0]['reason']})" if r["status"] == "not run" else None)
            for target in targets:
                for m in metrics:
                    c = r["cells"][f"{target}/{m}"]
                    text = _cell(c, m, aggregate, spread)
                    best = ranks[f"{target}/{m}"]
                    shown = round(c["mean"], _digits(m)) if np.isfinite(c["mean"]) else None
                    if status and shown is None:
                        text = status
                    elif r["kind"] == "student" and best and shown == best[0]:
                        text = f"**{text}**"
                    elif r["kind"] == "student" and len(best) > 1 and shown == best[1]:
                        text = f"<u>{text}</u>"
                    if m == primary and (sig := significance_mark(c["p_holm"], c["median_diff"])):
                        text += " " + sig.replace("*", "\\*")
                    cells.append(text)
                base = baseline["cells"][f"{target}/{primary}"]["mean"] if baseline else math.nan
                mine = r["cells"][f"{target}/{primary}"]
                delta = mine["mean"] - base
                cells.append(f"{delta:+.3f}" if r["kind"] == "student" and np.isfinite(delta) else "")
                gap = round(mine["gap_closed"], 2) + 0.0  # + 0.0: a gap that rounds to -0 % reads 0 %
                cells.append(f"{gap:.0%}" if np.isfinite(gap) else "")
            for m in metrics:
                for k in paper_keys:
                    if any(k in x["paper"][m] for x in rows):
                        cells.append(r["paper"][m].get(k, ""))
            for c in cost_keys:
                _, _, fmt = COST_COLUMNS[c]
                text = fmt.format(r["cost"][c]) if c in r["cost"] else "–"
                if c == "latency":
                    flagged = r["cost"].get("latency_unstable", False)
                    unstable |= flagged
                    cells.append(text + (" ⚠" if flagged else ""))
                    cells.append(f"{r['cost']['latency_p10']:.2f}–{r['cost']['latency_p90']:.2f}"
                                 if "latency_p10" in r["cost"] else "–")
                else:
                    cells.append(text)
            cells += [r["paper_cost"][c].get(k, "") for c, k in paper_cost]
            if exported:
                cells.append(f"{r['cost']['onnx_latency']:.2f}" if "onnx_latency" in r["cost"] else "–")
            table.append(cells)
        frame = pd.DataFrame(table, columns=columns)
        out += [frame.to_markdown(index=False, colalign=["left"] + ["right"] * (len(columns) - 1),
                                  disable_numparse=True), ""]
        notes = [f"{str(i).translate(_SUPERSCRIPT)} {note}" for i, note in enumerate(notes, 1)]
        if unstable:
            notes.append(UNSTABLE_NOTE)
        if notes:
            out += ["\n\n".join(notes), ""]
        if pictures and pictures[i]:
            out += ["\n\n".join(pictures[i]), ""]
    return "\n".join(out)


def write_leaderboard(run_dir: str | Path) -> Path:
    """Write ``results.csv``/``.parquet``, the pictures (``pictures/*.png``), ``leaderboard.md`` and
    ``leaderboard.json``; return the markdown path."""
    from kdbench.leaderboards.plots import picture_markdown, write_pictures

    run_dir = Path(run_dir)
    results = results_table(run_dir)
    write_results(run_dir, results)
    blocks = leaderboard_blocks(run_dir, results)
    write_pictures(run_dir, blocks)
    write_atomic(run_dir / "leaderboard.md", _markdown(read_plan(run_dir), blocks, picture_markdown(run_dir, blocks)))
    write_atomic(run_dir / "leaderboard.json", json.dumps(blocks, indent=2, default=float))
    return run_dir / "leaderboard.md"


def write_leaderboards(path: str | Path) -> list[Path]:
    """Write the leaderboard of every run ``path`` names (a run directory, or a grid directory
    holding one per budget, see :func:`find_runs`); return the markdown paths."""
    return [write_leaderboard(run) for run in find_runs(path)]
