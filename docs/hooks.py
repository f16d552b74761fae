"""mkdocs hook: pages generated at build time (never edited by hand).

* ``methods/*.md`` — one page per registered method (``kdbench.methods.pages``);
* ``model-zoo.md`` — every registered model's params/FLOPs beside EMKD Table II
  (``kdbench.models.zoo``);
* ``results/*.md`` — the leaderboard of every run found under ``runs/`` (or
  ``$KDBENCH_RUNS``), re-rendered from its results.
"""

from __future__ import annotations

import os
from pathlib import Path

from mkdocs.structure.files import File


def _results_pages(runs: Path) -> dict[str, str]:
    from kdbench.leaderboards.render import render_markdown

    found = sorted(p.parent for p in runs.glob("*/plan.json")) if runs.is_dir() else []
    pages = {f"results/{run.name}.md": render_markdown(run) for run in found}
    lines = ["# Results", "",
             "Leaderboards of the runs found in `runs/` when this site was built, rendered from their",
             "results. Each states its dataset, budget, input size, device and seeds: smoke and quick",
             "budgets are not paper-scale.", ""]
    lines += [f"* [{run.name}]({run.name}.md)" for run in found] or [
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
    return files
