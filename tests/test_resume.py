"""Checkpoint and resume: a training job stopped mid-way ends with the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kdbench.benchmark.train import CHECKPOINT, seed_everything, train_model
from kdbench.datasets.phantom import Phantom
from kdbench.errors import KdbenchNote
from kdbench.methods import create_method
from kdbench.models import create_model

RECIPE = {"epochs": 3, "batch_size": 4, "optimizer": "adam", "lr": 1e-3, "min_lr": 1e-6, "weight_decay": 0.0,
          "schedule": "cosine", "max_steps": 8, "augmentation": {"rotate": True, "flip": True}}
"""12 slices in batches of 4: 3 steps an epoch, stopped by max_steps inside the third epoch."""


class Stop(Exception):
    """Stands for a kill between two steps."""


def cases():
    dataset = Phantom(image_size=32, cases=3, slices=4)
    return [dataset.load_case(c) for c in dataset.case_ids()]


def train(method: str | None, checkpoint: Path | None = None, stop: int | None = None):
    """Seed, build and train a tinyunet (distilled by ``method``); returns its and the method's
    weights and the log, or ``None`` weights when stopped after step ``stop``."""
    seed_everything(0)
    student = create_model("tinyunet", in_channels=1, num_classes=3, width=0.5)
    teacher = built = None
    if method:
        teacher = create_model("tinyunet", in_channels=1, num_classes=3)
        built = create_method(method, student_roles=student.feature_roles, teacher_roles=teacher.feature_roles,
                              num_classes=3)
    records = []

    def progress(step, total):
        if step == stop:
            raise Stop

    try:
        train_model(student, cases(), RECIPE, 0, torch.device("cpu"), built, teacher, log=records.append,
                    progress=progress, checkpoint=checkpoint, checkpoint_every=0.0)
    except Stop:
        return None, records
    return {**student.state_dict(), **{f"method.{k}": v for k, v in (built.state_dict() if built else {}).items()}}, \
        records


def same(a, b) -> bool:
    """Tensors equal bit for bit; dicts and lists (a method's extra state, e.g. SKD's critic
    optimiser) compared item by item."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert all(same(a[k], b[k]) for k in a), [k for k in a if not same(a[k], b[k])][:3]


# at an epoch's end; mid-epoch, with an adapter; with SKD's lazily built critic and its own optimiser
@pytest.mark.parametrize("method,stop", [(None, 4), ("fitnet", 6), ("skd", 5)])
def test_resumed_run_ends_with_the_uninterrupted_weights(tmp_path, method, stop):
    want, want_log = train(method)
    stopped, _ = train(method, tmp_path, stop)
    assert stopped is None and (tmp_path / CHECKPOINT).exists()
    got, got_log = train(method, tmp_path)
    assert got_log[0] == {"event": "resume", "step": stop - 1, "epoch": (stop - 2) // 3}  # saved after step stop-1
    assert_same(want, got)
    # the resumed epochs' means include the steps trained before the stop (kept in the checkpoint)
    epochs = [r for r in got_log if r["event"] == "epoch"]
    assert epochs == [r for r in want_log if r["event"] == "epoch"][-len(epochs):]


def test_unreadable_checkpoint_is_ignored_with_a_warning(tmp_path):
    want, _ = train(None)
    (tmp_path / CHECKPOINT).write_bytes(b"half a checkpoint")
    with pytest.warns(KdbenchNote, match="ignoring the checkpoint .*training restarts from step 0"):
        got, log = train(None, tmp_path)
    assert log[0]["event"] != "resume"
    assert_same(want, got)


SCRIPT = """
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
import test_resume as t
t.RECIPE.update(epochs=14, max_steps=40)
out, checkpoint = Path(sys.argv[1]), (Path(sys.argv[2]) if sys.argv[2] != "-" else None)
t.seed_everything(0)
model = t.create_model("tinyunet", in_channels=1, num_classes=3, width=0.5)
log = lambda record: open(out / "log.jsonl", "a").write(json.dumps(record) + "\\n")
t.train_model(model, t.cases(), t.RECIPE, 0, torch.device("cpu"), log=log, checkpoint=checkpoint,
              checkpoint_every=0.0, progress=lambda step, total: time.sleep(0.1))
torch.save(model.state_dict(), out / "final.pt")
"""


def launch(out: Path, checkpoint: Path | None) -> subprocess.Popen:
    out.mkdir()
    script = SCRIPT.format(tests=str(Path(__file__).parent))
    return subprocess.Popen([sys.executable, "-c", script, str(out), str(checkpoint or "-")],
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_killed_training_process_resumes_to_identical_weights(tmp_path):
    checkpoint = tmp_path / "checkpoint"
    uninterrupted = launch(tmp_path / "uninterrupted", None)
    killed = launch(tmp_path / "killed", checkpoint)
    deadline = time.monotonic() + 300
    while not (checkpoint / CHECKPOINT).exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # a few more steps and saves
    os.kill(killed.pid, signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL and not (tmp_path / "killed" / "final.pt").exists()
    rerun = launch(tmp_path / "rerun", checkpoint)
    assert rerun.wait(timeout=300) == 0 and uninterrupted.wait(timeout=300) == 0
    first = json.loads((tmp_path / "rerun" / "log.jsonl").read_text().splitlines()[0])
    assert first["event"] == "resume" and 0 < first["step"] < 40
    assert_same(torch.load(tmp_path / "uninterrupted" / "final.pt"), torch.load(tmp_path / "rerun" / "final.pt"))
