"""The model zoo: every registered model builds, runs forward and backward, declares its
feature roles truthfully, and matches the papers' parameter counts at paper scale."""

from __future__ import annotations

import functools
import math
from importlib import resources

import pandas as pd
import pytest
import torch

from kdbench.models import MODELS, ROLES, FeatureTaps, create_model, list_models

TOY_WIDTH = 0.25
SIZE = 64  # every architecture accepts 64×64 (multiples of 16 for the deepest ones)
BATCH = 2  # batch norm needs more than one value per channel in training

TOLERANCE = 0.10


@pytest.fixture(scope="module")
def paper_results() -> pd.DataFrame:
    path = resources.files("kdbench.leaderboards") / "data" / "paper_results.csv"
    with resources.as_file(path) as csv:
        return pd.read_csv(csv)


def n_params(model: torch.nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


@functools.cache
def paper_scale_params(name: str, num_classes: int = 2) -> float:
    """Parameters (M) at the default configuration (width 1, one input channel)."""
    return n_params(create_model(name, num_classes=num_classes))


MODELS_2D = [n for n in list_models() if MODELS.get(n).meta.get("dims", 2) == 2]  # 3D: test_models_3d.py


def test_expected_models_are_registered():
    expected = {"raunet", "pspnet", "unetpp", "unet", "deeplabv3p", "enet", "espnet",
                "mobilenetv2", "resnet18", "transunet", "ens-unet", "ens-resnet",
                "ens-dilated", "tinyunet"}
    assert expected <= set(list_models())


@pytest.mark.parametrize("name", MODELS_2D)
@pytest.mark.parametrize("in_channels", [1, 3])
def test_forward_backward_and_roles(name, in_channels):
    torch.manual_seed(0)
    num_classes = 3
    model = create_model(name, in_channels=in_channels, num_classes=num_classes, width=TOY_WIDTH)
    assert isinstance(model, torch.nn.Module)
    roles = model.feature_roles
    assert set(roles) == set(ROLES), f"{name} declares {sorted(roles)}"
    model.train()
    x = torch.randn(BATCH, in_channels, SIZE, SIZE)
    with FeatureTaps(model, ROLES) as taps:
        logits = model(x)
    assert logits.shape == (BATCH, num_classes, SIZE, SIZE)
    for role, declared in roles.items():
        feature = taps.features[role]
        assert feature.dim() == 4, f"{name}.{role}"
        assert feature.shape[1] == declared.channels, \
            f"{name}.{role} ({declared.path}): {feature.shape[1]} channels, declared {declared.channels}"
        expected = math.ceil(SIZE / declared.stride)
        assert tuple(feature.shape[2:]) == (expected, expected), \
            f"{name}.{role} ({declared.path}): {tuple(feature.shape[2:])}, declared stride {declared.stride}"
    loss = logits.square().mean() + sum(f.float().square().mean() for f in taps.features.values())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads), f"{name}: parameters without gradient"
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", MODELS_2D)
def test_eval_mode_batch_of_one(name):
    model = create_model(name, width=TOY_WIDTH).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, SIZE, SIZE)).shape == (1, 2, SIZE, SIZE)


def emkd_models() -> list[str]:
    return [e.name for e in MODELS.entries() if e.meta.get("paper") == "emkd_tmi2021"]


def test_every_emkd_table2_model_is_registered(paper_results):
    rows = paper_results[(paper_results.paper == "emkd_tmi2021") & (paper_results.table == "II")
                         & (paper_results.metric == "params_M")]
    registered = {MODELS.get(n).meta["paper_name"] for n in emkd_models()}
    assert set(rows.student) <= registered


@pytest.mark.parametrize("name", emkd_models())
def test_params_match_emkd_table2(name, paper_results):
    paper_name = MODELS.get(name).meta["paper_name"]
    rows = paper_results[(paper_results.paper == "emkd_tmi2021") & (paper_results.table == "II")
                         & (paper_results.metric == "params_M") & (paper_results.student == paper_name)]
    assert len(rows) == 1, f"no EMKD Table II params for {paper_name}"
    published = float(rows.value.iloc[0])
    ours = paper_scale_params(name)
    assert abs(ours - published) <= TOLERANCE * published, \
        f"{name}: {ours:.3f} M vs EMKD Table II {published} M"


def test_transunet_is_r50_vit_b16_scale():
    assert 95 < paper_scale_params("transunet") < 115  # TransUNet R50-ViT-B/16: ≈105 M


def test_ensemble_members_match_noothout_table1(paper_results):
    """ACDC (4 classes, 2D): the distilled net is the dilated one; the diverse ensemble holds
    two of each member (one trained with CE, one with soft Dice)."""
    acdc = paper_results[(paper_results.paper == "ensemblekd_jmi2022") & (paper_results.dataset == "ACDC")
                         & (paper_results.metric == "params_M")]
    def published(kind: str) -> float:
        return float(acdc[acdc.teacher == kind].value.iloc[0])

    members = {n: paper_scale_params(n, num_classes=4) for n in ("ens-unet", "ens-resnet", "ens-dilated")}
    assert members["ens-dilated"] == pytest.approx(published("distilled(D)"), rel=TOLERANCE)
    assert 6 * members["ens-dilated"] == pytest.approx(published("ensemble(U)"), rel=TOLERANCE)
    assert 2 * sum(members.values()) == pytest.approx(published("ensemble(D)"), rel=TOLERANCE)


def test_tinyunet_stays_tiny():
    assert 0.1 <= paper_scale_params("tinyunet") <= 0.3


def test_width_shrinks_every_model():
    for name in list_models():
        assert n_params(create_model(name, width=TOY_WIDTH)) < paper_scale_params(name), name


def test_paper_metadata():
    for entry in MODELS.entries():
        if entry.name in {"tinyunet", "unet3d-s", "dynunet3d-s"}:  # small networks not from a paper
            continue
        assert entry.meta.get("paper") in {"emkd_tmi2021", "plckd_miccai2024", "ensemblekd_jmi2022"}
        assert entry.description, entry.name


def test_zoo_page_lists_every_model():
    from kdbench.models.zoo import zoo_markdown

    page = zoo_markdown(input_size=(1, 1, 64, 64))
    assert "FlopCounterMode" in page and "1×1×64×64" in page
    for name in list_models():
        assert f"`{name}`" in page
    assert "20.6" in page and "0.353" in page  # EMKD Table II columns


def test_emkd_table2_grid_names_match_the_registry():
    from pathlib import Path

    from kdbench.benchmark.grid import load_grid

    grid = load_grid(Path(__file__).resolve().parents[1] / "tables" / "emkd_table2.yaml")
    names = grid.leaderboard.reproduces.names
    models = [m.name for m in grid.teachers + grid.students]
    assert sorted(models) == sorted(emkd_models())
    for name in models:
        assert names[name] == MODELS.get(name).meta["paper_name"]
