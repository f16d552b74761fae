"""mkdocs hook: pages generated at build time (never edited by hand).

* ``methods/*.md`` — one page per registered method (``kdbench.methods.pages``);
* ``model-zoo.md`` — every registered model's params/FLOPs beside EMKD Table II
  (``kdbench.models.zoo``);
* ``results/*.md`` — the leaderboard of every run found under ``runs/`` (or
  ``$KDBENCH_RUNS``), re-rendered from its results: ``results/<grid>-<budget>.md`` for
  each ``runs/<grid>/<budget>/`` (and for an older ``runs/<grid>/`` run directory);
* ``teachers/fig_bt.png`` — PLC-KD's FIG and BT images made from the phantom.
"""

from __future__ import annotations

import os
from pathlib import Path

from mkdocs.structure.files import File


def _find_runs(runs: Path) -> dict[str, Path]:
    """Page name (``<grid>-<budget>``) → run directory; a budget directory wins over an older
    run directory of the same grid and budget."""
    from kdbench.leaderboards.results import load_plan

    if not runs.is_dir():
        return {}
    found = {}
    for plan in sorted(runs.glob("*/plan.json")) + sorted(runs.glob("*/*/plan.json")):
        run = plan.parent
        grid = run.name if run.parent == runs else run.parent.name
        found[f"{grid}-{load_plan(run)['budget']}"] = run
    return dict(sorted(found.items()))


def _results_pages(runs: Path) -> dict[str, str]:
    from kdbench.leaderboards.render import render_markdown

    found = _find_runs(runs)
    pages = {f"results/{name}.md": render_markdown(run) for name, run in found.items()}
    lines = ["# Results", "",
             "Leaderboards of the runs found in `runs/` when this site was built, rendered from their",
             "results, one page per grid and budget. Each header states the budget and what it changed,",
             "the recipe and widths as trained, the device that trained them, seeds and folds: smoke and",
             "quick budgets are not paper-scale.", ""]
    lines += [f"* [{name}]({name}.md)" for name in found] or [
        "No runs yet: `kdbench run --grid tables/quickstart.yaml`, then build the site again."]
    pages["results/index.md"] = "\n".join(lines) + "\n"
    return pages


def on_files(files, config):
    from kdbench.methods.pages import all_method_pages
    from kdbench.models.zoo import zoo_markdown

    pages = {f"methods/{name}": text for name, text in all_method_pages().items()}
    pages["model-zoo.md"] = zoo_markdown()
    root = Path(config["config_file_path"]).parent
    pages.update(_results_pages(Path(os.environ.get("KDBENCH_RUNS", root / "runs"))))
    for path, text in pages.items():
        files.append(File.generated(config, path, content=text))
    files.append(File.generated(config, "teachers/fig_bt.png", content=_fig_bt_png()))
    return files


def _fig_bt_png() -> bytes:
    """PLC-KD's FIG and BT images made from the phantom (``kdbench.teachers.pictures``)."""
    import tempfile

    from kdbench.teachers.pictures import fig_bt_figure

    with tempfile.TemporaryDirectory() as tmp:
        return fig_bt_figure(Path(tmp) / "fig_bt.png").read_bytes()
