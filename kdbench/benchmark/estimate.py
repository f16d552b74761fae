"""How long a plan will take on this device, from a few measured steps of each kind of job.

A training job's time is its planned steps times the time of one step, measured by
running :func:`~kdbench.benchmark.train.train_model` itself for :data:`MEASURED_STEPS`
steps (the first one untimed) on random data, with the job's model, method and teacher
network (random weights).  Each distinct (model, method, teacher, input) is measured once
per process.  On a GPU the steps run at the job's batch and image (or 3D patch) size; on a
CPU at a batch of at most 2, an image of at most 64² or a patch of at most 32³, and the time
is scaled by batch × pixels (convolutions cost in proportion to both), so a paper grid is
estimated in seconds.

Planned steps come from the job's recipe and its training slices (the data is read from
the preparation cache, never prepared here; ``max_steps`` bounds them when the data is
not prepared yet).  Evaluation and profiling are rough: a forward pass costs a third of a
training step per image; profiling runs about 60 forward passes.  A job whose time
cannot be estimated (data not prepared and no ``max_steps``, a step that fails) is counted
and named in the estimate line.  With K workers the total is divided by K.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from kdbench.datasets.base import Case

MEASURED_STEPS = 3
"""Training steps run per distinct job kind (the first is a warm-up)."""
CPU_BATCH, CPU_SIZE, CPU_PATCH = 2, 64, 32
"""The largest batch, image side and 3D patch side measured on a CPU."""
PROFILE_FORWARDS = 60
TRAINING = ("teacher", "assistant", "student")

_MEASURED: dict[str, float] = {}
"""Seconds per training step and image pixel, by measured configuration (this process)."""


@dataclass
class Estimate:
    """A plan's estimated seconds on one device, and how many of its jobs it could not estimate."""

    seconds: float
    device_type: str
    unknown: int = 0
    measured: int = 0


def human(seconds: float) -> str:
    """``~42 s``, ``~12 min``, ``~3.5 h``, ``~4 days``, ``~3 weeks``."""
    if seconds < 90:
        return f"~{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"~{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"~{seconds / 3600:.1f} h"
    if seconds < 14 * 86400:
        return f"~{round(seconds / 86400)} days"
    return f"~{round(seconds / 604800)} weeks"


def _slices(config: dict, part: str) -> int | None:
    """Slices of the job's ``part`` cases, or ``None`` when its data is not prepared yet."""
    from kdbench.benchmark.jobs import dataset_of, load_cases
    from kdbench.datasets.prepare import PreparedDataset, read_manifest

    dataset = dataset_of(config)
    if isinstance(dataset, PreparedDataset):
        ready = set(read_manifest(dataset)["cases"])
        if not ready >= {s.case_id for s in dataset.discovery().sources}:
            return None
    return sum(int(case.image.shape[0]) for case in load_cases(config, part))


def planned_steps(config: dict) -> int | None:
    """Training steps of a training job (as ``train_model`` counts them), ``None`` if unknown.
    A 3D job's epoch is ``patches_per_case`` patches of every training case."""
    recipe = config["train"]
    slices = _slices(config, "train")
    volume = config.get("volume") or {}
    if slices is not None and volume.get("dims") == 3:
        from kdbench.benchmark.jobs import split_of

        slices = len(split_of(config)["train"]) * volume["patches_per_case"]
    if slices is None:
        return recipe.get("max_steps") or None
    steps = recipe["epochs"] * max(1, slices // max(1, min(recipe["batch_size"], slices)))
    return min(steps, recipe["max_steps"]) if recipe.get("max_steps") else steps


def _teacher(jobs: dict, job_id: str | None):
    """The teacher network a job id stands for, with random weights."""
    from kdbench.benchmark.jobs import build_network

    if job_id is None:
        return None
    job = jobs[job_id]
    return build_network(job.kind, job.config, lambda part: _teacher(jobs, part))


def _step_seconds(job, jobs: dict, device: torch.device) -> float:
    """Seconds per training step of ``job`` at its batch and image size."""
    from kdbench.benchmark.jobs import build_model
    from kdbench.benchmark.train import train_model
    from kdbench.methods import create_method

    config = job.config
    recipe, model_config = config["train"], config["model"]
    patch = (config.get("volume") or {}).get("patch")
    batch, shape = recipe["batch_size"], list(patch or [recipe["image_size"]] * 2)
    cap = max(1, CPU_SIZE if not patch else CPU_PATCH)
    measured_batch, measured_shape = (batch, shape) if device.type == "cuda" else \
        (min(batch, CPU_BATCH), [min(n, cap) for n in shape])
    key = json.dumps([model_config, config.get("method"), config.get("loss"), config.get("transform"),
                      _teacher_key(jobs, config.get("teacher")), measured_batch, measured_shape, device.type],
                     sort_keys=True, default=str)
    if key not in _MEASURED:
        model = build_model(model_config)
        extra = {}
        if job.kind == "student":
            teacher = _teacher(jobs, config["teacher"])
            method = create_method(config["method"]["name"], student_roles=model.feature_roles,
                                   teacher_roles=getattr(teacher, "feature_roles", None),
                                   num_classes=model_config["num_classes"], **config["method"]["params"])
            extra = {"method": method, "teacher": teacher}
        elif job.kind == "teacher":
            extra = {"supervised": config.get("loss", "dice_ce")}
        rng = np.random.default_rng(0)
        n = measured_batch * MEASURED_STEPS
        images = rng.random((n, model_config["in_channels"], *measured_shape), dtype=np.float32)
        labels = rng.integers(0, model_config["num_classes"], (n, *measured_shape))
        case = Case("estimate", images, labels, (1.0, 1.0, 1.0))
        if patch:  # 3D: the samples are the patches themselves
            extra["data"] = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in zip(images, labels)]
        stamps = []

        def stamp(step: int, total: int) -> None:  # steps are queued on a GPU: wait for each
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            stamps.append(time.perf_counter())

        train_model(model, [case], {**recipe, "epochs": 1, "max_steps": MEASURED_STEPS, "batch_size": measured_batch},
                    0, device, progress=stamp, **extra)
        per_step = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
        _MEASURED[key] = per_step / (measured_batch * math.prod(measured_shape))
    return _MEASURED[key] * batch * math.prod(shape)


def _teacher_key(jobs: dict, job_id: str | None):
    """What a teacher source is, as a network (its models), for the measurement cache."""
    if job_id is None:
        return None
    job = jobs[job_id]
    if job.kind in ("ensemble", "team"):
        parts = job.config.get("members") or [job.config["teacher"], *job.config["assistants"].values()]
        return [job.kind, [_teacher_key(jobs, p) for p in parts]]
    return job.config["model"]


def _per_image(job, jobs: dict, device: torch.device) -> float:
    """Seconds of one forward pass of a training (or teacher-source) job's network on one image."""
    if job.kind in ("ensemble", "team"):
        parts = job.config.get("members") or [job.config["teacher"], *job.config["assistants"].values()]
        return sum(_per_image(jobs[p], jobs, device) for p in parts)
    return _step_seconds(job, jobs, device) / job.config["train"]["batch_size"] / 3


def _forward_passes(config: dict) -> int | None:
    """Forward passes an evaluate job makes over its test cases (``None``: data not prepared):
    a slice each, a window each of the sliding window (MONAI's tiling at the job's overlap), or
    every axial, coronal and sagittal slice for tri-planar inference."""
    from kdbench.benchmark.jobs import load_cases

    inference = config.get("inference") or {}
    mode = inference.get("mode", "slices")
    if _slices(config, "test") is None:
        return None
    shapes = [(case.image.shape[0], *case.image.shape[2:]) for case in load_cases(config, "test")]
    if mode == "slices":
        return sum(shape[0] for shape in shapes)
    if mode == "tri_planar":
        return sum(sum(shape) for shape in shapes)
    patch, overlap = inference["patch"], inference.get("overlap", 0.5)
    return sum(math.prod(math.ceil(max(0, n - p) / max(1, round(p * (1 - overlap)))) + 1
                         for n, p in zip(shape, patch)) for shape in shapes)


def job_seconds(job, jobs: dict, device: torch.device) -> float | None:
    """A job's estimated seconds on ``device`` (``None``: cannot be estimated)."""
    config = job.config
    if job.kind in TRAINING:
        steps = planned_steps(config)
        return None if steps is None else steps * _step_seconds(job, jobs, device)
    if job.kind == "evaluate":
        passes = _forward_passes(config)
        return None if passes is None else passes * _per_image(jobs[config["train"]], jobs, device)
    if job.kind == "profile":
        trained = next((j for j in jobs.values() if j.kind in (*TRAINING, "ensemble") and j.meta.get("profile") == job.id),
                       None)
        return None if trained is None else PROFILE_FORWARDS * _per_image(trained, jobs, device)
    return 0.0


def estimate_plan(plan_jobs: list, todo: list, device: torch.device) -> Estimate:
    """Estimate the jobs ``todo`` of a plan whose jobs are ``plan_jobs`` on ``device``; a job whose
    step fails to run here (e.g. a diverging hyper-parameter) is counted as not estimated."""
    jobs = {j.id: j for j in plan_jobs}
    seconds, unknown = 0.0, 0
    for job in todo:
        try:
            value = job_seconds(job, jobs, device)
        except Exception:  # a job that cannot even take a step fails when it runs, with its own message
            value = None
        if value is None:
            unknown += 1
        else:
            seconds += value
    return Estimate(seconds, device.type, unknown, len(_MEASURED))


def estimate_lines(estimate: Estimate, budget: str, device_name: str, workers: int, jobs: int) -> list[str]:
    """``estimated time: ~X on <device>``, and a warning when a paper budget runs on a CPU."""
    if not jobs:
        return []
    total = human(estimate.seconds / max(1, workers))
    share = f", {workers} workers" if workers > 1 else ""
    if estimate.unknown:  # never a total that leaves jobs out: the known part is a lower bound
        known = jobs - estimate.unknown
        total = f"unknown: {estimate.unknown} of {jobs} jobs cannot be estimated yet (data not prepared, or a step " \
                f"failed)" + (f"; the other {known} take {total}" if known else "")
        lines = [f"estimated time: {total} on {device_name}{share}"]
    else:
        lines = [f"estimated time: {total} on {device_name} ({jobs} jobs{share})"]
    if budget == "paper" and estimate.device_type == "cpu":
        lines.append(f"[yellow]warning:[/] budget paper on a CPU: {jobs} jobs, estimated {total}. For a first look "
                     "use --budget quick or --budget smoke; for the paper's numbers run on a GPU "
                     "(--workers K or --executor slurm to use several).")
    return lines
