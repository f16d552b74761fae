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

:func:`profile_distillation` measures one distillation training step instead (issue 12,
"memory made visible", EMKD's stated obstacle to 3D): the peak memory of the teacher
forward, the student forward and the distillation terms with the backward pass, and the
step time (``docs/memory-3d.md``).
"""

from __future__ import annotations

import bisect
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from typing import Callable

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from kdbench.errors import ConfigError
from kdbench.models.cost import count_flops, count_params


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


PHASES = ("teacher_forward", "student_forward", "distill_backward")
"""The phases of a distillation step :func:`profile_distillation` reports a peak for."""
MiB = 2**20
_MARK = "kdbench::"


def _cpu_phase_peaks(phases: list[tuple[str, Callable[[], None]]]) -> dict[str, int]:
    """Phase peaks on the CPU from the profiler's allocator events (``profile_memory=True``):
    every allocation and free PyTorch's CPU allocator makes (tensors, and kernels' scratch
    buffers taken from it) with its time; the running sum is the live bytes above the level
    when the first phase began, and a phase's peak is its highest value inside the phase's
    ``record_function`` range (or the level when the phase began, if it allocates nothing)."""
    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for name, run in phases:
            with record_function(_MARK + name):
                run()
    events = prof.profiler.kineto_results.events()
    memory = sorted((e.start_ns(), e.nbytes()) for e in events
                    if e.name() == "[memory]" and e.device_type() == torch._C._autograd.DeviceType.CPU)
    times, levels, level = [t for t, _ in memory], [], 0
    for _, nbytes in memory:
        level += nbytes
        levels.append(level)
    peaks = {}
    for e in events:
        if e.name().startswith(_MARK):
            start, end = e.start_ns(), e.start_ns() + e.duration_ns()
            first, last = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
            before = levels[first - 1] if first else 0
            peaks[e.name()[len(_MARK):]] = max([before, *levels[first:last]])
    return peaks


def phase_peaks(phases: list[tuple[str, Callable[[], None]]], device: torch.device) -> dict[str, int]:
    """Run ``phases`` (name, callable) in order; the peak bytes allocated during each, counted
    above the bytes allocated when the first began (what earlier phases left alive counts).

    CUDA: ``torch.cuda.reset_peak_memory_stats`` before each phase and
    ``torch.cuda.max_memory_allocated`` after it.  CPU: the profiler's allocator events
    (:func:`_cpu_phase_peaks`).
    """
    if device.type != "cuda":
        return _cpu_phase_peaks(phases)
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    peaks = {}
    for name, run in phases:
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        peaks[name] = torch.cuda.max_memory_allocated(device) - base
    return peaks


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def profile_distillation(teacher: nn.Module | None, student: nn.Module, method, input_shape: tuple[int, ...],
                         device: torch.device | str = "cpu", steps: int = 3) -> dict:
    """Peak memory per phase of one distillation training step, and the median step time.

    ``method`` is a :class:`~kdbench.methods.base.Method` or a registered method name (built
    with the two networks' feature roles); ``input_shape`` the batch ``(B, C, *spatial)``, 2D
    or 3D; labels are drawn at random.  The step is the training loop's: the teacher forward
    under ``no_grad`` with the method's feature taps, the student forward, the segmentation
    loss plus the method's terms, backward and an Adam step (bf16 autocast on CUDA).  One
    untimed step runs first (the optimiser's state exists from then on); the phases of the
    next are measured with :func:`phase_peaks`, then ``steps`` steps are timed.  The student
    and method are trained for those steps: pass copies of networks that must not change.
    Global random state is restored afterwards.

    Returns ``teacher_forward_MiB``, ``student_forward_MiB``, ``distill_backward_MiB`` (the
    highest live memory during each phase above the step's start — the teacher's retained
    outputs count in the later phases), ``step_peak_MiB`` (their maximum), ``static_MiB``
    (parameters and buffers of both networks and the method, optimiser state and the batch,
    alive throughout), ``step_ms`` (median over ``steps``), and the method, input, device,
    threads and how memory was measured.
    """
    from kdbench.benchmark.train import SegLoss
    from kdbench.methods import create_method
    from kdbench.methods.base import Batch, Outputs
    from kdbench.models.roles import FeatureTaps

    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        student.to(device)
        image = torch.randn(input_shape, device=device)
        with torch.no_grad():
            num_classes = student.eval()(image[:1]).shape[1]
        method_name = method if isinstance(method, str) else type(method).__name__
        if isinstance(method, str):
            method = create_method(method, student_roles=getattr(student, "feature_roles", None),
                                   teacher_roles=getattr(teacher, "feature_roles", None), num_classes=num_classes)
        label = torch.randint(0, num_classes, (input_shape[0], *input_shape[2:]), device=device)
        student.train()
        method.to(device).train()
        use_teacher = teacher is not None and method.requires_teacher
        if use_teacher:
            teacher.to(device).eval().requires_grad_(False)
        optimizer = torch.optim.Adam([*student.parameters(), *method.trainable_parameters()], lr=1e-4)
        seg_loss = SegLoss(method.seg_loss) if method.seg_loss != "none" else None
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
        taps, state = method.taps, {"teacher": None}
        batch = Batch(image=image, label=label, step=0, total_steps=steps + 2)

        def teacher_forward() -> None:
            if not use_teacher:
                return
            with torch.no_grad(), autocast:
                if hasattr(teacher, "soft_targets"):
                    state["teacher"] = teacher.soft_targets(image, label, taps)
                    return
                with FeatureTaps(teacher, taps) as t_taps:
                    logits = teacher(image)
                state["teacher"] = Outputs(logits.float(), {k: v.float() for k, v in t_taps.features.items()})

        def student_forward() -> None:
            with autocast, FeatureTaps(student, taps) as s_taps:
                logits = student(image)
                state["student"] = Outputs(logits.float(), {k: v.float() for k, v in s_taps.features.items()})

        def distill_backward() -> None:
            with autocast:
                terms = {"seg": seg_loss(state["student"].logits, label)} if seg_loss is not None else {}
                terms.update(method(state["student"], state["teacher"], batch))
            sum(terms.values()).backward()
            optimizer.step()
            method.after_step(state["student"], state["teacher"], batch)
            optimizer.zero_grad(set_to_none=True)
            state.update(teacher=None, student=None)

        step = [("teacher_forward", teacher_forward), ("student_forward", student_forward),
                ("distill_backward", distill_backward)]

        def run_step() -> None:
            for _, run in step:
                run()

        run_step()
        static = _tensor_bytes([*student.parameters(), *student.buffers(), *method.parameters(), *method.buffers(),
                                image, label, *(v for s in optimizer.state.values() for v in s.values())])
        if use_teacher:
            static += _tensor_bytes([*teacher.parameters(), *teacher.buffers()])
        peaks = phase_peaks(step, device)
        times = []
        for _ in range(steps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
            run_step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append((time.perf_counter() - started) * 1000)
    measure = ("torch.cuda.max_memory_allocated per phase" if device.type == "cuda" else
               "torch.profiler allocator events (PyTorch's CPU allocator: tensors and kernel scratch taken from it)")
    return {"method": method_name,
            **{f"{p}_MiB": peaks[p] / MiB for p in PHASES}, "step_peak_MiB": max(peaks.values()) / MiB,
            "static_MiB": static / MiB, "step_ms": statistics.median(times), "steps": steps,
            "input": list(input_shape), "device": device_name(device), "threads": torch.get_num_threads(),
            "memory_measure": measure, "torch": torch.__version__}


def memory_table(teacher: str = "ens-unet3d", student: str = "unet3d-s", teacher_width: float = 0.5,
                 student_width: float = 1.0, methods: tuple[str, ...] | None = None,
                 patches: tuple[int, ...] = (32, 48), batch: int = 2, num_classes: int = 3,
                 device: torch.device | str = "cpu", steps: int = 2) -> list[dict]:
    """:func:`profile_distillation` of every method (default: every registered one that runs on
    3D networks) on a registered 3D teacher → student pair at cubic ``patches``: the rows of
    ``docs/memory-3d.md``.  A method that cannot run on the pair gets its one-line error."""
    from kdbench.methods import METHODS, list_methods
    from kdbench.models import create_model

    names = methods or [m for m in list_methods() if 3 in METHODS.get(m).obj.spatial_dims]
    rows = []
    for patch in patches:
        for name in names:
            torch.manual_seed(0)
            pair = [create_model(model, in_channels=1, num_classes=num_classes, width=width)
                    for model, width in ((teacher, teacher_width), (student, student_width))]
            try:
                rows.append({"patch": patch, **profile_distillation(*pair, name, (batch, 1, patch, patch, patch),
                                                                    device, steps=steps)})
            except Exception as exc:  # the table says which methods could not run, and why
                rows.append({"patch": patch, "method": name, "error": " ".join(str(exc).split())})
    return rows
