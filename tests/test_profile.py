"""Params, FLOPs (FlopCounterMode), latency and memory."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from kdbench.benchmark.profile import count_flops, count_params, measure_latency, peak_memory, profile_model

from conftest import run_cli


def test_params_and_flops_of_a_conv_by_hand():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
    assert count_params(conv) == 8 * 3 * 3 * 3
    # each of the 8·16·16 outputs is 3·3·3 multiply-adds, a multiply-add being 2 FLOPs
    assert count_flops(conv, (1, 3, 16, 16)) == 2 * 8 * 16 * 16 * 27


def test_latency_is_a_median_of_timed_runs():
    result = measure_latency(nn.Conv2d(1, 4, 3), (1, 1, 32, 32), torch.device("cpu"), warmup=2, runs=50)
    assert result["runs"] == 50 and result["latency_p10_ms"] <= result["latency_ms"] <= result["latency_p90_ms"]


def test_peak_memory_counts_weights_and_activations():
    model = nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 1, 3, padding=1))
    weights = sum(p.numel() * 4 for p in model.parameters())
    small = peak_memory(model, (1, 1, 32, 32), torch.device("cpu"))
    large = peak_memory(model, (1, 1, 128, 128), torch.device("cpu"))
    activation = 64 * 128 * 128 * 4
    assert small > weights and large >= weights + activation and large > small


@pytest.mark.slow
def test_profile_model_and_cli_json():
    result = profile_model(nn.Conv2d(1, 2, 1), (1, 1, 16, 16), torch.device("cpu"), runs=50)
    assert {"params_M", "flops_G", "latency_ms", "peak_mem_MB", "device", "input"} <= set(result)
    cli = run_cli("profile", "tinyunet", "--input", "1x1x32x32", "--runs", "50", "--json")
    assert cli.returncode == 0, cli.stderr
    data = json.loads(cli.stdout)
    assert data["model"] == "tinyunet" and data["input"] == [1, 1, 32, 32] and data["flops_G"] > 0
    bad = run_cli("profile", "tinyunet", "--input", "32x32")
    assert bad.returncode == 2 and "expected BxCxHxW" in bad.stderr and "Traceback" not in bad.stderr
