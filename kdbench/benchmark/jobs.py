"""What each kind of job does, given its config and a staging directory to write into."""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from kdbench.benchmark.evaluate import evaluate_model
from kdbench.benchmark.profile import device_name, profile_model
from kdbench.benchmark.splits import dataset_split
from kdbench.benchmark.store import RunStore
from kdbench.benchmark.train import seed_everything, train_model
from kdbench.datasets import create_dataset
from kdbench.datasets.base import Case
from kdbench.methods import create_method
from kdbench.models import create_model

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


def load_trained(store: RunStore, job_id: str, device: torch.device) -> nn.Module:
    """A finished training job's model with its weights (``weights_only=True``)."""
    config = store.read_job(job_id)["config"]
    model = build_model(config["model"])
    state = torch.load(store.job_dir(job_id) / CHECKPOINT, map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()


class JsonLog:
    """Append-only ``log.jsonl`` of one job."""

    def __init__(self, path: Path):
        self.path = path

    def __call__(self, record: dict) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")


def run_train(job, store: RunStore, out: Path, device: torch.device, progress: Callable[[int, int], None]) -> dict:
    """Train a teacher or a student; writes the model-only checkpoint and the log."""
    config = job.config
    seed_everything(config["seed"])  # weight initialisation is part of the seeded run
    model = build_model(config["model"])
    method = teacher = None
    if job.kind == "student":
        teacher_roles = None
        if config["teacher"]:
            teacher = load_trained(store, config["teacher"], device)
            teacher_roles = teacher.feature_roles
        method = create_method(config["method"]["name"], student_roles=model.feature_roles,
                               teacher_roles=teacher_roles, num_classes=config["model"]["num_classes"],
                               **config["method"]["params"])
    cases = load_cases(config, "train")
    summary = train_model(model, cases, config["train"], config["seed"], device, method=method, teacher=teacher,
                          log=JsonLog(out / "log.jsonl"), progress=progress)
    torch.save(model.state_dict(), out / CHECKPOINT)
    return {"train_cases": len(cases), **summary}


def run_evaluate(job, store: RunStore, out: Path, device: torch.device, progress) -> dict:
    """Per-case metrics of a trained model on its fold's test cases → ``metrics.csv``."""
    config = job.config
    model = load_trained(store, config["train"], device)
    cases = load_cases(config, "test")
    targets = {k: tuple(v) for k, v in config["dataset"]["targets"].items()}
    frame = evaluate_model(model, cases, targets, device)
    frame.to_csv(out / "metrics.csv", index=False)
    return {"test_cases": len(cases), "spacing_unit": getattr(dataset_of(config), "spacing_unit", "mm")}


def run_profile(job, store: RunStore, out: Path, device: torch.device, progress) -> dict:
    """Params, FLOPs, latency, peak memory of an architecture → ``profile.json``."""
    config = job.config
    model = build_model(config["model"])
    result = profile_model(model, tuple(config["input"]), device)
    (out / "profile.json").write_text(json.dumps(result, indent=2))
    return {}


RUNNERS = {"teacher": run_train, "student": run_train, "evaluate": run_evaluate, "profile": run_profile}


def execute_job(job, store: RunStore, device: torch.device, progress=lambda step, total: None) -> None:
    """Run ``job`` in a staging directory and move it into place when it is complete."""
    started = time.time()
    with store.staging(job.id) as out:
        summary = RUNNERS[job.kind](job, store, out, device, progress)
        record = {**job.to_dict(), "summary": summary, "device": device_name(device),
                  "threads": torch.get_num_threads(), "torch": torch.__version__, "started": started, "seconds": round(time.time() - started, 3)}
        (out / "job.json").write_text(json.dumps(record, indent=2, default=str))
