"""The training step: batched augmentation, the sync-free distillation step, the non-finite check."""

from __future__ import annotations

import pytest
import torch

from kdbench.benchmark.train import DistillStep, SegLoss, augment_batch, make_optimizer, train_model
from kdbench.datasets.phantom import Phantom
from kdbench.errors import RunFailure
from kdbench.methods import create_method
from kdbench.models import create_model
from kdbench.teachers.team import TeamTeacher

RECIPE = {"epochs": 1, "batch_size": 2, "optimizer": "adam", "lr": 1e-3, "min_lr": 1e-6, "weight_decay": 0.0,
          "schedule": "cosine", "max_steps": 2, "augmentation": {"rotate": True, "flip": True}}


def per_sample(image, label, k, flips):
    """The reference: each sample rotated with ``torch.rot90`` by its ``k``, then flipped on
    axis -1, -2 (and -3) where its flip bits say so."""
    images, labels = [], []
    for x, y, ki, fi in zip(image, label, k.tolist(), flips.tolist()):
        x, y = torch.rot90(x, ki, (-2, -1)), torch.rot90(y, ki, (-2, -1))
        for i, f in enumerate(fi):
            if f:
                x, y = x.flip(-1 - i), y.flip(-1 - i)
        images.append(x)
        labels.append(y)
    return torch.stack(images), torch.stack(labels)


@pytest.mark.parametrize("shape", [(16, 2, 5, 5), (16, 1, 3, 4, 4), (16, 1, 4, 6)])
def test_augment_batch_is_per_sample_rotation_and_flips(shape):
    image = torch.arange(torch.Size(shape).numel(), dtype=torch.float32).reshape(shape)
    label = image[:, 0].long()  # a label that names each position: pairing is checked exactly
    out_image, out_label = augment_batch(image, label, torch.Generator().manual_seed(3))
    draws = torch.Generator().manual_seed(3)
    k = torch.randint(0, 4, (shape[0],), generator=draws)
    k = k if shape[-1] == shape[-2] else k - k % 2  # a non-square plane only turns by 0° or 180°
    flips = torch.randint(0, 2, (shape[0], len(shape) - 2), generator=draws)
    want_image, want_label = per_sample(image, label, k, flips)
    assert torch.equal(out_image, want_image) and torch.equal(out_label, want_label)
    assert torch.equal(out_label, out_image[:, 0].long())
    assert len({tuple(x.flatten().tolist()) for x in out_image}) > 1  # not one transform for all


def test_augment_batch_reaches_every_dihedral_transform_and_is_deterministic():
    image = torch.arange(9.0).reshape(1, 1, 3, 3).repeat(64, 1, 1, 1)
    label = image[:, 0].long()
    out, _ = augment_batch(image, label, torch.Generator().manual_seed(0))
    again, _ = augment_batch(image, label, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    seen = {tuple(x.flatten().tolist()) for x in out}
    dihedral = {tuple(torch.rot90(x, k, (-2, -1)).flip(d).flatten().tolist()) if d else
                tuple(torch.rot90(x, k, (-2, -1)).flatten().tolist())
                for x in image[:1] for k in range(4) for d in ((), (-1,))}
    assert seen == dihedral  # all 8 symmetries of the square, nothing else
    plain, plain_label = augment_batch(image, label, torch.Generator(), rotate=False, flip=False)
    assert torch.equal(plain, image) and torch.equal(plain_label, label)


def _pair(method: str, teacher_wrapper=None):
    torch.manual_seed(0)
    student = create_model("tinyunet", in_channels=1, num_classes=3, width=0.5)
    teacher = create_model("tinyunet", in_channels=1, num_classes=3).eval().requires_grad_(False)
    built = create_method(method, student_roles=student.feature_roles, teacher_roles=teacher.feature_roles,
                          num_classes=3)
    teacher = teacher_wrapper(teacher) if teacher_wrapper else teacher
    optimizer = make_optimizer("adam", [*student.parameters(), *built.trainable_parameters()], 1e-3, 0.0)
    return student, teacher, built, optimizer


@pytest.mark.parametrize("method,wrapper,keys", [
    ("at", None, {"seg", "at", "loss"}),
    ("skd", None, {"seg", "pi", "pa", "adv", "loss", "disc"}),  # after_step's value comes back as a tensor
    ("kd", TeamTeacher, {"seg", "kd", "loss"}),  # PLC-KD's label-aware soft targets
])
def test_distill_step_returns_detached_device_tensors(method, wrapper, keys):
    student, teacher, built, optimizer = _pair(method, wrapper)
    image, label = torch.randn(2, 1, 32, 32), torch.randint(0, 3, (2, 32, 32))
    before = [p.detach().clone() for p in student.parameters()]
    with DistillStep(student, optimizer, built, teacher, SegLoss(), torch.device("cpu")) as step:
        terms = step(image, label, 0, 10)
        tapped = [student.get_submodule(r.path) for r in student.feature_roles.values()]
        assert any(m._forward_hooks for m in tapped) == bool(built.taps)
    assert set(terms) == keys
    assert all(torch.is_tensor(v) and v.dim() == 0 and v.device.type == "cpu" and not v.requires_grad
               for v in terms.values())
    assert torch.allclose(terms["loss"], sum(v for k, v in terms.items() if k not in ("loss", "disc")))
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))  # one optimiser step
    assert all(p.grad is None for p in teacher.parameters())
    assert not any(m._forward_hooks for m in tapped)  # closing removes the feature hooks


def test_non_finite_loss_raises_run_failure():
    dataset = Phantom(image_size=32, cases=2, slices=2)
    cases = [dataset.load_case(c) for c in dataset.case_ids()]
    student, teacher, _, _ = _pair("kd")
    method = create_method("kd", weight=1e39, num_classes=3)  # beyond float32: an infinite term
    with pytest.raises(RunFailure, match=r"non-finite loss at step 0 \(seg=[0-9.]+, kd=inf; steps 0-0"):
        train_model(student, cases, RECIPE, 0, torch.device("cpu"), method, teacher)
