"""``kdbench bench``: how fast kdbench's distillation step, planning and start-up are (issue 11, item 5).

:func:`run_bench` measures, in one process and naming the device:

* one distillation step of ``kd``, ``at`` and ``emkd`` through kdbench's own training step
  (:class:`~kdbench.benchmark.train.DistillStep`), against (a) a minimal hand-written PyTorch
  loop doing the same work — the same teacher and student (the quickstart's pair, at its
  ``quick`` budget), the same batch and precision, forward hooks, the loss written inline,
  an Adam step — and (b) the student-only step (segmentation loss, no teacher);
* the grid figure: the wall time of M students of one teacher trained one after another (as
  separate jobs train them) against in lockstep (one batch and one teacher forward for all,
  :func:`~kdbench.benchmark.train.train_models`), for M = 1, 3, 6 and 12 methods, on the
  quickstart pair and on a paper pair (ENet from RA-UNet at 128 px);
* preparing a folder of 256² RGB JPEG images with JPEG masks (Kvasir-SEG's layout and size),
  which it writes: images per second and the cache's size against the decoded uint8 images;
* planning a grid of about 1 000 jobs;
* ``import kdbench`` and ``kdbench --help`` in fresh processes.

Steps are timed round-robin (one kdbench step, one minimal step, one student-only step,
and again), so a machine whose load changes slows all three alike; the figure is the
median over ``steps`` steps after warm-up, the device synchronised around each step.
"""

from __future__ import annotations

import copy
import datetime
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

METHODS = ("kd", "at", "emkd")
"""The methods whose step is measured."""
QUICKSTART = Path(__file__).resolve().parents[2] / "tables" / "quickstart.yaml"
"""The grid whose teacher/student pair, batch size and image size the steps use (at ``quick``)."""
WARMUP = 3
"""Steps run before timing starts (allocator, thread pools, cuDNN autotuning)."""


@dataclass(frozen=True)
class Setting:
    """What one step trains: model configs (as a job's), batch size, image size, precision."""

    teacher: dict
    student: dict
    batch_size: int
    image_size: int

    def describe(self, device: torch.device) -> dict:
        """The setting as JSON: who distils into whom, on what batch, in which precision."""
        return {"teacher": f"{self.teacher['name']} width {self.teacher['width']:g}",
                "student": f"{self.student['name']} width {self.student['width']:g}",
                "batch": [self.batch_size, self.student["in_channels"], self.image_size, self.image_size],
                "classes": self.student["num_classes"],
                "precision": "bf16 autocast" if device.type == "cuda" else "fp32"}


def quickstart_setting(quick: bool = False) -> Setting:
    """The quickstart's ``kd`` job at its ``quick`` budget (``tables/quickstart.yaml``), as planned.

    ``quick``: the same pair on a batch of 2 at 32 px (for tests).
    """
    from kdbench.benchmark.grid import load_grid
    from kdbench.benchmark.plan import build_plan
    from kdbench.errors import ConfigError

    if not QUICKSTART.is_file():
        raise ConfigError(f"{QUICKSTART}: not found; `kdbench bench` needs a source checkout of kdbench")
    plan = build_plan(load_grid(QUICKSTART), "quick")
    job = next(j for j in plan.jobs if j.kind == "student" and j.config["method"]["name"] == "kd")
    recipe = job.config["train"]
    return Setting(teacher=plan.job(job.config["teacher"]).config["model"], student=job.config["model"],
                   batch_size=2 if quick else recipe["batch_size"], image_size=32 if quick else recipe["image_size"])


def make_batch(setting: Setting, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch: noisy images and label maps holding every class (a disc with a smaller disc in it)."""
    g = torch.Generator().manual_seed(seed)
    b, n, c = setting.batch_size, setting.image_size, setting.student["in_channels"]
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    centre = n / 2 + (torch.rand(b, 2, generator=g) - 0.5) * n / 4
    radius = ((yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2).sqrt()
    label = torch.zeros(b, n, n, dtype=torch.long)
    for k in range(1, setting.student["num_classes"]):
        label[radius < n * (0.35 - 0.1 * k)] = k
    image = label[:, None].float().expand(b, c, n, n) + 0.3 * torch.randn(b, c, n, n, generator=g)
    return image.contiguous().to(device), label.to(device)


# --------------------------------------------------------------------------- the minimal loop


def _tap(model: nn.Module, roles: tuple[str, ...], store: dict) -> None:
    """Forward hooks writing the outputs of the modules behind ``roles`` into ``store`` (kept for good)."""
    for role in roles:
        def hook(_module, _inputs, output, role=role):
            store[role] = output[-1] if isinstance(output, (list, tuple)) else output
        model.get_submodule(model.feature_roles[role].path).register_forward_hook(hook)


def _seg(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Cross-entropy + soft Dice over all classes (MONAI ``DiceCELoss`` defaults, smooth 1e-5)."""
    onehot = F.one_hot(label, logits.shape[1]).movedim(-1, 1).float()
    p = logits.softmax(1)
    inter, denom = (p * onehot).sum((2, 3)), (p + onehot).sum((2, 3))
    return F.cross_entropy(logits, label) + (1 - (2 * inter + 1e-5) / (denom + 1e-5)).mean()


def _kl(zs: torch.Tensor, zt: torch.Tensor, T: float = 4.0) -> torch.Tensor:
    """Hinton KD per pixel: ``T² · mean_pixels KL(softmax(zt/T) ‖ softmax(zs/T))``."""
    lt, ls = F.log_softmax(zt / T, 1), F.log_softmax(zs / T, 1)
    return (lt.exp() * (lt - ls)).sum(1).mean() * T * T


def _up(fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """The student's feature bilinearly resized to the teacher's size."""
    return fs if fs.shape[2:] == ft.shape[2:] else F.interpolate(fs, ft.shape[2:], mode="bilinear",
                                                                 align_corners=False)


def _rad(fs: torch.Tensor, ft: torch.Tensor, label: torch.Tensor, k: int) -> torch.Tensor:
    """EMKD's region affinity: (cos_s − cos_t)² between class prototypes, over pairs present."""
    label = F.interpolate(label[:, None].float(), ft.shape[2:], mode="nearest")[:, 0].long()
    masks = F.one_hot(label.flatten(1), k).transpose(1, 2).float()
    cos = []
    for f in (fs, ft):
        proto = masks @ f.flatten(2).transpose(1, 2) / (masks.sum(2, keepdim=True) + 1e-6)
        cos.append(F.cosine_similarity(proto[:, :, None], proto[:, None], dim=-1))
    present = masks.sum(2) > 0
    pairs = (present[:, :, None] & present[:, None] & torch.ones(k, k, dtype=torch.bool, device=fs.device).triu(1))
    n = pairs.sum((1, 2))
    per_image = ((cos[0] - cos[1]).pow(2) * pairs).sum((1, 2))
    return (per_image[n > 0] / n[n > 0]).mean() if bool((n > 0).any()) else fs.new_zeros(())


def minimal_step(method: str, student: nn.Module, teacher: nn.Module, num_classes: int, device: torch.device,
                 lr: float = 1e-3) -> Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    """A hand-written distillation step (what one would write without kdbench), as ``step(image, label)``.

    Hooks fixed once, the teacher under ``no_grad``, bf16 autocast on CUDA, the default
    hyper-parameters of kdbench's ``kd`` (T 4), ``at`` (p 2, weight 1000, low+high) and
    ``emkd`` (α 0.1, β1 = β2 = 0.9, T 4, p 4, low+high) written inline, then Adam.
    Returns the detached loss terms, named as kdbench names them.
    """
    roles = () if method == "kd" else ("low", "high")
    fs, ft = {}, {}
    _tap(student, roles, fs)
    _tap(teacher, roles, ft)
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step(image: torch.Tensor, label: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast:
            with torch.no_grad():
                zt = teacher(image).float()
            zs = student(image).float()
            terms = {"seg": _seg(zs, label)}
            if method == "kd":
                terms["kd"] = _kl(zs, zt)
            elif method == "at":
                terms["at"] = 1000 * sum(
                    (F.normalize(_up(fs[r], ft[r]).float().pow(2).mean(1).flatten(1), dim=1)
                     - F.normalize(ft[r].float().pow(2).mean(1).flatten(1), dim=1)).pow(2).mean() for r in roles)
            else:
                terms["pmd"] = 0.1 * _kl(zs, zt)
                terms["imd"] = 0.9 * sum(
                    (F.normalize(_up(fs[r], ft[r]).float().abs().pow(4).mean(1).flatten(1), dim=1)
                     - F.normalize(ft[r].float().abs().pow(4).mean(1).flatten(1), dim=1)).pow(2).sum(1).mean()
                    for r in roles)
                terms["rad"] = 0.9 * sum(_rad(_up(fs[r], ft[r]).float(), ft[r].float(), label, num_classes)
                                         for r in roles)
        optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        optimizer.step()
        return {k: v.detach() for k, v in terms.items()}

    return step


# --------------------------------------------------------------------------- kdbench's step


def kdbench_step(method: str | None, student: nn.Module, teacher: nn.Module | None, num_classes: int,
                 device: torch.device, lr: float = 1e-3) -> Callable[[torch.Tensor, torch.Tensor, int, int], dict]:
    """kdbench's own training step for ``method`` (``None``: the student alone, no teacher), as
    ``step(image, label, step, total) -> loss terms``: the step :func:`~kdbench.benchmark.train.train_model`
    runs (:class:`~kdbench.benchmark.train.DistillStep`), with the quickstart recipe's optimiser (Adam,
    constant ``lr``: the schedule is set outside the step) and segmentation loss (Dice + CE)."""
    from kdbench.benchmark.train import DistillStep, SegLoss, make_optimizer
    from kdbench.methods import create_method

    built = None
    params = list(student.parameters())
    if method is not None:
        built = create_method(method, student_roles=student.feature_roles, teacher_roles=teacher.feature_roles,
                              num_classes=num_classes).to(device).train()
        params += list(built.trainable_parameters())
    optimizer = make_optimizer("adam", params, lr, 0.0)
    return DistillStep(student, optimizer, built, teacher if built else None, SegLoss("dice_ce"), device)


# --------------------------------------------------------------------------- measuring


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work (no-op on the CPU)."""
    if device.type != "cpu":
        getattr(torch, device.type).synchronize(device)


@dataclass
class Contest:
    """The three steps of one method on one setting, each with its own copy of the same student."""

    kdbench: Callable
    minimal: Callable
    student_only: Callable
    image: torch.Tensor
    label: torch.Tensor


def contest(method: str, setting: Setting, device: torch.device, seed: int = 0) -> Contest:
    """Build the kdbench, minimal and student-only steps of ``method`` on ``setting``: three copies of
    one freshly initialised student (same weights), two of one teacher, one batch."""
    from kdbench.models import create_model

    def model(config: dict) -> nn.Module:
        return create_model(config["name"], in_channels=config["in_channels"], num_classes=config["num_classes"],
                            width=config["width"], **config.get("options", {}))

    torch.manual_seed(seed)
    teacher = model(setting.teacher).to(device).eval().requires_grad_(False)
    student = model(setting.student).to(device).train()
    classes = setting.student["num_classes"]
    image, label = make_batch(setting, device, seed)
    return Contest(kdbench=kdbench_step(method, copy.deepcopy(student), teacher, classes, device),
                   minimal=minimal_step(method, copy.deepcopy(student), copy.deepcopy(teacher), classes, device),
                   student_only=kdbench_step(None, copy.deepcopy(student), None, classes, device),
                   image=image, label=label)


def time_steps(c: Contest, device: torch.device, steps: int, warmup: int = WARMUP) -> dict[str, float]:
    """Median milliseconds per step of each step of ``c``, timed round-robin after ``warmup`` steps."""
    runs = {"kdbench": lambda i: c.kdbench(c.image, c.label, i, warmup + steps),
            "minimal": lambda i: c.minimal(c.image, c.label),
            "student_only": lambda i: c.student_only(c.image, c.label, i, warmup + steps)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(warmup + steps):
        for name, run in runs.items():
            _sync(device)
            start = time.perf_counter()
            run(i)
            _sync(device)
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    return {f"{name}_ms": statistics.median(t) for name, t in times.items()}


def bench_grid(jobs: int = 1000):
    """A generated grid on the phantom that plans to about ``jobs`` jobs (seeds scale it)."""
    from kdbench.benchmark.grid import validate_grid

    teachers, students = ["unet", "raunet"], ["tinyunet", "enet", "espnet", "mobilenetv2"]
    methods = ["none", "kd", "at", "emkd", "dkd", "fitnet", "spkd", "cwd"]
    # per seed: 3 jobs per teacher, 1 profile per student, 2 per (student, method, teacher) pair
    per_seed = 3 * len(teachers) + len(students) * (1 + 2 + 2 * (len(methods) - 1) * len(teachers))
    data = {"name": "bench", "budget": "paper", "datasets": [{"name": "phantom"}], "teachers": teachers,
            "students": students, "methods": methods,
            "protocol": {"seeds": list(range(max(1, round(jobs / per_seed))))}}
    return validate_grid(data, "<bench grid>")


def time_plan(jobs: int = 1000) -> tuple[float, int]:
    """Seconds to plan :func:`bench_grid` (``build_plan``), and how many jobs it planned."""
    from kdbench.benchmark.plan import build_plan

    grid = bench_grid(jobs)
    start = time.perf_counter()
    plan = build_plan(grid)
    return time.perf_counter() - start, len(plan.jobs)


def _cli() -> list[str]:
    """The ``kdbench`` console script beside this interpreter, else ``python -m kdbench``."""
    script = Path(sys.executable).parent / "kdbench"
    return [str(script)] if script.exists() else [sys.executable, "-m", "kdbench"]


def time_command(command: list[str], repeat: int = 3) -> float:
    """Median wall seconds of ``command`` run ``repeat`` times in fresh processes (it must succeed)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_bench(device: str | None = None, threads: int | None = None, steps: int = 20, quick: bool = False,
              grid: bool = True) -> dict:
    """Measure kdbench's speed on ``device`` (default: CUDA if present, else the CPU); see the module doc.

    ``threads`` sets torch's CPU threads; ``quick`` runs 2 steps after 1 warm-up on a batch
    of 2 at 32 px, plans a ~100-job grid and starts each command once (for tests).  Returns
    a JSON-serialisable dict: the device, threads, torch, CPU, date, the setting, per method
    ``kdbench_ms``, ``minimal_ms``, ``student_only_ms``, ``ratio`` (kdbench / minimal) and
    ``ratio_student_only`` (kdbench / student-only), ``plan_1000_jobs_s``, ``import_s``, ``help_s``,
    ``prepare`` (:func:`time_prepare`), and (``grid``) ``lockstep``: the grid figure of :func:`grid_figure`.
    """
    from kdbench.benchmark.profile import device_name, resolve_device

    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    if quick:
        steps = min(steps, 2)
    setting = quickstart_setting(quick)
    result = {"device": str(dev), "device_name": device_name(dev), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "cpu": cpu_model(), "python": platform.python_version(),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "setting": {**setting.describe(dev), "steps": steps, "warmup": 1 if quick else WARMUP},
              "steps": {}}
    for method in METHODS:
        figures = time_steps(contest(method, setting, dev), dev, steps, warmup=1 if quick else WARMUP)
        result["steps"][method] = {**figures, "ratio": figures["kdbench_ms"] / figures["minimal_ms"],
                                   "ratio_student_only": figures["kdbench_ms"] / figures["student_only_ms"]}
    if grid:
        result["lockstep"] = grid_figure(dev, steps, quick)
    result["prepare"] = time_prepare(20 if quick else PREPARE_IMAGES)
    seconds, jobs = time_plan(100 if quick else 1000)
    result.update(plan_1000_jobs_s=seconds, plan_jobs=jobs)
    repeat = 1 if quick else 3
    result["import_s"] = time_command([sys.executable, "-c", "import kdbench"], repeat)
    result["help_s"] = time_command([*_cli(), "--help"], repeat)
    return result


# --------------------------------------------------------------------------- the grid figure

LOCKSTEP_METHODS = ("none", "kd", "at", "emkd", "fitnet", "dkd", "skd", "spkd", "ifvd", "cwd", "mimic", "pa")
"""The methods of the grid figure, in order: M students are the first M (``none`` and 11 that need the teacher)."""
LOCKSTEP_SIZES = (1, 3, 6, 12)
PAPER_PAIR = {"teacher": "raunet", "student": "enet", "image_size": 128}
"""EMKD's Table II pair (RA-UNet → ENet) at 128 px, width 1, for the grid figure."""


def _pair_cases(setting: Setting, count: int = 4) -> list:
    from kdbench.datasets.phantom import make_phantom_case

    return [make_phantom_case(i, 0, setting.image_size, 4, 0.1, 0.3) for i in range(count)]


def time_lockstep(setting: Setting, device: torch.device, count: int, steps: int) -> dict[str, float]:
    """Seconds to train the first ``count`` students of :data:`LOCKSTEP_METHODS` for ``steps`` steps
    one after another (``train_model``, each running the teacher itself) and in lockstep
    (``train_models``); the same students, batches and recipe.  Networks are built outside the timing."""
    from kdbench.benchmark.train import Member, seed_everything, train_model, train_models
    from kdbench.methods import create_method
    from kdbench.models import create_model

    cases = _pair_cases(setting)
    recipe = {"epochs": 10_000, "optimizer": "adam", "lr": 1e-3, "min_lr": 1e-6, "weight_decay": 0.0,
              "schedule": "cosine", "batch_size": setting.batch_size, "image_size": setting.image_size,
              "augmentation": {"rotate": True, "flip": True}, "max_steps": steps}
    seed_everything(1)
    teacher = create_model(**{k: v for k, v in setting.teacher.items() if k != "options"},
                           **setting.teacher.get("options", {})).to(device)

    def students() -> list[Member]:
        out = []
        for name in LOCKSTEP_METHODS[:count]:
            seed_everything(0)
            model = create_model(**{k: v for k, v in setting.student.items() if k != "options"},
                                 **setting.student.get("options", {}))
            out.append(Member(model, create_method(name, student_roles=model.feature_roles,
                                                   teacher_roles=teacher.feature_roles,
                                                   num_classes=setting.student["num_classes"])))
        return out

    separate = 0.0
    for member in students():
        _sync(device)
        start = time.perf_counter()
        train_model(member.model, cases, recipe, 0, device, method=member.method, teacher=teacher)
        _sync(device)
        separate += time.perf_counter() - start
    members = students()
    _sync(device)
    start = time.perf_counter()
    train_models(members, cases, recipe, 0, device, teacher)
    _sync(device)
    together = time.perf_counter() - start
    return {"separate_s": separate, "lockstep_s": together, "ratio": together / separate}


def paper_setting(quick: bool = False) -> Setting:
    """ENet distilled from RA-UNet (EMKD's pair) at 128 px, batch 8 (``quick``: batch 2 at 32 px)."""
    common = {"in_channels": 1, "num_classes": 3, "width": 1.0, "options": {}}
    return Setting(teacher={"name": PAPER_PAIR["teacher"], **common}, student={"name": PAPER_PAIR["student"], **common},
                   batch_size=2 if quick else 8, image_size=32 if quick else PAPER_PAIR["image_size"])


def grid_figure(device: torch.device, steps: int, quick: bool = False) -> dict:
    """The grid figure (see the module doc): per pair, per M, separate and lockstep seconds and their ratio."""
    sizes = LOCKSTEP_SIZES[:2] if quick else LOCKSTEP_SIZES
    out = {}
    for name, setting in (("quickstart", quickstart_setting(quick)), ("paper", paper_setting(quick))):
        out[name] = {"setting": setting.describe(device), "steps": steps,
                     **{str(m): time_lockstep(setting, device, m, steps) for m in sizes}}
    return out


# --------------------------------------------------------------------------- data preparation

PREPARE_IMAGES = 400
"""Images in the folder the preparation figure writes (``quick``: 20)."""


def write_jpeg_folder(root: Path, count: int, size: int = 256) -> Path:
    """``images/NAME.jpg`` (RGB, textured) and ``masks/NAME.jpg`` (a disc) at ``size``², as Kvasir-SEG ships."""
    import numpy as np
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for i in range(count):
        cy, cx, r = rng.uniform(0.3, 0.7) * size, rng.uniform(0.3, 0.7) * size, rng.uniform(0.1, 0.25) * size
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        base = rng.integers(60, 200, size=3)
        image = np.clip(base + 40 * disc[..., None] + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"case{i:04d}.jpg", quality=90)
        Image.fromarray((disc * 255).astype(np.uint8)).save(root / "masks" / f"case{i:04d}.jpg", quality=90)
    return root


def time_prepare(count: int, workers: int = 1) -> dict[str, float]:
    """Prepare a freshly written folder of ``count`` 256² JPEG pairs (dataset ``folder``, image size 256)
    into a fresh cache: images per second, cache MB, decoded uint8 MB and their ratio."""
    import os
    import tempfile
    import warnings

    from kdbench.datasets import create_dataset
    from kdbench.datasets.prepare import prepare_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = write_jpeg_folder(Path(tmp) / "data", count)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the JPEG-mask note
            dataset = create_dataset("folder", root=str(root), image_size=256, cache_dir=str(Path(tmp) / "cache"))
            start = time.perf_counter()
            folder = prepare_dataset(dataset, workers=workers)
            seconds = time.perf_counter() - start
        cache = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    decoded = count * 256 * 256 * 3
    return {"images": count, "workers": workers, "seconds": seconds, "images_per_s": count / seconds,
            "cache_mb": cache / 2**20, "decoded_mb": decoded / 2**20, "cache_to_decoded": cache / decoded,
            "cpus": os.cpu_count() or 1}


# --------------------------------------------------------------------------- reporting

FIGURES = Path(__file__).resolve().parents[2] / "docs-results" / "bench"
"""Where the recorded figures live, one ``<device>.json`` per device (the docs render them)."""


def _cell(figures: dict) -> str:
    return (f"{figures['kdbench_ms']:.1f} / {figures['minimal_ms']:.1f} ms (**{figures['ratio']:.2f}×**; "
            f"{figures['ratio_student_only']:.2f}× student-only)")


def render_text(result: dict) -> str:
    """``result`` of :func:`run_bench` as lines for a terminal."""
    lines = [f"device {result['device_name']} · torch threads {result['threads']} · torch {result['torch']} · "
             f"CPU {result['cpu']} · {result['date']}",
             f"setting: {result['setting']['teacher']} → {result['setting']['student']}, batch "
             f"{'×'.join(map(str, result['setting']['batch']))}, {result['setting']['precision']}, median of "
             f"{result['setting']['steps']} steps",
             f"{'method':8} {'kdbench ms':>11} {'minimal ms':>11} {'ratio':>6} {'student-only ms':>16} {'ratio':>6}"]
    for method, f in result["steps"].items():
        lines.append(f"{method:8} {f['kdbench_ms']:11.1f} {f['minimal_ms']:11.1f} {f['ratio']:6.2f} "
                     f"{f['student_only_ms']:16.1f} {f['ratio_student_only']:6.2f}")
    for pair, figure in result.get("lockstep", {}).items():
        sizes = [k for k in figure if k.isdigit()]
        lines.append(f"lockstep, {pair} pair ({figure['setting']['teacher']} → {figure['setting']['student']}, "
                     f"{figure['steps']} steps): " + " · ".join(
                         f"M={m} {figure[m]['lockstep_s']:.1f} / {figure[m]['separate_s']:.1f} s "
                         f"({figure[m]['ratio']:.2f}×)" for m in sizes))
    if "prepare" in result:
        p = result["prepare"]
        lines.append(f"preparing {p['images']} 256² JPEGs: {p['images_per_s']:.0f} images/s, cache {p['cache_mb']:.0f} MB "
                     f"= {p['cache_to_decoded']:.2f}× the decoded uint8 images")
    lines += [f"planning {result['plan_jobs']} jobs: {result['plan_1000_jobs_s']:.3f} s",
              f"import kdbench: {result['import_s']:.2f} s · kdbench --help: {result['help_s']:.2f} s"]
    return "\n".join(lines)


def figures_markdown(folder: str | Path = FIGURES) -> str:
    """A Markdown table of the figures recorded in ``folder`` (every ``*.json``, one row per file)."""
    import json

    results = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))]
    if not results:
        return f"No figures recorded yet in `{Path(folder).name}/`."
    head = ["| device | threads | torch | measured | " + " | ".join(f"`{m}`: kdbench / minimal" for m in METHODS)
            + " | plan ~1 000 jobs | `import kdbench` | `kdbench --help` |",
            "|---" * (7 + len(METHODS)) + "|"]
    rows = [f"| {r['device_name']} ({r['cpu']}) | {r['threads']} | {r['torch']} | {r['date'][:10]} | "
            + " | ".join(_cell(r["steps"][m]) for m in METHODS)
            + f" | {r['plan_1000_jobs_s']:.2f} s ({r['plan_jobs']} jobs) | {r['import_s']:.2f} s | {r['help_s']:.2f} s |"
            for r in results]
    prepared = [f"| {r['device_name']} | {r['date'][:10]} | {p['images']} | {p['workers']} | {p['images_per_s']:.0f} | "
                f"{p['cache_mb']:.0f} MB | {p['decoded_mb']:.0f} MB | {p['cache_to_decoded']:.2f}× |"
                for r in results for p in [r.get("prepare")] if p]
    if prepared:
        prepared = ["", "Preparing a folder of 256² RGB JPEGs (dataset `folder`, image size 256):", "",
                    "| machine | measured | images | workers | images/s | cache | decoded uint8 | cache / decoded |",
                    "|---" * 8 + "|", *prepared]
    return "\n".join(head + rows + lockstep_markdown(results) + prepared)


def lockstep_markdown(results: list[dict]) -> list[str]:
    """The grid figures among ``results`` as a Markdown table (no lines when none has one)."""
    rows = [f"| {r['device_name']} | {r['threads']} | {r['date'][:10]} | {f['setting']['teacher']} → "
            f"{f['setting']['student']}, batch {'×'.join(map(str, f['setting']['batch']))}, {f['steps']} steps | "
            + " | ".join(f"{f[m]['lockstep_s']:.1f} / {f[m]['separate_s']:.1f} s (**{f[m]['ratio']:.2f}×**)"
                         if m in f else "–" for m in map(str, LOCKSTEP_SIZES)) + " |"
            for r in results for f in r.get("lockstep", {}).values()]
    if not rows:
        return []
    return ["", "Students in lockstep, lockstep / one after another (seconds for the steps named):", "",
            "| device | threads | measured | pair | " + " | ".join(f"M = {m}" for m in LOCKSTEP_SIZES) + " |",
            "|---" * (4 + len(LOCKSTEP_SIZES)) + "|", *rows]
