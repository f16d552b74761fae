"""The documentation site: pages generated from the registries and from runs, and ``kdbench docs``.

``mkdocs.yml`` names this file in ``hooks:`` (it lives outside ``docs/`` so it is never
published).  At build time :func:`on_files` adds pages that are never edited by hand:

* ``methods/*.md`` — one page per registered method (:mod:`kdbench.methods.pages`);
* ``models/<name>.md`` — one page per registered model (:func:`model_page`), and
  ``model-zoo.md``, every model beside EMKD Table II (:mod:`kdbench.models.zoo`);
* ``datasets/<name>.md`` — for a registered dataset without a hand-written page
  (:func:`dataset_page`);
* ``results/<grid>-<budget>/index.md`` — the leaderboard of each published run, re-rendered
  from its results, with its ``pictures/*.png`` beside it; ``results/index.md`` lists them;
* ``teachers/fig_bt.png`` — PLC-KD's FIG and BT images made from the phantom.

:func:`on_page_markdown` fills ``docs/bench.md``'s :data:`BENCH_MARKER` with the table of
the speed figures recorded in ``docs-results/bench/*.json`` (``kdbench bench --json --out``).

It also fills the navigation: the entries ``methods/index.md``, ``models.md``,
``datasets/index.md`` and ``results/index.md`` of ``mkdocs.yml`` become sections holding
every generated page (issue 10, "the docs site").

Which runs are published: the ``kdbench_runs`` list of the config's ``extra`` (set by
:func:`build_site`, i.e. ``kdbench docs build RUN_DIR…``), else ``$KDBENCH_RUNS``
(paths separated by ``os.pathsep``), else the committed phantom smoke results in
``docs-results/`` (:data:`COMMITTED_RUNS`), which keep the published site non-empty.
"""

from __future__ import annotations

import inspect
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Committed phantom smoke results: what the site shows when no run is chosen.
COMMITTED_RUNS = ROOT / "docs-results"
#: What :func:`export_run` copies from a run (never checkpoints or predictions).
EXPORTED = ("plan.json", "results.csv", "leaderboard.md", "leaderboard.json", "*/job.json", "*/metrics.csv",
            "*/profile.json", "*/log.jsonl", "pictures/*.png")
#: Navigation entries of ``mkdocs.yml`` that become sections of generated pages.
SECTIONS = {"methods/index.md": "methods/", "models.md": "models/", "datasets/index.md": "datasets/",
            "results/index.md": "results/"}
BUDGET_LABEL = {"smoke": "smoke budget — a plumbing check (1 epoch, a few steps), NOT paper-scale",
                "quick": "quick budget — reduced epochs, image size and width, NOT paper-scale",
                "paper": "paper budget — the grid's full recipe"}
#: Where ``docs/bench.md`` shows the recorded ``kdbench bench`` figures.
BENCH_MARKER = "<!-- kdbench-bench-figures -->"
PHANTOM_LABEL = ("phantom data — the built-in synthetic CT-like volumes, not patient data: the numbers show "
                 "what the page looks like, nothing about the methods")


# --------------------------------------------------------------------------- runs


def run_dirs(path: str | Path) -> list[Path]:
    """The run directories under ``path``: itself if it holds ``plan.json``, else every
    ``<grid>/plan.json`` and ``<grid>/<budget>/plan.json`` below it (a runs directory)."""
    from kdbench.errors import ConfigError

    path = Path(path)
    if (path / "plan.json").is_file():
        return [path]
    found = sorted(p.parent for p in [*path.glob("*/plan.json"), *path.glob("*/*/plan.json")]) if path.is_dir() else []
    if not found:
        raise ConfigError(f"{path}: no run to publish (no plan.json in it, or in <grid>/ or <grid>/<budget>/ under it); "
                          "give a run directory such as runs/quickstart/quick")
    return found


def chosen_runs(config) -> list[Path]:
    """The run directories to publish: ``extra.kdbench_runs``, else ``$KDBENCH_RUNS``, else the committed set."""
    paths = config["extra"].get("kdbench_runs")
    if paths is None and os.environ.get("KDBENCH_RUNS"):
        paths = os.environ["KDBENCH_RUNS"].split(os.pathsep)
    if paths is None:
        paths = [COMMITTED_RUNS] if COMMITTED_RUNS.is_dir() else []
    return [run for path in paths if str(path) for run in run_dirs(path)]


def _run_names(runs: list[Path]) -> dict[str, Path]:
    """Page name (``<grid>-<budget>``) → run directory; two runs with one name are an error."""
    from kdbench.errors import ConfigError
    from kdbench.benchmark.store import read_plan

    named: dict[str, Path] = {}
    for run in runs:
        plan = read_plan(run)
        name = f"{plan['grid']['name']}-{plan['budget']}"
        if name in named and named[name].resolve() != run.resolve():
            raise ConfigError(f"{run}: grid {plan['grid']['name']!r} at budget {plan['budget']!r} is also "
                              f"published from {named[name]}; publish one of them")
        named[name] = run
    return dict(sorted(named.items()))


def run_labels(plan: dict) -> list[str]:
    """What a reader must know before reading a run's numbers: phantom data, a reduced budget."""
    datasets = {d["name"] if isinstance(d, dict) else d for d in plan["grid"].get("datasets", [])}
    labels = [PHANTOM_LABEL] if "phantom" in datasets else []
    if plan["budget"] != "paper":
        labels.append(BUDGET_LABEL.get(plan["budget"], f"{plan['budget']} budget, NOT paper-scale"))
    return labels


def _cap(text: str) -> str:
    """``text`` with its first letter upper-case (the rest as written: "CT" stays)."""
    return text[:1].upper() + text[1:]


def _short_label(plan: dict) -> str:
    datasets = {d["name"] if isinstance(d, dict) else d for d in plan["grid"].get("datasets", [])}
    return " · ".join([*(["**phantom**"] if "phantom" in datasets else []), f"**{plan['budget']}**"])


def results_pages(runs: list[Path]) -> dict[str, str | bytes]:
    """``{site path: content}``: ``results/index.md`` and, per run, ``results/<name>/index.md``
    (the leaderboard re-rendered from its results, under a phantom/budget warning) and its pictures."""
    from kdbench.leaderboards.render import render_markdown
    from kdbench.benchmark.store import read_plan

    pages: dict[str, str | bytes] = {}
    index = ["# Results", "",
             "Leaderboards of the published runs, re-rendered from their results when this site was built: one "
             "page per grid and budget, with its pictures. Only `paper`-budget runs on the papers' data are "
             "comparable with the published numbers; `kdbench docs build RUN_DIR…` publishes others.", ""]
    rows = []
    for name, run in _run_names(runs).items():
        plan = read_plan(run)
        labels = run_labels(plan)
        head = ["---", "hide: [toc]", "---", ""]
        if labels:
            head += ['!!! warning "' + " · ".join(_cap(lbl.split(" — ")[0]) for lbl in labels) + '"', ""]
            head += [f"    * {_cap(lbl)}." for lbl in labels] + [""]
        pages[f"results/{name}/index.md"] = "\n".join(head) + '<div class="kdbench-wide" markdown>\n\n' \
            + render_markdown(run) + "\n</div>\n"
        for png in sorted((run / "pictures").glob("*.png")):
            pages[f"results/{name}/pictures/{png.name}"] = png.read_bytes()
        datasets = ", ".join(d["name"] if isinstance(d, dict) else d for d in plan["grid"].get("datasets", []))
        rows.append(f"| [{name}]({name}/index.md) | {plan['grid'].get('description') or ''} | {datasets} "
                    f"| {_short_label(plan)} |")
    if rows:
        index += ["| run | grid | datasets | data · budget |", "|---|---|---|---|", *(" ".join(r.split()) for r in rows)]
        if any(run_labels(read_plan(run)) for run in runs):
            index += ["", "Runs marked **phantom** ran on synthetic data; **smoke** and **quick** are not paper-scale."]
    else:
        index.append("No runs published: `kdbench run --grid tables/quickstart.yaml`, then "
                     "`kdbench docs build runs/quickstart/quick`.")
    pages["results/index.md"] = "\n".join(index) + "\n"
    return pages


def export_run(run_dir: str | Path, dest: str | Path) -> list[Path]:
    """Copy the publishable files of a run (:data:`EXPORTED`: plan, per-job records, metrics,
    profiles, training logs, results, leaderboard, pictures; no checkpoint) to ``dest``."""
    from kdbench.benchmark.store import read_plan

    run_dir, dest = Path(run_dir), Path(dest)
    read_plan(run_dir)
    copied = []
    for pattern in EXPORTED:
        for src in sorted(run_dir.glob(pattern)):
            if src.parent.name.startswith("."):
                continue
            target = dest / src.relative_to(run_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            copied.append(target)
    return copied


# --------------------------------------------------------------------------- registries


def _options(factory, skip: tuple[str, ...]) -> list[str]:
    """Markdown rows ``| `name` | `default` |`` of a factory's keyword options."""
    from kdbench.methods.pages import _yaml

    rows = []
    for name, param in inspect.signature(factory).parameters.items():
        if name in skip or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = "required" if param.default is param.empty else f"`{_yaml(param.default)}`"
        rows.append(f"| `{name}` | {default} |")
    return rows


def model_page(name: str) -> str:
    """The page of registered model ``name``: what it is, its paper, params and FLOPs at the
    default (paper) configuration counted on the meta device, options and feature roles."""
    from kdbench.models import MODELS
    from kdbench.models.zoo import NOTES, PAPERS, VOLUME_INPUT, _cost

    entry = MODELS.get(name)
    doc = inspect.cleandoc(entry.obj.__doc__ or "")
    size = VOLUME_INPUT if entry.meta.get("dims", 2) == 3 else (1, 1, 512, 512)
    model, params, (flops,) = _cost(name, [size])
    paper = PAPERS.get(entry.meta.get("paper", ""), "not from a paper")
    if entry.meta.get("paper_name"):
        paper += f", as “{entry.meta['paper_name']}”"
    lines = [f"# `{name}`", "", entry.description, ""]
    if doc.partition("\n")[2].strip():
        lines += [doc.partition("\n")[2].strip(), ""]
    lines += ["| | |", "|---|---|", f"| paper | {paper} |",
              f"| params at width 1 | {params / 1e6:.3f} M |",
              f"| FLOPs of a {'×'.join(map(str, size))} input | {flops / 1e9:.2f} G |"]
    if NOTES.get(name):
        lines.append(f"| notes | {NOTES[name]} |")
    lines += ["", "Counted at the default configuration (1 input channel, 2 classes) on the meta device: "
              "shapes only, no weights. Every model beside the published numbers: [Model zoo](../model-zoo.md).", "",
              "## Options", "", "| option | default |", "|---|---|",
              *_options(entry.obj, ()), "",
              "`width` multiplies the channels (1 = the paper's network); the others are the grid's `options:`.", "",
              "## Feature roles", "", "| role | module | channels | stride |", "|---|---|---:|---:|"]
    lines += [f"| `{role}` | `{r.path}` | {r.channels} | {r.stride} |" for role, r in model.feature_roles.items()]
    lines += ["", "## In a grid file", "", "```yaml", f"students: [{{name: {name}, width: 1.0}}]", "```", ""]
    return "\n".join(lines)


def dataset_page(name: str) -> str:
    """The page of registered dataset ``name``, from its class docstring and constructor."""
    from kdbench.datasets import DATASETS

    entry = DATASETS.get(name)
    doc = inspect.cleandoc(entry.obj.__doc__ or "").partition("\n")[2].strip()
    lines = [f"# `{name}`", "", entry.description, "", *([doc, ""] if doc else []),
             "Generated from the dataset registry; see [Datasets](index.md) for what a case is, splits "
             "and the preparation cache.", "", "## Options", "", "| option | default |", "|---|---|",
             *_options(entry.obj, ("self",)), "", "## In a grid file", "", "```yaml",
             f"datasets: [{{name: {name}}}]", "```", ""]
    return "\n".join(lines)


def _title(text: str) -> str:
    """A page's first ``# heading`` without markup."""
    first = next((line for line in text.splitlines() if line.startswith("# ")), "# ?")
    return first[2:].strip().strip("`")


def _expand_nav(nav: list, sections: dict[str, list[dict]], top: bool = True) -> list:
    """``nav`` with the pages of ``sections`` added after their key's entry: a top-level
    entry becomes a section (the key's page as "Overview"); inside a section they follow it."""
    expanded = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        if isinstance(value, list):
            expanded.append({next(iter(item)): _expand_nav(value, sections, top=False)})
        elif value in sections and top:
            expanded.append({next(iter(item)) if isinstance(item, dict) else value: [{"Overview": value},
                                                                                     *sections[value]]})
        else:
            expanded += [item, *sections.get(value, [])]
    return expanded


# --------------------------------------------------------------------------- mkdocs hook


def on_files(files, config):
    """mkdocs hook: add the generated pages and pictures, and their navigation entries."""
    from mkdocs.structure.files import File

    from kdbench.datasets import DATASETS
    from kdbench.methods.pages import all_method_pages
    from kdbench.models import MODELS
    from kdbench.models.zoo import zoo_markdown

    pages: dict[str, str | bytes] = {f"methods/{name}": text for name, text in all_method_pages().items()}
    pages["model-zoo.md"] = zoo_markdown()
    pages.update({f"models/{name}.md": model_page(name) for name in MODELS.names()})
    pages.update({f"datasets/{name}.md": dataset_page(name) for name in DATASETS.names()
                  if files.get_file_from_path(f"datasets/{name}.md") is None})
    pages.update(results_pages(chosen_runs(config)))
    pages["teachers/fig_bt.png"] = _fig_bt_png()
    for path, content in pages.items():
        files.append(File.generated(config, path, content=content))

    sections: dict[str, list[dict]] = {key: [] for key in SECTIONS}
    for file in sorted(files.documentation_pages(), key=lambda f: f.src_uri):
        for key, folder in SECTIONS.items():
            if file.src_uri.startswith(folder) and file.src_uri != key:
                name = file.src_uri[len(folder):].removesuffix(".md").removesuffix("/index")
                text = pages.get(file.src_uri) or Path(file.abs_src_path).read_text()
                sections[key].append({name if folder == "results/" else _title(text): file.src_uri})
    config["nav"] = _expand_nav(config["nav"], sections)
    return files


def on_page_markdown(markdown, page, config, files):
    """mkdocs hook: put the table of the recorded ``kdbench bench`` figures in place of :data:`BENCH_MARKER`."""
    if BENCH_MARKER not in markdown:
        return markdown
    from kdbench.benchmark.bench import figures_markdown

    return markdown.replace(BENCH_MARKER, figures_markdown())


def _fig_bt_png() -> bytes:
    """PLC-KD's FIG and BT images made from the phantom (``kdbench.teachers.pictures``)."""
    import tempfile

    from kdbench.teachers.pictures import fig_bt_figure

    with tempfile.TemporaryDirectory() as tmp:
        return fig_bt_figure(Path(tmp) / "fig_bt.png").read_bytes()


# --------------------------------------------------------------------------- kdbench docs build


def build_site(runs: list[str | Path], site_dir: str | Path = "site", strict: bool = True) -> Path:
    """Build the documentation site into ``site_dir`` with the runs ``runs`` published
    (each a run directory or a directory of runs; none: the committed phantom smoke results)."""
    from kdbench.errors import ConfigError

    config_file = ROOT / "mkdocs.yml"
    if not config_file.is_file():
        raise ConfigError(f"{config_file}: not found; `kdbench docs build` needs a source checkout of kdbench")
    try:
        from mkdocs.commands.build import build
        from mkdocs.config import load_config
        from mkdocs.exceptions import Abort, MkDocsException
    except ImportError:
        raise ConfigError("mkdocs is not installed; install the docs extra: pip install -e '.[docs]'") from None
    chosen = [str(Path(p).resolve()) for p in runs] or [str(COMMITTED_RUNS)]
    for path in chosen:
        run_dirs(path)  # a bad directory is one line before mkdocs starts
    from kdbench.benchmark.store import check_folder

    site_dir = check_folder(Path(site_dir).resolve(), "site")
    config = load_config(config_file=str(config_file), site_dir=str(site_dir), strict=strict)
    config["extra"]["kdbench_runs"] = chosen
    try:
        build(config)
    except (Abort, MkDocsException) as exc:
        raise ConfigError(f"mkdocs build failed: {exc}") from None
    return site_dir
