"""Training: the segmentation loss, augmentation, and one loop for teachers and students.

The recipe follows EMKD (Qin et al., IEEE TMI 2021, Sec. IV-A): Adam (β = 0.9, 0.999),
lr 1e-3 annealed by a cosine schedule to 1e-6, random rotation and flipping.  The
segmentation loss is cross-entropy + soft Dice (MONAI's ``DiceCELoss``).  A student
step (:class:`DistillStep`) taps the features its method asks for on both networks
(forward hooks), runs the teacher in inference mode, and adds the method's weighted terms
to the segmentation loss.  On CUDA the forward passes run under bf16 autocast.  Loss
terms stay on the device and reach the host once per log interval (:func:`train_model`), so a step never waits for the device.
A training job checkpoints its state every few minutes and resumes from it after a kill
with the same final weights as an uninterrupted run.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from kdbench.benchmark.store import atomic_path
from kdbench.datasets.base import Case, SliceDataset
from kdbench.errors import KdbenchNote, RunFailure
from kdbench.methods.base import Batch, Method, Outputs
from kdbench.models.roles import FeatureTaps

LOG_EVERY = 50
"""Steps between two ``step`` log records (and host reads of the loss terms); step 1 is logged too."""
CHECKPOINT = "state.pt"
"""The file, inside a job's checkpoint directory, holding its resumable training state."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) and ask for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` for the samples where the per-sample ``mask`` is true, else ``b``."""
    return torch.where(mask.view(-1, *(1,) * (a.dim() - 1)), a, b)


def augment_batch(image: torch.Tensor, label: torch.Tensor, generator: torch.Generator,
                  rotate: bool = True, flip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Random rotation by k·90° in the last two axes, then random flips of each spatial axis,
    drawn independently per sample and applied alike to the image ``(B, C, *spatial)`` and the
    label ``(B, *spatial)`` (2D or 3D), on their device.

    The EMKD recipe's "random rotation and flipping" (Qin et al. 2021, Sec. IV-A).  All random
    numbers of the batch are drawn at once from the CPU ``generator`` (``k`` per sample, then a
    flip bit per spatial axis, last axis first), so the result depends on the generator alone.
    Where the last two axes differ in length only the rotations by 0° and 180° are drawn.
    """
    n, spatial = image.shape[0], image.dim() - 2
    k = torch.randint(0, 4, (n,), generator=generator) if rotate else torch.zeros(n, dtype=torch.long)
    if image.shape[-1] != image.shape[-2]:
        k = k - k % 2
    flips = (torch.randint(0, 2, (n, spatial), generator=generator) if flip
             else torch.zeros(n, spatial, dtype=torch.long)).bool()
    # torch.rot90(x, k, (-2, -1)): flip the last axis if k ∈ {1, 2}, the one before if k ∈ {2, 3},
    # then swap the two if k is odd; the flips follow on axes -1, -2 (and -3 in 3D)
    ops = torch.cat([torch.stack([(k == 1) | (k == 2), k >= 2, k % 2 == 1], 1), flips], 1)
    if image.device.type == "cuda":
        ops = ops.pin_memory()
    ops = ops.to(image.device, non_blocking=True)
    for op, dim in ((0, -1), (1, -2)):
        image, label = _where(ops[:, op], image.flip(dim), image), _where(ops[:, op], label.flip(dim), label)
    if image.shape[-1] == image.shape[-2]:
        image = _where(ops[:, 2], image.transpose(-2, -1), image)
        label = _where(ops[:, 2], label.transpose(-2, -1), label)
    for i in range(spatial):
        image, label = (_where(ops[:, 3 + i], image.flip(-1 - i), image),
                        _where(ops[:, 3 + i], label.flip(-1 - i), label))
    return image, label


SEG_LOSSES = ("dice_ce", "ce", "dice", "none")
"""Segmentation losses a network can train with (``none``: the method brings its own)."""


class SegLoss(nn.Module):
    """The supervised loss: cross-entropy + soft Dice over all classes (MONAI ``DiceCELoss``,
    softmax, one-hot labels) by default; ``ce`` or ``dice`` alone for ensemble members
    trained "with CE and with soft Dice" (Noothout et al., Sec. 2.3)."""

    def __init__(self, kind: str = "dice_ce"):
        from monai.losses import DiceCELoss

        super().__init__()
        if kind not in SEG_LOSSES[:3]:
            raise ValueError(f"segmentation loss '{kind}': expected one of {', '.join(SEG_LOSSES[:3])}")
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True, lambda_dice=float(kind != "ce"),
                               lambda_ce=float(kind != "dice"))

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.loss(logits.float(), label[:, None])


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)


def lr_at(step: int, total: int, lr: float, min_lr: float, schedule: str) -> float:
    """Cosine annealing from ``lr`` at step 0 to ``min_lr`` at the last step (or constant)."""
    if schedule == "constant" or total <= 1:
        return lr
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * step / (total - 1)))


def _kept(t: torch.Tensor) -> torch.Tensor:
    """An inference-mode tensor as an fp32 tensor autograd may save (a copy)."""
    return t.float() if t.dtype != torch.float32 else t.clone()


class TeacherForward:
    """The teacher's side of a distillation step: ``forward(image, label) -> Outputs``.

    The teacher runs in inference mode (bf16 autocast on CUDA) and only the features in
    ``taps`` are kept, copied to fp32; a teacher with ``soft_targets(image, label, taps)`` (a
    PLC-KD team) gives label-aware outputs instead.  Students trained in lockstep share one
    forward with the union of their methods' taps (:func:`train_models`): the teacher's
    output depends on the batch alone, never on a student.  Call :meth:`close` to remove its
    feature hooks.
    """

    def __init__(self, teacher: nn.Module, taps: tuple[str, ...], device: torch.device, compile: bool = False):
        self.teacher, self.taps = teacher, tuple(dict.fromkeys(taps))
        self.soft = hasattr(teacher, "soft_targets")
        self.hooks = None if self.soft else FeatureTaps(teacher, self.taps)
        self.net = torch.compile(teacher) if compile and not self.soft else teacher
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch.device(device).type == "cuda")

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> Outputs:
        with torch.inference_mode(), self.autocast:
            if self.soft:
                out = self.teacher.soft_targets(image, label, self.taps)
            else:
                out = Outputs(self.net(image), dict(self.hooks.features))
                self.hooks.features.clear()
        return Outputs(_kept(out.logits), {k: _kept(v) for k, v in out.features.items()})

    def close(self) -> None:
        if self.hooks is not None:
            self.hooks.close()


class DistillStep:
    """One optimisation step of ``model`` on a batch: ``step(image, label, step, total)``.

    The teacher (when ``method`` needs one) runs through a :class:`TeacherForward` with the
    method's taps; pass ``teacher_out`` to a step to use a forward shared with other students
    instead (then build the step without a teacher).  The student runs with its taps, its
    segmentation loss (``seg_loss``, may be ``None``) and the method's terms are summed,
    back-propagated and stepped; then ``method.after_step`` runs.  On CUDA both forwards run
    under bf16 autocast (channels-last memory format was measured slower on an H100 for the
    quickstart pair and is not used).  ``compile=True`` wraps the networks with :func:`torch.compile`.  Returns the detached terms (and ``loss``, their sum,
    and the after-step values) as tensors on the device: nothing waits for the device.
    Call :meth:`close` (or use it as a context manager) to remove its feature hooks.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, method: Method | None = None,
                 teacher: nn.Module | None = None, seg_loss: nn.Module | None = None,
                 device: torch.device | str = "cpu", compile: bool = False):
        self.model, self.optimizer, self.method, self.seg_loss = model, optimizer, method, seg_loss
        self.device = torch.device(device)
        self.taps = tuple(method.taps) if method is not None else ()
        self.needs_teacher = method is not None and method.requires_teacher
        self.teacher = TeacherForward(teacher, self.taps, self.device, compile) \
            if teacher is not None and self.needs_teacher else None
        self.student_taps = FeatureTaps(model, self.taps)
        self.student = torch.compile(model) if compile else model
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def __call__(self, image: torch.Tensor, label: torch.Tensor, step: int, total: int,
                 teacher_out: Outputs | None = None) -> dict[str, torch.Tensor]:
        batch = Batch(image=image, label=label, step=step, total_steps=total)
        if self.teacher is not None:
            teacher_out = self.teacher(image, label)
        elif teacher_out is not None:  # a forward shared by students in lockstep: this method's taps only
            teacher_out = Outputs(teacher_out.logits, {k: v for k, v in teacher_out.features.items() if k in self.taps})
        if not self.needs_teacher:
            teacher_out = None
        with self.autocast:
            logits = self.student(image)
            student_out = Outputs(logits.float(), {k: v.float() for k, v in self.student_taps.features.items()})
            self.student_taps.features.clear()
            terms = {"seg": self.seg_loss(student_out.logits, label)} if self.seg_loss is not None else {}
            if self.method is not None:
                terms.update(self.method(student_out, teacher_out, batch))
        loss = sum(terms.values())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        extra = self.method.after_step(student_out, teacher_out, batch) if self.method is not None else {}
        return ({k: v.detach() for k, v in terms.items()} | {"loss": loss.detach()}
                | {k: v.detach() if torch.is_tensor(v) else torch.full((), v, device=self.device)
                   for k, v in extra.items()})

    def close(self) -> None:
        """Remove the feature hooks from the networks."""
        self.student_taps.close()
        if self.teacher is not None:
            self.teacher.close()

    def __enter__(self) -> "DistillStep":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EpochBatches(Sampler):
    """Batch indices of one epoch: a permutation drawn from ``(seed, epoch)`` alone, cut into
    ``batch_size`` batches (the last partial one dropped), from batch ``skip`` on.

    Set :attr:`epoch` and :attr:`skip` before iterating; a resumed epoch skips the batches it
    already trained on and sees the rest in the same order.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.skip = 0, 0

    def __len__(self) -> int:
        return self.n // self.batch_size

    def __iter__(self):
        seed = int(np.random.SeedSequence((self.seed, self.epoch)).generate_state(1)[0])
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(seed)).tolist()
        for b in range(self.skip, len(self)):
            yield order[b * self.batch_size:(b + 1) * self.batch_size]


def make_loader(data: Dataset, batches: EpochBatches, device: torch.device) -> DataLoader:
    """The loader of ``data`` in ``batches``, in this process, into pinned memory on CUDA (so that
    the copy to the device does not wait).  Worker processes were measured no faster on an
    H100 for in-memory phantom slices.  The loader draws its (unused) worker base seed from a
    generator of its own: from the global one, every new iterator would shift the global random
    stream, and a run resumed mid-epoch would draw differently (e.g. SKD's gradient penalty)."""
    return DataLoader(data, batch_sampler=batches, pin_memory=device.type == "cuda",
                      generator=torch.Generator().manual_seed(0))


def _rng_state(generator: torch.Generator, device: torch.device) -> dict:
    """Every random state training draws from, in a form ``torch.load(weights_only=True)`` reads."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "numpy": (name, keys.tolist(), pos, has_gauss, cached),
            "torch": torch.get_rng_state(), "generator": generator.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []}


def _set_rng_state(state: dict, generator: torch.Generator, keep_generator: bool = False) -> None:
    """Restore the random states of :func:`_rng_state` (all but ``generator`` with ``keep_generator``)."""
    name, keys, pos, has_gauss, cached = state["numpy"]
    random.setstate(state["python"])
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if not keep_generator:
        generator.set_state(state["generator"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Member:
    """One network trained by :func:`train_models`: a teacher, an assistant, or a student with its
    ``method``; ``log`` and ``progress`` are its own, ``checkpoint`` the directory of its resumable
    state (``None``: not resumable)."""

    model: nn.Module
    method: Method | None = None
    supervised: str = "dice_ce"
    log: Callable[[dict], None] = lambda record: None
    progress: Callable[[int, int], None] = lambda step, total: None
    checkpoint: Path | None = None
    # set by train_models
    optimizer: torch.optim.Optimizer | None = None
    train_step: DistillStep | None = None
    rng: dict | None = None
    step: int = 0
    epoch: int = 0
    terms: dict = field(default_factory=lambda: defaultdict(list))
    pending: list = field(default_factory=list)
    final: dict = field(default_factory=dict)
    error: BaseException | None = None

    @property
    def path(self) -> Path | None:
        return Path(self.checkpoint) / CHECKPOINT if self.checkpoint is not None else None


def train_model(
    model: nn.Module,
    cases: list[Case],
    recipe: dict,
    seed: int,
    device: torch.device,
    method: Method | None = None,
    teacher: nn.Module | None = None,
    log: Callable[[dict], None] = lambda record: None,
    progress: Callable[[int, int], None] = lambda step, total: None,
    supervised: str = "dice_ce",
    batch_transform: Callable | None = None,
    data: Dataset | None = None,
    checkpoint: Path | None = None,
    checkpoint_every: float = 300.0,
    compile: bool = False,
) -> dict:
    """Train ``model`` (a teacher, or a student distilled by ``method`` from ``teacher``): one
    :class:`Member` of :func:`train_models`.  Returns its summary (steps, epochs, final loss
    terms); raises its :class:`RunFailure`."""
    member = Member(model, method, supervised, log, progress, checkpoint)
    summary = train_models([member], cases, recipe, seed, device, teacher, batch_transform, data, checkpoint_every,
                           compile)[0]
    if member.error is not None:
        raise member.error
    return summary


def train_models(
    members: list[Member],
    cases: list[Case],
    recipe: dict,
    seed: int,
    device: torch.device,
    teacher: nn.Module | None = None,
    batch_transform: Callable | None = None,
    data: Dataset | None = None,
    checkpoint_every: float = 300.0,
    compile: bool = False,
) -> list[dict | None]:
    """Train ``members`` in lockstep on the same batches: each batch is loaded and augmented
    once, the teacher runs once (:class:`TeacherForward`, the union of the methods' taps), and
    each member takes its own step with its own optimiser and its own random stream.

    ``recipe`` is a resolved :class:`~kdbench.benchmark.grid.TrainSpec` dict; ``data`` the
    ``(image, label)`` samples (default: the slices of ``cases``); a member's ``supervised``
    loss (a method's own ``seg_loss`` wins); ``batch_transform(image, label, generator) ->
    (image, label)`` rewrites each augmented batch (PLC-KD's assistants train on FIG or BT
    images).  Each step is a :class:`DistillStep` (``compile`` is passed on).  Loss terms are
    read on the host every :data:`LOG_EVERY` steps and at each epoch's end, where a ``step``
    record (steps 1, 50, 100, ...) and an ``epoch`` record (means) are logged to the member's log.

    **Equal to training alone.**  The batch order and augmentation come from ``(seed, epoch)``
    and a generator seeded with ``seed``, so every member of a lockstep group sees the same
    batches; the global random state (Python, NumPy, torch, CUDA), which weight noise and
    methods draw from, is kept per member and swapped in around its step, each starting from
    ``seed`` as a member trained alone does.  On the CPU a member's final weights therefore
    equal those of the same member trained alone (tested tensor by tensor).

    **Checkpoints.**  A member with a ``checkpoint`` directory saves its resumable state
    (weights, optimiser, method, its random states and the shared generator, step, epoch, the
    epoch's terms) there atomically every ``checkpoint_every`` seconds, and resumes from it:
    members resumed at different steps wait (skip their steps) until the group reaches theirs.
    A checkpoint that cannot be used is ignored with a warning.

    **Failures.**  A member whose loss or weights become non-finite gets :attr:`Member.error` (a
    :class:`RunFailure`) and leaves the group; the others train on.  Returns each member's
    summary (steps, epochs, final terms), ``None`` for a failed one.
    """
    seed_everything(seed)
    data = SliceDataset(cases) if data is None else data
    batch_size = min(recipe["batch_size"], len(data))
    batches = EpochBatches(len(data), batch_size, seed)
    loader = make_loader(data, batches, device)
    per_epoch = len(batches)
    total = recipe["epochs"] * per_epoch
    if recipe.get("max_steps"):
        total = min(total, recipe["max_steps"])
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    students = [m for m in members if m.method is not None and m.method.requires_teacher]
    shared = TeacherForward(teacher, tuple(t for m in students for t in m.method.taps), device, compile) \
        if teacher is not None and students else None
    aug = recipe.get("augmentation", {})
    generator = torch.Generator().manual_seed(seed)
    start = _rng_state(generator, device)
    group_step, group_epoch, group_generator = None, 0, start["generator"]
    for m in members:
        m.model.to(device).train()
        params = list(m.model.parameters())
        if m.method is not None:
            m.method.to(device).train()
            params += list(m.method.trainable_parameters())
        m.optimizer = make_optimizer(recipe["optimizer"], params, recipe["lr"], recipe["weight_decay"])
        supervised = m.method.seg_loss if m.method is not None else m.supervised
        m.train_step = DistillStep(m.model, m.optimizer, m.method, None, SegLoss(supervised)
                                   if supervised != "none" else None, device, compile)
        _set_rng_state(start, generator)  # every member starts, or resumes, from the seeded state
        resumed = _resume(m.path, device, seed, m.model, m.optimizer, m.method, generator, total) \
            if m.path is not None else None
        if resumed is not None:
            m.step, m.epoch = resumed["step"], resumed["epoch"]
            m.terms.update(resumed["terms"])
            m.log({"event": "resume", "step": m.step, "epoch": m.epoch})
            m.progress(m.step, total)
        else:
            m.log({"event": "start", "step": 0, "total": total})
        m.rng = _rng_state(generator, device)
        if group_step is None or m.step < group_step:
            group_step, group_epoch, group_generator = m.step, m.epoch, m.rng["generator"]
    step, epoch = group_step or 0, group_epoch
    generator.set_state(group_generator)

    def flush(m: Member) -> None:
        """Bring the member's pending terms to the host (one transfer), check and log them."""
        values = iter(torch.stack([v.float() for *_, terms in m.pending for v in terms.values()]).tolist())
        records = [(s, e, lr, {k: next(values) for k in terms}) for s, e, lr, terms in m.pending]
        m.pending.clear()
        for s, e, lr, record in records:
            if not math.isfinite(record["loss"]):
                shown = ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "loss")
                raise RunFailure(f"non-finite loss at step {s} ({shown}; steps {records[0][0]}-{records[-1][0]} "
                                 "checked together)")
            for k, v in record.items():
                m.terms[k].append(v)
            if s + 1 == 1 or (s + 1) % LOG_EVERY == 0:
                m.log({"event": "step", "step": s + 1, "epoch": e, "lr": lr, **record})

    def active() -> list[Member]:
        return [m for m in members if m.error is None]

    def guarded(m: Member, work: Callable[[], None]) -> None:
        """Run ``work`` for ``m``; a failure of its own takes it out of the group."""
        try:
            work()
        except RunFailure as exc:
            m.error = exc

    saved = time.monotonic()
    try:
        while step < total and active():
            batches.epoch, batches.skip = epoch, step - epoch * per_epoch
            for image, label in loader:
                lr = lr_at(step, total, recipe["lr"], recipe["min_lr"], recipe["schedule"])
                image, label = image.to(device, non_blocking=True), label.to(device, non_blocking=True)
                image, label = augment_batch(image, label, generator, aug.get("rotate", True), aug.get("flip", True))
                if batch_transform is not None:
                    image, label = batch_transform(image, label, generator)
                running = [m for m in active() if m.step == step]  # members resumed ahead wait for the group
                teacher_out = shared(image, label) if shared is not None and any(m in students for m in running) \
                    else None
                for m in running:
                    _set_rng_state(m.rng, generator, keep_generator=True)
                    for group in m.optimizer.param_groups:
                        group["lr"] = lr
                    m.pending.append((step, epoch, lr, m.train_step(image, label, step, total, teacher_out)))
                    m.step += 1
                    m.progress(m.step, total)
                    if m.step == 1 or m.step % LOG_EVERY == 0:
                        guarded(m, lambda: flush(m))
                    m.rng = _rng_state(generator, device)
                step += 1
                if step < total and time.monotonic() - saved >= checkpoint_every:
                    for m in active():
                        if m.path is not None and m.step == step:
                            guarded(m, lambda: flush(m) if m.pending else None)
                            if m.error is None:
                                _save(m.path, m.model, m.optimizer, m.method, {**m.rng, "generator":
                                      generator.get_state()}, step, epoch, m.terms, total)
                    saved = time.monotonic()
                if step >= total:
                    break
            for m in active():
                if m.step == step:
                    guarded(m, lambda: flush(m) if m.pending else None)
            for m in active():
                if m.step == step:
                    m.final = {k: float(np.mean(v)) for k, v in m.terms.items()}
                    m.log({"event": "epoch", "epoch": epoch, "step": step, **m.final})
                    m.terms.clear()
                    m.epoch = epoch + 1
            epoch += 1
    finally:
        for m in members:
            m.train_step.close()
        if shared is not None:
            shared.close()
    summaries: list[dict | None] = []
    for m in members:
        m.model.eval()
        if m.error is None:
            guarded(m, lambda: check_finite_weights(m.model))
        summaries.append({"steps": m.step, "epochs": m.epoch, "final": m.final} if m.error is None else None)
    return summaries


def _save(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, method: Method | None,
          rng: dict, step: int, epoch: int, terms: dict, total: int) -> None:
    """Write the resumable training state to ``path`` atomically (fsynced, then renamed); ``rng`` is
    the member's random state (:func:`_rng_state`)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "method": method.state_dict() if method is not None else {},
             "rng": rng, "step": step, "epoch": epoch, "total": total,
             "terms": {k: list(v) for k, v in terms.items()}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _resume(path: Path, device: torch.device, seed: int, model: nn.Module, optimizer: torch.optim.Optimizer,
            method: Method | None, generator: torch.Generator, total: int) -> dict | None:
    """Load the state saved at ``path`` into the training objects; returns it (step, epoch,
    terms), or ``None`` when there is none, or after a warning when it cannot be used, leaving
    everything as it was.  Something other than a file at ``path`` (a directory) could never be
    replaced by the next save: it is moved aside to ``<path>.bad-<time>`` first."""
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_file():
        aside = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        os.rename(path, aside)
        warnings.warn(f"the checkpoint {path} is not a file; moved it aside to {aside.name} and training starts "
                      "from step 0", KdbenchNote, stacklevel=2)
        return None
    before = copy.deepcopy((model.state_dict(), optimizer.state_dict(),
                            method.state_dict() if method is not None else {}))
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if state["total"] != total:
            raise ValueError(f"it was written for {state['total']} steps, this run has {total}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if method is not None:
            method.load_state_dict(state["method"])
        _set_rng_state(state["rng"], generator)
        return state
    except Exception as exc:  # any unreadable or mismatched checkpoint: start afresh
        model.load_state_dict(before[0])
        optimizer.load_state_dict(before[1])
        if method is not None:
            method.load_state_dict(before[2])
        seed_everything(seed)
        generator.manual_seed(seed)
        warnings.warn(f"ignoring the checkpoint {path} ({' '.join(str(exc).split())[:200]}); "
                      "training restarts from step 0", KdbenchNote, stacklevel=2)
        return None


def check_finite_weights(model: nn.Module) -> None:
    """Raise :class:`RunFailure` if any weight or buffer holds inf/NaN.

    A diverged network can keep a finite loss (saturated logits), so a finite loss
    alone does not make a training job a success; its weights are checked too.
    """
    state = model.state_dict()
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise RunFailure(f"training diverged: {len(bad)} of {len(state)} weight tensors hold inf/NaN "
                         f"(first: {bad[0]}) though the loss stayed finite; lower train.lr")
