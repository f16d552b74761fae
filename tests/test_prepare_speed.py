"""Data preparation: throughput (the manifest is not rewritten per case), identical training inputs
serial or parallel, a cache within 2× the decoded images, and progress told while it runs."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from conftest import run_cli

from kdbench.benchmark.bench import time_prepare, write_jpeg_folder
from kdbench.datasets import create_dataset, prepare
from kdbench.datasets.progress import PrepareProgress


def folder_dataset(root, cache, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the JPEG-mask note
        return create_dataset("folder", root=str(root), image_size=64, cache_dir=str(cache), **options)


def test_the_manifest_is_written_every_few_seconds_not_per_case(tmp_path, monkeypatch):
    root = write_jpeg_folder(tmp_path / "data", 30, size=64)
    writes = []
    real = prepare._write_json_atomic
    monkeypatch.setattr(prepare, "_write_json_atomic", lambda path, data: (writes.append(path), real(path, data)))
    dataset = folder_dataset(root, tmp_path / "cache")
    prepare.prepare_dataset(dataset)
    assert len(writes) == 1  # all 30 cases within MANIFEST_SECONDS: one write, at the end
    assert len(prepare.read_manifest(dataset)["cases"]) == 30
    monkeypatch.setattr(prepare, "MANIFEST_SECONDS", 0.0)
    writes.clear()
    prepare.prepare_dataset(folder_dataset(root, tmp_path / "cache2"))
    assert len(writes) == 30  # with no interval, after every case as before


def test_parallel_preparation_gives_the_same_training_inputs(tmp_path):
    root = write_jpeg_folder(tmp_path / "data", 6, size=64)
    serial, parallel = folder_dataset(root, tmp_path / "a"), folder_dataset(root, tmp_path / "b")
    prepare.prepare_dataset(serial, workers=1)
    prepare.prepare_dataset(parallel, workers=2)
    sources = {s.case_id: s for s in serial.discovery().sources}
    assert serial.case_ids() == parallel.case_ids() == sorted(sources)
    for case_id in serial.case_ids():
        a, b = serial.load_case(case_id), parallel.load_case(case_id)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)
        direct = serial.prepared_case(sources[case_id])  # decoded and resized now, not from the cache
        assert direct.image.dtype == np.uint8  # stored losslessly in the smallest dtype that holds it
        assert np.array_equal(a.image, direct.image.astype(np.float32) / 255.0)
        assert np.array_equal(a.label, direct.label)


def test_the_cache_is_at_most_twice_the_decoded_images():
    figures = time_prepare(20)
    assert figures["images"] == 20 and figures["images_per_s"] > 0
    assert figures["cache_to_decoded"] <= 2.0, figures


def test_progress_lines_count_rate_and_eta(monkeypatch):
    clock = iter([0.0, 1.0, 3.0, 4.0, 9.0, 10.0])  # the start, then one reading per call
    monkeypatch.setattr("kdbench.datasets.progress.time.monotonic", lambda: next(clock))
    stream = io.StringIO()
    progress = PrepareProgress("kvasir", stream=stream, every=5.0, quiet=2.0)  # started at 0
    progress(10, 100)   # t=1: within the quiet start, nothing
    progress(30, 100)   # t=3: the first line
    progress(40, 100)   # t=4: less than 5 s after it, nothing
    progress(90, 100)   # t=9: a line
    progress(100, 100)  # t=10: the end
    assert stream.getvalue().splitlines() == [
        "preparing kvasir: 30/100 cases · 10 cases/s · elapsed 0:03 · ETA 0:07",
        "preparing kvasir: 90/100 cases · 10 cases/s · elapsed 0:09 · ETA 0:01",
        "preparing kvasir: 100/100 cases · 10 cases/s · elapsed 0:10 · done"]


def test_a_short_preparation_prints_nothing(monkeypatch):
    clock = iter([0.0, 0.5, 1.0])
    monkeypatch.setattr("kdbench.datasets.progress.time.monotonic", lambda: next(clock))
    stream = io.StringIO()
    progress = PrepareProgress("x", stream=stream)
    progress(1, 2)
    progress(2, 2)
    assert stream.getvalue() == ""


@pytest.mark.slow
def test_preparation_tells_its_progress_under_nohup(tmp_path):
    # enough images to take longer than the quiet start (QUIET) even at ~500 images/s
    root = write_jpeg_folder(tmp_path / "data", 2500)
    result = run_cli("datasets", "prepare", "folder", "--root", str(root), "--image-size", "256",
                     env={"KDBENCH_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("preparing folder: ")]
    assert lines and lines[-1].startswith("preparing folder: 2500/2500 cases") and lines[-1].endswith("· done"), \
        result.stderr
    assert "Traceback" not in result.stderr
