"""OpenMP threads sleep instead of spin-waiting under the console script (a busy 2-core machine ran
a 2-thread step 2× slower spinning), and a user's own setting wins."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import run_cli, tiny_grid


def policies(tmp_path, env: dict) -> set:
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(tiny_grid(methods=["none"]), sort_keys=False))
    out = tmp_path / "runs"
    result = run_cli("run", "--grid", str(grid), "--out", str(out), "--threads", "1", env=env)
    assert result.returncode == 0, result.stderr
    return {json.loads(p.read_text()).get("omp_wait_policy") for p in (out / "tiny" / "paper").glob("*/job.json")}


@pytest.mark.slow
def test_the_console_script_makes_openmp_threads_sleep(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert policies(tmp_path, {}) == {"PASSIVE"}


@pytest.mark.slow
def test_a_wait_policy_the_user_set_wins(tmp_path):
    assert policies(tmp_path, {"OMP_WAIT_POLICY": "ACTIVE"}) == {"ACTIVE"}
