"""What each kind of job does, given its config and a staging directory to write into.

Job kinds are registered like methods (``@register_job_kind("teacher")``); each takes
``(job, store, out, device, progress)``, writes its artefacts into ``out`` and returns
a summary for ``job.json``.  See :mod:`kdbench.benchmark.plan` for what each kind is.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from kdbench.benchmark.evaluate import evaluate_model
from kdbench.benchmark.profile import device_name, profile_model
from kdbench.benchmark.splits import dataset_split
from kdbench.benchmark.store import RunStore, one_line, write_atomic
from kdbench.benchmark.train import seed_everything, train_model
from kdbench.datasets import create_dataset
from kdbench.datasets.base import Case
from kdbench.errors import CheckpointError
from kdbench.lock import environment_drift
from kdbench.methods import create_method
from kdbench.methods.base import Method
from kdbench.models import create_model
from kdbench.registry import Registry

CHECKPOINT = "checkpoint.pt"


def build_model(config: dict) -> nn.Module:
    """The model a job config describes (``name``, ``width``, channels, options)."""
    return create_model(config["name"], in_channels=config["in_channels"], num_classes=config["num_classes"],
                        width=config["width"], **config.get("options", {}))


@lru_cache(maxsize=8)
def _dataset(config_json: str):
    data = json.loads(config_json)
    targets = {k: tuple(v) for k, v in data["targets"].items()}
    return create_dataset(data["name"], root=data["root"], image_size=data["image_size"], targets=targets,
                          **data["options"])


def dataset_of(config: dict):
    """The dataset of a job config (built once per process)."""
    return _dataset(json.dumps(config["dataset"], sort_keys=True))


def split_of(config: dict) -> dict[str, list[str]]:
    """The job's train/test case ids (the dataset's own split conventions, see ``dataset_split``)."""
    split = config["split"]
    return dataset_split(dataset_of(config), split["folds"], split["fold"], split["seed"],
                         split["test_fraction"], split.get("max_cases"))


def load_cases(config: dict, part: str) -> list[Case]:
    dataset = dataset_of(config)
    return [dataset.load_case(c) for c in split_of(config)[part]]


def build_network(kind: str, config: dict, part: Callable[[str], nn.Module]) -> nn.Module:
    """The network a training or teacher-source job describes: an ensemble or team assembled
    from ``part(job_id)`` of its members, else the job's (untrained) model."""
    if kind == "ensemble":
        return ensemble_of([part(m) for m in config["members"]])
    if kind == "team":
        from kdbench.teachers.team import TeamTeacher

        assistants = {name: part(j) for name, j in config["assistants"].items()}
        return TeamTeacher(part(config["teacher"]), assistants.get("ta_f"), assistants.get("ta_b"),
                           sc=config.get("sc", True))
    return build_model(config["model"])


def ensemble_of(members: list[nn.Module]) -> nn.Module:
    """The ensemble teacher of ``members``; in an ensemble with a 3D member, each 2D member
    predicts a volume tri-planarly (Noothout et al.'s dilated network)."""
    from kdbench.teachers.ensemble import EnsembleTeacher

    if any(_is_3d(m) for m in members):
        from kdbench.benchmark.inference import TriPlanar

        members = [m if _is_3d(m) else TriPlanar(m) for m in members]
    return EnsembleTeacher(members)


def _is_3d(model: nn.Module) -> bool:
    """Whether a network convolves volumes (any ``Conv3d``)."""
    return any(isinstance(m, nn.Conv3d) for m in model.modules())


def load_trained(store: RunStore, job_id: str, device: torch.device) -> nn.Module:
    """A finished job's network: a trained model (``weights_only=True``), or the
    ensemble or team a teacher-source job assembled from trained ones.  The checkpoint is
    read first, so a run exported without checkpoints fails before any model is built; a
    checkpoint that cannot be loaded is a one-line :class:`~kdbench.errors.CheckpointError`."""
    record = store.read_job(job_id)
    state = None
    if record["kind"] not in ("ensemble", "team"):
        path = store.job_dir(job_id) / CHECKPOINT
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except FileNotFoundError:
            raise
        except pickle.UnpicklingError as exc:
            if "Weights only load failed" not in str(exc):  # not a refusal: a corrupt file
                raise CheckpointError(f"{path}: cannot be loaded (not a checkpoint: {one_line(str(exc))[:200]})") from None
            raise CheckpointError(f"{path}: cannot be loaded (it holds objects other than tensors, which "
                                  "weights_only loading refuses; replace it by rerunning its job)") from None
        except Exception as exc:  # a corrupt or truncated file
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise CheckpointError(f"{path}: cannot be loaded ({type(exc).__name__}: {first[:200]})") from None
    model = build_network(record["kind"], record["config"], lambda part: load_trained(store, part, device))
    if state is not None:
        model.load_state_dict(state)
    return model.to(device).eval()


class JsonLog:
    """``log.jsonl`` of one job, appended across resumes.

    Training logs ``{"event": "start"}`` when it begins at step 0 and ``{"event": "resume",
    "step": s}`` when it continues from a checkpoint saved at step ``s``.  A start empties the
    log (a checkpoint that could not be used is history of nothing); a resume keeps every record
    up to step ``s`` and drops those logged after it by the killed attempt, which the resumed run
    repeats.  So a job resumed at steps 167 and 357 keeps the curve of steps 1–356 and one resume
    event for each.
    """

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, record: dict) -> None:
        event = record.get("event")
        if event in ("start", "resume"):
            self._rewind(0 if event == "start" else record["step"])
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")

    def _rewind(self, step: int) -> None:
        """Keep the records at or before ``step`` (all of them but the killed attempt's tail)."""
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by the kill
                continue
            if isinstance(record, dict) and step > 0 and record.get("step", 0) <= step:
                kept.append(line)
        write_atomic(self.path, "".join(f"{line}\n" for line in kept))


JOB_KINDS = Registry("job kind")
"""Job kind → the function that runs it: ``run(job, store, out, device, progress) -> summary``."""
register_job_kind = JOB_KINDS.register


def _train(job, store: RunStore, model: nn.Module, out: Path, device: torch.device, progress, **extra) -> dict:
    """Train ``model`` for ``job``: resumable from ``store.checkpoint_dir(job.id)`` (saved every
    ``KDBENCH_CHECKPOINT_SECONDS``, default 300), compiled when the run asked for it."""
    from kdbench.datasets.patches import training_data

    config = job.config
    cases = load_cases(config, "train")
    checkpoint = store.checkpoint_dir(job.id)
    extra.update(data=training_data(config, cases), checkpoint=checkpoint, checkpoint_every=checkpoint_seconds(),
                 compile=bool(store.options.get("compile", False)))
    summary = train_model(model, cases, config["train"], training_seed(config), device,
                          log=JsonLog(checkpoint / LOG), progress=progress, **extra)
    _trained_outputs(store, job, model, out)
    return {"train_cases": len(cases), **summary}


LOG = "log.jsonl"
"""A training job's log: beside its resumable state while it trains (a kill keeps the history),
then in the job directory."""


def checkpoint_seconds() -> float:
    """Seconds between two saves of a training job's resumable state (``KDBENCH_CHECKPOINT_SECONDS``, 300)."""
    return float(os.environ.get("KDBENCH_CHECKPOINT_SECONDS", 300))


def _trained_outputs(store: RunStore, job, model: nn.Module, out: Path) -> None:
    """Copy the job's log into ``out`` and save the weights (``checkpoint.pt``, weights only)."""
    shutil.copyfile(store.checkpoint_dir(job.id) / LOG, out / LOG)
    torch.save(model.state_dict(), out / CHECKPOINT)


def training_seed(config: dict) -> int:
    """The seed a training job runs with: the grid's, offset per ensemble member."""
    return (config["seed"] + 1_000_003 * config.get("member", 0)) % 2**32


@register_job_kind("teacher")
def run_teacher(job, store: RunStore, out: Path, device: torch.device, progress: Callable[[int, int], None]) -> dict:
    """Train a network on the labels (a grid teacher, or an ensemble member with its ``loss``)."""
    seed_everything(training_seed(job.config))  # weight initialisation is part of the seeded run
    model = build_model(job.config["model"])
    return _train(job, store, model, out, device, progress, supervised=job.config.get("loss", "dice_ce"))


@register_job_kind("assistant")
def run_assistant(job, store: RunStore, out: Path, device: torch.device, progress) -> dict:
    """Train a PLC-KD assistant on transformed images (FIG from the teacher's mistakes, or BT)."""
    from kdbench.teachers.bt import BTTransform
    from kdbench.teachers.fig import FIGTransform

    config = job.config
    seed_everything(training_seed(config))
    model = build_model(config["model"])
    options = {k: v for k, v in config["transform"].items() if k != "kind"}
    if config["transform"]["kind"] == "fig":
        transform = FIGTransform(load_trained(store, config["teacher"], device), **options)
    else:
        transform = BTTransform(**options)
    return _train(job, store, model, out, device, progress, batch_transform=transform)


def _student(job, store: RunStore, teacher: nn.Module | None) -> tuple[nn.Module, Method]:
    """The student network and its method, built from the job's seed.  The teacher is loaded
    before (its build draws from the random stream), so the student and the method's own
    parameters (adapters) start alike whatever teacher they are paired with, alone or in lockstep."""
    config = job.config
    seed_everything(config["seed"])
    model = build_model(config["model"])
    method = create_method(config["method"]["name"], student_roles=model.feature_roles,
                           teacher_roles=getattr(teacher, "feature_roles", None),
                           num_classes=config["model"]["num_classes"], **config["method"]["params"])
    init = method.initial_weights(store, config) if hasattr(method, "initial_weights") else None
    if init is not None:
        model.load_state_dict(torch.load(init, map_location="cpu", weights_only=True))
    return model, method


@register_job_kind("student")
def run_student(job, store: RunStore, out: Path, device: torch.device, progress) -> dict:
    """Distil a student with its method from its teacher source (none for ``none``)."""
    config = job.config
    teacher = load_trained(store, config["teacher"], device) if config["teacher"] else None
    model, method = _student(job, store, teacher)
    memory = _memory_profile(config, teacher, model, method, out, device)
    summary = _train(job, store, model, out, device, progress, method=method, teacher=teacher)
    return {**summary, "memory": memory} if memory else summary


def run_lockstep(jobs: list, store: RunStore, device: torch.device,
                 progress: Callable[[str, int, int], None] = lambda job, step, total: None
                 ) -> dict[str, BaseException | None]:
    """Train the student jobs of one lockstep group together (:func:`~kdbench.benchmark.lockstep.lockstep_key`:
    one teacher source, data, fold, seed and recipe) and put each finished one in place as
    :func:`execute_job` would, ``job.json`` recording the group (``lockstep``).

    The caller holds every job's claim.  Returns each job's error (``None``: done); a job that
    fails (diverges) fails alone and the others finish.
    """
    from kdbench.benchmark.train import Member, train_models
    from kdbench.datasets.patches import training_data

    started = time.time()
    config = jobs[0].config
    teacher = load_trained(store, config["teacher"], device) if config["teacher"] else None
    members = []
    for job in jobs:
        model, method = _student(job, store, teacher)
        members.append(Member(model, method, log=JsonLog(store.checkpoint_dir(job.id) / LOG),
                              progress=lambda step, total, job=job: progress(job.id, step, total),
                              checkpoint=store.checkpoint_dir(job.id)))
    cases = load_cases(config, "train")
    summaries = train_models(members, cases, config["train"], training_seed(config), device, teacher,
                             data=training_data(config, cases), checkpoint_every=checkpoint_seconds(),
                             compile=bool(store.options.get("compile", False)))
    errors: dict[str, BaseException | None] = {}
    for job, member, summary in zip(jobs, members, summaries):
        if member.error is not None:
            errors[job.id] = member.error
            continue
        try:
            with store.staging(job.id) as out:
                _trained_outputs(store, job, member.model, out)
                _write_record(job, out, {"train_cases": len(cases), **summary}, device, started,
                              lockstep=[j.id for j in jobs])
            shutil.rmtree(store.checkpoint_dir(job.id), ignore_errors=True)
            errors[job.id] = None
        except Exception as exc:  # this job's outputs could not be written (a full disk): it alone fails
            errors[job.id] = exc
    return errors


def _memory_profile(config: dict, teacher, model: nn.Module, method, out: Path, device: torch.device) -> dict | None:
    """For a 3D student job, peak memory of the teacher forward, the student forward and the
    distillation terms + backward at the job's batch and patch (``memory.json``; EMKD's stated
    obstacle to 3D distillation, measured).  Copies train, so the job's own result is unchanged."""
    volume = config.get("volume") or {}
    if volume.get("dims") != 3:
        return None
    import copy

    from kdbench.benchmark.profile import profile_distillation

    shape = (config["train"]["batch_size"], config["model"]["in_channels"], *volume["patch"])
    memory = profile_distillation(teacher, copy.deepcopy(model), copy.deepcopy(method), shape, device, steps=2)
    write_atomic(out / "memory.json", json.dumps(memory, indent=2))
    return memory


def _assemble(job, store: RunStore, out: Path, device: torch.device, progress) -> dict:
    """A teacher source built from finished jobs: nothing trains; it records what it holds."""
    parts = job.config.get("members") or [job.config["teacher"], *job.config["assistants"].values()]
    return {"parts": {p: store.read_job(p)["summary"].get("final", {}).get("loss") for p in parts}}


register_job_kind("ensemble")(_assemble)
register_job_kind("team")(_assemble)


@register_job_kind("evaluate")
def run_evaluate(job, store: RunStore, out: Path, device: torch.device, progress) -> dict:
    """Per-case metrics of a trained model (or an ensemble) on its fold's test cases → ``metrics.csv``."""
    config = job.config
    model = load_trained(store, config["train"], device)
    cases = load_cases(config, "test")
    targets = {k: tuple(v) for k, v in config["dataset"]["targets"].items()}
    started = time.perf_counter()
    frame = evaluate_model(model, cases, targets, device, inference=config.get("inference"))
    seconds = time.perf_counter() - started
    frame.to_csv(out / "metrics.csv", index=False)
    return {"test_cases": len(cases), "seconds_per_case": seconds / max(1, len(cases)),
            "spacing_unit": getattr(dataset_of(config), "spacing_unit", "mm")}


@register_job_kind("profile")
def run_profile(job, store: RunStore, out: Path, device: torch.device, progress) -> dict:
    """Params, FLOPs, latency, peak memory of an architecture (or a whole ensemble) → ``profile.json``."""
    config = job.config
    if "ensemble" in config["model"]:
        model = ensemble_of([build_model(m) for m in config["model"]["ensemble"]])
    else:
        model = build_model(config["model"])
    result = profile_model(model, tuple(config["input"]), device)
    (out / "profile.json").write_text(json.dumps(result, indent=2))
    return {}


def execute_job(job, store: RunStore, device: torch.device, progress=lambda step, total: None) -> None:
    """Run ``job`` in a staging directory and move it into place when it is complete.

    The caller holds the job's claim (see :func:`kdbench.benchmark.executors.run_job`);
    ``job.json`` is written last, fsynced with everything else before the rename, and the
    job's training checkpoint is removed once the job is in place.
    """
    started = time.time()
    run = JOB_KINDS.get(job.kind).obj
    with store.staging(job.id) as out:
        _write_record(job, out, run(job, store, out, device, progress), device, started)
    shutil.rmtree(store.checkpoint_dir(job.id), ignore_errors=True)


def _write_record(job, out: Path, summary: dict, device: torch.device, started: float, **extra) -> None:
    """``job.json``: the job, its summary, where and with what it ran, when and for how long."""
    record = {**job.to_dict(), "summary": summary, "device": device_name(device),
              "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "torch": torch.__version__,
              "environment": environment_drift()["differs"], "started": started,
              "seconds": round(time.time() - started, 3), **extra}
    write_atomic(out / "job.json", json.dumps(record, indent=2, default=str))
