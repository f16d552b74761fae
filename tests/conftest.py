"""Shared fixtures: tiny grids on the built-in phantom that run in seconds on a CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

ROOT = Path(__file__).resolve().parents[1]


def tiny_grid(**changes) -> dict:
    """A grid small enough to train end to end in a few seconds."""
    grid = {
        "name": "tiny",
        "budget": "paper",
        "datasets": [{"name": "phantom", "targets": ["organ", "tumour"],
                      "options": {"cases": 4, "slices": 2}}],
        "teachers": [{"name": "tinyunet", "label": "teacher", "width": 1.0}],
        "students": [{"name": "tinyunet", "width": 0.5}],
        "methods": ["none", "kd", "at"],
        "train": {"epochs": 1, "batch_size": 2, "image_size": 32, "max_steps": 2},
        "protocol": {"seeds": [0], "folds": 1, "test_fraction": 0.25},
        "leaderboard": {"metrics": ["dice", "hd95"], "cost": ["params", "flops", "latency"]},
    }
    grid.update(changes)
    return grid


@pytest.fixture
def write_grid(tmp_path):
    """Write a grid mapping to a YAML file and return its path."""

    def write(data: dict, name: str = "grid.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    """Run the ``kdbench`` console script; returns the CompletedProcess."""
    exe = Path(sys.executable).parent / "kdbench"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "kdbench"]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "2", **(env or {})}, timeout=timeout)
