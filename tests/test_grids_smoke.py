"""The shipped paper grids run end to end on the phantom at the smoke budget."""

from __future__ import annotations

import numpy as np
import pytest

from kdbench.benchmark.grid import load_grid
from kdbench.benchmark.runner import run_grid
from kdbench.leaderboards.render import leaderboard_blocks

from conftest import ROOT


@pytest.mark.parametrize("name", [pytest.param("table3", marks=pytest.mark.slow),
                                  pytest.param("all_methods", marks=pytest.mark.slow)])
def test_grid_smoke_has_one_finite_row_per_method(name, tmp_path):
    grid = load_grid(ROOT / "tables" / f"{name}.yaml", dataset="phantom")
    result = run_grid(grid, tmp_path, budget="smoke")
    assert result.ok, result.failed
    (block,) = leaderboard_blocks(result.run_dir)
    students = [r for r in block["rows"] if r["kind"] == "student"]
    assert [r["row"].split(" ← ")[0] for r in students] == [m.label for m in grid.methods]
    for row in block["rows"]:
        for target in block["targets"]:
            assert np.isfinite(row["cells"][f"{target}/dice"]["mean"]), (row["row"], target)
    text = (result.run_dir / "leaderboard.md").read_text()
    assert "smoke — a plumbing check, NOT paper-scale" in text


@pytest.mark.slow
def test_table3_sits_beside_emkd_table3(tmp_path):
    grid = load_grid(ROOT / "tables" / "table3.yaml", dataset="phantom")
    result = run_grid(grid, tmp_path, budget="smoke")
    text = (result.run_dir / "leaderboard.md").read_text()
    assert "Table III" in text and "paper LiTS17 liver_tumor Dice" in text
    emkd_row = next(line for line in text.splitlines()
                    if line.startswith("|") and line.split("|")[1].strip() == "emkd")  # however the table pads
    assert "0.652 ± 0.005" in emkd_row and "0.676 ± 0.007" in emkd_row  # EMKD Table III, RA-UNet → ENet
