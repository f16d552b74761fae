"""Training: the segmentation loss, augmentation, and one loop for teachers and students.

The recipe follows EMKD (Qin et al., IEEE TMI 2021, Sec. IV-A): Adam (β = 0.9, 0.999),
lr 1e-3 annealed by a cosine schedule to 1e-6, random rotation and flipping.  The
segmentation loss is cross-entropy + soft Dice (MONAI's ``DiceCELoss``).  A student
step taps the features its method asks for on both networks (forward hooks), runs the
teacher under ``no_grad``, and adds the method's weighted terms to the segmentation
loss.  On CUDA the forward passes run under bf16 autocast.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Callable

import numpy as np
import torch
from monai.losses import DiceCELoss
from torch import nn
from torch.utils.data import DataLoader

from kdbench.datasets.base import Case, SliceDataset
from kdbench.errors import RunFailure
from kdbench.methods.base import Batch, Method, Outputs
from kdbench.models.roles import FeatureTaps


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) and ask for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def augment(image: torch.Tensor, label: torch.Tensor, generator: torch.Generator,
            rotate: bool = True, flip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample random rotation by k·90° and horizontal/vertical flips (same for image and label)."""
    images, labels = [], []
    for x, y in zip(image, label):
        if rotate:
            k = int(torch.randint(0, 4, (1,), generator=generator))
            x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
        if flip:
            for dim in (-1, -2):
                if bool(torch.randint(0, 2, (1,), generator=generator)):
                    x, y = x.flip(dim), y.flip(dim)
        images.append(x)
        labels.append(y)
    return torch.stack(images), torch.stack(labels)


SEG_LOSSES = ("dice_ce", "ce", "dice", "none")
"""Segmentation losses a network can train with (``none``: the method brings its own)."""


class SegLoss(nn.Module):
    """The supervised loss: cross-entropy + soft Dice over all classes (MONAI ``DiceCELoss``,
    softmax, one-hot labels) by default; ``ce`` or ``dice`` alone for ensemble members
    trained "with CE and with soft Dice" (Noothout et al., Sec. 2.3)."""

    def __init__(self, kind: str = "dice_ce"):
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
) -> dict:
    """Train ``model`` (a teacher, or a student distilled by ``method`` from ``teacher``).

    ``recipe`` is a resolved :class:`~kdbench.benchmark.grid.TrainSpec` dict;
    ``supervised`` the loss on the labels (a method's own ``seg_loss`` wins); ``batch_transform(image,
    label, generator) -> (image, label)`` rewrites each augmented batch (PLC-KD's
    assistants train on FIG or BT images).  A teacher with a ``soft_targets(image,
    label, taps)`` method (a PLC-KD team) gives label-aware outputs.  Returns a
    summary (steps, epochs, final loss).  Raises :class:`RunFailure` on a non-finite loss or non-finite weights.
    """
    seed_everything(seed)
    data = SliceDataset(cases)
    generator = torch.Generator().manual_seed(seed)
    batch_size = min(recipe["batch_size"], len(data))
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True, generator=generator)
    total = recipe["epochs"] * len(loader)
    if recipe.get("max_steps"):
        total = min(total, recipe["max_steps"])
    model.to(device).train()
    params = list(model.parameters())
    if method is not None:
        method.to(device).train()
        params += list(method.trainable_parameters())
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    optimizer = make_optimizer(recipe["optimizer"], params, recipe["lr"], recipe["weight_decay"])
    supervised = method.seg_loss if method is not None else supervised
    seg_loss = SegLoss(supervised) if supervised != "none" else None
    taps = method.taps if method is not None else ()
    aug = recipe.get("augmentation", {})
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    step, epoch, epoch_terms = 0, 0, defaultdict(list)
    while step < total:
        for image, label in loader:
            if step >= total:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, recipe["lr"], recipe["min_lr"], recipe["schedule"])
            image, label = augment(image, label, generator, aug.get("rotate", True), aug.get("flip", True))
            image, label = image.to(device), label.to(device)
            if batch_transform is not None:
                image, label = batch_transform(image, label, generator)
            batch = Batch(image=image, label=label, step=step, total_steps=total)
            with autocast:
                teacher_out = None
                if teacher is not None and method is not None and method.requires_teacher:
                    with torch.no_grad():
                        if hasattr(teacher, "soft_targets"):
                            teacher_out = teacher.soft_targets(image, label, taps)
                        else:
                            with FeatureTaps(teacher, taps) as t_taps:
                                t_logits = teacher(image)
                            teacher_out = Outputs(t_logits.float(),
                                                  {k: v.float() for k, v in t_taps.features.items()})
                with FeatureTaps(model, taps) as s_taps:
                    logits = model(image)
                student_out = Outputs(logits.float(), {k: v.float() for k, v in s_taps.features.items()})
                terms = {"seg": seg_loss(student_out.logits, label)} if seg_loss is not None else {}
                if method is not None:
                    terms.update(method(student_out, teacher_out, batch))
            loss = sum(terms.values())
            if not torch.isfinite(loss):
                values = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
                raise RunFailure(f"non-finite loss at step {step} ({values})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            extra = method.after_step(student_out, teacher_out, batch) if method is not None else {}
            record = {k: float(v.detach()) for k, v in terms.items()} | {"loss": float(loss.detach())} | extra
            for k, v in record.items():
                epoch_terms[k].append(v)
            step += 1
            progress(step, total)
            if step % 50 == 0 or step == 1:
                log({"event": "step", "step": step, "epoch": epoch, "lr": optimizer.param_groups[0]["lr"], **record})
        log({"event": "epoch", "epoch": epoch, "step": step,
             **{k: float(np.mean(v)) for k, v in epoch_terms.items()}})
        final = {k: float(np.mean(v)) for k, v in epoch_terms.items()}
        epoch_terms.clear()
        epoch += 1
    model.eval()
    check_finite_weights(model)
    return {"steps": step, "epochs": epoch, "final": final}


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
