"""Every registered method runs on representative teacher → student pairs of the zoo:
the method's taps exist on both networks, its terms are finite and reach the student."""

from __future__ import annotations

import functools

import pytest
import torch

from kdbench.methods import create_method, list_methods
from kdbench.methods.base import Batch, Outputs
from kdbench.models import FeatureTaps, create_model

PAIRS = [
    ("raunet", "enet"),          # EMKD T1 → its student
    ("transunet", "unet"),       # PLC-KD
    ("pspnet", "mobilenetv2"),   # EMKD T2
    ("unetpp", "espnet"),        # EMKD T3
    ("deeplabv3p", "resnet18"),
    ("ens-unet", "ens-dilated"),  # ensemble KD, diverse members
    ("unet", "tinyunet"),        # the quickstart pair
]
TOY_WIDTH = 0.25
SIZE = 32  # the smallest size every paired network accepts (stride 16 + pooling)
BATCH = 2  # relation methods (spkd) need a batch
NUM_CLASSES = 2

#: Hyper-parameters a method cannot run without.
REQUIRED = {"compose": {"methods": ["kd", "at"]}}


@functools.cache
def toy(name: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes=NUM_CLASSES, width=TOY_WIDTH)


def make_batch() -> Batch:
    g = torch.Generator().manual_seed(0)
    image = torch.randn(BATCH, 1, SIZE, SIZE, generator=g)
    label = torch.zeros(BATCH, SIZE, SIZE, dtype=torch.long)
    label[0, 8:20, 10:22] = 1  # every image holds both classes (region methods need pairs)
    label[1, 4:15, 15:30] = 1
    return Batch(image=image, label=label, step=10, total_steps=100)


@pytest.mark.parametrize("method_name", list_methods())
@pytest.mark.parametrize("teacher_name,student_name", PAIRS, ids=[f"{t}->{s}" for t, s in PAIRS])
def test_method_on_pair(teacher_name, student_name, method_name):
    teacher = toy(teacher_name, 0).eval()
    student = toy(student_name, 1).train()
    student.zero_grad(set_to_none=True)
    method = create_method(method_name, student_roles=student.feature_roles,
                           teacher_roles=teacher.feature_roles, num_classes=NUM_CLASSES,
                           **REQUIRED.get(method_name, {}))
    batch = make_batch()
    taps = tuple(method.taps)
    with torch.no_grad(), FeatureTaps(teacher, taps) as t_taps:
        t_logits = teacher(batch.image)
    with FeatureTaps(student, taps) as s_taps:
        s_logits = student(batch.image)
    teacher_out = Outputs(t_logits, dict(t_taps.features))
    student_out = Outputs(s_logits, dict(s_taps.features))

    terms = method(student_out, teacher_out if method.requires_teacher else None, batch)
    assert isinstance(terms, dict)
    for term, value in terms.items():
        assert torch.is_tensor(value) and value.dim() == 0, f"{method_name}.{term}"
        assert torch.isfinite(value), f"{method_name}.{term} = {value}"
    if not terms:  # `none`: the student trains on labels alone
        return
    total = sum(terms.values())
    assert total.requires_grad, f"{method_name}: its terms do not depend on the student"
    total.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads, f"{method_name}: no gradient reaches {student_name}"
    assert all(torch.isfinite(g).all() for g in grads)
