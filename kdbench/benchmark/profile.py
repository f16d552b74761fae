"""Efficiency of a model on its own: params, FLOPs, latency, peak memory.

* Params (M): every parameter of the model (distillation adapters live in the method
  and are never counted).
* FLOPs (G): torch's ``FlopCounterMode`` on one forward pass at the stated input size;
  it counts a multiply-add as 2 FLOPs (papers that report MACs as "FLOPs" read half).
* Latency (ms): batch 1, ``warmup`` untimed runs, then the median of ``runs`` (≥ 50)
  timed runs — CUDA events on a GPU, ``perf_counter`` on the CPU; the device is named.
* Peak memory (MB): weights plus the peak of activations allocated during one batch-1
  inference — ``torch.cuda.max_memory_allocated`` on a GPU, the profiler's allocation
  trace on the CPU.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from kdbench.errors import ConfigError


def device_name(device: torch.device) -> str:
    """A human-readable device name (GPU model, or CPU architecture and thread count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"CPU {platform.machine()} ({threads} thread{'s' if threads != 1 else ''})"


def resolve_device(name: str | None = None) -> torch.device:
    """``name`` as a device (``cpu``, ``cuda``, ``cuda:N``, ``mps``), or CUDA when available, else the CPU.

    A name that is not a device, or a device this machine does not have, is a
    :class:`~kdbench.errors.ConfigError` (one line, what is available).
    """
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {name!r}: not a device (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise ConfigError(f"--device {name!r}: CUDA is not available ({why}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name!r}: only {torch.cuda.device_count()} GPU(s) visible "
                              f"(cuda:0 … cuda:{torch.cuda.device_count() - 1})")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"--device {name!r}: MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise ConfigError(f"--device {name!r}: unsupported device type '{device.type}' (cpu, cuda, cuda:N, mps)")
    return device


def count_params(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass at ``input_shape`` (FlopCounterMode: multiply-add = 2)."""
    model.eval()
    device = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(input_shape, device=device))
    return int(counter.get_total_flops())


@torch.no_grad()
def measure_latency(model: nn.Module, input_shape: tuple[int, ...], device: torch.device,
                    warmup: int = 10, runs: int = 50) -> dict:
    """Median (and 10th/90th percentile) latency in ms of batch-1 inference."""
    model.eval().to(device)
    x = torch.randn(input_shape, device=device)
    for _ in range(warmup):
        model(x)
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(runs):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(x)
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
    else:
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1000)
    deciles = statistics.quantiles(times, n=10)
    return {"latency_ms": statistics.median(times), "latency_p10_ms": deciles[0],
            "latency_p90_ms": deciles[-1], "runs": runs, "warmup": warmup}


@contextmanager
def _native_stderr_silenced():
    """Send file descriptor 2 to /dev/null: the CPU profiler's native layer prints
    start/stop lines there that would clutter a run's console."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@torch.no_grad()
def peak_memory(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> int:
    """Peak bytes of a batch-1 inference: weights + peak activations."""
    model.eval().to(device)
    x = torch.randn(input_shape, device=device)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    weights += sum(b.numel() * b.element_size() for b in model.buffers())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        model(x)
        torch.cuda.synchronize(device)
        return weights + torch.cuda.max_memory_allocated(device) - base
    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(x)
    points = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    current = peak = 0
    for _, delta in points:
        current += delta
        peak = max(peak, current)
    return weights + peak


def profile_model(model: nn.Module, input_shape: tuple[int, ...], device: torch.device,
                  runs: int = 50, warmup: int = 10) -> dict:
    """Params, FLOPs, latency and peak memory of ``model`` at ``input_shape``."""
    model = model.to(device).eval()
    return {
        "params_M": count_params(model) / 1e6,
        "flops_G": count_flops(model, input_shape) / 1e9,
        **measure_latency(model, input_shape, device, warmup=warmup, runs=runs),
        "peak_mem_MB": peak_memory(model, input_shape, device) / 2**20,
        "input": list(input_shape),
        "device": device_name(device),
        "torch": torch.__version__,
    }
