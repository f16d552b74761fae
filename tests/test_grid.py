"""Grid files: schema, one-line errors naming file/field/value, overrides, budgets."""

from __future__ import annotations

import pytest

from kdbench.benchmark.grid import DEFAULT_BUDGETS, load_grid
from kdbench.errors import ConfigError

from conftest import ROOT, run_cli, tiny_grid


@pytest.mark.parametrize("path", sorted((ROOT / "tables").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_grids_validate(path):
    grid = load_grid(path)
    assert grid.name == path.stem
    assert load_grid(path, dataset="phantom").datasets[0].name == "phantom"


def test_methods_with_overrides_and_labels(write_grid):
    grid = load_grid(write_grid(tiny_grid(methods=[
        "none", {"name": "kd", "T": 1.0, "label": "kd_T1"}, {"name": "kd", "weight": 2.0},
        {"compose": ["kd", "at"]}])))
    assert [(m.name, m.label, m.params) for m in grid.methods] == [
        ("none", "none", {}), ("kd", "kd_T1", {"T": 1.0}), ("kd", "kd(weight=2.0)", {"weight": 2.0}),
        ("compose", "kd+at", {"methods": ["kd", "at"]})]


@pytest.mark.parametrize("change, expected", [
    ({"methods": ["none", "kdd"]}, r"methods\[1\]\.name = 'kdd': unknown method 'kdd' — did you mean 'kd'"),
    ({"train": {"lr": -0.001}}, r"train\.lr = -0\.001: Input should be greater than 0"),
    ({"train": {"learning_rate": 0.1}}, r"train\.learning_rate: unknown field .*allowed: epochs, optimizer, lr"),
    ({"teachers": [{"name": "tinyunet", "widht": 2}]}, r"teachers\[0\]\.widht: unknown field — did you mean 'width'"),
    ({"methods": [{"name": "kd", "tau": 2}]}, r"methods\[0\]\.tau: no parameter 'tau' \(allowed: T, weight\)"),
    ({"budget": "huge"}, r"budget = 'huge': Input should be 'smoke', 'quick' or 'paper'"),
    ({"methods": ["kd", "kd"]}, r"methods\[1\]\.label = 'kd': used by methods\[0\] too"),
    ({"leaderboard": {"metrics": ["dsc"]}}, r"leaderboard\.metrics\[0\] = 'dsc'"),
    ({"students": [{"name": "tinyunett"}]}, r"students\[0\]\.name = 'tinyunett': unknown model"),
])
def test_errors_name_file_field_value_and_allowed(write_grid, change, expected):
    path = write_grid(tiny_grid(**change))
    with pytest.raises(ConfigError, match=expected) as info:
        load_grid(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message


@pytest.mark.parametrize("change, field", [
    ({"methods": ["none", "kdd"]}, "methods[1].name"),
    pytest.param({"train": {"learnig_rate": 0.1}}, "train.learnig_rate", marks=pytest.mark.slow),
    pytest.param({"train": {"lr": -1.0}}, "train.lr", marks=pytest.mark.slow),
])
def test_cli_reports_grid_errors_in_one_line_without_traceback(write_grid, change, field):
    result = run_cli("run", "--grid", str(write_grid(tiny_grid(**change))), "--dry-run")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and field in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: line 2 is not valid YAML"):
        load_grid(bad)
    with pytest.raises(ConfigError, match="no such grid file"):
        load_grid(tmp_path / "missing.yaml")


def test_set_overrides_and_dataset_replacement(write_grid):
    path = write_grid(tiny_grid())
    grid = load_grid(path, ["train.lr=0.01", "protocol.seeds=[1, 2]", "methods.1.name=fitnet", "methods.1.label=hint"])
    assert grid.train.lr == 0.01 and grid.protocol.seeds == [1, 2]
    assert (grid.methods[1].name, grid.methods[1].label) == ("fitnet", "hint")
    with pytest.raises(ConfigError, match="expected key=value"):
        load_grid(path, ["train.lr"])
    with pytest.raises(ConfigError, match="train.lr = 'fast'"):
        load_grid(path, ["train.lr=fast"])


def test_budget_presets_scale_epochs_image_size_and_width():
    assert DEFAULT_BUDGETS["smoke"].epochs < DEFAULT_BUDGETS["quick"].epochs
    assert DEFAULT_BUDGETS["smoke"].image_size < DEFAULT_BUDGETS["quick"].image_size
    assert DEFAULT_BUDGETS["smoke"].width < DEFAULT_BUDGETS["quick"].width <= DEFAULT_BUDGETS["paper"].width
    assert DEFAULT_BUDGETS["paper"].epochs is None and DEFAULT_BUDGETS["paper"].image_size is None
