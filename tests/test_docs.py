"""The site builds with its generated pages (the worked example: test_adding_method_doc.py)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_site_builds_with_generated_pages(tmp_path):
    import os

    import yaml

    from conftest import run_cli, tiny_grid

    runs = tmp_path / "runs"
    grid = tmp_path / "tiny.yaml"
    grid.write_text(yaml.safe_dump(tiny_grid(methods=["none"], teachers=[])))
    assert run_cli("run", "--grid", str(grid), "--out", str(runs)).returncode == 0
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "KDBENCH_RUNS": str(runs)})
    assert result.returncode == 0, result.stderr[-3000:]
    for page in ("methods/kd/index.html", "methods/emkd/index.html", "model-zoo/index.html",
                 "grid-files/index.html", "datasets/index.html"):
        assert (site / page).is_file(), page
    assert "EMKD" in (site / "model-zoo" / "index.html").read_text()
    results = (site / "results" / "tiny-paper" / "index.html").read_text()
    assert "Leaderboard: tiny" in results and "paper — the grid" in results
