"""Grid files (``tables/*.yaml``): a validated schema and its loader.

A grid names datasets, teachers, students and methods, the training recipe, the
protocol (seeds, folds) and the leaderboard it renders.  ``budget`` picks a preset
(``smoke`` / ``quick`` / ``paper``) that caps epochs and image size and scales model
width, so any grid can run as a quick check or at the paper's scale.  Every
validation error is one line naming the file, the field, the bad value and what is
allowed.  YAML is read with ``safe_load``; the grid never imports code — names become
objects only through the registries.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kdbench.errors import ConfigError, KdbenchError

BUDGETS = ("smoke", "quick", "paper")
METRICS = ("dice", "iou", "voe", "rvd", "hd95", "assd")
COSTS = ("params", "flops", "latency", "memory")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(_Strict):
    """A dataset: registry name, where it lives, which targets to evaluate, options."""

    name: str
    root: str | None = None
    targets: list[str] | dict[str, int | str | list[int | str]] | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class ModelSpec(_Strict):
    """A teacher or student: registry name, display label, width multiplier, options."""

    name: str
    label: str | None = None
    width: float = Field(1.0, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @property
    def display(self) -> str:
        return self.label or self.name


class MethodSpec(BaseModel):
    """A method: a name, or a name with hyper-parameter overrides and a label.

    ``kd`` · ``{name: kd, T: 2, label: kd_T2}`` · ``{compose: [kd, at], label: kd+at}``.
    """

    model_config = ConfigDict(extra="forbid")
    name: str
    label: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value, "label": value}
        if not isinstance(value, dict):
            return value
        value = dict(value)
        if "compose" in value:
            parts = value.pop("compose")
            label = value.pop("label", None)
            if not isinstance(parts, list) or not parts:
                raise ValueError("compose needs a non-empty list of methods")
            if value:
                raise ValueError(f"compose takes only 'compose' and 'label', not '{next(iter(value))}'")
            names = [p if isinstance(p, str) else (p.get("label") or p.get("name", "?")) for p in parts]
            return {"name": "compose", "label": label or "+".join(names), "params": {"methods": parts}}
        name = value.pop("name", None)
        label = value.pop("label", None)
        if "params" in value and isinstance(value["params"], dict) and len(value) == 1:
            value = value["params"]
        if label is None:
            label = name if not value else f"{name}(" + ",".join(f"{k}={v}" for k, v in value.items()) + ")"
        return {"name": name, "label": label, "params": value}


class Augmentation(_Strict):
    """Random rotation (by multiples of 90°) and flips, as in EMKD."""

    rotate: bool = True
    flip: bool = True


class TrainSpec(_Strict):
    """The training recipe (EMKD's by default: Adam, lr 1e-3 → 1e-6 cosine, 60 epochs)."""

    epochs: int = Field(60, gt=0)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(1e-6, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    batch_size: int = Field(8, gt=0)
    image_size: int = Field(512, ge=16)
    augmentation: Augmentation = Field(default_factory=Augmentation)
    max_steps: int | None = Field(None, gt=0)


class ProtocolSpec(_Strict):
    """Seeds and folds: every (fold, seed) pair trains its own teacher and students."""

    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    folds: int = Field(1, gt=0)
    run_folds: list[int] | None = None
    split_seed: int = 0
    test_fraction: float | None = Field(None, gt=0, lt=1)

    @property
    def fold_ids(self) -> list[int]:
        return self.run_folds if self.run_folds is not None else list(range(self.folds))


class BudgetSpec(_Strict):
    """A budget preset: caps on epochs, steps and image size, a width multiplier, a case cap."""

    epochs: int | None = Field(None, gt=0)
    max_steps: int | None = Field(None, gt=0)
    image_size: int | None = Field(None, ge=16)
    width: float = Field(1.0, gt=0)
    max_cases: int | None = Field(None, ge=2)
    folds: int | None = Field(None, gt=0)
    seeds: int | None = Field(None, gt=0)


DEFAULT_BUDGETS: dict[str, BudgetSpec] = {
    "smoke": BudgetSpec(epochs=1, max_steps=3, image_size=32, width=0.125, max_cases=6, folds=1, seeds=1),
    "quick": BudgetSpec(epochs=10, image_size=64, width=0.25, folds=1, seeds=1),
    "paper": BudgetSpec(),
}


class PaperRef(_Strict):
    """Which published table a leaderboard sits beside, and how grid names map to the paper's."""

    paper: str
    table: str
    names: dict[str, str] = Field(default_factory=dict)
    targets: dict[str, str] = Field(default_factory=dict)


class LeaderboardSpec(_Strict):
    """What the rendered leaderboard shows."""

    title: str | None = None
    targets: list[str] | None = None
    metrics: list[Literal["dice", "iou", "voe", "rvd", "hd95", "assd"]] = Field(default_factory=lambda: ["dice"])
    cost: list[Literal["params", "flops", "latency", "memory"]] = Field(
        default_factory=lambda: ["params", "flops", "latency"])
    reproduces: PaperRef | None = None


class GridSpec(_Strict):
    """A whole grid file."""

    name: str
    description: str = ""
    budget: Literal["smoke", "quick", "paper"] = "paper"
    budgets: dict[Literal["smoke", "quick", "paper"], BudgetSpec] = Field(default_factory=dict)
    datasets: list[DatasetSpec] = Field(min_length=1)
    teachers: list[ModelSpec] = Field(default_factory=list)
    students: list[ModelSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    train: TrainSpec = Field(default_factory=TrainSpec)
    teacher_train: dict[str, Any] = Field(default_factory=dict)
    protocol: ProtocolSpec = Field(default_factory=ProtocolSpec)
    leaderboard: LeaderboardSpec = Field(default_factory=LeaderboardSpec)

    def budget_spec(self, budget: str | None = None) -> BudgetSpec:
        """The preset for ``budget`` (default: the grid's), with the grid's own overrides."""
        name = budget or self.budget
        return self.budgets.get(name, DEFAULT_BUDGETS[name])

    def teacher_recipe(self) -> TrainSpec:
        """The training recipe for teachers: ``train`` updated with ``teacher_train``."""
        return TrainSpec(**{**self.train.model_dump(), **self.teacher_train})


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-before[_normalise()]", "function-before[_from_name()]") or "[" in str(part):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _lookup(data: Any, loc: tuple) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _allowed_fields(loc: tuple) -> list[str]:
    """Field names allowed at the model that ``loc`` (ending in the bad key) points into."""
    model: Any = GridSpec
    for part in loc[:-1]:
        if isinstance(part, int) or "[" in str(part):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        for arg in list(candidates):
            candidates.extend(getattr(arg, "__args__", ()))
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def format_validation_error(source: str, exc: ValidationError, data: Any) -> str:
    """One line: file, field, bad value, what is allowed."""
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    field = _field_path(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        allowed = _allowed_fields(loc)
        key = str(loc[-1])
        hint = difflib.get_close_matches(key, allowed, n=1)
        maybe = f" — did you mean '{hint[0]}'?" if hint else ""
        return f"{source}: {field}: unknown field{maybe} (allowed: {', '.join(allowed)})"
    value = _lookup(data, [p for p in loc if "[" not in str(p) or isinstance(p, int)])
    msg = err["msg"].replace("Value error, ", "")
    shown = f" = {value!r}" if value is not None and not isinstance(value, (dict, list)) else ""
    return f"{source}: {field}{shown}: {msg}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-4"`` → (``["train", "lr"]``, ``1e-4``); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[\w]+)*", key.strip()):
        raise ConfigError(f"--set {text!r}: '{key}' is not a dotted field name")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_override(data: dict, text: str) -> None:
    """Apply one ``key=value`` override to raw grid data.

    Lists are indexed by number (``methods.1.T=2``); a list entry given as a bare name
    (``kd``) becomes ``{name: kd}`` when a field of it is set.
    """
    path, value = parse_override(text)
    node: Any = data
    for part in path[:-1]:
        if isinstance(node, list):
            if not (part.isdigit() and int(part) < len(node)):
                node = None
            else:
                if isinstance(node[int(part)], str):  # a bare name is short for {name: ...}
                    node[int(part)] = {"name": node[int(part)]}
                node = node[int(part)]
        else:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if node is None:
            raise ConfigError(f"--set {text!r}: no field '{part}'")
    last = path[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {text!r}: no field '{last}'")


def read_grid_data(path: str | Path) -> dict:
    """The raw mapping of a grid file (``safe_load``), with a one-line error on bad YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such grid file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a grid file is a mapping of fields (name, datasets, teachers, ...)")
    data.setdefault("name", path.stem)
    return data


def validate_grid(data: dict, source: str = "<grid>") -> GridSpec:
    """Validate raw grid data: the schema, then every name against its registry."""
    try:
        grid = GridSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, data)) from None
    _check_names(grid, source)
    return grid


def load_grid(path: str | Path, overrides: list[str] | tuple[str, ...] = (), dataset: str | None = None) -> GridSpec:
    """Read, override and validate a grid file.

    ``overrides`` are ``key=value`` strings (``train.lr=1e-4``); ``dataset`` replaces the
    grid's datasets with that one dataset (default targets), so any paper grid can run
    on the built-in phantom.
    """
    data = read_grid_data(path)
    if dataset is not None:
        data["datasets"] = [{"name": dataset}]
        leaderboard = data.get("leaderboard")
        if isinstance(leaderboard, dict):
            leaderboard.pop("targets", None)
    for text in overrides:
        apply_override(data, text)
    return validate_grid(data, str(path))


def _check_names(grid: GridSpec, source: str) -> None:
    from kdbench.datasets import DATASETS
    from kdbench.methods import METHODS, create_method, method_params
    from kdbench.models import MODELS

    def known(registry, name: str, field: str) -> None:
        if name not in registry:
            try:
                registry.get(name)
            except KdbenchError as exc:
                raise ConfigError(f"{source}: {field} = '{name}': {exc}") from None

    for i, d in enumerate(grid.datasets):
        known(DATASETS, d.name, f"datasets[{i}].name")
    for group in ("teachers", "students"):
        for i, m in enumerate(getattr(grid, group)):
            known(MODELS, m.name, f"{group}[{i}].name")
    labels: set[str] = set()
    for i, m in enumerate(grid.methods):
        known(METHODS, m.name, f"methods[{i}].name")
        if m.label in labels:
            raise ConfigError(f"{source}: methods[{i}].label = '{m.label}': used twice; give each method a unique label")
        labels.add(m.label)
        if m.name == "compose":
            try:
                create_method("compose", **m.params)
            except KdbenchError as exc:
                raise ConfigError(f"{source}: methods[{i}]: {exc}") from None
            continue
        allowed = method_params(m.name)
        for key in m.params:
            if key not in allowed:
                raise ConfigError(
                    f"{source}: methods[{i}].{key}: method '{m.name}' has no parameter '{key}' "
                    f"(allowed: {', '.join(allowed) or 'none'})"
                )
    if not grid.teachers and any(METHODS.get(m.name).obj.requires_teacher for m in grid.methods):
        raise ConfigError(f"{source}: teachers: empty, but methods other than 'none' need a teacher")
    ref = grid.leaderboard.reproduces
    if ref is not None:
        from kdbench.leaderboards.paper import paper_tables

        tables = paper_tables()
        if (ref.paper, ref.table) not in tables:
            choices = ", ".join(f"{p} {t}" for p, t in sorted(tables))
            raise ConfigError(
                f"{source}: leaderboard.reproduces = {ref.paper} table {ref.table}: no such table (known: {choices})"
            )
