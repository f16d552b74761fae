"""Teacher-side jobs: ensembles and PLC-KD teams are planned once, shared, cached and evaluable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kdbench.benchmark.grid import load_grid
from kdbench.benchmark.jobs import load_trained
from kdbench.benchmark.plan import build_plan
from kdbench.benchmark.runner import run_grid
from kdbench.benchmark.store import RunStore
from kdbench.leaderboards.render import leaderboard_blocks

from conftest import run_cli, tiny_grid

PLCKD_METHODS = ["none", "kd",
                 {"name": "plckd", "ta_f": True, "ta_b": False, "sc": False, "label": "plckd[ta_f]"},
                 {"name": "plckd", "ta_f": True, "ta_b": True, "sc": True, "label": "plckd[all]"}]


def _team_grid(**changes):
    base = {"methods": PLCKD_METHODS, "teachers": [{"name": "tinyunet", "label": "T"}],
            "students": [{"name": "tinyunet", "width": 0.5}, {"name": "tinyunet", "width": 0.25, "label": "s2"}]}
    return tiny_grid(**{**base, **changes})


def test_two_methods_and_two_students_share_one_team_assistant(write_grid):
    plan = build_plan(load_grid(write_grid(_team_grid())))
    assistants = plan.of_kind("assistant")
    assert sorted(j.config["transform"]["kind"] for j in assistants) == ["bt", "fig"]
    (fig,) = [j for j in assistants if j.config["transform"]["kind"] == "fig"]
    (teacher,) = plan.of_kind("teacher")
    assert fig.deps == (teacher.id,)  # FIG reads the trained teacher's mistakes
    teams = plan.of_kind("team")
    assert len(teams) == 2  # {ta_f} and {ta_f, ta_b, sc}: two teams, one TA_f between them
    students = [j for j in plan.of_kind("student") if j.meta["method"] == "plckd"]
    assert len(students) == 4 and {j.deps[0] for j in students} == {t.id for t in teams}
    order = {j.id: i for i, j in enumerate(plan.jobs)}
    assert all(order[d] < order[j.id] for j in plan.jobs for d in j.deps)


def test_ensemble_members_are_teacher_jobs_shared_by_students(write_grid):
    methods = ["none", {"name": "ensemble", "k": 3, "label": "distilled(U)"},
               {"name": "ensemble", "k": 3, "soft_loss": "kl", "label": "distilled(U, kl)"}]
    plan = build_plan(load_grid(write_grid(tiny_grid(methods=methods, students=[
        {"name": "tinyunet", "width": 0.5}, {"name": "tinyunet", "width": 0.25, "label": "s2"}]))))
    members = [j for j in plan.of_kind("teacher") if j.meta["role"] == "member"]
    assert len(members) == 3 and sorted(j.config["member"] for j in members) == [0, 1, 2]
    assert all(j.config["loss"] == "ce" for j in members)
    (ensemble,) = plan.of_kind("ensemble")  # four students, one ensemble
    assert set(ensemble.deps) == {j.id for j in members}
    assert any(j.kind == "evaluate" and j.config["train"] == ensemble.id for j in plan.jobs)


def test_diverse_ensemble_trains_every_architecture_with_each_loss(write_grid):
    method = {"name": "ensemble", "mode": "diverse", "architectures": ["tinyunet", "ens-dilated"],
              "label": "distilled(D)"}
    plan = build_plan(load_grid(write_grid(tiny_grid(methods=[method]))))
    members = [(j.config["model"]["name"], j.config["loss"]) for j in plan.of_kind("teacher")
               if j.meta["role"] == "member"]
    assert sorted(members) == [("ens-dilated", "ce"), ("ens-dilated", "dice"), ("tinyunet", "ce"), ("tinyunet", "dice")]


@pytest.mark.slow
def test_ensemble_run_evaluates_the_ensemble_and_reruns_nothing(write_grid, tmp_path):
    grid = load_grid(write_grid(tiny_grid(methods=["none", {"name": "ensemble", "k": 2, "label": "distilled(U)"}])))
    result = run_grid(grid, tmp_path)
    assert result.ok, result.failed
    (block,) = leaderboard_blocks(result.run_dir)
    rows = {r["row"]: r for r in block["rows"]}
    assert "teacher: ensemble(U)" in rows and np.isfinite(rows["teacher: ensemble(U)"]["cells"]["organ/dice"]["mean"])
    assert rows["teacher: ensemble(U)"]["cost"]["params"] == pytest.approx(2 * rows["teacher: teacher"]["cost"]["params"])
    store = RunStore(result.run_dir)
    (ens,) = result.plan.of_kind("ensemble")
    model = load_trained(store, ens.id, torch.device("cpu"))
    x = torch.randn(1, 1, 32, 32)
    members = [load_trained(store, m, torch.device("cpu")) for m in ens.deps]
    expected = torch.stack([m(x).softmax(1) for m in members]).mean(0)
    torch.testing.assert_close(model(x).softmax(1), expected, rtol=1e-5, atol=1e-6)
    evaluate = next(j for j in result.plan.of_kind("evaluate") if j.config["train"] == ens.id)
    assert store.read_job(evaluate.id)["summary"]["seconds_per_case"] > 0
    def jobs() -> dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for p in result.run_dir.iterdir() if (p / "job.json").is_file()}

    before = jobs()
    run_grid(grid, tmp_path)  # a finished grid: nothing trains again
    assert before == jobs()


@pytest.mark.slow
def test_plckd_team_trains_and_students_learn_from_it(write_grid, tmp_path):
    grid = load_grid(write_grid(_team_grid(students=[{"name": "tinyunet", "width": 0.5}])))
    result = run_grid(grid, tmp_path)
    assert result.ok, result.failed
    dirs = [p.name for p in result.run_dir.iterdir() if p.name.startswith("assistant-")]
    assert len(dirs) == 2  # TA_f (shared by both plckd rows) and TA_b, each trained once
    (block,) = leaderboard_blocks(result.run_dir)
    assert [r["row"] for r in block["rows"]] == ["teacher: T", "none", "kd", "plckd[ta_f]", "plckd[all]"]
    log = (result.run_dir / next(j.id for j in result.plan.of_kind("student") if j.meta["method_label"] == "plckd[all]")
           / "log.jsonl").read_text().splitlines()
    first = next(r for r in map(json.loads, log) if r["event"] == "step")
    assert "plckd" in first and "seg" in first


def test_job_hash_ignores_how_the_root_is_typed(tmp_path, monkeypatch):
    from kdbench.datasets.fakes import make_folder

    root = make_folder(tmp_path / "data").resolve()
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    ids = []
    for typed in (str(root), "data"):
        grid = load_grid(_write(tmp_path, tiny_grid(datasets=[{"name": "folder", "root": typed}],
                                                    methods=["none"], teachers=[])))
        ids.append({j.id for j in build_plan(grid).jobs})
    assert ids[0] == ids[1]


def _write(tmp_path, data):
    import yaml

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_precision_is_part_of_a_training_job_hash(write_grid):
    grid = load_grid(write_grid(tiny_grid()))
    fp32 = {j.id for j in build_plan(grid).jobs if j.kind in ("teacher", "student")}
    bf16 = {j.id for j in build_plan(grid, precision="bf16-autocast").jobs if j.kind in ("teacher", "student")}
    assert not fp32 & bf16


def test_list_methods_shows_the_teacher_side_methods():
    result = run_cli("list", "methods")
    assert result.returncode == 0
    assert "plckd" in result.stdout and "ensemble" in result.stdout
