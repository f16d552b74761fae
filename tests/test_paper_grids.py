"""Every paper table has a grid: it validates, names its table, and (slow) runs on the phantom
with the paper's rows and the paper's value beside ours; `kdbench run --grid tables/table3.yaml`
without the data says what is missing and how to run it on the phantom."""

from __future__ import annotations

import os
import shlex

import pytest

from kdbench.benchmark.grid import data_env_name, load_grid
from kdbench.benchmark.plan import build_plan
from kdbench.benchmark.runner import run_grid
from kdbench.errors import MissingRootError
from kdbench.leaderboards.paper import paper_results, paper_tables
from kdbench.leaderboards.render import COST_COLUMNS, PAPER_COSTS, PAPER_METRICS, leaderboard_blocks, metric_name

from conftest import ROOT, run_cli

GRIDS = sorted(p.stem for p in (ROOT / "tables").glob("*.yaml"))
#: the grid of each published table
PAPER_GRIDS = {("emkd_tmi2021", "I"): "emkd_table1", ("emkd_tmi2021", "II"): "emkd_table2",
               ("emkd_tmi2021", "III"): "table3", ("emkd_tmi2021", "IV"): "emkd_table4",
               ("emkd_tmi2021", "V"): "emkd_table5", ("emkd_tmi2021", "VI"): "emkd_table6",
               ("plckd_miccai2024", "1"): "plckd_table1", ("plckd_miccai2024", "2"): "plckd_table2",
               ("ensemblekd_jmi2022", "1"): "ensemble_table1", ("ensemblekd_jmi2022", "2a"): "ensemble_table2a",
               ("ensemblekd_jmi2022", "2b"): "ensemble_table2b", ("ensemblekd_jmi2022", "2c"): "ensemble_table2c"}
#: paper rows another grid reproduces: EMKD Table II's "ENet (ours)" is Table III's emkd row
ELSEWHERE = {"emkd_table2": {"emkd"}}
PHANTOM_COMMAND = "kdbench run --grid tables/table3.yaml --dataset phantom --budget smoke"


@pytest.fixture
def no_data_env(monkeypatch):
    """An environment that names no dataset root."""
    for key in list(os.environ):
        if key.startswith("KDBENCH_DATA"):
            monkeypatch.delenv(key)


def test_every_published_table_has_a_grid_that_names_it():
    assert set(PAPER_GRIDS) == paper_tables()
    for (paper, table), name in PAPER_GRIDS.items():
        ref = load_grid(ROOT / "tables" / f"{name}.yaml").leaderboard.reproduces
        assert (ref.paper, ref.table) == (paper, table), name


@pytest.mark.parametrize("name", GRIDS)
def test_shipped_grid_validates_and_names_no_phantom_for_a_paper(name):
    grid = load_grid(ROOT / "tables" / f"{name}.yaml")
    text = (ROOT / "tables" / f"{name}.yaml").read_text()
    assert "until those loaders" not in text
    if name in PAPER_GRIDS.values():
        assert grid.leaderboard.reproduces is not None
        assert all(d.name != "phantom" for d in grid.datasets), "a paper grid names the paper's data"


def test_table3_names_lits17_and_kits19():
    grid = load_grid(ROOT / "tables" / "table3.yaml")
    assert [(d.name, d.targets) for d in grid.datasets] == [("lits17", ["liver", "tumour"]),
                                                            ("kits19", ["kidney", "tumour"])]


def test_roots_come_from_the_environment_but_never_replace_one_given(no_data_env, monkeypatch, tmp_path):
    monkeypatch.setenv("KDBENCH_DATA", str(tmp_path / "all"))
    monkeypatch.setenv(data_env_name("kits19"), str(tmp_path / "kits"))
    assert data_env_name("cvc_endoscene") == "KDBENCH_DATA_CVC_ENDOSCENE"
    grid = load_grid(ROOT / "tables" / "table3.yaml")
    assert [d.root for d in grid.datasets] == [str(tmp_path / "all" / "lits17"), str(tmp_path / "kits")]
    grid = load_grid(ROOT / "tables" / "table3.yaml", overrides=["datasets.0.root=/given"])
    assert grid.datasets[0].root == "/given"
    assert load_grid(ROOT / "tables" / "table3.yaml", dataset="phantom").datasets[0].root is None


def test_every_missing_root_is_told_in_one_line_with_the_phantom_command(no_data_env, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(MissingRootError) as info:
        build_plan(load_grid(ROOT / "tables" / "table3.yaml"))
    text = str(info.value)
    assert "\n" not in text
    for part in ("lits17 and kits19", "https://competitions.codalab.org/competitions/17094",
                 "https://github.com/neheller/kits19", "kdbench datasets prepare NAME --root DIR",
                 "KDBENCH_DATA_LITS17=DIR", "KDBENCH_DATA_KITS19=DIR", "--set datasets.1.root=DIR", PHANTOM_COMMAND):
        assert part in text, part


def _paper_rows(grid) -> list[dict]:
    """The published rows the grid reproduces, each with the leaderboard row it belongs to."""
    ref = grid.leaderboard.reproduces
    ours = {v: k for k, v in ref.names.items()}
    df = paper_results()
    df = df[(df["paper"] == ref.paper) & (df["table"] == ref.table)]
    metrics = {pm: (m, scale, "paper") for m in grid.leaderboard.metrics for pm, scale in PAPER_METRICS[m]}
    metrics.update({pm: (c, scale, "paper_cost") for c in grid.leaderboard.cost if c in PAPER_COSTS
                    for pm, scale in PAPER_COSTS[c]})
    several = len(grid.teachers) > 1
    teachers = {t.display for t in grid.teachers} - {s.display for s in grid.students}
    rows = []
    for _, r in df[df["metric"].isin(list(metrics))].iterrows():
        if r["method"] in ELSEWHERE.get(grid.name, ()):
            continue
        if r["method"] == "teacher":
            student, label = None, f"teacher: {ours.get(r['teacher'], r['teacher'])}"
        elif r["student"] == "":  # Noothout et al.: "ensemble(U)", "distilled(U)"
            student = None
            label = f"teacher: {r['method']}" if r["method"].startswith("ensemble") else r["method"]
        elif r["method"] == "none" and ours.get(r["student"], r["student"]) in teachers:  # EMKD II: RA-UNet alone
            student, label = None, f"teacher: {ours.get(r['student'], r['student'])}"
        else:
            student = ours.get(r["student"], r["student"])
            teacher = ours.get(r["teacher"], r["teacher"])
            label = r["method"] + (f" ← {teacher}" if several and r["method"] != "none" else "")
        metric, scale, where = metrics[r["metric"]]
        rows.append({"student": student, "row": label, "metric": metric, "where": where,
                     "key": f"{r['dataset']} {r['target']}".strip(), "value": r["value"] * scale})
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PAPER_GRIDS.values()))
def test_paper_grid_runs_on_the_phantom_beside_the_paper(name, tmp_path):
    grid = load_grid(ROOT / "tables" / f"{name}.yaml", dataset="phantom")
    result = run_grid(grid, tmp_path, budget="smoke")
    assert result.ok, result.failed
    blocks = leaderboard_blocks(result.run_dir)
    text = (result.run_dir / "leaderboard.md").read_text()
    expected = _paper_rows(grid)
    assert expected, "the grid reproduces no published number"
    for want in expected:
        found = [r for b in blocks if want["student"] in (None, b["student"]) for r in b["rows"]
                 if want["row"] in (r["row"], r["row"].split(" ← ")[0] if want["student"] is None else None)]
        assert found, f"{name}: no row {want['row']!r} (student {want['student']})"
        for row in found:
            cell = row[want["where"]][want["metric"]].get(want["key"])
            assert cell is not None, f"{name}: {want['row']} has no paper {want['key']} {want['metric']}"
            assert abs(float(cell.split(" ± ")[0]) - want["value"]) < 5e-3 * max(1.0, abs(want["value"])), cell
        name_of = metric_name(want["metric"]) if want["where"] == "paper" else COST_COLUMNS[want["metric"]][0]
        column = " ".join(filter(None, ("paper", want["key"], name_of)))  # a cost with no dataset: "paper Params (M)"
        assert column in text, column


@pytest.mark.slow
def test_table3_without_data_prints_guidance_and_the_phantom_command_works(no_data_env, tmp_path):
    result = run_cli("run", "--grid", "tables/table3.yaml", "--out", str(tmp_path), cwd=ROOT)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "lits17 and kits19" in lines[0] and "KDBENCH_DATA_LITS17=DIR" in lines[0] and PHANTOM_COMMAND in lines[0]
    assert not any(tmp_path.iterdir()), "nothing is written before the data is there"
    command = lines[0].split("To run the same grid on the built-in phantom now: ")[1]
    assert command == PHANTOM_COMMAND
    rerun = run_cli(*shlex.split(command)[1:], "--out", str(tmp_path), cwd=ROOT)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (tmp_path / "table3" / "smoke" / "leaderboard.md").is_file()
