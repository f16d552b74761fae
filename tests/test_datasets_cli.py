"""``kdbench datasets prepare|check`` and a grid run end to end on a fake KiTS19."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from kdbench.benchmark.splits import dataset_split
from kdbench.datasets import create_dataset, fakes
from kdbench.datasets.cli import datasets_app, parse_sets


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def one_thread():
    """Train on one thread: tiny models gain nothing from more, and lose a lot on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_parse_sets():
    assert parse_sets(["window=[-200, 300]", "slices=foreground", "orient=false", "crop="]) == {
        "window": [-200, 300], "slices": "foreground", "orient": False, "crop": None}


def test_prepare_and_check_commands(tmp_path, cache):
    root = fakes.make_kits(tmp_path / "kits")
    runner = CliRunner()
    args = ["prepare", "kits19", "--root", str(root), "--image-size", "16", "--set", "window=[-200,300]"]
    result = runner.invoke(datasets_app, args)
    assert result.exit_code == 0, result.output
    assert "kits19: 3 cases (3 prepared now), 12 slices of 16×16" in result.stdout
    manifest = next(cache.rglob("manifest.json"))
    stamp = manifest.stat().st_mtime_ns
    again = runner.invoke(datasets_app, args)
    assert again.exit_code == 0 and "kits19: 3 cases (all up to date)" in again.stdout
    assert manifest.stat().st_mtime_ns == stamp

    ok = runner.invoke(datasets_app, ["check", "kits19", "--root", str(root)])
    assert ok.exit_code == 0 and "ok — 3 cases" in ok.stdout

    (root / "data/case_00001/segmentation.nii.gz").write_bytes(b"\x1f\x8b\x08\x00broken")
    bad = runner.invoke(datasets_app, ["check", "kits19", "--root", str(root)])
    assert bad.exit_code == 1
    assert "case_00001/segmentation.nii.gz" in bad.stdout and "1 problem(s)" in bad.stdout


@pytest.mark.parametrize("args, message", [
    (["prepare", "kits19", "--root", "/nonexistent/kits"], "root '/nonexistent/kits' does not exist"),
    (["check", "lits17", "--root", "{root}", "--set", "windw=[0,1]"], "did you mean 'window'"),
    (["prepare", "nosuch", "--root", "{root}"], "unknown dataset 'nosuch'"),
])
def test_errors_are_one_red_line_and_status_2(tmp_path, args, message):
    root = fakes.make_lits(tmp_path / "lits")
    result = CliRunner().invoke(datasets_app, [a.format(root=root) for a in args])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_grid_runs_end_to_end_on_a_fake_dataset(tmp_path, one_thread):
    from kdbench.cli import app

    root = fakes.make_kits(tmp_path / "kits", cases=5)
    grid = {
        "name": "fake_kits",
        "datasets": [{"name": "kits19", "root": str(root), "targets": ["kidney", "tumour"],
                      "options": {"window": [-200, 300]}}],
        "teachers": [{"name": "unet", "width": 0.125}],
        "students": ["tinyunet"],
        "methods": ["none"],
        "train": {"epochs": 1, "batch_size": 2, "image_size": 32},
        "protocol": {"seeds": [0], "folds": 1, "test_fraction": 0.4},
    }
    grid_file = tmp_path / "fake_kits.yaml"
    grid_file.write_text(yaml.safe_dump(grid))
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", "--grid", str(grid_file), "--out", str(out), "--budget", "smoke"])
    assert result.exit_code == 0, result.output
    expected = dataset_split(create_dataset("kits19", root=str(root), image_size=32), test_fraction=0.4)["test"]
    assert len(expected) == 2
    metrics = sorted(out.rglob("metrics.csv"))
    assert len(metrics) == 2  # the teacher and the student
    for path in metrics:
        frame = pd.read_csv(path)
        assert sorted(frame["case_id"].unique()) == expected
        assert set(frame["target"]) == {"kidney", "tumour"}



@pytest.mark.slow
def test_console_script_exit_codes(tmp_path):
    """The installed script: check with problems exits 1, prepare of bad data 2, each error one line."""
    from conftest import run_cli

    env = {"KDBENCH_CACHE": str(tmp_path / "cache")}
    root = fakes.make_kits(tmp_path / "kits")
    bad = root / "data/case_00001/segmentation.nii.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00broken")
    check = run_cli("datasets", "check", "kits19", "--root", str(root), env=env)
    assert check.returncode == 1, check.stderr
    assert str(bad) in check.stdout and "1 problem(s)" in check.stdout
    for args, expected in ((["prepare", "kits19", "--root", str(root), "--image-size", "16"], str(bad)),
                           (["prepare", "kits19", "--root", str(tmp_path / "missing")], "does not exist")):
        result = run_cli("datasets", *args, env=env)
        assert result.returncode == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], result.stderr
        assert "Traceback" not in result.stdout + result.stderr
