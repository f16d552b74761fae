"""The site builds with its generated pages, every page is in the navigation, the hooks are
not published, and runs are chosen by ``$KDBENCH_RUNS`` (issue 10, "the docs site")."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, run_cli, tiny_grid


@pytest.mark.slow
def test_site_builds_with_generated_pages(tmp_path):
    runs = tmp_path / "runs"
    grid = tmp_path / "tiny.yaml"
    grid.write_text(yaml.safe_dump(tiny_grid(methods=["none"], teachers=[])))
    assert run_cli("run", "--grid", str(grid), "--out", str(runs)).returncode == 0
    (runs / "tiny" / "paper" / "pictures").mkdir(exist_ok=True)
    (runs / "tiny" / "paper" / "pictures" / "extra.png").write_bytes(b"\x89PNG\r\n\x1a\nnot drawn")
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "KDBENCH_RUNS": str(runs)})
    assert result.returncode == 0, result.stderr[-3000:]
    for page in ("methods/kd/index.html", "methods/emkd/index.html", "model-zoo/index.html",
                 "models/enet/index.html", "datasets/phantom/index.html", "datasets/lits17/index.html",
                 "concepts/index.html", "adding-a-model/index.html", "adding-a-dataset/index.html",
                 "grid-files/index.html", "datasets/index.html", "javascripts/mathjax/tex-svg.js"):
        assert (site / page).is_file(), page
    assert not list(site.rglob("hooks.py")) and not list(site.rglob("site.py")), "hook code was published"
    assert "EMKD" in (site / "model-zoo" / "index.html").read_text()
    enet = (site / "models" / "enet" / "index.html").read_text()
    assert "0.3" in enet and "stage3" in enet  # ENet's 0.35 M params and its `high` tap

    results = (site / "results" / "tiny-paper" / "index.html").read_text()
    assert "Leaderboard: tiny" in results and "paper — the grid" in results
    assert "Phantom data" in results and "Smoke budget" not in results  # a paper-budget run on the phantom
    assert (site / "results" / "tiny-paper" / "pictures" / "extra.png").read_bytes().endswith(b"not drawn")
    assert "tiny-paper" in (site / "results" / "index.html").read_text()
    assert "quickstart-smoke" not in (site / "results" / "index.html").read_text()  # only the chosen runs

    # every page is in the navigation (mkdocs-material renders the whole nav on each page)
    home = (site / "index.html").read_text()
    primary = home[home.index("md-nav--primary"):home.index("md-sidebar--secondary")]
    nav = {os.path.normpath(href) for href in re.findall(r'href="([^"#]*)"', primary)}
    pages = {os.path.normpath(os.path.relpath(p.parent, site)) for p in site.rglob("index.html")
             if "search" not in p.parts and "assets" not in p.parts}
    assert pages - nav == set(), f"pages missing from the navigation: {sorted(pages - nav)}"


def test_committed_results_are_small_phantom_smoke_runs():
    """The committed results keep the published site non-empty: phantom, smoke, no checkpoints."""
    from kdbench.benchmark.store import read_plan
    from kdbench.site import COMMITTED_RUNS, run_dirs, run_labels

    runs = run_dirs(COMMITTED_RUNS)
    assert runs
    for run in runs:
        plan = read_plan(run)
        assert plan["budget"] == "smoke" and any("phantom" in label for label in run_labels(plan))
    files = [p for p in COMMITTED_RUNS.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pt", ".npy", ".npz")]
    assert sum(p.stat().st_size for p in files) < 2_000_000


def test_docs_build_names_a_directory_without_runs(tmp_path):
    from kdbench.errors import ConfigError
    from kdbench.site import build_site

    with pytest.raises(ConfigError, match=r"no run to publish"):
        build_site([tmp_path], tmp_path / "site")


def test_nav_sections_follow_their_entry():
    from kdbench.site import _expand_nav

    nav = [{"Start": "index.md"}, {"Methods": "methods/index.md"},
           {"Models": [{"Overview": "models.md"}, {"Zoo": "model-zoo.md"}]}]
    sections = {"methods/index.md": [{"kd": "methods/kd.md"}], "models.md": [{"enet": "models/enet.md"}]}
    assert _expand_nav(nav, sections) == [
        {"Start": "index.md"}, {"Methods": [{"Overview": "methods/index.md"}, {"kd": "methods/kd.md"}]},
        {"Models": [{"Overview": "models.md"}, {"enet": "models/enet.md"}, {"Zoo": "model-zoo.md"}]}]
