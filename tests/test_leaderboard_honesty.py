"""Leaderboards say exactly what their numbers are: effective budget, training device,
px vs. mm, which std the ± is, failed and skipped rows, unstable latency, provenance.

Run directories are written by hand (``runbuild.make_run``: plan.json + job directories, as
the runner writes them), so each case is exact and instant.
"""

from __future__ import annotations

import json
import math
import numpy as np
import pytest

from kdbench.errors import KdbenchError
from kdbench.leaderboards.render import leaderboard_blocks, render_markdown, write_leaderboard, write_leaderboards
from kdbench.leaderboards.results import find_runs

from conftest import run_cli
from runbuild import GRID_SHA256, default_value, header_line, make_run, table


def test_header_states_effective_settings_and_what_the_budget_changed(tmp_path):
    text = render_markdown(make_run(tmp_path / "run"))
    assert "smoke — a plumbing check, NOT paper-scale" in text
    changed = header_line(text, "Budget changed")
    for change in ("epochs 60 → 1", "seeds [0, 1] → [0]", "image size 512 → 32", "width ×0.125"):
        assert change in changed
    trained = header_line(text, "Trained with")
    assert "1 epoch, at most 3 steps, batch 2" in trained and "image size 32" in trained
    assert "at most 6 cases" in trained
    widths = header_line(text, "Widths as trained")
    # the row label says w0.25; what trained is 0.25 × 0.125
    assert "student `w0.25` ×0.03125 (the grid's ×0.25 scaled by the budget ×0.125)" in widths
    assert "teacher `teacher` ×0.125" in widths and "row labels are the grid's, as typed" in widths
    assert header_line(text, "Seeds") == "- **Seeds:** 0 · **Folds:** 0 of 5"


def test_paper_budget_says_nothing_changed_and_old_plans_still_render(tmp_path):
    paper = render_markdown(make_run(tmp_path / "paper", budget="paper", budget_width=1.0))
    assert "paper — the grid's full recipe" in paper
    assert header_line(paper, "Budget changed") == "- **Budget changed:** nothing — the grid's recipe as written"
    assert "scaled by the budget" not in paper and "as typed" not in paper
    old = render_markdown(make_run(tmp_path / "old", effective=None, threads=None, spacing_unit=None,
                                   provenance=False))
    assert "not recorded" in header_line(old, "Budget changed")
    assert header_line(old, "Grid") == "- **Grid:** not recorded (this plan was written by an older kdbench)"
    assert header_line(old, "Versions") == "- **Versions:** not recorded (this plan was written by an older kdbench)"
    assert header_line(old, "Trained on") == "- **Trained on:** cpu (x86_64)"
    assert "HD95 (mm" in old


def test_header_names_the_grid_hash_and_package_versions(tmp_path):
    text = render_markdown(make_run(tmp_path / "run"))
    assert f"sha256 `{GRID_SHA256}`" in header_line(text, "Grid")
    assert header_line(text, "Versions") == ("- **Versions:** python 3.12.0, kdbench 0.1.0, torch 2.5.1, smp 0.6.0, "
                                              "timm 1.0.20, monai 1.4.0, numpy 2.1.0")
    (block,) = leaderboard_blocks(tmp_path / "run")
    assert block["setup"]["grid_sha256"] == GRID_SHA256 and block["setup"]["versions"]["torch"] == "2.5.1"


def test_trained_on_comes_from_the_jobs_not_the_plan(tmp_path):
    run = make_run(tmp_path / "run", plan_device="NVIDIA RERENDER-BOX", device="cpu (x86_64)", threads=1)
    text = render_markdown(run)
    assert header_line(text, "Trained on") == "- **Trained on:** cpu (x86_64), 1 thread"
    assert "RERENDER-BOX" not in text
    gpu = render_markdown(make_run(tmp_path / "gpu", device="NVIDIA H100", threads=16))
    assert header_line(gpu, "Trained on") == "- **Trained on:** NVIDIA H100"
    many = render_markdown(make_run(tmp_path / "many", device="cpu (x86_64)", threads=4))
    assert "cpu (x86_64), 4 threads" in many
    named = render_markdown(make_run(tmp_path / "named", device="CPU x86_64 (2 threads)", threads=2))
    assert header_line(named, "Trained on") == "- **Trained on:** CPU x86_64 (2 threads)"
    (block,) = leaderboard_blocks(run)
    assert block["setup"]["trained_on"] == "cpu (x86_64), 1 thread"


def test_distances_say_px_on_pixel_data_and_mm_otherwise(tmp_path):
    px = render_markdown(make_run(tmp_path / "px", spacing_unit="px"))
    header = table(px)[0]
    assert "organ HD95 (px, ± case std)" in header and not any("mm" in c for c in header)
    assert "HD95/ASSD in pixels" in px
    mm = table(render_markdown(make_run(tmp_path / "mm", spacing_unit="mm")))[0]
    assert "organ HD95 (mm, ± case std)" in mm
    run = make_run(tmp_path / "mixed", spacing_unit="px")
    kd_eval = next(p for p in run.glob("evaluate-student-kd*/job.json"))
    record = json.loads(kd_eval.read_text())
    record["summary"]["spacing_unit"] = "mm"
    kd_eval.write_text(json.dumps(record))
    mixed = render_markdown(run)
    assert "organ HD95 (mm/px mixed, ± case std)" in table(mixed)[0] and "do not compare" in mixed


def test_one_run_shows_case_std_and_names_it(tmp_path):
    run = make_run(tmp_path / "run")
    text = render_markdown(run)
    header, *rows = table(text)
    assert "organ Dice (± case std)" in header
    assert "std over the test cases of the one (fold, seed) run" in header_line(text, "±")
    none = next(r for r in rows if r[0] == "none")
    cases = [default_value("none", 0, 0, i) for i in range(3)]
    assert none[header.index("organ Dice (± case std)")] == f"<u>{np.mean(cases):.3f} ± {np.std(cases):.3f}</u>"
    (block,) = leaderboard_blocks(run)
    cell = next(r for r in block["rows"] if r["row"] == "none")["cells"]["organ/dice"]
    assert cell["case_std"] == pytest.approx(np.std(cases)) and math.isnan(cell["run_std"]) and cell["runs"] == 1


def test_several_runs_show_run_std_and_json_keeps_both(tmp_path):
    run = make_run(tmp_path / "run", seeds=(0, 1, 2))
    text = render_markdown(run)
    header, *rows = table(text)
    column = header.index("organ Dice (± run std)")
    assert "std over the 3 (fold, seed) runs" in header_line(text, "±")
    runs = [np.mean([default_value("kd", 0, s, i) for i in range(3)]) for s in (0, 1, 2)]
    pooled = [default_value("kd", 0, s, i) for s in (0, 1, 2) for i in range(3)]
    kd = next(r for r in rows if r[0] == "kd")
    # 9 paired cases, every one 0.1 above none's: significant at 0.01 after Holm (one row tested), upwards
    assert kd[column] == f"**{np.mean(runs):.3f} ± {np.std(runs):.3f}** \\*\\*↑"
    (block,) = leaderboard_blocks(run)
    cell = next(r for r in block["rows"] if r["row"] == "kd")["cells"]["organ/dice"]
    assert cell["run_std"] == pytest.approx(np.std(runs)) and cell["case_std"] == pytest.approx(np.std(pooled))
    assert cell["runs"] == 3 and cell["n"] == 9


def test_failed_student_shows_failed_with_its_error(tmp_path):
    run = make_run(tmp_path / "run", fail={"kd": "training"})
    text = render_markdown(run)
    header, *rows = table(text)
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
    _, *rows = table(text)
    assert next(r for r in rows if r[0].startswith("none"))[1] == "**failed**"
    assert "evaluation failed (fold 0, seed 0): evaluation of none broke" in text


def test_failed_teacher_fails_its_row_and_its_students_are_not_run(tmp_path):
    run = make_run(tmp_path / "run", fail={"teacher": "training"})
    text = render_markdown(run)
    _, *rows = table(text)
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
    _, *rows = table(render_markdown(run))
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
    header, *rows = table(text)
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
    from kdbench.site import results_pages, run_dirs

    runs = tmp_path / "runs"
    make_run(runs / "tiny" / "smoke")
    make_run(runs / "tiny" / "paper", budget="paper", budget_width=1.0)
    make_run(runs / "older", budget="quick")  # a run directory from before budgets were kept apart
    pages = results_pages(run_dirs(runs))
    assert sorted(p for p in pages if p.endswith(".md")) == [
        "results/index.md", "results/tiny-paper/index.md", "results/tiny-quick/index.md", "results/tiny-smoke/index.md"]
    assert "NOT paper-scale" in pages["results/tiny-smoke/index.md"]
    assert "[tiny-paper](tiny-paper/index.md)" in pages["results/index.md"]
