"""Hand-built run directories (plan.json + job directories, as the runner writes them) for
leaderboard tests: each case is exact and instant, no training."""

from __future__ import annotations

import json
from pathlib import Path

CASES = ("c0", "c1", "c2")
GRID_SHA256 = "ab" * 32
VERSIONS = {"python": "3.12.0", "kdbench": "0.1.0", "torch": "2.5.1", "segmentation-models-pytorch": "0.6.0",
            "timm": "1.0.20", "monai": "1.4.0", "numpy": "2.1.0"}


def default_value(method: str, fold: int, seed: int, case: int) -> float:
    """Dice of a case: a per-method level, a per-seed offset and a per-case spread."""
    level = {"teacher": 0.9, "none": 0.6, "kd": 0.7}.get(method, 0.5)
    return level + 0.02 * seed + 0.01 * fold + 0.1 * (case - 1)


def _job(kind: str, name: str, config: dict, meta: dict, deps=()) -> dict:
    return {"id": f"{kind}-{name}", "kind": kind, "config": {"kind": kind, **config, "deps": list(deps)},
            "deps": list(deps), "meta": meta}


def make_run(root: Path, *, budget: str = "smoke", seeds=(0,), folds=(0,), methods=("none", "kd"),
             teachers=("teacher",), cases=CASES, effective: dict | None | bool = True,
             plan_device: str = "PLAN-MACHINE (not the trainer)", device: str = "cpu (x86_64)",
             threads: int | None = 1, spacing_unit: str | None = "mm", fail: dict | None = None,
             latency=(9.0, 10.0, 12.0), value=default_value, grid_width: float = 0.25, budget_width: float = 0.125,
             provenance: bool = True, aggregate: str | None = None) -> Path:
    """A finished run directory of a tiny grid: ``teachers`` (labels), a student with ``methods``
    (a method other than ``none`` once per teacher), ``cases`` test cases per (fold, seed) run.

    Rows are keyed by their leaderboard label: a teacher by its label, ``none``, a method by its
    name (one teacher) or ``"<method> ← <teacher>"`` (several).  ``value(row, fold, seed, case)``
    gives a case's Dice (HD95 is 10 × (1 − Dice)).  ``fail`` maps a row to ``"training"`` or
    ``"evaluation"``: those jobs leave a failure record and no job directory; jobs depending on a
    failed job leave nothing (skipped).  ``effective=True`` writes the budget's effective
    settings, ``None`` leaves them out (an older plan); ``provenance=False`` leaves out
    ``grid_sha256`` and ``versions``; ``aggregate`` sets ``leaderboard.aggregate``.
    """
    fail = fail or {}
    root.mkdir(parents=True, exist_ok=True)
    model = {"in_channels": 1, "num_classes": 3, "options": {}}
    recipe = {"epochs": 1, "max_steps": 3, "batch_size": 2, "image_size": 32, "lr": 0.01}
    data = {"name": "phantom", "root": None, "options": {}, "image_size": 32, "targets": {"organ": [1, 2]}}
    teacher_model = {**model, "name": "tinyunet", "width": 1.0 * budget_width}
    student_model = {**model, "name": "tinyunet", "width": grid_width * budget_width}
    profiles = {"teacher": _job("profile", "teacher", {"model": teacher_model, "input": [1, 1, 32, 32]},
                                {"model": "tinyunet", "model_label": "teacher", "dataset": "phantom"}),
                "student": _job("profile", "student", {"model": student_model, "input": [1, 1, 32, 32]},
                                {"model": "tinyunet", "model_label": "w0.25", "dataset": "phantom"})}
    jobs = list(profiles.values())
    trains = []
    for fold in folds:
        for seed in seeds:
            common = {"dataset": data, "seed": seed,
                      "split": {"folds": 5, "fold": fold, "seed": 0, "test_fraction": 0.25, "max_cases": 6}}
            where = {"dataset": "phantom", "fold": fold, "seed": seed}
            teacher_jobs = {}
            for label in teachers:
                name = f"f{fold}s{seed}" if len(teachers) == 1 else f"{label}-f{fold}s{seed}"
                teacher_jobs[label] = _job("teacher", name, {**common, "model": teacher_model, "train": recipe},
                                           {**where, "role": "teacher", "model": "tinyunet", "model_label": label,
                                            "profile": profiles["teacher"]["id"]})
                trains.append((label, teacher_jobs[label]))
            for method in methods:
                for label in teachers if method != "none" else (None,):
                    several = label is not None and len(teachers) > 1
                    row = f"{method} ← {label}" if several else method
                    teacher = teacher_jobs[label] if label else None
                    name = f"{method}-{label}-f{fold}s{seed}" if several else f"{method}-f{fold}s{seed}"
                    student = _job("student", name,
                                   {**common, "model": student_model, "train": recipe,
                                    "method": {"name": method, "params": {}}, "teacher": teacher and teacher["id"]},
                                   {**where, "role": "student", "model": "tinyunet", "model_label": "w0.25",
                                    "method": method, "method_label": method, "teacher_label": label,
                                    "teacher": "tinyunet" if label else None, "profile": profiles["student"]["id"]},
                                   deps=(teacher["id"],) if teacher else ())
                    trains.append((row, student))
    for row, train in trains:
        evaluate = _job("evaluate", train["id"], {"train": train["id"], "dataset": data, "seed": train["config"]["seed"],
                                                  "split": train["config"]["split"]}, train["meta"], deps=(train["id"],))
        jobs += [train, evaluate]
    grid = {"name": "tiny", "description": "", "budget": budget,
            "teachers": [{"name": "tinyunet", "label": label, "width": 1.0, "options": {}} for label in teachers],
            "students": [{"name": "tinyunet", "label": "w0.25", "width": grid_width, "options": {}}],
            "methods": [{"name": m, "label": m, "params": {}} for m in methods],
            "leaderboard": {"title": None, "targets": None, "metrics": ["dice", "hd95"],
                            "cost": ["params", "flops", "latency"], "reproduces": None}}
    if aggregate is not None:
        grid["leaderboard"]["aggregate"] = aggregate
    plan = {"grid": grid, "budget": budget, "device": plan_device, "jobs": jobs}
    if provenance:
        plan.update(grid_sha256=GRID_SHA256, versions=VERSIONS)
    if effective is True:
        plan["effective"] = {"epochs": 1, "max_steps": 3, "image_size": 32, "batch_size": 2,
                             "student_width": [grid_width * budget_width], "teacher_width": [budget_width],
                             "seeds": list(seeds), "folds": list(folds),
                             "changed": ["epochs 60 → 1", "seeds [0, 1] → [0]", "image size 512 → 32",
                                         f"width ×{budget_width:g}"] if budget != "paper" else []}
    elif isinstance(effective, dict):
        plan["effective"] = effective
    (root / "plan.json").write_text(json.dumps(plan, indent=2))

    failed_jobs: set[str] = set()

    def record(job: dict, error: str) -> None:
        failed_jobs.add(job["id"])
        (root / "failed").mkdir(exist_ok=True)
        (root / "failed" / f"{job['id']}.txt").write_text(f"Traceback (most recent call last):\nRuntimeError: {error}\n")
        (root / "failed" / f"{job['id']}.json").write_text(json.dumps(
            {"job": job["id"], "kind": job["kind"], "error": error, "time": 0.0}))

    def done(job: dict, summary: dict | None = None) -> Path:
        folder = root / job["id"]
        folder.mkdir()
        record = {**job, "summary": summary or {}, "device": device, "torch": "2.x", "started": 0.0, "seconds": 1.0}
        if threads is not None:
            record["threads"] = threads
        (folder / "job.json").write_text(json.dumps(record))
        return folder

    for key, job in profiles.items():
        p10, median, p90 = latency if key == "student" else (5.0, 5.5, 6.0)  # (p10, median, p90)
        folder = done(job)
        (folder / "profile.json").write_text(json.dumps(
            {"params_M": 0.1, "flops_G": 0.02, "latency_ms": median, "latency_p10_ms": p10, "latency_p90_ms": p90,
             "runs": 50, "warmup": 10, "peak_mem_MB": 3.0, "input": [1, 1, 32, 32], "device": device}))
    by_id = {j["id"]: j for j in jobs}
    for row, train in trains:
        evaluate = next(j for j in jobs if j["kind"] == "evaluate" and j["config"]["train"] == train["id"])
        if any(d in failed_jobs or not (root / d).is_dir() for d in train["deps"]):
            continue  # skipped: its teacher failed
        if fail.get(row) == "training":
            record(train, f"non-finite loss in {row}")
            continue
        done(train)
        if fail.get(row) == "evaluation":
            record(evaluate, f"evaluation of {row} broke")
            continue
        summary = {"test_cases": len(cases)}
        if spacing_unit is not None:
            summary["spacing_unit"] = spacing_unit
        folder = done(evaluate, summary)
        meta = by_id[train["id"]]["meta"]
        lines = ["case_id,target,metric,value"]
        for i, case in enumerate(cases):
            dice = value(row, meta["fold"], meta["seed"], i)
            lines += [f"{case},organ,dice,{dice}", f"{case},organ,hd95,{10 * (1 - dice)}"]
        (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    return root


def table(text: str) -> list[list[str]]:
    """The rows of every markdown table in ``text`` (header first), cells stripped."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ")]


def header_line(text: str, key: str) -> str:
    """The header line ``- **key:** …``."""
    return next(line for line in text.splitlines() if line.startswith(f"- **{key}:**"))
