"""``kdbench export``: a trained network taken out of a run, as ONNX or TorchScript (issue 12).

:func:`export_job` loads a finished training job of a run (a student, or a teacher or
assistant), writes it as

* ONNX (``torch.onnx.export``, TorchScript-based exporter, opset :data:`OPSET`, a dynamic
  batch axis on input ``image`` and output ``logits``), or
* TorchScript (``torch.jit.trace``),

and beside it ``<model file>.json``: the preprocessing a caller must repeat (input
channels and layout, classes and targets, the dataset's window or normalisation, image
size, spacing, patch size and inference mode, dims) and where the model came from
(run, job, method, teacher, kdbench version).  The exported model is then checked
against PyTorch on the first test case of the job's own split (a slice for a 2D network,
a patch for a 3D one; batch 2: the case and its mirror image), and its CPU latency
measured at batch 1 — through onnxruntime for ONNX, through torch for TorchScript —
with one thread and with the runtime's default threads (median of ``runs`` after
``warmup``).  The result is also recorded in ``RUN_DIR/exports/<job>.<onnx|pt>.json``,
which the leaderboard reads for its "ONNX latency (ms)" cost column (``docs/export.md``).
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kdbench.errors import ConfigError

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
"""Export formats and their file suffixes."""
EXPORTABLE = ("teacher", "assistant", "student")
"""Job kinds that train one network."""
EXPORTS = "exports"
"""The run's folder of exported models and export records."""
OPSET = 17
INSTALL = "pip install 'kdbench[export]' (or pip install onnx onnxruntime)"


def _onnxruntime():
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import onnxruntime
    except ImportError:
        raise ConfigError(f"ONNX export needs onnx and onnxruntime, which are not installed: {INSTALL}") from None
    return onnxruntime


def _finished_job(run_dir: Path, job_id: str) -> dict:
    """The plan entry of ``job_id``, checked: in the plan, a trained network, finished."""
    from kdbench.benchmark.store import RunStore

    from kdbench.benchmark.store import read_plan

    plan_path = run_dir / "plan.json"
    jobs = {j["id"]: j for j in read_plan(run_dir)["jobs"]}
    trained = [j for j, v in jobs.items() if v["kind"] in EXPORTABLE]
    if job_id not in jobs:
        listed = ", ".join(trained[:3]) + (", …" if len(trained) > 3 else "")
        raise ConfigError(f"{plan_path}: no job '{job_id}' (trained networks: {listed or 'none'})")
    job = jobs[job_id]
    if job["kind"] not in EXPORTABLE:
        hint = f"; export the network it evaluates: {job['config']['train']}" if job["kind"] == "evaluate" else ""
        raise ConfigError(f"job '{job_id}' is a {job['kind']} job, not a trained network "
                          f"(exportable: {', '.join(EXPORTABLE)}){hint}")
    if not RunStore(run_dir).is_done(job_id):
        raise ConfigError(f"job '{job_id}' has not finished in {run_dir} (no {job_id}/job.json); "
                          f"run it first: kdbench run-job {run_dir} {job_id}")
    return job


def dims_of(config: dict) -> int:
    """2 or 3: the job's ``volume.dims``, else its model's registered ``dims`` (2 by default)."""
    from kdbench.benchmark.grid import model_dims

    return int((config.get("volume") or {}).get("dims") or model_dims(config["model"]["name"]))


def example_input(config: dict, case) -> torch.Tensor:
    """A real input of the job's network from ``case``: batch 2 of the middle slice ``(C, H, W)``
    (2D) or the central ``volume.patch`` of the volume at ``volume.spacing`` (3D; the whole volume
    padded to a multiple of 16 without a patch), each beside its left–right mirror image."""
    if dims_of(config) == 2:
        x = torch.from_numpy(np.ascontiguousarray(case.image[len(case.image) // 2], dtype=np.float32))
    else:
        from monai.transforms import DivisiblePad, ResizeWithPadOrCrop

        from kdbench.datasets.patches import case_volume

        volume = config.get("volume") or {}
        spacing = volume.get("spacing")
        image, _ = case_volume(case, tuple(spacing) if spacing is not None else None)
        patch = volume.get("patch")
        resize = ResizeWithPadOrCrop(tuple(patch)) if patch else DivisiblePad(16)
        x = torch.as_tensor(resize(image)).float()
    return torch.stack([x, x.flip(-1)])


def _normalisation(dataset) -> dict:
    """How the dataset scales intensities before the network sees them."""
    from kdbench.datasets.images import ImageDataset
    from kdbench.datasets.volume import VolumeDataset

    options = getattr(dataset, "options", None)
    window = getattr(options, "window", None)
    if window is not None:
        return {"kind": "window", "window": list(window), "text": f"clip to [{window[0]:g}, {window[1]:g}] "
                "(HU for CT) and scale to [0, 1]"}
    if isinstance(dataset, VolumeDataset):
        return {"kind": "zscore", "text": "per-case z-score of the intensities clipped to their 0.5–99.5 percentiles"}
    if isinstance(dataset, ImageDataset):
        return {"kind": "range", "text": "divide by the stored type's range (8-bit: 255, 16-bit: 65535); "
                "float images min–max per image"}
    return {"kind": "none", "text": f"intensities as the {type(dataset).__name__} dataset generates them"}


def preprocessing(config: dict) -> dict:
    """What a caller of the exported network must do to an image first, from the job's config."""
    from kdbench.benchmark.jobs import dataset_of

    dataset = dataset_of(config)
    volume, dims = config.get("volume") or {}, dims_of(config)
    inference = config.get("inference") or {"mode": "slices" if dims == 2 else "sliding_window"}
    options = getattr(dataset, "options", None)
    return {
        "dims": dims,
        "input": {"name": "image", "channels": config["model"]["in_channels"], "dtype": "float32",
                  "layout": "NCHW" if dims == 2 else "NCDHW", "batch": "dynamic"},
        "output": {"name": "logits", "classes": config["model"]["num_classes"],
                   "text": "logits per class; soft-max over axis 1, arg-max for the label map"},
        "classes": {str(i): name for i, name in enumerate(dataset.classes)},
        "targets": {k: list(v) for k, v in config["dataset"]["targets"].items()},
        "dataset": config["dataset"]["name"],
        "dataset_options": options.model_dump(mode="json") if hasattr(options, "model_dump")
        else config["dataset"]["options"],
        "normalisation": _normalisation(dataset),
        "image_size": config["dataset"]["image_size"],
        "resize": "each slice resized in-plane to image_size × image_size (bilinear; labels nearest)",
        "spacing": volume.get("spacing"),
        "spacing_unit": getattr(dataset, "spacing_unit", "mm"),
        "patch": volume.get("patch"),
        "inference": inference,
    }


def _write(model: nn.Module, example: torch.Tensor, fmt: str, path: Path) -> None:
    from kdbench.benchmark.store import atomic_path

    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer warnings
        if fmt == "onnx":
            torch.onnx.export(model, (example,), str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
        else:
            torch.jit.save(torch.jit.trace(model, example), str(tmp))


def _runner(fmt: str, path: Path, threads: int | None):
    """A callable ``x (numpy) -> logits (numpy)`` over the exported file; ``threads`` None: the runtime's default."""
    if fmt == "onnx":
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"image": x})[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x)).numpy()

    return run


def _latency(run, x: np.ndarray, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def export_job(run_dir: str | Path, job_id: str, fmt: str = "onnx", out: str | Path | None = None,
               runs: int = 50, warmup: int = 5) -> dict:
    """Export the network of finished training job ``job_id`` of ``run_dir`` (C6).

    Writes the model to ``out`` (default ``RUN_DIR/exports/<job><suffix>``) and its
    metadata to ``<model file>.json``; records the result in ``RUN_DIR/exports/<job><suffix>.json``.
    Returns ``path``, ``metadata``, ``max_abs_diff`` (exported vs. PyTorch logits on a real
    test case), ``latency_ms`` (CPU, batch 1, one thread, median of ``runs``),
    ``latency_default_threads_ms`` and the rest of the record (see the module docstring).
    An unknown job, a job that is not a trained network, an unfinished job or a missing
    onnxruntime is a one-line :class:`~kdbench.errors.ConfigError`.
    """
    import kdbench
    from kdbench.benchmark.jobs import load_cases, load_trained
    from kdbench.benchmark.store import RunStore, check_folder, write_atomic

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: unknown (use {' or '.join(FORMATS)})")
    run_dir = Path(run_dir)
    job = _finished_job(run_dir, job_id)
    path = Path(out) if out is not None else run_dir / EXPORTS / f"{job_id}{FORMATS[fmt]}"
    if path.is_dir():
        raise ConfigError(f"--out {path}: a folder; give the exported model's file name")
    check_folder(path.parent, "exported model")
    if fmt == "onnx":
        _onnxruntime()
    store = RunStore(run_dir)
    config = store.read_job(job_id)["config"]
    model = load_trained(store, job_id, torch.device("cpu"))
    cases = load_cases(config, "test") or load_cases(config, "train")
    example = example_input(config, cases[0])
    _write(model, example, fmt, path)

    with torch.no_grad():
        reference = model(example).numpy()
    exported = _runner(fmt, path, 1)(example.numpy())
    single = example[:1].numpy()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one_thread = _latency(_runner(fmt, path, 1), single, runs, warmup)
    finally:
        torch.set_num_threads(previous)
    default = _latency(_runner(fmt, path, None), single, runs, warmup)
    meta = job["meta"]
    metadata = {**preprocessing(config), "model": config["model"]["name"], "width": config["model"]["width"],
                "source": {"run": str(run_dir.resolve()), "job": job_id, "kind": job["kind"],
                           "method": meta.get("method"), "teacher": meta.get("teacher_label"),
                           "dataset": meta.get("dataset"), "fold": meta.get("fold"), "seed": meta.get("seed")},
                "kdbench": kdbench.__version__, "torch": torch.__version__}
    result = {
        "path": str(path), "format": fmt, "job": job_id, "metadata": metadata,
        "checked_on": {"case": cases[0].case_id, "input": list(example.shape)},
        "max_abs_diff": float(np.abs(exported - reference).max()),
        "latency_ms": one_thread, "latency_default_threads_ms": default,
        "latency": {"runtime": "onnxruntime CPUExecutionProvider" if fmt == "onnx" else f"torch {torch.__version__}",
                    "batch": 1, "runs": runs, "warmup": warmup, "statistic": "median",
                    "default_threads": "onnxruntime's default (one per physical core)" if fmt == "onnx"
                    else f"torch.get_num_threads() = {previous}"},
    }
    text = json.dumps(result, indent=2)
    write_atomic(path.with_name(path.name + ".json"), text)
    record = run_dir / EXPORTS / f"{job_id}{FORMATS[fmt]}.json"
    if record != path.with_name(path.name + ".json"):
        write_atomic(record, text)
    return result


def export_records(run_dir: str | Path, fmt: str = "onnx") -> dict[str, dict]:
    """The run's export records of format ``fmt`` by job id (``RUN_DIR/exports/*.json``); unreadable ones are skipped."""
    records = {}
    for path in sorted((Path(run_dir) / EXPORTS).glob(f"*{FORMATS[fmt]}.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("format") == fmt and "job" in record:
            records[record["job"]] = record
    return records
