"""Peak memory of a distillation step's phases (issue 12, "memory made visible")."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import UNet

from kdbench.benchmark.profile import PHASES, MiB, phase_peaks, profile_distillation
from kdbench.models import create_model


def monai_unet3d(channels=(4, 8, 16)) -> torch.nn.Module:
    return UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=channels, strides=(2, 2), num_res_units=1)


def test_cpu_phase_peaks_count_live_bytes_above_the_start():
    kept = {}

    def keep_4mib():
        kept["a"] = torch.ones(MiB, dtype=torch.float32)  # 4 MiB, alive afterwards

    def temporary_2mib():
        torch.ones(MiB // 2, dtype=torch.float32).sum()  # 2 MiB, freed inside the phase

    peaks = phase_peaks([("keep", keep_4mib), ("temporary", temporary_2mib), ("idle", lambda: None)],
                        torch.device("cpu"))
    assert 4 * MiB <= peaks["keep"] < 4.25 * MiB
    assert 6 * MiB <= peaks["temporary"] < 6.25 * MiB
    assert 4 * MiB <= peaks["idle"] < 4.25 * MiB  # nothing allocated: the level it started at


def test_teacher_forward_peak_grows_with_patch_size():
    results = {}
    for size in (12, 24):
        torch.manual_seed(0)
        results[size] = profile_distillation(monai_unet3d((8, 16, 32)), monai_unet3d(), "kd", (2, 1, size, size, size),
                                             "cpu", steps=1)
    small, large = results[12], results[24]
    for r in results.values():
        assert all(r[f"{p}_MiB"] > 0 for p in PHASES) and r["static_MiB"] > 0 and r["step_ms"] > 0
        assert r["step_peak_MiB"] == max(r[f"{p}_MiB"] for p in PHASES)
    # 8× the voxels: activations grow about 8×; weights and the step's bookkeeping do not
    assert large["teacher_forward_MiB"] > 4 * small["teacher_forward_MiB"]
    assert large["distill_backward_MiB"] > 4 * small["distill_backward_MiB"]
    assert large["input"] == [2, 1, 24, 24, 24] and large["method"] == "kd"


@pytest.mark.parametrize("method", ["none", "at"])
def test_registered_3d_pair_with_feature_taps_and_untouched_random_state(method):
    teacher = create_model("ens-unet3d", in_channels=1, num_classes=3, width=0.125)
    student = create_model("unet3d-s", in_channels=1, num_classes=3, width=0.25)
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    result = profile_distillation(teacher, student, method, (2, 1, 16, 16, 16), "cpu", steps=1)
    assert torch.equal(torch.rand(3), expected)
    assert result["student_forward_MiB"] > 0 and result["distill_backward_MiB"] > 0
    if method == "none":  # no teacher runs
        assert result["teacher_forward_MiB"] == 0
    else:
        assert result["teacher_forward_MiB"] > 0
