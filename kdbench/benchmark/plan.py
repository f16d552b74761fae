"""Grid → plan: a DAG of jobs whose ids hash their resolved configuration.

Jobs, each depending only on what it consumes (see :mod:`kdbench.benchmark.jobs`):

* ``teacher`` — train a network on the labels once per (dataset, fold, seed): a grid
  teacher, or an ensemble member;
* ``assistant`` — train a network on transformed images (PLC-KD's TA_f, TA_b);
* ``ensemble`` / ``team`` — a teacher source assembled from trained jobs (see
  :mod:`kdbench.benchmark.sources`); a method declares them, students share them;
* ``student`` — train a student with a method from one teacher source; ``none`` (the
  baseline) needs no teacher;
* ``evaluate`` — per-case metrics of one trained model on its fold's test cases;
* ``profile`` — params, FLOPs, latency and memory of one architecture at the input size.

A job's id is ``<kind>-<model>[-<method>]-<hash>``, the hash covering everything that
changes its result (the dependencies' ids included); display labels are kept in
``meta`` and never hashed, so renaming a row does not retrain anything.

A 3D grid (``volume: {dims: 3, ...}``, see ``docs/3d.md``) adds to every training job
of a 3D network a ``volume`` dict (patch, target spacing, foreground share, patches per
case: :func:`kdbench.datasets.patches.training_data`) and to every evaluate job an
``inference`` dict (``sliding_window`` for 3D networks, ``tri_planar`` for 2D ones when
asked: :func:`kdbench.benchmark.evaluate.evaluate_model`); 2D grids carry neither, so
their job ids do not change.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, TypedDict

from kdbench.benchmark.grid import BudgetSpec, GridSpec, ModelSpec, TrainSpec, VolumeSpec, check_widths, model_dims


class JobMeta(TypedDict, total=False):
    """How a job is shown — the keys ``plan.json``'s readers (results, leaderboards) rely on."""

    dataset: str
    fold: int
    seed: int
    role: Literal["teacher", "member", "assistant", "team", "student"]
    model: str
    """Registry name (or, for an ensemble, its label)."""
    model_label: str
    method: str | None
    method_label: str | None
    teacher: str | None
    """The teacher source's model name (students)."""
    teacher_label: str | None
    profile: str
    """The id of the profile job that measures this row's network."""


@dataclass(frozen=True)
class Job:
    """One unit of work: ``kind`` names a registered job kind (:data:`kdbench.benchmark.jobs.JOB_KINDS`),
    ``config`` is everything that changes its result (hashed into ``id``), ``meta`` how
    leaderboards show it (never hashed)."""

    id: str
    kind: str
    config: dict
    deps: tuple[str, ...] = ()
    meta: JobMeta = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Job":
        return cls(data["id"], data["kind"], data["config"], tuple(data["deps"]), data.get("meta", {}))


@dataclass
class Plan:
    """All jobs of a grid at one budget, in an order where dependencies come first.

    ``effective`` is what the budget actually runs (see :func:`effective_settings`).
    """

    grid: GridSpec
    budget: str
    jobs: list[Job]
    effective: dict = field(default_factory=dict)

    def job(self, job_id: str) -> Job:
        return next(j for j in self.jobs if j.id == job_id)

    def of_kind(self, kind: str) -> list[Job]:
        return [j for j in self.jobs if j.kind == kind]


def config_hash(config: dict) -> str:
    """A short stable hash of a JSON-able config.

    A dataset's ``root`` as typed is left out when the config carries the dataset's
    ``key`` (its resolved cache parameters): ``./data`` and ``/abs/data`` are one job.
    """
    data = config.get("dataset")
    if isinstance(data, dict) and "key" in data:
        config = {**config, "dataset": {k: v for k, v in data.items() if k != "root"}}
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+]+", "_", text).strip("_")


def make_job(kind: str, name: str, config: dict, deps: tuple[str, ...] = (), meta: dict | None = None) -> Job:
    config = {"kind": kind, **config, "deps": list(deps)}
    return Job(f"{kind}-{_slug(name)}-{config_hash(config)}", kind, config, deps, meta or {})


def resolve_recipe(recipe: TrainSpec, budget: BudgetSpec) -> dict:
    """The recipe with the budget's caps applied."""
    out = recipe.model_dump()
    if budget.epochs is not None:
        out["epochs"] = min(out["epochs"], budget.epochs)
    if budget.image_size is not None:
        out["image_size"] = min(out["image_size"], budget.image_size)
    if budget.max_steps is not None:
        out["max_steps"] = min(out["max_steps"] or budget.max_steps, budget.max_steps)
    return out


def resolve_patch(volume: VolumeSpec, budget: BudgetSpec) -> list[int] | None:
    """The 3D patch with the budget's image-size cap applied to every axis (``None`` in a 2D grid)."""
    if volume.dims != 3:
        return None
    cap = budget.image_size
    return [min(p, cap) if cap is not None else p for p in volume.patch]


def volume_config(volume: VolumeSpec, patch: list[int] | None) -> dict:
    """The ``volume`` dict of a 3D network's training job (see :func:`kdbench.datasets.patches.training_data`)."""
    return {"dims": 3, "patch": patch, "spacing": volume.spacing, "foreground_share": volume.foreground_share,
            "patches_per_case": volume.patches_per_case}


def inference_config(volume: VolumeSpec, patch: list[int] | None, dims: int) -> dict | None:
    """The ``inference`` dict of an evaluate job for a network of ``dims`` (``None``: slice by slice)."""
    if dims == 3:
        return {"mode": "sliding_window", "patch": patch, "overlap": volume.overlap,
                "sw_batch_size": volume.sw_batch_size, "spacing": volume.spacing}
    if volume.tri_planar:
        return {"mode": "tri_planar", "spacing": None}
    return None


def effective_settings(grid: GridSpec, budget: BudgetSpec, student_recipe: dict, teacher_recipe: dict,
                       seeds: list[int], folds: list[int]) -> dict:
    """What a budget really runs, and a line for everything it changed from the grid.

    Shown by ``--dry-run`` and in every leaderboard header, so that a reduced run can
    never be read as the grid's own recipe (e.g. ``"seeds [0, 1] → [0]"``).
    """
    changed = []
    for key, label in (("epochs", "epochs"), ("max_steps", "max steps"), ("image_size", "image size")):
        for who, typed, used in (("", grid.train, student_recipe), ("teacher ", grid.teacher_recipe(), teacher_recipe)):
            before, after = getattr(typed, key), used[key]
            if before != after and not (who and before == getattr(grid.train, key) and after == student_recipe[key]):
                changed.append(f"{who}{label} {before if before is not None else 'unlimited'} → {after}")
    if budget.width != 1:
        for group in ("teachers", "students"):
            for m in getattr(grid, group):
                changed.append(f"{group[:-1]} {m.display} width {m.width:g} → {m.width * budget.width:g}")
    if seeds != grid.protocol.seeds:
        changed.append(f"seeds {grid.protocol.seeds} → {seeds}")
    if folds != grid.protocol.fold_ids:
        changed.append(f"folds {grid.protocol.fold_ids} → {folds}")
    if budget.max_cases is not None:
        changed.append(f"at most {budget.max_cases} cases per dataset")
    patch = resolve_patch(grid.volume, budget)
    if patch is not None and patch != grid.volume.patch:
        changed.append(f"patch {'×'.join(map(str, grid.volume.patch))} → {'×'.join(map(str, patch))}")
    return {"patch": patch, "epochs": student_recipe["epochs"], "max_steps": student_recipe["max_steps"],
            "image_size": student_recipe["image_size"], "batch_size": student_recipe["batch_size"],
            "teacher_epochs": teacher_recipe["epochs"], "teacher_max_steps": teacher_recipe["max_steps"],
            "student_width": [s.width * budget.width for s in grid.students],
            "teacher_width": [t.width * budget.width for t in grid.teachers],
            "seeds": seeds, "folds": folds, "max_cases": budget.max_cases, "changed": changed}


def _model_config(spec: ModelSpec, budget: BudgetSpec, in_channels: int, num_classes: int) -> dict:
    return {"name": spec.name, "width": spec.width * budget.width, "options": spec.options,
            "in_channels": in_channels, "num_classes": num_classes}


def data_config(dataset, spec, image_size: int) -> dict:
    """The dataset part of a job config.  ``key`` is what the job hash sees: the
    prepared data's cache parameters (the resolved root, not the string as typed)."""
    key = dataset.cache_params() if hasattr(dataset, "cache_params") else {"name": spec.name, "options": spec.options}
    return {"name": spec.name, "root": spec.root, "options": spec.options, "image_size": image_size,
            "targets": {k: list(v) for k, v in dataset.targets.items()}, "key": key}


def _shipped_grid(grid: GridSpec) -> str:
    """How to name the grid's file in a suggested command: ``tables/<name>.yaml`` when it is there."""
    import kdbench

    relative = Path("tables") / f"{grid.name}.yaml"
    if relative.is_file():
        return relative.as_posix()
    shipped = Path(kdbench.__file__).resolve().parents[1] / relative
    return str(shipped) if shipped.is_file() else "GRID.yaml"


def missing_data_message(grid: GridSpec, missing: list[int]) -> str:
    """One line for datasets whose root is missing (``grid.datasets[i]`` for ``i`` in ``missing``):
    which data, where to get it, how to prepare it and point kdbench at it, and the command that
    runs the same grid on the built-in phantom now (``docs/grid-files.md``, "Paper grids and their data")."""
    from kdbench.benchmark.grid import DATA_ENV, data_env_name
    from kdbench.datasets import DATASETS

    def listed(items: list[str]) -> str:
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"

    specs = [grid.datasets[i] for i in missing]
    names = list(dict.fromkeys(ds.name for ds in specs))
    reasons = []
    for ds in specs:
        if ds.root is None or not ds.root.strip():
            reasons.append(f"{ds.name}: no root")
        else:
            env = next((v for v in (data_env_name(ds.name), DATA_ENV) if os.environ.get(v, "").strip()
                        and ds.root.startswith(os.environ[v].strip())), None)
            reasons.append(f"{ds.name}: root {ds.root!r}" + (f" (from {env})" if env else "") + " not found")
    sources = [f"{name} ({DATASETS.get(name).obj.download})" for name in names
               if getattr(DATASETS.get(name).obj, "download", "")]
    grid_file = _shipped_grid(grid)
    return (f"{grid_file} needs data this machine does not have: {listed(names)} ({'; '.join(reasons)}). "
            + (f"Get {listed(sources)} (the grid file's comments say which data and layout); " if sources else "")
            + "check and cache each with `kdbench datasets prepare NAME --root DIR`; then point kdbench at it: "
            + listed([f"{data_env_name(n)}=DIR" for n in names])
            + f" (or {DATA_ENV}=DIR holding one folder per dataset name, or "
            + listed([f"--set datasets.{i}.root=DIR" for i in missing]) + ", or `root:` in the grid). "
            + f"To run the same grid on the built-in phantom now: "
              f"kdbench run --grid {grid_file} --dataset phantom --budget smoke")


def build_plan(grid: GridSpec, budget: str | None = None, device: str = "cpu", precision: str = "fp32") -> Plan:
    """Expand ``grid`` at ``budget`` (default: the grid's) into jobs.

    ``precision`` (``fp32``, or ``bf16-autocast`` on CUDA) is part of every training
    job's hash: the same grid on another precision is another result.
    """
    from kdbench.datasets import create_dataset
    from kdbench.errors import MissingRootError
    from kdbench.methods import METHODS, method_defaults

    budget_name = budget or grid.budget
    check_widths(grid, budget_name, f"grid '{grid.name}'")
    b = grid.budget_spec(budget_name)
    student_recipe = {**resolve_recipe(grid.train, b), "precision": precision}
    teacher_recipe = {**resolve_recipe(grid.teacher_recipe(), b), "precision": precision}
    image_size = student_recipe["image_size"]
    patch = resolve_patch(grid.volume, b)
    folds = grid.protocol.fold_ids[: b.folds] if b.folds else grid.protocol.fold_ids
    seeds = grid.protocol.seeds[: b.seeds] if b.seeds else grid.protocol.seeds

    jobs: list[Job] = []

    def add(job: Job) -> Job:
        jobs.append(job)
        return job

    def dims_of(model: dict) -> int:
        """3 for a 3D network, or an ensemble with a 3D member; else 2."""
        return max(model_dims(m["name"]) for m in model.get("ensemble", [model]))

    def trained(model: dict) -> dict:
        """The ``volume`` part of a training job's config (3D networks only)."""
        return {"volume": volume_config(grid.volume, patch)} if model_dims(model["name"]) == 3 else {}

    def profile_job(model: dict, label: str, dataset: str) -> str:
        spatial = patch if dims_of(model) == 3 else [image_size, image_size]
        shape = [1, (model["ensemble"][0] if "ensemble" in model else model)["in_channels"], *spatial]
        return add(make_job("profile", model.get("name", "ensemble"), {"model": model, "input": shape, "device": device},
                            meta={"model": model.get("name", "ensemble"), "model_label": label,
                                  "dataset": dataset})).id

    datasets, missing = [], []
    for i, ds in enumerate(grid.datasets):  # every missing root is told at once
        try:
            datasets.append(create_dataset(ds.name, root=ds.root, image_size=image_size, targets=ds.targets,
                                           **ds.options))
        except MissingRootError:
            missing.append(i)
    if missing:
        raise MissingRootError(missing_data_message(grid, missing))
    for ds, dataset in zip(grid.datasets, datasets):
        data = data_config(dataset, ds, image_size)
        c_in, n_cls = dataset.in_channels, dataset.num_classes

        def model_config(spec: dict | ModelSpec) -> dict:
            if isinstance(spec, ModelSpec):
                return _model_config(spec, b, c_in, n_cls)
            return {"name": spec["name"], "width": spec.get("width", 1.0) * b.width,
                    "options": spec.get("options", {}), "in_channels": c_in, "num_classes": n_cls}

        for fold in folds:
            split = {"folds": grid.protocol.folds, "fold": fold, "seed": grid.protocol.split_seed,
                     "test_fraction": grid.protocol.test_fraction, "max_cases": b.max_cases}
            for seed in seeds:
                common = {"dataset": data, "split": split, "seed": seed}
                where = {"dataset": ds.name, "fold": fold, "seed": seed}

                def evaluate(train: Job, model: dict) -> None:
                    inference = inference_config(grid.volume, patch, dims_of(model))
                    add(make_job("evaluate", train.meta["model"],
                                 {"train": train.id, **common, **({"inference": inference} if inference else {})},
                                 deps=(train.id,), meta=train.meta))

                def side_jobs(side, t_job: Job | None) -> Job:
                    """The jobs of a method's teacher side; returns the source job students read."""
                    if side.kind == "ensemble":
                        members, configs = [], []
                        for member in side.members:
                            model = model_config(member.model) if member.model else t_job.config["model"]
                            configs.append(model)
                            members.append(add(make_job(
                                "teacher", model["name"],
                                {**common, "model": model, "train": teacher_recipe, "loss": member.loss,
                                 "member": member.index, **trained(model)},
                                meta={**where, "role": "member", "model": model["name"],
                                      "model_label": f"{side.label} member {member.index}"})))
                        ids = tuple(m.id for m in members)
                        meta = {**where, "role": "teacher", "model": side.label, "model_label": side.label,
                                "profile": profile_job({"ensemble": configs}, side.label, ds.name)}
                        job = add(make_job("ensemble", "ensemble", {**common, "members": list(ids)}, deps=ids,
                                           meta=meta))
                        evaluate(job, {"ensemble": configs})
                        return job
                    assistants = {}
                    for a in side.assistants:
                        deps = (t_job.id,) if a.needs_teacher else ()
                        assistants[a.name] = add(make_job(
                            "assistant", f"{t_job.meta['model']}-{a.name}",
                            {**common, "model": t_job.config["model"], "train": teacher_recipe,
                             "transform": a.transform, "teacher": t_job.id if a.needs_teacher else None,
                             **trained(t_job.config["model"])},
                            deps=deps, meta={**where, "role": "assistant", "model": t_job.meta["model"],
                                             "model_label": f"{t_job.meta['model_label']} {a.name}"})).id
                    deps = (t_job.id, *assistants.values())
                    return add(make_job("team", f"{t_job.meta['model']}-team",
                                        {**common, "teacher": t_job.id, "assistants": assistants, **side.options},
                                        deps=deps, meta={**t_job.meta, "role": "team"}))

                teacher_jobs: list[Job] = []
                for t in grid.teachers:
                    model = model_config(t)
                    meta = {**where, "role": "teacher", "model": t.name, "model_label": t.display,
                            "profile": profile_job(model, t.display, ds.name)}
                    teacher_jobs.append(add(make_job("teacher", t.name, {**common, "model": model,
                                                                        "train": teacher_recipe, **trained(model)},
                                                     meta=meta)))
                    evaluate(teacher_jobs[-1], model)
                for s in grid.students:
                    model = model_config(s)
                    prof = profile_job(model, s.display, ds.name)
                    for m in grid.methods:
                        cls = METHODS.get(m.name).obj
                        pairs = teacher_jobs if cls.requires_teacher else [None]
                        for t_job in pairs:
                            source = t_job
                            side = cls.teacher_side(method_defaults(m.name, m.params),
                                                    t_job.config["model"] if t_job else None)
                            if side is not None:
                                source = side_jobs(side, t_job)
                            config = {**common, "model": model, "train": student_recipe,
                                      "method": {"name": m.name, "params": m.params},
                                      "teacher": source.id if source else None, **trained(model)}
                            meta = {**where, "role": "student", "model": s.name, "model_label": s.display,
                                    "method": m.name, "method_label": m.label,
                                    "teacher_label": source.meta["model_label"] if source else None,
                                    "teacher": source.meta["model"] if source else None, "profile": prof}
                            evaluate(add(make_job("student", f"{s.name}-{m.name}", config,
                                                  deps=(source.id,) if source else (), meta=meta)), model)
    unique = {}  # a job reached twice (a shared profile, ensemble or team) runs once
    for job in jobs:
        unique.setdefault(job.id, job)
    effective = effective_settings(grid, b, student_recipe, teacher_recipe, list(seeds), list(folds))
    return Plan(grid, budget_name, list(unique.values()), effective)
