"""3D networks (issue 12): Noothout et al.'s 3D ensemble members and MONAI's small 3D
students build, give ``(N, classes, D, H, W)`` logits, declare feature roles whose taps
are 5-D with the declared channels and stride, match the paper's parameter counts, and
every registered method trains on a tiny 3D teacher → student pair."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from kdbench.methods import METHODS, Batch, Outputs, create_method, list_methods
from kdbench.models import MODELS, ROLES, FeatureTaps, create_model, list_models
from kdbench.teachers import EnsembleTeacher
from kdbench.teachers.team import TeamTeacher

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

MODELS_3D = ["ens-unet3d", "ens-resnet3d", "unet3d-s", "dynunet3d-s"]
PATCH = 16  # divisible by every 3D network's total stride (unet3d-s: 16)
BATCH = 2
K = 3  # classes

#: Hyper-parameters a method cannot run without, or that keep the test small (CIRKD pools
#: its 16×16 planes 4×4, as it pools 256×256 ones by default, and fills its queues at once).
PARAMS = {"compose": {"methods": ["kd", "at", "fitnet"]},
          "cirkd": {"pixel_memory": 8, "region_memory": 2, "pool_min": 16}, "skd": {"disc_width": 8}}


def n_params(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def paper_params(name: str, num_classes: int) -> float:
    """Parameters (M) at width 1, counted on the meta device (shapes only)."""
    with torch.device("meta"):
        return n_params(create_model(name, num_classes=num_classes))


def test_3d_models_are_registered_with_dims_3():
    assert set(MODELS_3D) <= set(list_models())
    for name in MODELS_3D:
        entry = MODELS.get(name)
        assert entry.meta["dims"] == 3 and entry.description, name
    for name in ("ens-unet3d", "ens-resnet3d"):
        assert MODELS.get(name).meta["paper"] == "ensemblekd_jmi2022"
    assert "dims" not in MODELS.get("ens-unet").meta  # 2D models keep the default


@pytest.mark.parametrize("name", MODELS_3D)
def test_forward_backward_and_5d_roles(name):
    torch.manual_seed(0)
    model = create_model(name, in_channels=2, num_classes=K, width=0.25).train()
    assert set(model.feature_roles) == set(ROLES)
    x = torch.randn(BATCH, 2, PATCH, PATCH, PATCH)
    with FeatureTaps(model, ROLES) as taps:
        logits = model(x)
    assert logits.shape == (BATCH, K, PATCH, PATCH, PATCH)
    for role, declared in model.feature_roles.items():
        feature = taps.features[role]
        assert feature.dim() == 5, f"{name}.{role}"
        assert feature.shape[1] == declared.channels, f"{name}.{role}: {feature.shape[1]} vs {declared.channels}"
        side = PATCH // declared.stride
        assert tuple(feature.shape[2:]) == (side,) * 3, f"{name}.{role} ({declared.path}): stride {declared.stride}"
    (logits.square().mean() + sum(f.square().mean() for f in taps.features.values())).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), name
    with torch.no_grad():  # a 2D input is refused, not silently mis-read
        with pytest.raises((RuntimeError, ValueError)):
            model(torch.randn(BATCH, 2, PATCH, PATCH))


def test_eval_mode_batch_of_one_on_a_non_cubic_patch():
    for name in MODELS_3D:
        model = create_model(name, width=0.25).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 1, 16, 32, 48)).shape == (1, 2, 16, 32, 48), name


def test_params_match_noothout_table1():
    """SegTHOR (5 classes): the distilled / uniform-ensemble U-Net is 5.64 M; the diverse
    ensemble holds two of each member (3D U-Net, 3D ResNet, 2D dilated network): 23.17 M."""
    unet, resnet = paper_params("ens-unet3d", 5), paper_params("ens-resnet3d", 5)
    assert unet == pytest.approx(5.64, rel=0.02)
    assert 6 * unet == pytest.approx(33.84, rel=0.02)
    assert 2 * (unet + resnet + paper_params("ens-dilated", 5)) == pytest.approx(23.17, rel=0.02)
    assert 2 * (paper_params("ens-unet3d", 7) + paper_params("ens-resnet3d", 7)
                + paper_params("ens-dilated", 7)) == pytest.approx(23.20, rel=0.02)  # brain, 7 classes


def test_students_are_small_and_their_docs_state_their_size():
    teacher = paper_params("ens-unet3d", 2)
    for name, stated in (("unet3d-s", 1.20), ("dynunet3d-s", 1.40)):
        ours = paper_params(name, 2)
        assert ours == pytest.approx(stated, abs=0.005) and ours < teacher / 3, name
        assert f"{stated:.2f} M" in MODELS.get(name).obj.__doc__, name
        assert n_params(create_model(name, width=0.25)) < ours


# ---------------------------------------------------------------- every method on a 3D pair


def tiny(name: str, seed: int, width: float = 0.25) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, num_classes=K, width=width)


def make_batch(step: int) -> Batch:
    g = torch.Generator().manual_seed(step)
    image = torch.randn(BATCH, 1, PATCH, PATCH, PATCH, generator=g)
    label = torch.zeros(BATCH, PATCH, PATCH, PATCH, dtype=torch.long)
    label[:, 3:11, 4:12, 2:10] = 1  # every image holds every class (region methods need pairs)
    label[0, 6:9, 5:14, 8:13] = 2
    label[1, 2:12, 10:15, 9:15] = 2
    return Batch(image=image, label=label, step=step, total_steps=4)


def teacher_for(name: str, teacher: torch.nn.Module) -> torch.nn.Module:
    """What the method learns from: an ensemble of 3D members, a PLC-KD team, or the teacher."""
    if name == "ensemble":  # a diverse 3D ensemble (Noothout et al.)
        return EnsembleTeacher([teacher, tiny("ens-resnet3d", 2)])
    if name == "plckd":  # T with two assistants of its architecture, and SC on its 3D features
        return TeamTeacher(teacher, ta_f=copy.deepcopy(teacher), ta_b=tiny("ens-unet3d", 3), sc=True)
    return teacher


def test_every_method_says_whether_it_runs_in_3d():
    for name in list_methods():
        cls = METHODS.get(name).obj
        assert 2 in cls.spatial_dims, name
        if 3 not in cls.spatial_dims:
            assert cls.why_not_3d.strip() and "\n" not in cls.why_not_3d, name


@pytest.mark.parametrize("name", list_methods())
def test_method_trains_on_a_3d_pair(name):
    """Two optimisation steps of a tiny ens-unet3d → unet3d-s pair, driven as the trainer does."""
    cls = METHODS.get(name).obj
    if 3 not in cls.spatial_dims:
        pytest.skip(f"{name} is 2D only: {cls.why_not_3d}")
    teacher = teacher_for(name, tiny("ens-unet3d", 0)).eval()
    student = tiny("unet3d-s", 1).train()
    method = create_method(name, student_roles=student.feature_roles, teacher_roles=teacher.feature_roles,
                           num_classes=K, **PARAMS.get(name, {}))
    params = list(student.parameters()) + list(method.trainable_parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3)
    before = [p.detach().clone() for p in student.parameters()]
    taps = tuple(method.taps)
    for step in range(2):
        batch = make_batch(step)
        teacher_out = None
        if method.requires_teacher:
            with torch.no_grad():
                if hasattr(teacher, "soft_targets"):
                    teacher_out = teacher.soft_targets(batch.image, batch.label, taps)
                else:
                    with FeatureTaps(teacher, taps) as t_taps:
                        teacher_out = Outputs(teacher(batch.image), dict(t_taps.features))
        with FeatureTaps(student, taps) as s_taps:
            student_out = Outputs(student(batch.image), dict(s_taps.features))
        for role in taps:
            assert student_out.features[role].dim() == 5
        terms = method(student_out, teacher_out, batch)
        for term, value in terms.items():
            assert value.dim() == 0 and torch.isfinite(value), f"{name}.{term} = {value}"
        seg = F.cross_entropy(student_out.logits, batch.label) if method.seg_loss != "none" else 0.0
        loss = seg + sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in params if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), name
        optimizer.step()
        stats = method.after_step(student_out, teacher_out, batch)
        assert all(math.isfinite(v) for v in stats.values()), name
    assert any(not torch.equal(a, p) for a, p in zip(before, student.parameters())), name
    assert all(torch.isfinite(p).all() for p in student.parameters()), name
