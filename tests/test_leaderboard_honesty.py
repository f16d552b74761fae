"""Leaderboards say exactly what their numbers are: effective budget, training device,
px vs. mm, which std the ± is, failed and skipped rows, unstable latency.

Run directories are written by hand (plan.json + job directories), as the runner writes
them, so each case is exact and instant.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from kdbench.errors import KdbenchError
from kdbench.leaderboards.render import leaderboard_blocks, render_markdown, write_leaderboard, write_leaderboards
from kdbench.leaderboards.results import find_runs

from conftest import run_cli

CASES = ("c0", "c1", "c2")


def default_value(method: str, fold: int, seed: int, case: int) -> float:
    """Dice of a case: a per-method level, a per-seed offset and a per-case spread."""
    level = {"teacher": 0.9, "none": 0.6, "kd": 0.7}.get(method, 0.5)
    return level + 0.02 * seed + 0.01 * fold + 0.1 * (case - 1)


def _job(kind: str, name: str, config: dict, meta: dict, deps=()) -> dict:
    return {"id": f"{kind}-{name}", "kind": kind, "config": {"kind": kind, **config, "deps": list(deps)},
            "deps": list(deps), "meta": meta}


def make_run(root: Path, *, budget: str = "smoke", seeds=(0,), folds=(0,), methods=("none", "kd"),
             effective: dict | None | bool = True, plan_device: str = "PLAN-MACHINE (not the trainer)",
             device: str = "cpu (x86_64)", threads: int | None = 1, spacing_unit: str | None = "mm",
             fail: dict | None = None, latency=(9.0, 10.0, 12.0), value=default_value,
             grid_width: float = 0.25, budget_width: float = 0.125) -> Path:
    """A finished run directory of a tiny grid: one teacher, a student with ``methods``.

    ``fail`` maps a row (``"teacher"`` or a method) to ``"training"`` or ``"evaluation"``:
    those jobs leave a failure record and no job directory; jobs depending on a failed job
    leave nothing (skipped).  ``effective=True`` writes the budget's effective settings,
    ``None`` leaves them out (an older plan).
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
            teacher = _job("teacher", f"f{fold}s{seed}", {**common, "model": teacher_model, "train": recipe},
                           {**where, "role": "teacher", "model": "tinyunet", "model_label": "teacher",
                            "profile": profiles["teacher"]["id"]})
            trains.append(("teacher", teacher))
            for method in methods:
                uses = method != "none"
                student = _job("student", f"{method}-f{fold}s{seed}",
                               {**common, "model": student_model, "train": recipe,
                                "method": {"name": method, "params": {}}, "teacher": teacher["id"] if uses else None},
                               {**where, "role": "student", "model": "tinyunet", "model_label": "w0.25",
                                "method": method, "method_label": method, "teacher_label": "teacher" if uses else None,
                                "teacher": "tinyunet" if uses else None, "profile": profiles["student"]["id"]},
                               deps=(teacher["id"],) if uses else ())
                trains.append((method, student))
    for row, train in trains:
        evaluate = _job("evaluate", train["id"], {"train": train["id"], "dataset": data, "seed": train["config"]["seed"],
                                                  "split": train["config"]["split"]}, train["meta"], deps=(train["id"],))
        jobs += [train, evaluate]
    grid = {"name": "tiny", "description": "", "budget": budget,
            "teachers": [{"name": "tinyunet", "label": "teacher", "width": 1.0, "options": {}}],
            "students": [{"name": "tinyunet", "label": "w0.25", "width": grid_width, "options": {}}],
            "methods": [{"name": m, "label": m, "params": {}} for m in methods],
            "leaderboard": {"title": None, "targets": None, "metrics": ["dice", "hd95"],
                            "cost": ["params", "flops", "latency"], "reproduces": None}}
    plan = {"grid": grid, "budget": budget, "device": plan_device, "jobs": jobs}
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
        summary = {"test_cases": len(CASES)}
        if spacing_unit is not None:
            summary["spacing_unit"] = spacing_unit
        folder = done(evaluate, summary)
        meta = by_id[train["id"]]["meta"]
        lines = ["case_id,target,metric,value"]
        for i, case in enumerate(CASES):
            dice = value(row, meta["fold"], meta["seed"], i)
            lines += [f"{case},organ,dice,{dice}", f"{case},organ,hd95,{10 * (1 - dice)}"]
        (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    return root


def _table(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ")]


def _header_line(text: str, key: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"- **{key}:**"))


def test_header_states_effective_settings_and_what_the_budget_changed(tmp_path):
    text = render_markdown(make_run(tmp_path / "run"))
    assert "smoke — a plumbing check, NOT paper-scale" in text
    changed = _header_line(text, "Budget changed")
    for change in ("epochs 60 → 1", "seeds [0, 1] → [0]", "image size 512 → 32", "width ×0.125"):
        assert change in changed
    trained = _header_line(text, "Trained with")
    assert "1 epoch, at most 3 steps, batch 2" in trained and "image size 32" in trained
    assert "at most 6 cases" in trained
    widths = _header_line(text, "Widths as trained")
    # the row label says w0.25; what trained is 0.25 × 0.125
    assert "student `w0.25` ×0.03125 (the grid's ×0.25 scaled by the budget ×0.125)" in widths
    assert "teacher `teacher` ×0.125" in widths and "row labels are the grid's, as typed" in widths
    assert _header_line(text, "Seeds") == "- **Seeds:** 0 · **Folds:** 0 of 5"


def test_paper_budget_says_nothing_changed_and_old_plans_still_render(tmp_path):
    paper = render_markdown(make_run(tmp_path / "paper", budget="paper", budget_width=1.0))
    assert "paper — the grid's full recipe" in paper
    assert _header_line(paper, "Budget changed") == "- **Budget changed:** nothing — the grid's recipe as written"
    assert "scaled by the budget" not in paper and "as typed" not in paper
    old = render_markdown(make_run(tmp_path / "old", effective=None, threads=None, spacing_unit=None))
    assert "not recorded" in _header_line(old, "Budget changed")
    assert _header_line(old, "Trained on") == "- **Trained on:** cpu (x86_64)"
    assert "HD95 (mm" in old


def test_trained_on_comes_from_the_jobs_not_the_plan(tmp_path):
    run = make_run(tmp_path / "run", plan_device="NVIDIA RERENDER-BOX", device="cpu (x86_64)", threads=1)
    text = render_markdown(run)
    assert _header_line(text, "Trained on") == "- **Trained on:** cpu (x86_64), 1 thread"
    assert "RERENDER-BOX" not in text
    gpu = render_markdown(make_run(tmp_path / "gpu", device="NVIDIA H100", threads=16))
    assert _header_line(gpu, "Trained on") == "- **Trained on:** NVIDIA H100"
    many = render_markdown(make_run(tmp_path / "many", device="cpu (x86_64)", threads=4))
    assert "cpu (x86_64), 4 threads" in many
    named = render_markdown(make_run(tmp_path / "named", device="CPU x86_64 (2 threads)", threads=2))
    assert _header_line(named, "Trained on") == "- **Trained on:** CPU x86_64 (2 threads)"
    (block,) = leaderboard_blocks(run)
    assert block["setup"]["trained_on"] == "cpu (x86_64), 1 thread"


def test_distances_say_px_on_pixel_data_and_mm_otherwise(tmp_path):
    px = render_markdown(make_run(tmp_path / "px", spacing_unit="px"))
    header = _table(px)[0]
    assert "organ HD95 (px, ± case std)" in header and not any("mm" in c for c in header)
    assert "HD95/ASSD in pixels" in px
    mm = _table(render_markdown(make_run(tmp_path / "mm", spacing_unit="mm")))[0]
    assert "organ HD95 (mm, ± case std)" in mm
    run = make_run(tmp_path / "mixed", spacing_unit="px")
    kd_eval = next(p for p in run.glob("evaluate-student-kd*/job.json"))
    record = json.loads(kd_eval.read_text())
    record["summary"]["spacing_unit"] = "mm"
    kd_eval.write_text(json.dumps(record))
    mixed = render_markdown(run)
    assert "organ HD95 (mm/px mixed, ± case std)" in _table(mixed)[0] and "do not compare" in mixed


def test_one_run_shows_case_std_and_names_it(tmp_path):
    run = make_run(tmp_path / "run")
    text = render_markdown(run)
    header, *rows = _table(text)
    assert "organ Dice (± case std)" in header
    assert "std over the test cases of the one (fold, seed) run" in _header_line(text, "±")
    none = next(r for r in rows if r[0] == "none")
    cases = [default_value("none", 0, 0, i) for i in range(3)]
    assert none[header.index("organ Dice (± case std)")] == f"<u>{np.mean(cases):.3f} ± {np.std(cases):.3f}</u>"
    (block,) = leaderboard_blocks(run)
    cell = next(r for r in block["rows"] if r["row"] == "none")["cells"]["organ/dice"]
    assert cell["case_std"] == pytest.approx(np.std(cases)) and math.isnan(cell["run_std"]) and cell["runs"] == 1


def test_several_runs_show_run_std_and_json_keeps_both(tmp_path):
    run = make_run(tmp_path / "run", seeds=(0, 1, 2))
    text = render_markdown(run)
    header, *rows = _table(text)
    column = header.index("organ Dice (± run std)")
    assert "std over the 3 (fold, seed) runs" in _header_line(text, "±")
    runs = [np.mean([default_value("kd", 0, s, i) for i in range(3)]) for s in (0, 1, 2)]
    pooled = [default_value("kd", 0, s, i) for s in (0, 1, 2) for i in range(3)]
    kd = next(r for r in rows if r[0] == "kd")
    assert kd[column] == f"**{np.mean(runs):.3f} ± {np.std(runs):.3f}**"
    (block,) = leaderboard_blocks(run)
    cell = next(r for r in block["rows"] if r["row"] == "kd")["cells"]["organ/dice"]
    assert cell["run_std"] == pytest.approx(np.std(runs)) and cell["case_std"] == pytest.approx(np.std(pooled))
    assert cell["runs"] == 3 and cell["n"] == 9


def test_failed_student_shows_failed_with_its_error(tmp_path):
    run = make_run(tmp_path / "run", fail={"kd": "training"})
    text = render_markdown(run)
    header, *rows = _table(text)
    kd = next(r for r in rows if r[0].startswith("kd"))
    assert kd[0] == "kd¹" and kd[header.index("organ Dice (± case std)")] == "**failed**"
    note = next(line for line in text.splitlines() if line.startswith("¹ "))
    assert "training failed (fold 0, seed 0): non-finite loss in kd" in note and "failed/student-kd-f0s0.txt" in note
    none = next(r for r in rows if r[0] == "none")
    assert none[header.index("organ Dice (± case std)")].startswith("**0.600")  # the only finished student is best
    (block,) = leaderboard_blocks(run)
    row = next(r for r in block["rows"] if r["row"] == "kd")
    assert row["status"] == "failed" and row["failed"][0]["error"] == "non-finite loss in kd"


def test_failed_evaluation_shows_failed(tmp_path):
    text = render_markdown(make_run(tmp_path / "run", fail={"none": "evaluation"}))
    _, *rows = _table(text)
    assert next(r for r in rows if r[0].startswith("none"))[1] == "**failed**"
    assert "evaluation failed (fold 0, seed 0): evaluation of none broke" in text


def test_failed_teacher_fails_its_row_and_its_students_are_not_run(tmp_path):
    run = make_run(tmp_path / "run", fail={"teacher": "training"})
    text = render_markdown(run)
    _, *rows = _table(text)
    teacher = next(r for r in rows if r[0].startswith("teacher: teacher"))
    assert teacher[0] == "teacher: teacher¹" and teacher[1] == "**failed**"
    kd = next(r for r in rows if r[0] == "kd")
    assert kd[1] == "not run (teacher failed)" and kd[2] == "not run (teacher failed)"
    assert next(r for r in rows if r[0] == "none")[1].startswith("**0.600")
    (block,) = leaderboard_blocks(run)
    row = next(r for r in block["rows"] if r["row"] == "kd")
    assert row["status"] == "not run" and row["skipped"][0]["because"] == "teacher-f0s0"


def test_partial_row_keeps_its_run_count_and_names_the_failure(tmp_path):
    run = make_run(tmp_path / "run", seeds=(0, 1))
    (run / "student-kd-f0s1").rename(run / "gone")
    import shutil

    shutil.rmtree(run / "gone")
    shutil.rmtree(next(run.glob("evaluate-student-kd-f0s1*")))
    (run / "failed").mkdir()
    (run / "failed" / "student-kd-f0s1.txt").write_text("Traceback\nValueError: boom\n")  # an older record: .txt only
    _, *rows = _table(render_markdown(run))
    kd = next(r for r in rows if r[0].startswith("kd"))
    assert kd[0] == "kd (1/2 runs, 1 failed)¹"
    one_run = np.mean([default_value("kd", 0, 0, i) for i in range(3)])
    assert kd[1] == f"**{one_run:.3f}**"  # one finished run: no run std to show
    assert "ValueError: boom" in render_markdown(run)


def test_done_wins_over_an_old_failure_record(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "failed").mkdir()
    (run / "failed" / "student-kd-f0s0.txt").write_text("Traceback\nRuntimeError: an earlier attempt\n")
    (run / "failed" / "student-kd-f0s0.json").write_text(json.dumps({"job": "student-kd-f0s0", "kind": "student",
                                                                     "error": "an earlier attempt", "time": 0}))
    text = render_markdown(run)
    assert "failed" not in text.split("\n| Row")[1] and "an earlier attempt" not in text


def test_unstable_latency_is_flagged_with_its_spread(tmp_path):
    text = render_markdown(make_run(tmp_path / "busy", latency=(277.0, 908.0, 2987.0)))
    header, *rows = _table(text)
    kd = next(r for r in rows if r[0] == "kd")
    assert kd[header.index("Latency (ms)")] == "908.00 ⚠"
    assert kd[header.index("Latency p10–p90 (ms)")] == "277.00–2987.00"
    teacher = next(r for r in rows if r[0].startswith("teacher"))
    assert teacher[header.index("Latency (ms)")] == "5.50"
    assert "⚠ unstable timing: p90/p10 > 2" in text and "re-profile on an idle machine" in text
    calm = render_markdown(make_run(tmp_path / "calm", latency=(10.0, 11.0, 19.0)))
    assert "⚠" not in calm and "10.00–19.00" in calm


def test_grid_directory_finds_every_budget(tmp_path):
    grid_dir = tmp_path / "runs" / "tiny"
    make_run(grid_dir / "smoke")
    make_run(grid_dir / "paper", budget="paper", budget_width=1.0)
    (grid_dir / "notes").mkdir()
    assert find_runs(grid_dir) == [grid_dir / "paper", grid_dir / "smoke"]
    assert find_runs(grid_dir / "smoke") == [grid_dir / "smoke"]
    paths = write_leaderboards(grid_dir)
    assert paths == [grid_dir / "paper" / "leaderboard.md", grid_dir / "smoke" / "leaderboard.md"]
    assert "· budget paper" in paths[0].read_text() and "· budget smoke" in paths[1].read_text()
    with pytest.raises(KdbenchError, match="not a run directory"):
        find_runs(tmp_path / "runs")


def test_leaderboard_json_carries_setup_status_and_latency(tmp_path):
    run = make_run(tmp_path / "run", fail={"kd": "training"}, latency=(1.0, 2.0, 3.0))
    write_leaderboard(run)
    (block,) = json.loads((run / "leaderboard.json").read_text())
    assert block["setup"]["spacing_unit"] == "mm" and block["setup"]["spread"] == "cases"
    assert block["setup"]["changed"][0] == "epochs 60 → 1"
    kd = next(r for r in block["rows"] if r["row"] == "kd")
    assert kd["status"] == "failed" and kd["cost"]["latency_unstable"] is True
    assert kd["cost"]["latency_p10"] == 1.0 and kd["cost"]["latency_p90"] == 3.0


@pytest.mark.slow
def test_corrupt_plan_is_one_line_exit_2(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "plan.json").write_bytes(b"{\xff not json")
    result = run_cli("leaderboard", str(run))
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "plan.json" in result.stderr


def test_docs_site_has_one_results_page_per_grid_and_budget(tmp_path):
    pytest.importorskip("mkdocs")
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    runs = tmp_path / "runs"
    make_run(runs / "tiny" / "smoke")
    make_run(runs / "tiny" / "paper", budget="paper", budget_width=1.0)
    make_run(runs / "older", budget="quick")  # a run directory from before budgets were kept apart
    pages = hooks._results_pages(runs)
    assert sorted(pages) == ["results/index.md", "results/older-quick.md", "results/tiny-paper.md",
                             "results/tiny-smoke.md"]
    assert "NOT paper-scale" in pages["results/tiny-smoke.md"] and "[tiny-paper](tiny-paper.md)" in pages["results/index.md"]
