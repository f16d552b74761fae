"""The 3D path: patches with foreground oversampling, sliding-window and tri-planar inference,
3D grid fields and their validation, 3D plans, and (slow) a 3D grid end to end on the phantom."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet
from torch import nn

from kdbench.benchmark.evaluate import evaluate_model
from kdbench.benchmark.grid import load_grid, validate_grid
from kdbench.benchmark.inference import SliceWise, TriPlanar, sliding_window, tri_planar
from kdbench.benchmark.plan import build_plan
from kdbench.datasets.base import Case, SliceDataset
from kdbench.datasets.patches import PatchDataset, training_data
from kdbench.datasets.phantom import make_phantom_case
from kdbench.errors import ConfigError
from kdbench.methods import METHODS
from kdbench.methods.kd import KD
from kdbench.models import MODELS, register_model
from kdbench.models.roles import FeatureRole

from conftest import ROOT, run_cli, tiny_grid


class Copy(nn.Module):
    """A 'network' whose output is its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_sliding_window_of_a_copying_model_gives_back_the_whole_volume():
    volume = torch.randn(2, 37, 50, 23, generator=torch.Generator().manual_seed(0))
    out = sliding_window(Copy(), volume, (16, 16, 16), overlap=0.5, sw_batch_size=3, device="cpu")
    assert out.shape == volume.shape
    torch.testing.assert_close(out, volume, atol=1e-5, rtol=1e-5)


class PlaneConstant(nn.Module):
    """A 2D predictor whose probabilities are constant, and differ with the plane it runs on
    (told by the slice's shape: the volume's three axes have distinct lengths)."""

    PROBS = {(7, 9): [0.2, 0.8], (5, 9): [0.5, 0.5], (5, 7): [0.9, 0.1]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.tensor(self.PROBS[tuple(x.shape[-2:])])
        return p.log()[None, :, None, None].expand(x.shape[0], 2, *x.shape[-2:])


def test_tri_planar_of_three_constant_predictors_is_their_mean():
    volume = torch.zeros(1, 5, 7, 9)  # axial slices 7×9, coronal 5×9, sagittal 5×7
    probs = tri_planar(PlaneConstant(), volume, divisible=1, device="cpu")
    assert probs.shape == (2, 5, 7, 9)
    mean = torch.tensor(list(PlaneConstant.PROBS.values())).mean(0)
    torch.testing.assert_close(probs, mean[:, None, None, None].expand_as(probs))
    # as a 5-D module (an ensemble member), its soft-max is the same mean
    wrapped = TriPlanar(PlaneConstant(), divisible=1)(volume[None])
    torch.testing.assert_close(torch.softmax(wrapped, 1)[0], probs)


def test_slicewise_runs_a_2d_network_on_every_axial_slice():
    net = nn.Conv2d(1, 3, 3, padding=1)
    x = torch.randn(2, 1, 4, 8, 8)
    out = SliceWise(net)(x)
    assert out.shape == (2, 3, 4, 8, 8)
    torch.testing.assert_close(out[1, :, 2], net(x[1, :, 2][None])[0])


def _cases(n: int = 3, slices: int = 6, size: int = 24) -> list[Case]:
    return [make_phantom_case(i, 0, size, slices, 0.1, 0.3) for i in range(n)]


def test_patches_have_the_patch_shape_and_all_hold_foreground_at_share_one():
    cases = _cases()
    torch.manual_seed(0)
    data = PatchDataset(cases, (8, 16, 16), foreground_share=1.0, patches_per_case=5)
    assert len(data) == 15
    for i in range(len(data)):
        image, label = data[i]
        assert image.shape == (1, 8, 16, 16) and image.dtype == torch.float32
        assert label.shape == (8, 16, 16) and label.dtype == torch.int64
        assert (label > 0).any(), f"patch {i} holds no foreground"


def test_patches_are_padded_resampled_and_seeded():
    cases = _cases(n=2, slices=4, size=16)
    data = PatchDataset(cases, (32, 8, 8), foreground_share=0.0, spacing=(1.0, 4.0, 4.0))
    image, label = data[0]
    assert image.shape == (1, 32, 8, 8) and label.shape == (32, 8, 8)
    z = cases[0].spacing[0]
    assert data.volumes[0][1].shape[1] == max(32, round(4 * z / 1.0))  # z resampled to 1 mm, then padded
    torch.manual_seed(3)
    first = [data[i][0] for i in range(len(data))]
    torch.manual_seed(3)
    second = [data[i][0] for i in range(len(data))]
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_training_data_is_slices_in_2d_and_patches_in_3d():
    cases = _cases(n=2, slices=4, size=16)
    assert isinstance(training_data({"seed": 0}, cases), SliceDataset)
    data = training_data({"volume": {"dims": 3, "patch": [8, 8, 8], "foreground_share": 1.0,
                                     "patches_per_case": 2, "spacing": None}}, cases)
    assert isinstance(data, PatchDataset) and len(data) == 4 and data[0][0].shape == (1, 8, 8, 8)


def test_evaluate_model_by_sliding_window_scores_a_perfect_3d_predictor_in_mm():
    case = _cases(n=1, slices=6, size=24)[0]

    class Oracle(nn.Module):  # logits that are the case's own label, whatever window it sees
        def forward(self, x):
            return torch.nn.functional.one_hot(x[:, 0].round().long(), 3).movedim(-1, 1).float() * 10

    labelled = Case(case.case_id, case.label[:, None].astype(np.float32), case.label, case.spacing)
    frame = evaluate_model(Oracle(), [labelled], {"organ": (1, 2)}, torch.device("cpu"),
                           inference={"mode": "sliding_window", "patch": [4, 16, 16], "overlap": 0.25,
                                      "sw_batch_size": 2, "spacing": None})
    values = frame.set_index("metric")["value"]
    assert values["dice"] == pytest.approx(1.0) and values["hd95"] == pytest.approx(0.0)
    # at a coarser target spacing the prediction comes back to the case's grid, still close
    frame = evaluate_model(Oracle(), [labelled], {"organ": (1, 2)}, torch.device("cpu"),
                           inference={"mode": "sliding_window", "patch": [4, 16, 16], "overlap": 0.25,
                                      "sw_batch_size": 2, "spacing": [case.spacing[0], *[2 * s for s in case.spacing[1:]]]})
    values = frame.set_index("metric")["value"]
    assert 0.9 < values["dice"] < 1.0


def test_a_monai_3d_unet_runs_by_sliding_window_on_a_phantom_volume():
    case = _cases(n=1, slices=5, size=24)[0]
    net = UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,), num_res_units=0)
    frame = evaluate_model(net, [case], {"organ": (1, 2), "tumour": (2,)}, torch.device("cpu"),
                           inference={"mode": "sliding_window", "patch": [8, 16, 16], "overlap": 0.5,
                                      "sw_batch_size": 2, "spacing": None})
    assert set(frame["metric"]) >= {"dice", "hd95"} and len(frame) == 12


# -- grid fields and validation ----------------------------------------------------------------

@pytest.fixture
def model3d():
    """A registered 3D network (``dims=3``): the shipped ``unet3d-s``, else a small MONAI UNet."""
    if "unet3d-s" in MODELS:
        yield "unet3d-s"
        return

    def factory(in_channels: int = 1, num_classes: int = 2, width: float = 1.0):
        net = UNet(spatial_dims=3, in_channels=in_channels, out_channels=num_classes,
                   channels=(4, 8), strides=(2,), num_res_units=0)
        net.feature_roles = {"pre_logits": FeatureRole("model.0", 4, 1)}
        return net

    register_model("test-unet3d", dims=3)(factory)
    yield "test-unet3d"
    del MODELS._entries["test-unet3d"]


@pytest.fixture
def flat_method():
    """A method that declares it cannot work on 3D networks."""

    class Flat(KD):
        spatial_dims = (2,)
        why_not_3d = "its pooling is 2D"

    METHODS.register("test-flat")(Flat)
    yield "test-flat"
    del METHODS._entries["test-flat"]


VOLUME = {"dims": 3, "patch": [16, 16, 16]}


def test_a_3d_network_in_a_2d_grid_is_one_line(model3d):
    with pytest.raises(ConfigError) as err:
        validate_grid(tiny_grid(students=[model3d]), "g.yaml")
    message = str(err.value)
    assert "\n" not in message and "students[0].name" in message and "3D network" in message
    assert "volume" in message


def test_a_2d_only_method_on_a_3d_pair_is_one_line_naming_it_and_why(model3d, flat_method):
    grid = tiny_grid(teachers=[model3d], students=[{"name": model3d, "width": 0.5}], methods=["none", flat_method],
                     volume=VOLUME)
    with pytest.raises(ConfigError) as err:
        validate_grid(grid, "g.yaml")
    message = str(err.value)
    assert "\n" not in message and "methods[1]" in message and flat_method in message
    assert "its pooling is 2D" in message


def test_2d_networks_in_a_3d_grid_need_tri_planar(model3d):
    with pytest.raises(ConfigError, match=r"students\[0\]\.name.*tri_planar") as err:
        validate_grid(tiny_grid(teachers=[], methods=["none"], volume=VOLUME), "g.yaml")
    assert "\n" not in str(err.value)
    validate_grid(tiny_grid(teachers=[], methods=["none"], volume={**VOLUME, "tri_planar": True}), "g.yaml")
    with pytest.raises(ConfigError, match="same dims"):
        validate_grid(tiny_grid(teachers=[model3d], methods=["kd"], volume={**VOLUME, "tri_planar": True}), "g.yaml")


@pytest.mark.parametrize("volume, problem", [
    ({"dims": 3}, "patch size per axis"),
    ({"dims": 3, "patch": [16, 16]}, "at least 3"),
    ({"dims": 3, "patch": [16, 16, 4]}, "greater than or equal to 8"),
    ({"dims": 2, "patch": [16, 16, 16]}, "settings of dims 3"),
    ({"dims": 3, "patch": [16, 16, 16], "foreground_share": 1.5}, "less than or equal to 1"),
    ({"dims": 4}, "volume.dims"),
    ({"dims": 3, "patch": [16, 16, 16], "pach": 1}, "did you mean"),
])
def test_volume_fields_are_checked_with_one_line(volume, problem):
    with pytest.raises(ConfigError, match=problem) as err:
        validate_grid(tiny_grid(volume=volume), "g.yaml")
    assert "\n" not in str(err.value) and "volume" in str(err.value)


def test_a_3d_grid_plans_patches_sliding_windows_and_capped_patch(model3d):
    grid = validate_grid(tiny_grid(teachers=[model3d], students=[{"name": model3d, "width": 0.5}],
                                   methods=["none", "kd"],
                                   volume={"dims": 3, "patch": [48, 24, 16], "spacing": [2, 2, 2]}), "g.yaml")
    plan = build_plan(grid, budget="smoke")
    trains = [j for j in plan.jobs if j.kind in ("teacher", "student")]
    assert trains and all(j.config["volume"]["patch"] == [32, 24, 16] for j in trains)
    assert all(j.config["volume"]["spacing"] == [2, 2, 2] for j in trains)
    evals = plan.of_kind("evaluate")
    assert evals and all(j.config["inference"]["mode"] == "sliding_window" for j in evals)
    assert all(j.config["inference"]["patch"] == [32, 24, 16] for j in evals)
    assert all(j.config["input"] == [1, 1, 32, 24, 16] for j in plan.of_kind("profile"))
    assert any("patch 48×24×16 → 32×24×16" in line for line in plan.effective["changed"])
    other = build_plan(validate_grid({**grid.model_dump(mode="json"),
                                      "volume": {"dims": 3, "patch": [48, 24, 16], "spacing": [2, 2, 3]}}, "g"),
                       budget="smoke")
    assert not {j.id for j in other.jobs if j.kind != "profile"} & {j.id for j in plan.jobs}


def test_2d_grids_keep_their_job_ids_and_tri_planar_changes_only_evaluation():
    plain = build_plan(validate_grid(tiny_grid(), "g"), budget="smoke")
    assert not any("volume" in j.config or "inference" in j.config for j in plain.jobs)
    tri = build_plan(validate_grid(tiny_grid(volume={"tri_planar": True}), "g"), budget="smoke")
    assert {j.id for j in tri.jobs if j.kind != "evaluate"} == {j.id for j in plain.jobs if j.kind != "evaluate"}
    assert all(j.config["inference"] == {"mode": "tri_planar", "spacing": None} for j in tri.of_kind("evaluate"))


@pytest.mark.parametrize("name", ["quick3d", "ensemble_table2a_3d", "ensemble_table2b_3d"])
def test_shipped_3d_grids_plan_on_the_phantom(name):
    if "ens-unet3d" not in MODELS:
        pytest.skip("the 3D models are not registered yet")
    grid = load_grid(ROOT / "tables" / f"{name}.yaml", dataset="phantom")
    assert grid.volume.dims == 3
    plan = build_plan(grid, budget="smoke")
    assert any(j.config.get("inference", {}).get("mode") == "sliding_window" for j in plan.of_kind("evaluate"))


@pytest.mark.slow
def test_quick3d_runs_on_the_phantom_and_shows_dice_and_hd95_in_mm(tmp_path):
    result = run_cli("run", "--grid", str(ROOT / "tables" / "quick3d.yaml"), "--dataset", "phantom",
                     "--budget", "smoke", "--out", str(tmp_path), cwd=tmp_path, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:] + result.stdout[-2000:]
    run_dir = tmp_path / "quick3d" / "smoke"
    board = (run_dir / "leaderboard.md").read_text()
    assert "organ Dice (± case std)" in board and "organ HD95 (mm, ± case std)" in board
    rows = {line.split("|")[1].strip() for line in board.splitlines() if line.startswith("| ")}
    assert {"none", "kd", "at", "emkd"} <= rows
    rows = []
    for path in run_dir.glob("evaluate-*/metrics.csv"):
        with path.open() as fh:
            rows += list(csv.DictReader(fh))
    metrics = {r["metric"] for r in rows}
    assert {"dice", "hd95"} <= metrics and len({r["case_id"] for r in rows}) >= 1


@pytest.mark.slow
def test_3d_ensemble_with_a_tri_planar_2d_member_distils_on_the_phantom(tmp_path):
    """Ensemble KD Table 2a in 3D: the diverse ensemble mixes 3D members with the 2D dilated
    network, which predicts volumes tri-planarly; every job finishes and each 3D student job
    records its memory profile."""
    result = run_cli("run", "--grid", str(ROOT / "tables" / "ensemble_table2a_3d.yaml"), "--dataset", "phantom",
                     "--budget", "smoke", "--out", str(tmp_path), cwd=tmp_path, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:] + result.stdout[-2000:]
    run_dir = tmp_path / "ensemble_table2a_3d" / "smoke"
    plan = json.loads((run_dir / "plan.json").read_text())
    members = {j["config"]["model"]["name"] for j in plan["jobs"] if j["kind"] == "teacher"}
    assert "ens-dilated" in members and "ens-unet3d" in members
    board = (run_dir / "leaderboard.md").read_text()
    assert "distilled(D) ← ensemble(D)" in board and "HD95 (mm" in board
    memory = [json.loads(p.read_text()) for p in run_dir.glob("student-*/memory.json")]
    assert memory and all(m["teacher_forward_MiB"] >= 0 and m["distill_backward_MiB"] > 0 for m in memory)
