"""Pictures of a run, drawn from its stored results, logs and checkpoints (matplotlib, Agg).

Beside each leaderboard, in ``RUN_DIR/pictures/``:

- ``pareto_params.png`` / ``pareto_flops.png`` — the primary metric against params and
  against FLOPs, one panel per target, the Pareto front marked (EMKD Fig. 7);
- ``curves.png`` — the loss terms each training job logged, one panel per leaderboard row
  (EMKD Fig. 6);
- ``overlays.png`` — the same test cases as image, ground truth, teacher, student alone and
  the best distilled student (EMKD Figs. 5 and 8).

With several leaderboard blocks (dataset × student) each block gets its own set, the file
names ending in the block's slug (``pareto_params_<dataset>-<student>.png``).  Every picture
is byte-identical from render to render: fixed size and dpi, sorted inputs, the Agg
renderer and no software or date metadata; nothing depends on the clock.
"""

from __future__ import annotations

import io
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from kdbench.benchmark.evaluate import LOWER_IS_BETTER, predict_case, predict_volume
from kdbench.benchmark.store import RunStore, read_plan, write_atomic
from kdbench.datasets.base import Case
from kdbench.errors import CheckpointError, DatasetError, KdbenchNote
from kdbench.leaderboards.render import COST_COLUMNS, _rows, leaderboard_blocks, metric_name

DPI = 100
PANEL = (3.6, 3.0)  # inches per plot panel (width, height)
IMAGE_PANEL = (2.2, 2.4)  # inches per image panel of the overlays
KEY_WIDTH = 2.4  # inches added on the right of a Pareto figure for its key
LOG_SPAN = 10.0  # an axis is logarithmic when its positive values span more than this factor
CURVE_COLUMNS = 3  # panels per line of the training-curve figure
PICTURES = ("pareto_params", "pareto_flops", "curves", "overlays")
#: label value → colour of the label maps (value 0, background, is left transparent)
LABEL_COLOURS = ("#000000", "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0",
                 "#f032e6", "#bcf60c")
NOT_LOSS = {"time", "event", "step", "epoch", "lr"}  # log fields that are not curves


def figure_pixels(rows: int, cols: int, panel: tuple[float, float] = PANEL, extra: float = 0.0) -> tuple[int, int]:
    """Width and height in pixels of a figure of ``rows`` × ``cols`` panels of ``panel`` inches,
    ``extra`` inches wider (for a key)."""
    return round((cols * panel[0] + extra) * DPI), round(rows * panel[1] * DPI)


def _figure(rows: int, cols: int, panel: tuple[float, float] = PANEL, extra: float = 0.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(cols * panel[0] + extra, rows * panel[1]), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure) -> bytes:
    """The figure as PNG bytes without software/date metadata (identical for identical figures)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _logarithmic(values: list[float]) -> bool:
    """Whether an axis over ``values`` is drawn logarithmic: all positive, spanning > :data:`LOG_SPAN`."""
    return bool(values) and min(values) > 0 and max(values) / min(values) > LOG_SPAN


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    write_atomic(path, png_bytes(figure))
    return path


def pareto_front(points: list[tuple[float, float]], maximize: bool = True) -> list[int]:
    """Indices of the non-dominated ``(cost, value)`` points, by increasing cost.

    A point is dominated when another has cost ≤ and value ≥ (≤ with ``maximize=False``),
    one of them strictly.  Ties: identical points dominate neither other, so all stay on the
    front (ordered by index); a point with the same cost and a worse value, or the same
    value and a higher cost, is dominated.
    """
    sign = 1.0 if maximize else -1.0
    keyed = [(c, sign * v) for c, v in points]
    front = [i for i, (c, v) in enumerate(keyed)
             if not any(c2 <= c and v2 >= v and (c2 < c or v2 > v) for c2, v2 in keyed)]
    return sorted(front, key=lambda i: (keyed[i][0], -keyed[i][1], i))


def _primary(block: dict) -> str:
    return block["metrics"][0]


def best_distilled(block: dict) -> dict | None:
    """The distilled student row with the highest primary metric (lowest for HD95 and the
    like), averaged over the block's targets with a finite value; rows of ``none`` and
    teachers are not candidates.  Ties go to the earlier row (the grid's method order);
    ``None`` when no row has a finite value."""
    metric = _primary(block)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    best, best_score = None, -math.inf
    for row in block["rows"]:
        if row["kind"] != "student" or row["method"] == "none":
            continue
        values = [row["cells"][f"{t}/{metric}"]["mean"] for t in block["targets"]]
        values = [v for v in values if v is not None and np.isfinite(v)]
        if values and sign * float(np.mean(values)) > best_score:
            best, best_score = row, sign * float(np.mean(values))
    return best


def pareto_figure(blocks: list[dict], path: str | Path, cost: str = "params") -> Path | None:
    """Write the primary metric against ``cost`` (``params`` or ``flops``) with the Pareto front.

    One line of panels per block, one panel per target.  One point per row (teachers as
    squares, students as circles), one colour per row, named in the key on the right; the
    non-dominated points (higher metric — lower for HD95/ASSD/VOE/RVD — at lower cost, see
    :func:`pareto_front`) are ringed and joined by a step line.  The cost axis is
    logarithmic when the costs span more than :data:`LOG_SPAN` ×.  Rows without a finite
    mean or cost are left out; returns ``None`` (writing nothing) when no row is left.
    """
    from matplotlib import colormaps
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    panels = []
    for block in blocks:
        metric = _primary(block)
        line = []
        for target in block["targets"]:
            points = sorted(((r["cost"][cost], r["cells"][f"{target}/{metric}"]["mean"], r["row"], r["kind"])
                             for r in block["rows"] if cost in r["cost"] and np.isfinite(r["cost"][cost])
                             and np.isfinite(r["cells"][f"{target}/{metric}"]["mean"])),
                            key=lambda p: (p[0], p[1], p[2]))
            line.append((block, target, metric, points))
        panels.append(line)
    shown = {(p[2], p[3]) for line in panels for *_, points in line for p in points}
    if not shown:
        return None
    rows = [row for row in dict.fromkeys((r["row"], r["kind"]) for b in blocks for r in b["rows"]) if row in shown]
    palette = colormaps["tab20"]  # its ten dark colours first, then the ten light ones
    style = {row: {"color": palette(2 * k % 20 + k // 10 % 2), "marker": "s" if row[1] == "teacher" else "o"}
             for k, row in enumerate(rows)}
    cols = max(len(line) for line in panels)
    figure = _figure(len(panels), cols, extra=KEY_WIDTH)
    for i, line in enumerate(panels):
        for j, (block, target, metric, points) in enumerate(line):
            axes = figure.add_subplot(len(panels), cols, i * cols + j + 1)
            axes.set_title(f"{block['dataset']} · {block['student']} · {target}", fontsize=9)
            axes.set_xlabel(COST_COLUMNS[cost][0], fontsize=8)
            axes.set_ylabel(metric_name(metric, block["setup"]["spacing_unit"]), fontsize=8)
            axes.tick_params(labelsize=7)
            if not points:
                axes.text(0.5, 0.5, "no finished row", ha="center", va="center", transform=axes.transAxes)
                continue
            for x, y, row, kind in points:
                axes.scatter([x], [y], s=28, zorder=3, **style[(row, kind)])
            front = [points[k] for k in pareto_front([(p[0], p[1]) for p in points],
                                                     maximize=metric not in LOWER_IS_BETTER)]
            axes.plot([p[0] for p in front], [p[1] for p in front], drawstyle="steps-post", color="#2ca02c",
                      linewidth=1, zorder=2)
            axes.scatter([p[0] for p in front], [p[1] for p in front], s=110, facecolors="none",
                         edgecolors="#2ca02c", linewidths=1.2, zorder=4)
            if _logarithmic([p[0] for p in points]):
                axes.set_xscale("log")
                axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                axes.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                axes.xaxis.set_minor_formatter(NullFormatter())
    handles = [Line2D([], [], linestyle="none", markersize=6, label=row, **style[(row, kind)]) for row, kind in rows]
    handles.append(Line2D([], [], color="#2ca02c", marker="o", markerfacecolor="none", markersize=9,
                          label="Pareto front"))
    figure.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False)
    return _save(figure, path)


def _first_run(plan: dict, job_ids: list[str]) -> str | None:
    """The job of the lowest (fold, seed) among ``job_ids``."""
    meta = {j["id"]: j["meta"] for j in plan["jobs"]}
    runs = sorted(job_ids, key=lambda j: (meta[j].get("fold") or 0, meta[j].get("seed") or 0, j))
    return runs[0] if runs else None


def _block_rows(plan: dict, block: dict) -> list[dict]:
    """The block's rows with their training job ids (``jobs``), in leaderboard order."""
    jobs = {r["row"]: r["jobs"] for r in _rows(plan["grid"], plan["jobs"], block["dataset"], block["student"])}
    return [{**r, "jobs": jobs[r["row"]]} for r in block["rows"] if r["row"] in jobs]


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def curves_figure(run_dir: str | Path, path: str | Path, block: dict | None = None) -> Path | None:
    """Write the training curves of a leaderboard block (the first block if not given).

    One panel per row that trained a network (teachers, ``none``, each method; an ensemble
    or a team has no log of its own and no panel), each showing every loss term its jobs
    logged (``seg``, the method's terms, their sum ``loss``) against the step: solid lines
    with dots for the ``step`` records, open circles for the ``epoch`` means, one colour per
    term, one line per (fold, seed) run.  The y axis is logarithmic when the values span more
    than :data:`LOG_SPAN` × (all positive).  ``log.jsonl`` holds no validation Dice (no job
    evaluates while training), so the curves are the loss terms only; any other number a
    record carries is drawn too.  Returns ``None`` when no job has a log.
    """
    from matplotlib import colormaps

    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    block = block or leaderboard_blocks(run_dir)[0]
    store = RunStore(run_dir)
    panels = []
    for row in _block_rows(plan, block):
        logs = [(job, _log(store.job_dir(job) / "log.jsonl")) for job in sorted(row["jobs"])]
        logs = [(job, records) for job, records in logs if records]
        if logs:
            panels.append((row["row"], logs))
    if not panels:
        return None
    cols = min(CURVE_COLUMNS, len(panels))
    lines = math.ceil(len(panels) / cols)
    figure = _figure(lines, cols)
    palette = colormaps["tab10"]
    for k, (title, logs) in enumerate(panels):
        axes = figure.add_subplot(lines, cols, k + 1)
        terms = sorted({key for _, records in logs for r in records for key, v in r.items()
                        if key not in NOT_LOSS and isinstance(v, (int, float))})
        values = []
        for n, term in enumerate(terms):
            colour = palette(n % 10)
            for run, (_, records) in enumerate(logs):
                for event, style in (("step", {"marker": ".", "linestyle": "-"}),
                                     ("epoch", {"marker": "o", "linestyle": "none", "markerfacecolor": "none"})):
                    xy = [(r["step"], r[term]) for r in records if r.get("event") == event and term in r]
                    if xy:
                        values += [y for _, y in xy]
                        axes.plot([x for x, _ in xy], [y for _, y in xy], color=colour, linewidth=1, markersize=4,
                                  label=f"{term} ({event})" if run == 0 else None, **style)
        if _logarithmic(values):
            axes.set_yscale("log")
        axes.set_title(title, fontsize=9)
        axes.set_xlabel("step", fontsize=8)
        axes.tick_params(labelsize=7)
        axes.legend(fontsize=6, loc="best")
    return _save(figure, path)


def overlays_figure(run_dir: str | Path, path: str | Path, cases: int = 3, block: dict | None = None) -> Path | None:
    """Write predictions overlaid on the same test cases (a leaderboard block, the first if not given).

    Columns: the image, the ground truth, the teacher (the block's first teacher row), the
    student alone (``none``) and the best distilled student (:func:`best_distilled`); a
    column whose row the grid does not have is left out.  Lines: the first ``cases`` test
    cases of the first (fold, seed) run, each at the slice with the most foreground in its
    ground truth.  Predictions come from the stored checkpoints of that run's jobs,
    predicted on the CPU for that slice only (the networks are 2D); label maps are drawn
    over the image with fixed colours per label value.  Returns ``None`` (writing nothing)
    when one of those jobs has not finished, its checkpoint is not there (a run exported
    without checkpoints) or the dataset is not.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from kdbench.benchmark.jobs import dataset_of, load_cases, load_trained

    run_dir = Path(run_dir)
    plan = read_plan(run_dir)
    block = block or leaderboard_blocks(run_dir)[0]
    store = RunStore(run_dir)
    rows = _block_rows(plan, block)
    best = best_distilled(block)
    chosen = [("teacher", next((r for r in rows if r["kind"] == "teacher"), None)),
              ("student alone", next((r for r in rows if r["kind"] == "student" and r["method"] == "none"), None)),
              ("best distilled", next((r for r in rows if best is not None and r["row"] == best["row"]), None))]
    columns = [(f"{title}\n{row['row']}", _first_run(plan, row["jobs"])) for title, row in chosen if row]
    if not columns or not all(job and store.is_done(job) for _, job in columns):
        return None
    device = torch.device("cpu")
    config = store.read_job(columns[0][1])["config"]
    try:
        models = [load_trained(store, job, device) for _, job in columns]
        test = load_cases(config, "test")[:cases]
    except (FileNotFoundError, DatasetError):  # exported without checkpoints, or the data is not here
        return None
    except CheckpointError as exc:  # the rest of the leaderboard renders without this picture
        warnings.warn(KdbenchNote(f"overlays left out: {exc}"), stacklevel=2)
        return None
    if not test:
        return None
    inference = [_inference_of(plan, job) for _, job in columns]
    names = dataset_of(config).classes
    classes = config["model"]["num_classes"]
    colours = ListedColormap([LABEL_COLOURS[v % len(LABEL_COLOURS)] for v in range(classes)])
    figure = _figure(len(test), 2 + len(columns), IMAGE_PANEL)
    for i, case in enumerate(test):
        s = foreground_slice(case.label)
        image = case.image[s, 0]
        one = Case(case.case_id, case.image[s:s + 1], case.label[s:s + 1], case.spacing)  # the slice alone
        maps = [("ground truth", case.label[s])]
        maps += [(title, predict_volume(model, case, mode, device)[s] if mode else predict_case(model, one, device)[0])
                 for (title, _), model, mode in zip(columns, models, inference)]
        for j, (title, picture) in enumerate([("image", None), *maps]):
            axes = figure.add_subplot(len(test), 2 + len(columns), i * (2 + len(columns)) + j + 1)
            axes.imshow(image, cmap="gray", interpolation="nearest")
            if picture is not None:
                axes.imshow(np.ma.masked_equal(picture, 0), cmap=colours, vmin=0, vmax=classes - 1, alpha=0.55,
                            interpolation="nearest")
            axes.set_title(f"{case.case_id} · slice {s}" if j == 0 else title if i == 0 else "", fontsize=8)
            axes.set_axis_off()
    figure.legend(handles=[Patch(color=LABEL_COLOURS[v % len(LABEL_COLOURS)], label=names[v] if v < len(names)
                                 else f"label {v}") for v in range(1, classes)],
                  loc="outside lower center", ncols=max(1, classes - 1), fontsize=7)
    return _save(figure, path)


def _inference_of(plan: dict, job_id: str) -> dict | None:
    """The whole-volume inference (sliding window, tri-planar) the evaluation of ``job_id`` used,
    or ``None`` when it predicted slice by slice."""
    for job in plan["jobs"]:
        if job["kind"] == "evaluate" and job_id in job["deps"]:
            inference = job["config"].get("inference")
            return inference if inference and inference.get("mode") != "slices" else None
    return None


def foreground_slice(label: np.ndarray) -> int:
    """The slice of a label volume ``(S, H, W)`` with the most foreground pixels (the first on a tie)."""
    return int(np.argmax((label != 0).reshape(len(label), -1).sum(1)))


def _slug(block: dict) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", f"{block['dataset']}-{block['student']}").strip("-")


def picture_paths(blocks: list[dict]) -> list[dict[str, str]]:
    """Per block, each picture's path relative to the run directory (and to ``leaderboard.md``):
    ``pictures/<name>.png`` with one block, ``pictures/<name>_<dataset>-<student>.png`` with several."""
    suffixes = [f"_{_slug(b)}" if len(blocks) > 1 else "" for b in blocks]
    return [{name: f"pictures/{name}{suffix}.png" for name in PICTURES} for suffix in suffixes]


PICTURE_TITLES = {"pareto_params": "{metric} against params, Pareto front marked",
                  "pareto_flops": "{metric} against FLOPs, Pareto front marked",
                  "curves": "training curves: loss terms per step",
                  "overlays": "test cases: image, ground truth, teacher, student alone, best distilled student"}


def picture_markdown(run_dir: str | Path, blocks: list[dict]) -> list[list[str]]:
    """Per block, markdown image lines for its pictures that exist in ``run_dir`` (relative
    links, valid from ``leaderboard.md`` and from any page placed beside a copy of ``pictures/``)."""
    run_dir = Path(run_dir)
    return [[f"![{PICTURE_TITLES[name].format(metric=metric_name(_primary(block)))}]({rel})"
             for name, rel in paths.items() if (run_dir / rel).is_file()]
            for block, paths in zip(blocks, picture_paths(blocks))]


def write_pictures(run_dir: str | Path, blocks: list[dict] | None = None) -> dict[str, Path]:
    """Write every picture of every leaderboard block into ``run_dir/pictures/`` (atomically).

    ``blocks`` is :func:`~kdbench.leaderboards.render.leaderboard_blocks` of the run, computed
    when not given.  Returns ``{relative path: path}`` of the pictures written (see
    :func:`picture_paths`); a picture with nothing to show (no finished row, no log, an
    unfinished job or a missing checkpoint for the overlays) is not written, and a file drawn
    before under its name is left as it is.
    """
    run_dir = Path(run_dir)
    blocks = leaderboard_blocks(run_dir) if blocks is None else blocks
    written = {}
    for block, paths in zip(blocks, picture_paths(blocks)):
        made = {"pareto_params": pareto_figure([block], run_dir / paths["pareto_params"], "params"),
                "pareto_flops": pareto_figure([block], run_dir / paths["pareto_flops"], "flops"),
                "curves": curves_figure(run_dir, run_dir / paths["curves"], block),
                "overlays": overlays_figure(run_dir, run_dir / paths["overlays"], block=block)}
        written.update({paths[name]: path for name, path in made.items() if path is not None})
    return written
