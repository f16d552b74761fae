"""Markdown leaderboards rendered from a run's results, beside the papers' numbers.

One table per dataset × student: the teacher(s), the student trained alone (``none``)
and every method; per target and metric the mean ± std, Δ of the primary metric vs.
``none``, the best student value **bold** and the second <u>underlined</u>, the
published numbers of the table the grid reproduces, and params/FLOPs/latency/memory.
The header states dataset, budget, input size, device, seeds and folds, so a
smoke-budget number can never pass for a paper-scale one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from kdbench.benchmark.evaluate import LOWER_IS_BETTER
from kdbench.benchmark.store import write_atomic
from kdbench.leaderboards.paper import paper_results
from kdbench.leaderboards.results import load_plan, profiles_table, results_table, write_results

METRIC_NAMES = {"dice": "Dice", "iou": "IoU", "voe": "VOE", "rvd": "RVD", "hd95": "HD95 (mm)", "assd": "ASSD (mm)"}
PAPER_METRICS = {"dice": [("dice", 1.0), ("dice_pct", 0.01)], "iou": [("iou_pct", 0.01)], "voe": [("voe", 1.0)],
                 "rvd": [("rvd", 1.0)], "hd95": [("hd_mm", 1.0)], "assd": [("msd_mm", 1.0)]}
COST_COLUMNS = {"params": ("Params (M)", "params_M", "{:.3g}"), "flops": ("FLOPs (G)", "flops_G", "{:.3g}"),
                "latency": ("Latency (ms)", "latency_ms", "{:.2f}"), "memory": ("Peak mem (MB)", "peak_mem_MB", "{:.1f}")}
PAPERS = {"emkd_tmi2021": "Qin et al., IEEE TMI 2021 (EMKD)", "plckd_miccai2024": "Wang et al., MICCAI 2024 (PLC-KD)",
          "ensemblekd_jmi2022": "Noothout et al., J. Med. Imaging 2022 (ensemble KD)"}
BUDGET_NOTE = {"smoke": "smoke — a plumbing check, NOT paper-scale", "quick": "quick — reduced, NOT paper-scale",
               "paper": "paper — the grid's full recipe"}


def _digits(metric: str) -> int:
    return 2 if metric in ("hd95", "assd") else 3


def _fmt(value: float, metric: str) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.{_digits(metric)}f}"


def summarise(values: pd.DataFrame) -> tuple[float, float, int]:
    """Mean and std of one row × target × metric: over (fold, seed) runs if several, else over cases."""
    values = values.dropna(subset=["value"])
    if values.empty:
        return math.nan, math.nan, 0
    runs = values.groupby(["fold", "seed"])["value"].mean()
    spread = runs if len(runs) > 1 else values["value"]
    std = float(spread.std(ddof=0)) if len(spread) > 1 else 0.0
    return float(runs.mean()), std, len(values)


def _rows(grid: dict, jobs: list[dict], dataset: str, student: str) -> list[dict]:
    """Leaderboard rows: teachers first, then ``none``, then each method (per teacher)."""
    trains = [j for j in jobs if j["kind"] in ("teacher", "student") and j["meta"]["dataset"] == dataset]
    rows = []
    for t in grid["teachers"]:
        label = t["label"] or t["name"]
        ids = [j["id"] for j in trains if j["kind"] == "teacher" and j["meta"]["model_label"] == label]
        if ids:
            rows.append({"row": f"teacher: {label}", "kind": "teacher", "jobs": ids, "model": t["name"],
                         "method": "teacher", "method_label": "teacher", "teacher": t["name"],
                         "profile": next(j["meta"]["profile"] for j in trains if j["id"] == ids[0])})
    teachers = {j["meta"]["teacher_label"] for j in trains if j["kind"] == "student" and j["meta"]["teacher_label"]}
    for m in grid["methods"]:
        mine = [j for j in trains if j["kind"] == "student" and j["meta"]["model_label"] == student
                and j["meta"]["method_label"] == m["label"]]
        for teacher in sorted({j["meta"]["teacher_label"] or "" for j in mine}):
            group = [j for j in mine if (j["meta"]["teacher_label"] or "") == teacher]
            name = m["label"] + (f" ← {teacher}" if teacher and len(teachers) > 1 else "")
            rows.append({"row": name, "kind": "student", "jobs": [j["id"] for j in group], "model": group[0]["meta"]["model"],
                         "method": m["name"], "method_label": m["label"], "teacher": group[0]["meta"]["teacher"],
                         "profile": group[0]["meta"]["profile"]})
    return rows


def _paper_lookup(ref: dict | None, row: dict, metric: str) -> dict[str, str]:
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
    out = {}
    for paper_metric, scale in PAPER_METRICS[metric]:
        for _, r in match[match["metric"] == paper_metric].iterrows():
            key = f"{r['dataset']} {r['target']}".strip()
            spread = f" ± {_fmt(r['spread'] * scale, metric)}" if pd.notna(r["spread"]) else ""
            out.setdefault(key, f"{_fmt(r['value'] * scale, metric)}{spread}")
    return out


def leaderboard_blocks(run_dir: str | Path, results: pd.DataFrame | None = None) -> list[dict]:
    """The leaderboard as data: one block per dataset × student (also written as JSON).

    ``results`` is the run's :func:`results_table`, read from the job directories when not given.
    """
    plan = load_plan(run_dir)
    grid, jobs = plan["grid"], plan["jobs"]
    results = results_table(run_dir) if results is None else results
    profiles = profiles_table(run_dir)
    profiles = profiles.set_index("profile") if len(profiles) else profiles
    spec = grid["leaderboard"]
    metrics = spec["metrics"]
    blocks = []
    for ds in dict.fromkeys(j["meta"]["dataset"] for j in jobs if j["kind"] == "student"):
        ds_targets = next(j["config"]["dataset"]["targets"] for j in jobs if j["kind"] == "student"
                          and j["meta"]["dataset"] == ds)
        targets = [t for t in (spec["targets"] or ds_targets) if t in ds_targets] or list(ds_targets)
        for s in grid["students"]:
            student = s["label"] or s["name"]
            rows = []
            for row in _rows(grid, jobs, ds, student):
                sub = results[results["job"].isin(row["jobs"])]
                cells = {}
                for target in targets:
                    for metric in metrics:
                        part = sub[(sub["target"] == target) & (sub["metric"] == metric)]
                        cells[f"{target}/{metric}"] = dict(zip(("mean", "std", "n"), summarise(part)))
                cost = {}
                if row["profile"] in profiles.index:
                    p = profiles.loc[row["profile"]]
                    cost = {k: float(p[col]) for k, (_, col, _) in COST_COLUMNS.items()}
                paper = {m: _paper_lookup(spec["reproduces"], row, m) for m in metrics}
                rows.append({**{k: row[k] for k in ("row", "kind", "model", "method", "method_label")},
                             "cells": cells, "cost": cost, "paper": paper, "finished": int(sub["job"].nunique()),
                             "expected": len(row["jobs"])})
            blocks.append({"dataset": ds, "student": student, "targets": targets, "metrics": metrics, "rows": rows})
    return blocks


def _header(plan: dict, block: dict) -> list[str]:
    grid = plan["grid"]
    student_jobs = [j for j in plan["jobs"] if j["kind"] == "student" and j["meta"]["dataset"] == block["dataset"]]
    first = student_jobs[0]["config"]
    shape = "×".join(str(v) for v in [1, first["model"]["in_channels"], first["dataset"]["image_size"],
                                      first["dataset"]["image_size"]])
    seeds = sorted({j["config"]["seed"] for j in student_jobs})
    folds = sorted({j["config"]["split"]["fold"] for j in student_jobs})
    budget = plan["budget"]
    title = grid["leaderboard"]["title"] or grid["name"]
    lines = [f"## {title} — {block['dataset']} · student {block['student']}", "",
             f"- **Dataset:** {block['dataset']} (targets: {', '.join(block['targets'])}); per-case metrics on each "
             f"fold's test cases",
             f"- **Budget:** {BUDGET_NOTE[budget]} (epochs {first['train']['epochs']}"
             f"{', max ' + str(first['train']['max_steps']) + ' steps' if first['train'].get('max_steps') else ''}, "
             f"batch {first['train']['batch_size']}, student width ×{first['model']['width']:g})",
             f"- **Input size:** {shape} (FLOPs and latency are per forward pass at this size, batch 1)",
             f"- **Device:** {plan['device']}",
             f"- **Seeds:** {', '.join(map(str, seeds))} · **Folds:** {', '.join(map(str, folds))} of "
             f"{first['split']['folds']}",
             "- Values: mean ± std over test cases (one run) or over (fold, seed) runs; Δ vs. `none`, the student "
             "trained alone; best student **bold**, second <u>underlined</u>."]
    ref = grid["leaderboard"]["reproduces"]
    if ref:
        lines.append(f"- **Paper columns:** {PAPERS.get(ref['paper'], ref['paper'])}, Table {ref['table']} — "
                     "published on the paper's own data and scale; shown for reference, not as this run's result.")
    return lines


def render_markdown(run_dir: str | Path) -> str:
    """The run's leaderboard(s) as markdown."""
    return _markdown(load_plan(run_dir), leaderboard_blocks(run_dir))


def _markdown(plan: dict, blocks: list[dict]) -> str:
    cost_keys = plan["grid"]["leaderboard"]["cost"]
    out = [f"# Leaderboard: {plan['grid']['name']}", ""]
    if plan["grid"].get("description"):
        out += [plan["grid"]["description"], ""]
    for block in blocks:
        out += _header(plan, block) + [""]
        metrics, targets, rows = block["metrics"], block["targets"], block["rows"]
        primary = metrics[0]
        paper_keys = list(dict.fromkeys(k for r in rows for m in metrics for k in r["paper"][m]))
        columns = ["Row"]
        for target in targets:
            columns += [f"{target} {METRIC_NAMES[m]}" for m in metrics] + [f"{target} Δ{METRIC_NAMES[primary]}"]
        columns += [f"paper {k} {METRIC_NAMES[m]}" for m in metrics for k in paper_keys
                    if any(k in r["paper"][m] for r in rows)]
        columns += [COST_COLUMNS[c][0] for c in cost_keys]
        ranks = {}
        students = [r for r in rows if r["kind"] == "student"]
        for key in (f"{t}/{m}" for t in targets for m in metrics):
            metric = key.split("/")[1]
            values = sorted({round(r["cells"][key]["mean"], _digits(metric)) for r in students
                             if np.isfinite(r["cells"][key]["mean"])},
                            key=(lambda v: abs(v)) if metric == "rvd" else None, reverse=metric not in LOWER_IS_BETTER)
            ranks[key] = values[:2]
        baseline = next((r for r in rows if r["method"] == "none"), None)
        lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(["---"] + ["--:"] * (len(columns) - 1)) + "|"]
        for r in rows:
            cells = [r["row"] + ("" if r["finished"] == r["expected"] else f" ({r['finished']}/{r['expected']} runs)")]
            for target in targets:
                for m in metrics:
                    c = r["cells"][f"{target}/{m}"]
                    text = _fmt(c["mean"], m) + (f" ± {_fmt(c['std'], m)}" if np.isfinite(c["mean"]) else "")
                    best = ranks[f"{target}/{m}"]
                    shown = round(c["mean"], _digits(m)) if np.isfinite(c["mean"]) else None
                    if r["kind"] == "student" and best and shown == best[0]:
                        text = f"**{text}**"
                    elif r["kind"] == "student" and len(best) > 1 and shown == best[1]:
                        text = f"<u>{text}</u>"
                    cells.append(text)
                base = baseline["cells"][f"{target}/{primary}"]["mean"] if baseline else math.nan
                mine = r["cells"][f"{target}/{primary}"]["mean"]
                cells.append(f"{mine - base:+.3f}" if r["kind"] == "student" and np.isfinite(mine - base) else "")
            for m in metrics:
                for k in paper_keys:
                    if any(k in x["paper"][m] for x in rows):
                        cells.append(r["paper"][m].get(k, ""))
            for c in cost_keys:
                _, col, fmt = COST_COLUMNS[c]
                cells.append(fmt.format(r["cost"][c]) if c in r["cost"] else "–")
            lines.append("| " + " | ".join(cells) + " |")
        out += lines + [""]
    return "\n".join(out)


def write_leaderboard(run_dir: str | Path) -> Path:
    """Write ``results.csv``/``.parquet``, ``leaderboard.md`` and ``leaderboard.json``; return the markdown path."""
    run_dir = Path(run_dir)
    results = results_table(run_dir)
    write_results(run_dir, results)
    blocks = leaderboard_blocks(run_dir, results)
    write_atomic(run_dir / "leaderboard.md", _markdown(load_plan(run_dir), blocks))
    write_atomic(run_dir / "leaderboard.json", json.dumps(blocks, indent=2, default=float))
    return run_dir / "leaderboard.md"
