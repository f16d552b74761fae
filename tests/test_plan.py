"""Plans: teachers once, baselines without a teacher, ids that hash the resolved config."""

from __future__ import annotations

from kdbench.benchmark.grid import load_grid
from kdbench.benchmark.plan import build_plan

from conftest import run_cli, tiny_grid


def test_jobs_and_dependencies(write_grid):
    plan = build_plan(load_grid(write_grid(tiny_grid(protocol={"seeds": [0, 1], "folds": 2}))))
    teachers, students = plan.of_kind("teacher"), plan.of_kind("student")
    assert len(teachers) == 4  # one per (fold, seed)
    assert len(students) == 3 * 4
    for job in students:
        if job.meta["method"] == "none":
            assert job.deps == () and job.config["teacher"] is None
        else:
            (dep,) = job.deps
            teacher = plan.job(dep)
            assert teacher.kind == "teacher"
            assert (teacher.config["split"], teacher.config["seed"]) == (job.config["split"], job.config["seed"])
    assert len(plan.of_kind("evaluate")) == len(teachers) + len(students)
    assert len(plan.of_kind("profile")) == 2  # teacher width 1 and student width 0.5 differ
    order = {j.id: i for i, j in enumerate(plan.jobs)}
    assert all(order[d] < order[j.id] for j in plan.jobs for d in j.deps)


def test_ids_hash_config_not_labels(write_grid):
    base = build_plan(load_grid(write_grid(tiny_grid())))
    relabelled = build_plan(load_grid(write_grid(tiny_grid(methods=["none", {"name": "kd", "label": "KD!"}, "at"]))))
    assert {j.id for j in base.jobs} == {j.id for j in relabelled.jobs}
    changed = build_plan(load_grid(write_grid(tiny_grid(train={"epochs": 2, "batch_size": 2, "image_size": 32}))))
    assert not {j.id for j in changed.jobs if j.kind != "profile"} & {j.id for j in base.jobs}


def test_budget_caps_recipe_and_scales_width(write_grid):
    grid = load_grid(write_grid(tiny_grid(train={"epochs": 60, "image_size": 512, "batch_size": 8})))
    smoke = build_plan(grid, "smoke").of_kind("student")[0].config
    paper = build_plan(grid, "paper").of_kind("student")[0].config
    assert (smoke["train"]["epochs"], smoke["train"]["image_size"], smoke["train"]["max_steps"]) == (1, 32, 3)
    assert (paper["train"]["epochs"], paper["train"]["image_size"]) == (60, 512)
    assert smoke["model"]["width"] == 0.5 * 0.125 and paper["model"]["width"] == 0.5


def test_dry_run_prints_plan_and_writes_nothing(write_grid, tmp_path):
    out = tmp_path / "runs"
    result = run_cli("run", "--grid", str(write_grid(tiny_grid())), "--out", str(out), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "depends on" in result.stderr and "pending" in result.stderr and "teacher-tinyunet-" in result.stderr
    assert not out.exists()


def test_two_teachers_of_one_architecture_each_teach_their_own_students(write_grid):
    """Teachers were keyed by label: two of one architecture trained, students read only the last."""
    plan = build_plan(load_grid(write_grid(tiny_grid(
        teachers=[{"name": "tinyunet"}, {"name": "tinyunet", "width": 0.5, "label": "half"}], methods=["kd"]))))
    teachers = {j.meta["model_label"]: j.id for j in plan.of_kind("teacher")}
    assert set(teachers) == {"tinyunet", "half"}
    students = plan.of_kind("student")
    assert sorted((j.meta["teacher_label"], j.deps) for j in students) == [
        ("half", (teachers["half"],)), ("tinyunet", (teachers["tinyunet"],))]


def test_duplicate_teachers_and_methods_are_refused_at_load_time(write_grid):
    import pytest

    from kdbench.errors import ConfigError

    with pytest.raises(ConfigError, match=r"teachers\[1\]"):
        load_grid(write_grid(tiny_grid(teachers=["tinyunet", {"name": "tinyunet", "width": 0.5}])))
    with pytest.raises(ConfigError, match=r"methods\[1\]"):
        load_grid(write_grid(tiny_grid(methods=["kd", {"name": "kd", "label": "kd_again"}])))
