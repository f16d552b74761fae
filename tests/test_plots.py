"""Pictures beside the leaderboards (kdbench.leaderboards.plots): written from a real tiny run,
valid PNGs of the set size, byte-identical when rendered twice; the Pareto front and the
choice of the best distilled student on hand-made data."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from kdbench.benchmark.grid import load_grid
from kdbench.benchmark.runner import run_grid
from kdbench.leaderboards.plots import (IMAGE_PANEL, KEY_WIDTH, best_distilled, figure_pixels, foreground_slice,
                                        overlays_figure, pareto_figure, pareto_front, picture_markdown, picture_paths,
                                        write_pictures)
from kdbench.leaderboards.render import leaderboard_blocks
from conftest import tiny_grid


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished tiny run: a teacher, ``none`` and ``kd`` on the phantom (32 px, 2 steps)."""
    root = tmp_path_factory.mktemp("plots")
    path = root / "grid.yaml"
    path.write_text(yaml.safe_dump(tiny_grid(methods=["none", "kd"]), sort_keys=False))
    result = run_grid(load_grid(path), out=root / "runs", threads=1)
    assert result.ok, result.failed
    return result.run_dir


@pytest.fixture(scope="module")
def written(run_dir):
    """The pictures of the run, written twice: (first paths, first bytes, second paths, second bytes)."""
    first = write_pictures(run_dir)
    first_bytes = {k: p.read_bytes() for k, p in first.items()}
    second = write_pictures(run_dir)
    return first, first_bytes, second, {k: p.read_bytes() for k, p in second.items()}


def test_every_picture_is_a_png_of_the_set_size(run_dir, written):
    first, *_ = written
    assert sorted(first) == sorted(picture_paths([{}])[0].values())
    assert all(p == run_dir / key for key, p in first.items())
    targets = 2  # organ, tumour: one Pareto panel each
    rows_with_logs = 3  # teacher, none, kd: one line of 3 panels
    test_cases = 1  # 4 phantom cases, a quarter held out
    sizes = {"pictures/pareto_params.png": figure_pixels(1, targets, extra=KEY_WIDTH),
             "pictures/pareto_flops.png": figure_pixels(1, targets, extra=KEY_WIDTH),
             "pictures/curves.png": figure_pixels(math.ceil(rows_with_logs / 3), 3),
             "pictures/overlays.png": figure_pixels(test_cases, 5, IMAGE_PANEL)}
    for key, path in first.items():
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == sizes[key], key
            assert np.asarray(image.convert("L")).std() > 1  # something is drawn
    assert not list((run_dir / "pictures").glob(".*.tmp"))  # written atomically, nothing left behind


def test_rendering_twice_is_byte_identical(written):
    first, first_bytes, second, second_bytes = written
    assert first == second and first_bytes == second_bytes
    assert len(set(first_bytes.values())) == len(first_bytes)  # four different pictures


def test_overlays_are_skipped_while_a_needed_job_is_unfinished(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    teacher = next(p for p in copy.iterdir() if p.name.startswith("teacher-"))
    (teacher / "job.json").unlink()  # the teacher's job no longer counts as finished
    assert overlays_figure(copy, tmp_path / "overlays.png") is None
    assert not (tmp_path / "overlays.png").exists()


def test_a_run_without_checkpoints_keeps_its_overlays(run_dir, written, tmp_path):
    first, first_bytes, *_ = written
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for checkpoint in copy.glob("*/checkpoint.pt"):  # as exported for the docs site
        checkpoint.unlink()
    assert overlays_figure(copy, tmp_path / "overlays.png") is None
    blocks = leaderboard_blocks(copy)
    again = write_pictures(copy, blocks)
    assert sorted(again) == sorted(k for k in first if "overlays" not in k)
    assert (copy / "pictures/overlays.png").read_bytes() == first_bytes["pictures/overlays.png"]  # left as it was
    links = picture_markdown(copy, blocks)
    assert len(links) == 1 and [line.split("](")[1] for line in links[0]] == [f"{k})" for k in first]
    assert links[0][0].startswith("![Dice against params")
    (copy / "pictures/curves.png").unlink()
    assert "pictures/curves.png" not in "".join(picture_markdown(copy, blocks)[0])


def test_several_blocks_get_their_own_names():
    blocks = [{"dataset": "phantom", "student": "tinyunet"}, {"dataset": "lits17", "student": "enet x0.5"}]
    paths = picture_paths(blocks)
    assert paths[0]["pareto_params"] == "pictures/pareto_params_phantom-tinyunet.png"
    assert paths[1]["overlays"] == "pictures/overlays_lits17-enet-x0.5.png"
    assert picture_paths(blocks[:1])[0]["curves"] == "pictures/curves.png"


def test_pareto_front_keeps_only_non_dominated_points():
    points = [(1.0, 0.5), (2.0, 0.7), (2.0, 0.6), (3.0, 0.7), (0.5, 0.4), (1.0, 0.5), (4.0, 0.65)]
    # (2, .6): same cost, lower value; (3, .7): same value, higher cost; (4, .65): worse and dearer
    assert pareto_front(points) == [4, 0, 5, 1]  # the identical points (1, .5) both stay
    assert pareto_front([(1.0, 10.0), (2.0, 5.0), (3.0, 7.0)], maximize=False) == [0, 1]
    assert pareto_front([(2.0, 0.3)]) == [0]
    assert pareto_front([]) == []


def _cell(value: float) -> dict:
    return {"mean": value}


def _block(rows: list[tuple[str, str, str, list[float]]], metric: str = "dice") -> dict:
    targets = ["organ", "tumour"]
    return {"dataset": "phantom", "student": "s", "targets": targets, "metrics": [metric],
            "setup": {"spacing_unit": "mm"},
            "rows": [{"row": name, "kind": kind, "method": method,
                      "cells": {f"{t}/{metric}": _cell(v) for t, v in zip(targets, values)},
                      "cost": {"params": 1.0 if kind == "student" else 4.0}}
                     for name, kind, method, values in rows]}


def test_best_distilled_is_the_best_student_other_than_none():
    block = _block([("teacher: t", "teacher", "teacher", [0.99, 0.99]), ("none", "student", "none", [0.95, 0.95]),
                    ("kd", "student", "kd", [0.6, 0.2]), ("at", "student", "at", [0.5, 0.4]),
                    ("failed", "student", "dkd", [math.nan, math.nan])])
    assert best_distilled(block)["row"] == "at"  # mean over targets 0.45 > kd's 0.40
    tied = _block([("none", "student", "none", [0.1, 0.1]), ("kd", "student", "kd", [0.5, 0.3]),
                   ("at", "student", "at", [0.3, 0.5])])
    assert best_distilled(tied)["row"] == "kd"  # a tie goes to the earlier row
    partial = _block([("kd", "student", "kd", [0.6, math.nan]), ("at", "student", "at", [0.5, 0.5])])
    assert best_distilled(partial)["row"] == "kd"  # the targets with a value
    lower = _block([("kd", "student", "kd", [3.0, 5.0]), ("at", "student", "at", [4.0, 6.0])], metric="hd95")
    assert best_distilled(lower)["row"] == "kd"  # distances: lower is better
    assert best_distilled(_block([("none", "student", "none", [0.5, 0.5]),
                                  ("kd", "student", "kd", [math.nan, math.nan])])) is None


def test_pareto_figure_leaves_out_rows_without_a_value_or_cost(tmp_path):
    block = _block([("none", "student", "none", [math.nan, math.nan])])
    assert pareto_figure([block], tmp_path / "p.png") is None and not (tmp_path / "p.png").exists()
    block["rows"][0]["cells"] = {"organ/dice": _cell(0.5), "tumour/dice": _cell(0.4)}
    block["rows"][0]["cost"] = {}
    assert pareto_figure([block], tmp_path / "p.png") is None
    assert pareto_figure([block], tmp_path / "p.png", cost="flops") is None
    block["rows"][0]["cost"] = {"flops": 2.0}
    assert pareto_figure([block], tmp_path / "p.png", cost="flops") == tmp_path / "p.png"


def test_foreground_slice_is_the_one_with_most_foreground():
    label = np.zeros((4, 5, 5), dtype=np.int64)
    label[1, :2] = 1
    label[2, :3] = 2
    label[3, :3] = 1
    assert foreground_slice(label) == 2  # the first of the two largest
    assert foreground_slice(np.zeros((3, 2, 2))) == 0


def test_blocks_of_the_run_choose_a_finished_distilled_row(run_dir):
    block = leaderboard_blocks(run_dir)[0]
    best = best_distilled(block)
    assert best["method"] == "kd" and best["status"] == "done"
