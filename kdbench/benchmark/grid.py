"""Grid files (``tables/*.yaml``): a validated schema and its loader.

A grid names datasets, teachers, students and methods, the training recipe, the
protocol (seeds, folds) and the leaderboard it renders.  ``budget`` picks a preset
(``smoke`` / ``quick`` / ``paper``) that caps epochs and image size and scales model
width, so any grid can run as a quick check or at the paper's scale.

Everything is checked at load time, before any job runs, and every error is one line
naming the file, the field, the bad value and what is allowed: the YAML itself (size,
UTF-8, nesting depth, alias expansion, duplicate keys), the schema (types, ranges,
finite numbers), names against their registries, method hyper-parameters and model
and dataset options against their constructors' annotations, and the grid as a whole
(a safe ``name``, unique labels, no duplicate entries, leaderboard targets that some
dataset defines).  YAML is read with a limited ``SafeLoader``; the grid never
imports code — names become objects only through the registries.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import yaml
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model,
                      field_serializer, model_validator)
from pydantic.fields import FieldInfo

from kdbench.errors import ConfigError, KdbenchError
from kdbench.params import Bool, Int, Real, Text, check_kwargs, one_line, show

BUDGETS = ("smoke", "quick", "paper")
METRICS = ("dice", "iou", "voe", "rvd", "hd95", "assd")
COSTS = ("params", "flops", "latency", "memory", "time")

MAX_BYTES = 1 << 20
"""Largest grid file read (1 MiB)."""
MAX_DEPTH = 50
"""Deepest nesting of YAML collections, aliases expanded."""
MAX_NODES = 20_000
"""Most YAML values in a grid, aliases expanded (an alias bomb stops here; the largest shipped grid has ~300)."""
MAX_FOLDS = 100
"""Most cross-validation folds."""
LABEL_CHARS = 80
"""Longest label, dataset or model name, or target name."""
SEED_LIMIT = 2**32
"""Seeds and the split seed are below this (what numpy and torch seed with)."""
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A grid ``name`` (it names the run directory): 1–64 letters, digits, ``_ . -``, no ``..``."""
MIN_WIDTH = 1 / 64
"""Narrowest width multiplier, also as trained (the grid's width × the budget's): below it even a
64-channel layer rounds to no channel, every layer sits at its factory's floor (4 or 8 channels)
and the network no longer changes with width, so its "×width" label would be false."""
MAX_WIDTH = 8.0
"""Widest width multiplier, also as trained: ×8 already gives a U-Net of about 2 G parameters."""
MODEL_ARGS = ("in_channels", "num_classes", "width")
"""Model factory arguments that come from the dataset and the grid entry, never from ``options``."""
DATASET_ARGS = ("root", "image_size", "targets")
"""Dataset constructor arguments that come from the grid entry and recipe, never from ``options``."""


def _unique(values: list) -> list:
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{show(value)} appears twice (allowed: each value once)")
        seen.add(value)
    return values


Unique = AfterValidator(_unique)
Seed = Annotated[Int, Field(ge=0, lt=SEED_LIMIT)]
ImageSize = Annotated[Int, Field(ge=16, le=4096)]  # a larger one would exhaust memory while preparing
Width = Annotated[Real, Field(ge=MIN_WIDTH, le=MAX_WIDTH)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DatasetSpec(_Strict):
    """A dataset: registry name, where it lives, which targets to evaluate, options."""

    name: Text
    root: Text | None = None
    targets: (Annotated[list[Text], Field(min_length=1), Unique]
              | Annotated[dict[Text, Int | Text | Annotated[list[Int | Text], Field(min_length=1)]],
                          Field(min_length=1)]
              | None) = None
    options: dict[Text, Any] = Field(default_factory=dict)


class ModelSpec(_Strict):
    """A teacher or student: registry name, display label, width multiplier, options."""

    name: Text
    label: Text | None = None
    width: Width = 1.0
    options: dict[Text, Any] = Field(default_factory=dict)

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
    An entry without a label is labelled by its name and overrides (``kd(T=2)``); a
    compose without one by its parts' labels joined with ``+``.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: Text
    label: Text
    params: dict[Text, Any] = Field(default_factory=dict)

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
                raise ValueError(f"compose takes only 'compose' and 'label', not {show(next(iter(value)))}")
            if label is None:  # the parts themselves are checked with the method's hyper-parameters
                label = "+".join(str(p if not isinstance(p, dict) else p.get("label") or p.get("name", "?"))
                                 for p in parts)
            return {"name": "compose", "label": label, "params": {"methods": parts}}
        out = {}
        if "name" in value:
            out["name"] = value.pop("name")
        label = value.pop("label", None)
        if "params" in value and isinstance(value["params"], dict) and len(value) == 1:
            value = value["params"]
        if label is None and isinstance(out.get("name"), str):
            label = out["name"] if not value else (
                f"{out['name']}(" + ",".join(f"{k}={v}" for k, v in value.items()) + ")")
        if label is not None:
            out["label"] = label
        return {**out, "params": value}


class Augmentation(_Strict):
    """Random rotation (by multiples of 90°) and flips, as in EMKD."""

    rotate: Bool = True
    flip: Bool = True


class TrainSpec(_Strict):
    """The training recipe (EMKD's by default: Adam, lr 1e-3 → 1e-6 cosine, 60 epochs)."""

    epochs: Annotated[Int, Field(gt=0)] = 60
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: Annotated[Real, Field(gt=0)] = 1e-3
    min_lr: Annotated[Real, Field(ge=0)] = 1e-6
    weight_decay: Annotated[Real, Field(ge=0)] = 0.0
    schedule: Literal["cosine", "constant"] = "cosine"
    batch_size: Annotated[Int, Field(gt=0)] = 8
    image_size: ImageSize = 512
    augmentation: Augmentation = Field(default_factory=Augmentation)
    max_steps: Annotated[Int, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _min_lr_below_lr(self) -> "TrainSpec":
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr = {self.min_lr:g} is above lr = {self.lr:g} (allowed: min_lr ≤ lr)")
        return self


def _partial(model: type[BaseModel], name: str, doc: str) -> type[BaseModel]:
    """``model`` with every field optional: typed and ranged alike, only the fields given are set."""
    fields = {}
    for key, info in model.model_fields.items():
        partial = FieldInfo.merge_field_infos(info, default=None)
        partial.default_factory = None
        fields[key] = (info.annotation, partial)
    return create_model(name, __base__=_Strict, __doc__=doc, **fields)


TeacherTrainSpec = _partial(TrainSpec, "TeacherTrainSpec",
                            "Overrides of ``train`` for teachers: any recipe field, typed as in ``train``.")


class ProtocolSpec(_Strict):
    """Seeds and folds: every (fold, seed) pair trains its own teacher and students."""

    seeds: Annotated[list[Seed], Field(min_length=1), Unique] = Field(default_factory=lambda: [0])
    folds: Annotated[Int, Field(gt=0, le=MAX_FOLDS)] = 1
    run_folds: Annotated[list[Annotated[Int, Field(ge=0)]], Field(min_length=1), Unique] | None = None
    split_seed: Seed = 0
    test_fraction: Annotated[Real, Field(gt=0, lt=1)] | None = None

    @model_validator(mode="after")
    def _run_folds_exist(self) -> "ProtocolSpec":
        bad = [f for f in self.run_folds or () if f >= self.folds]
        if bad:
            raise ValueError(f"run_folds: fold {bad[0]} does not exist with folds = {self.folds} "
                             f"(allowed: 0 to {self.folds - 1})")
        return self

    @property
    def fold_ids(self) -> list[int]:
        return self.run_folds if self.run_folds is not None else list(range(self.folds))


PatchAxis = Annotated[Int, Field(ge=8, le=1024)]
Spacing = Annotated[Real, Field(gt=0, le=100)]


class VolumeSpec(_Strict):
    """How volumes are trained on and predicted (``docs/3d.md``).

    ``dims: 2`` (the default) trains 2D networks on slices and predicts slice by slice.
    ``dims: 3`` trains 3D networks on random ``patch`` patches (``foreground_share`` of
    them centred on foreground, nnU-Net's 0.33; ``patches_per_case`` per case and epoch)
    at the target ``spacing`` (mm, z y x; default: the prepared data's), and predicts
    whole volumes with Gaussian-weighted sliding windows (``overlap``, ``sw_batch_size``).
    ``tri_planar`` predicts 2D networks on volumes from axial, coronal and sagittal
    slices, their probabilities averaged (Noothout et al.).
    """

    dims: Literal[2, 3] = 2
    patch: Annotated[list[PatchAxis], Field(min_length=3, max_length=3)] | None = None
    spacing: Annotated[list[Spacing], Field(min_length=3, max_length=3)] | None = None
    foreground_share: Annotated[Real, Field(ge=0, le=1)] = 0.33
    patches_per_case: Annotated[Int, Field(gt=0, le=10_000)] = 4
    overlap: Annotated[Real, Field(ge=0, lt=1)] = 0.5
    sw_batch_size: Annotated[Int, Field(gt=0, le=1024)] = 4
    tri_planar: Bool = False

    @model_validator(mode="after")
    def _patch_for_3d(self) -> "VolumeSpec":
        if self.dims == 3 and self.patch is None:
            raise ValueError("dims 3 needs a patch size per axis (e.g. patch: [72, 72, 72])")
        if self.dims == 2 and (self.patch is not None or self.spacing is not None):
            raise ValueError("patch and spacing are settings of dims 3 (allowed with dims 2: tri_planar)")
        return self


class BudgetSpec(_Strict):
    """A budget preset: caps on epochs, steps and image size, a width multiplier, a case cap."""

    epochs: Annotated[Int, Field(gt=0)] | None = None
    max_steps: Annotated[Int, Field(gt=0)] | None = None
    image_size: ImageSize | None = None
    width: Width = 1.0
    max_cases: Annotated[Int, Field(ge=2)] | None = None
    folds: Annotated[Int, Field(gt=0)] | None = None
    seeds: Annotated[Int, Field(gt=0)] | None = None


DEFAULT_BUDGETS: dict[str, BudgetSpec] = {
    "smoke": BudgetSpec(epochs=1, max_steps=3, image_size=32, width=0.125, max_cases=6, folds=1, seeds=1),
    "quick": BudgetSpec(epochs=10, image_size=64, width=0.25, folds=1, seeds=1),
    "paper": BudgetSpec(),
}


class PaperRef(_Strict):
    """Which published table a leaderboard sits beside, and how grid names map to the paper's."""

    paper: Text
    table: Text
    names: dict[Text, Text] = Field(default_factory=dict)
    targets: dict[Text, Text] = Field(default_factory=dict)


class LeaderboardSpec(_Strict):
    """What the rendered leaderboard shows."""

    title: Text | None = None
    targets: Annotated[list[Text], Field(min_length=1), Unique] | None = None
    metrics: Annotated[list[Literal[METRICS]], Field(min_length=1), Unique] = Field(
        default_factory=lambda: ["dice"])
    cost: Annotated[list[Literal[COSTS]], Unique] = Field(default_factory=lambda: ["params", "flops", "latency"])
    reproduces: PaperRef | None = None
    aggregate: Literal["mean", "range"] = "mean"
    """How a cell sums up its (fold, seed) runs: ``mean`` shows the mean ± std; ``range`` shows
    the min–max of the per-run means (``0.650–0.660``), the closest kdbench comes to EMKD's
    range over the last epochs of each fold, since only final checkpoints are evaluated."""


class ExecutorSpec(_Strict):
    """Where the grid's jobs run with ``--executor slurm`` (``docs/slurm.md``): the Slurm
    ``partition``, the ``time`` limit of each job in minutes, ``gpus`` and ``cpus`` per job and
    the ``account`` to charge.  Command-line options win over these; a field left unset is
    left to the cluster's defaults (``cpus`` also sets the job's torch threads)."""

    partition: Text | None = None
    time: Annotated[Int, Field(gt=0)] | None = None
    gpus: Annotated[Int, Field(ge=0)] | None = None
    account: Text | None = None
    cpus: Annotated[Int, Field(gt=0)] | None = None


class GridSpec(_Strict):
    """A whole grid file."""

    name: Text
    description: Text = ""
    budget: Literal[BUDGETS] = "paper"
    budgets: dict[Literal[BUDGETS], BudgetSpec] = Field(default_factory=dict)
    datasets: list[DatasetSpec] = Field(min_length=1)
    teachers: list[ModelSpec] = Field(default_factory=list)
    students: list[ModelSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    train: TrainSpec = Field(default_factory=TrainSpec)
    volume: VolumeSpec = Field(default_factory=VolumeSpec)
    teacher_train: TeacherTrainSpec = Field(default_factory=TeacherTrainSpec)
    protocol: ProtocolSpec = Field(default_factory=ProtocolSpec)
    leaderboard: LeaderboardSpec = Field(default_factory=LeaderboardSpec)
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)

    @field_serializer("teacher_train")
    def _only_overrides(self, value: BaseModel) -> dict:
        return value.model_dump(mode="json", exclude_unset=True)

    def budget_spec(self, budget: str | None = None) -> BudgetSpec:
        """The preset for ``budget`` (default: the grid's), with the grid's own overrides."""
        name = budget or self.budget
        return self.budgets.get(name, DEFAULT_BUDGETS[name])

    def teacher_recipe(self) -> TrainSpec:
        """The training recipe for teachers: ``train`` updated with ``teacher_train``."""
        return TrainSpec(**{**self.train.model_dump(), **self.teacher_train.model_dump(exclude_unset=True)})


def _field_path(loc: tuple) -> str:
    """A pydantic location as ``methods[1].name``, leaving out validator and union-member tags."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _is_tag(part):
            continue
        else:
            out += ("." if out else "") + one_line(str(part))
    return out


_MEMBER_TAGS = {"str", "int", "float", "bool", "none", "list", "dict"}


def _is_tag(part: Any) -> bool:
    """Whether a location part names a validator or a union member rather than a field."""
    return isinstance(part, str) and ("[" in part or part in _MEMBER_TAGS)


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


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line: file, field, bad value, what is allowed.

    Of a union's failed members the deepest error is told, and of equally deep ones a
    failed constraint before a wrong type (for ``{x: 1.5}`` the mapping's "a valid
    integer", for ``{}`` "at least 1 item", not the list member's "a valid list").
    """
    errors = exc.errors()
    err = errors[0]
    loc = tuple(err["loc"])
    tag = next((i for i, part in enumerate(loc) if _is_tag(part)), None)
    if tag is not None:
        err = max((e for e in errors if tuple(e["loc"])[:tag] == loc[:tag]),
                  key=lambda e: (len(e["loc"]), not e["type"].endswith("_type")))
        loc = tuple(err["loc"])
    field = _field_path(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        allowed = _allowed_fields(loc)
        key = one_line(str(loc[-1]))
        hint = difflib.get_close_matches(key, allowed, n=1)
        maybe = f" — did you mean '{hint[0]}'?" if hint else ""
        return f"{source}: {field}: unknown field{maybe} (allowed: {', '.join(allowed)})"
    value = err.get("input")
    msg = one_line(str(err["msg"]).replace("Value error, ", ""))
    shown = f" = {show(value)}" if value is not None and not isinstance(value, (dict, list, set, tuple)) else ""
    return f"{source}: {field}{shown}: {msg}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-4"`` → (``["train", "lr"]``, ``1e-4``); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {show(text)}: expected key=value, e.g. train.epochs=5")
    key, raw = text.split("=", 1)
    if not re.fullmatch(r"[A-Za-z_]\w*(\.\w+)*", key.strip(), flags=re.ASCII):
        raise ConfigError(f"--set {show(text)}: {show(key)} is not a dotted field name")
    try:
        value = _load_yaml(raw)
    except _Refused as exc:
        raise ConfigError(f"--set {show(text)}: {exc}") from None
    except _Invalid:
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
            raise ConfigError(f"--set {show(text)}: no field '{part}'")
    last = path[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {show(text)}: no field '{last}'")


class _Refused(Exception):
    """YAML refused by a limit (depth, size, recursion, duplicate keys): the message says which."""


class _Invalid(Exception):
    """YAML that does not parse: the message says where and why."""


if getattr(yaml, "__with_libyaml__", False):
    _Events = yaml.cyaml.CParser  # libyaml scans and parses; composing stays in Python, under the limits
else:
    class _Events(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
        """PyYAML's pure-Python reader, scanner and parser (no libyaml)."""

        def __init__(self, stream: str):
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


class _GridLoader(yaml.composer.Composer, _Events, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """A safe loader (``SafeLoader``'s constructor and resolver) whose composer caps nesting depth and
    values, aliases expanded, and whose constructor refuses duplicate keys."""

    def __init__(self, stream: str):
        _Events.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"{_line(self.peek_event())}nested deeper than {MAX_DEPTH} levels "
                               f"(allowed: at most {MAX_DEPTH})")
            if self._nodes > MAX_NODES:
                raise _Refused(f"more than {MAX_NODES} values (allowed: at most {MAX_NODES})")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()
        _measure(node)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                try:
                    repeated = key in seen
                except TypeError:  # an unhashable key: the base class refuses it below
                    continue
                if repeated:
                    raise _Refused(f"line {line}: key {show(key)} appears twice (first on line {seen[key]}; "
                                   "allowed: each key once)")
                seen[key] = line
        return super().construct_mapping(node, deep)


def _line(item) -> str:
    mark = getattr(item, "start_mark", None) or getattr(item, "problem_mark", None)
    return f"line {mark.line + 1}: " if mark is not None else ""


def _measure(root) -> None:
    """Refuse a node graph that is cyclic (a recursive alias) or too large or deep once aliases expand.

    Each node is visited once (sizes and depths are memoised), so an alias bomb is
    measured in the time it takes to read, not to expand.
    """
    if root is None:
        return
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        kids = _children(node)
        if leaving:
            open_.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[key] > MAX_NODES:
                raise _Refused(f"{_line(node)}more than {MAX_NODES} values once aliases are expanded "
                               f"(allowed: at most {MAX_NODES})")
            if depth[key] > MAX_DEPTH:
                raise _Refused(f"{_line(node)}nested deeper than {MAX_DEPTH} levels once aliases are expanded "
                               f"(allowed: at most {MAX_DEPTH})")
            continue
        if key in size:
            continue
        if key in open_:
            raise _Refused(f"{_line(node)}recursive alias: an anchor is used inside itself")
        open_.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in kids)


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _load_yaml(text: str) -> Any:
    """``text`` read by :class:`_GridLoader`; raises :class:`_Refused` or :class:`_Invalid` with one line."""
    loader = None
    try:
        loader = _GridLoader(text)
        return loader.get_single_data()
    except _Refused:
        raise
    except yaml.reader.ReaderError as exc:
        raise _Invalid(f"is not valid YAML (character #x{exc.character:04x} at offset {exc.position}: "
                       f"{exc.reason})") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        mark = getattr(exc, "problem_mark", None)
        if "nesting depth" in str(problem):  # libyaml's own cap (PyYAML ≥ 6.0.4) fired before the composer's
            raise _Refused(f"{_line(exc)}nested deeper than {MAX_DEPTH} levels "
                           f"(allowed: at most {MAX_DEPTH})") from None
        where = f"line {mark.line + 1} " if mark is not None else ""
        raise _Invalid(f"{where}is not valid YAML ({one_line(' '.join(str(problem).split()))})") from None
    except (ValueError, OverflowError) as exc:  # e.g. an int of more than 4300 digits, a date like 2020-13-45
        raise _Invalid(f"is not valid YAML ({one_line(' '.join(str(exc).split()))})") from None
    except (RecursionError, MemoryError):
        raise _Refused("too deeply nested or too large to read") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_grid_data(path: str | Path) -> dict:
    """The raw mapping of a grid file, with a one-line error on anything that is not a sane grid.

    Refused before or while parsing: a file over :data:`MAX_BYTES`, one that is not
    UTF-8, nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_NODES` values
    once aliases are expanded (alias bombs), recursive aliases and duplicate keys.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such grid file")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({one_line(exc.strerror or str(exc))})") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_BYTES // 1024} KiB (allowed: at most {MAX_BYTES // 1024} KiB)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    try:
        data = _load_yaml(text)
    except _Refused as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except _Invalid as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a grid file is a mapping of fields (name, datasets, teachers, ...)")
    data.setdefault("name", path.stem)
    return data


def validate_grid(data: dict, source: str = "<grid>") -> GridSpec:
    """Validate raw grid data: the schema, then names, hyper-parameters, options and the whole grid."""
    try:
        try:
            grid = GridSpec.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(source, exc)) from None
        _check_grid(grid, source)
    except (RecursionError, MemoryError):
        raise ConfigError(f"{source}: too deeply nested or too large to validate") from None
    except KdbenchError as exc:  # every message is one line, whatever characters the grid held
        raise type(exc)(one_line(str(exc))) from None
    return grid


def load_grid(path: str | Path, overrides: list[str] | tuple[str, ...] = (), dataset: str | None = None) -> GridSpec:
    """Read, override and validate a grid file.

    ``overrides`` are ``key=value`` strings (``train.lr=1e-4``); ``dataset`` replaces the
    grid's datasets with that one dataset (default targets), so any paper grid can run
    on the built-in phantom.  A file dataset left without a root takes one from the
    environment (:func:`roots_from_environment`).
    """
    data = read_grid_data(path)
    if dataset is not None:
        data["datasets"] = [{"name": dataset}]
        leaderboard = data.get("leaderboard")
        if isinstance(leaderboard, dict):
            leaderboard.pop("targets", None)
    for text in overrides:
        apply_override(data, text)
    roots_from_environment(data)
    return validate_grid(data, str(path))


DATA_ENV = "KDBENCH_DATA"
"""A folder holding one sub-folder per dataset name (``$KDBENCH_DATA/lits17``, ...)."""


def data_env_name(dataset: str) -> str:
    """The environment variable that holds one dataset's root: ``KDBENCH_DATA_LITS17`` for ``lits17``."""
    return f"{DATA_ENV}_{re.sub(r'[^A-Za-z0-9]', '_', dataset).upper()}"


def roots_from_environment(data: dict, environ: dict[str, str] | None = None) -> None:
    """Give every file dataset entry without a ``root`` one from the environment.

    ``KDBENCH_DATA_<NAME>`` (:func:`data_env_name`) is that dataset's root; else
    ``KDBENCH_DATA/<name>``.  A root in the grid or from ``--set`` is never replaced, and
    datasets that read no files (the phantom) get none.  See ``docs/grid-files.md``.
    """
    from kdbench.datasets import DATASETS
    from kdbench.datasets.prepare import PreparedDataset

    environ = os.environ if environ is None else environ
    for entry in data.get("datasets") or ():
        if not isinstance(entry, dict) or entry.get("root") is not None or not isinstance(entry.get("name"), str):
            continue
        name = entry["name"]
        cls = DATASETS.get(name).obj if name in DATASETS else None
        if not (isinstance(cls, type) and issubclass(cls, PreparedDataset)):
            continue
        if environ.get(data_env_name(name), "").strip():
            entry["root"] = environ[data_env_name(name)].strip()
        elif environ.get(DATA_ENV, "").strip():
            entry["root"] = str(Path(environ[DATA_ENV].strip()) / name)


def _fail(source: str, field: str, problem: str, value: Any = ...) -> NoReturn:
    """Raise ``FILE: field = value: problem`` (without ``= value`` when none is given)."""
    shown = "" if value is ... else f" = {show(value)}"
    raise ConfigError(f"{source}: {field}{shown}: {problem}")


def _label_problem(text: str, limit: int = LABEL_CHARS) -> str | None:
    """What is wrong with a label or name shown in tables and messages, or ``None``."""
    if not text:
        return "must not be empty"
    if len(text) > limit:
        return f"{len(text)} characters (allowed: at most {limit})"
    if not text.isprintable():
        return "contains a control character or line break (allowed: printable characters)"
    return None


def _check_label(source: str, field: str, text: str, limit: int = LABEL_CHARS) -> None:
    problem = _label_problem(text, limit)
    if problem:
        _fail(source, field, problem, text)


def _registered(source: str, registry, name: str, field: str) -> Any:
    """The object ``name`` stands for in ``registry``; a one-line error naming the field if none."""
    _check_label(source, field, name)
    try:
        return registry.get(name).obj
    except KdbenchError as exc:
        _fail(source, field, str(exc), name)


def _declared(cls: type, attr: str) -> Any:
    """``cls.attr`` when a dataset class declares it itself (not set at run time from files or options)."""
    from kdbench.datasets.base import SegDataset

    for klass in cls.__mro__:
        if klass is SegDataset:
            return None
        if attr in vars(klass):
            return getattr(cls, attr)
    return None


def check_widths(grid: GridSpec, budget: str | None = None, source: str = "<grid>") -> None:
    """Every network's width as trained at ``budget`` (the grid's width × the budget's) lies within
    [:data:`MIN_WIDTH`, :data:`MAX_WIDTH`]; a one-line :class:`ConfigError` names the entry if not."""
    name = budget or grid.budget
    scale = grid.budget_spec(name).width
    for group in ("teachers", "students"):
        for i, m in enumerate(getattr(grid, group)):
            width = m.width * scale
            if not MIN_WIDTH <= width <= MAX_WIDTH:
                _fail(source, f"{group}[{i}].width", f"× budget {name}'s width {scale:g} = {width:g} as trained "
                      f"(allowed: {MIN_WIDTH:g} to {MAX_WIDTH:g} as trained)", m.width)


def _check_grid(grid: GridSpec, source: str) -> None:
    """Everything the schema cannot say: names, parameters, options, labels, duplicates, targets."""
    if not (NAME_RULE.fullmatch(grid.name) and ".." not in grid.name):
        _fail(source, "name", "not a safe run-directory name (allowed: 1 to 64 letters, digits, '_', '.' "
              "or '-', starting with a letter or digit, without '..'; the default is the file's stem)",
              grid.name)
    targets = _check_datasets(grid, source)
    _check_models(grid, source)
    _check_methods(grid, source)
    _check_dims(grid, source)
    try:
        grid.teacher_recipe()
    except ValidationError as exc:
        problem = one_line(str(exc.errors()[0]["msg"]).replace("Value error, ", ""))
        _fail(source, "teacher_train", f"{problem} in the teacher recipe (train updated with teacher_train)")
    board = grid.leaderboard
    if board.title is not None:
        _check_label(source, "leaderboard.title", board.title, limit=200)
    for k, target in enumerate(board.targets or ()):
        _check_label(source, f"leaderboard.targets[{k}]", target)
        if targets is not None and target not in targets:
            _fail(source, f"leaderboard.targets[{k}]",
                  f"no dataset defines this target (targets: {', '.join(targets)})", target)
    ref = board.reproduces
    if ref is not None:
        for group in ("names", "targets"):
            for key, shown in getattr(ref, group).items():
                _check_label(source, f"leaderboard.reproduces.{group}.{one_line(key)}", shown)
        from kdbench.leaderboards.paper import paper_tables

        tables = paper_tables()
        if (ref.paper, ref.table) not in tables:
            choices = ", ".join(f"{p} {t}" for p, t in sorted(tables))
            raise ConfigError(f"{source}: leaderboard.reproduces = {show(ref.paper)} table {show(ref.table)}: "
                              f"no such table (known: {choices})")


def _check_datasets(grid: GridSpec, source: str) -> list[str] | None:
    """Check every dataset entry; return the targets they define (``None`` when a dataset decides at run time)."""
    from kdbench.datasets import DATASETS
    from kdbench.datasets.options import DatasetOptions, parse_options

    seen: dict[tuple, int] = {}
    defined: list[str] | None = []
    for i, d in enumerate(grid.datasets):
        field = f"datasets[{i}]"
        cls = _registered(source, DATASETS, d.name, f"{field}.name")
        if d.root is not None:
            _check_label(source, f"{field}.root", d.root, limit=4096)
        if (d.name, d.root) in seen:
            _fail(source, field, f"same dataset as datasets[{seen[d.name, d.root]}] (name '{d.name}', "
                  f"root {show(d.root)}); list each dataset once")
        seen[d.name, d.root] = i
        known = _declared(cls, "default_targets")
        classes = _declared(cls, "classes")
        if isinstance(d.targets, list):
            names = d.targets
            for j, target in enumerate(d.targets):
                _check_label(source, f"{field}.targets[{j}]", target)
                if known is not None and target not in known:
                    _fail(source, f"{field}.targets[{j}]", f"dataset '{d.name}' has no target {show(target)} "
                          f"(allowed: {', '.join(known)}, or a mapping name → labels)", target)
        elif isinstance(d.targets, dict):
            names = list(d.targets)
            for target, labels in d.targets.items():
                where = f"{field}.targets.{one_line(target)}"
                _check_label(source, where, target)
                for label in labels if isinstance(labels, list) else [labels]:
                    if classes is None:
                        continue
                    if isinstance(label, int) and not 0 <= label < len(classes):
                        _fail(source, where, f"label {label} outside 0 to {len(classes) - 1} "
                              f"(classes: {', '.join(classes)})", labels)
                    if isinstance(label, str) and label not in classes:
                        _fail(source, where, f"no class {show(label)} (classes: {', '.join(classes)})", labels)
        else:
            names = list(known) if known is not None else None
        if names is None or defined is None:
            defined = None
        else:
            defined += [t for t in names if t not in defined]
        options = getattr(cls, "Options", None)
        try:
            if isinstance(options, type) and issubclass(options, DatasetOptions):
                parse_options(options, d.options, d.name)
            else:
                check_kwargs(cls, d.options, skip=DATASET_ARGS, noun="option")
        except ConfigError as exc:
            sep = ": " if isinstance(options, type) and issubclass(options, DatasetOptions) else "."
            raise ConfigError(f"{source}: {field}.options{sep}{exc}") from None
    return defined


def _check_models(grid: GridSpec, source: str) -> None:
    from kdbench.models import MODELS
    from kdbench.params import signature_defaults

    for group in ("teachers", "students"):
        labels: dict[str, int] = {}
        configs: list[tuple] = []
        for i, m in enumerate(getattr(grid, group)):
            field = f"{group}[{i}]"
            factory = _registered(source, MODELS, m.name, f"{field}.name")
            if m.label is not None:
                _check_label(source, f"{field}.label", m.label)
            try:
                options = check_kwargs(factory, m.options, skip=MODEL_ARGS, noun="option")
            except ConfigError as exc:
                raise ConfigError(f"{source}: {field}.options.{exc}") from None
            if m.display in labels:
                _fail(source, f"{field}.label", f"{group}[{labels[m.display]}] has this label too; "
                      "give each a unique label", m.display)
            labels[m.display] = i
            config = (m.name, m.width, {**signature_defaults(factory, MODEL_ARGS), **options})
            if config in configs:
                _fail(source, field, f"same model as {group}[{configs.index(config)}] (name, width and options); "
                      "list it once")
            configs.append(config)


def model_dims(name: str) -> int:
    """A registered model's spatial dims (its registration's ``dims``; 2 unless it says 3)."""
    from kdbench.models import MODELS

    return int(MODELS.get(name).meta.get("dims", 2))


def _check_dims(grid: GridSpec, source: str) -> None:
    """2D and 3D: 3D networks need ``volume.dims: 3``, 2D ones in a 3D grid ``tri_planar``; methods
    that cannot work in 3D refuse a 3D pair; only volume datasets are read in 3D."""
    from kdbench.datasets import DATASETS
    from kdbench.methods import METHODS

    volume = grid.volume
    models = [(f"{group}[{i}]", m.name, model_dims(m.name))
              for group in ("teachers", "students") for i, m in enumerate(getattr(grid, group))]
    for field, name, dims in models:
        if dims == 3 and volume.dims != 3:
            _fail(source, f"{field}.name", "a 3D network; it needs a 3D grid (add volume: {dims: 3, patch: "
                  "[d, h, w]}; allowed here: 2D networks)", name)
        if dims == 2 and volume.dims == 3 and not volume.tri_planar:
            _fail(source, f"{field}.name", "a 2D network in a 3D grid (volume.dims: 3); set volume.tri_planar: "
                  "true to predict it tri-planarly, or use a 3D network", name)
    if volume.dims == 3:
        for i, d in enumerate(grid.datasets):
            if _declared(DATASETS.get(d.name).obj, "is_volume") is False:
                _fail(source, f"datasets[{i}].name", "2D images; volume.dims: 3 needs volumes", d.name)
    three = next(((f, n) for f, n, dims in models if dims == 3), None)
    if three is not None:
        for i, m in enumerate(grid.methods):
            cls = METHODS.get(m.name).obj
            if 3 not in getattr(cls, "spatial_dims", (2, 3)):
                why = getattr(cls, "why_not_3d", "") or "it works on 2D networks only"
                _fail(source, f"methods[{i}]", f"method '{m.name}' cannot distil a 3D pair ({three[0]} "
                      f"'{three[1]}' is 3D): {why}", m.label)
    teachers = {dims for f, n, dims in models if f.startswith("teachers")}
    students = {dims for f, n, dims in models if f.startswith("students")}
    if len(teachers | students) > 1 and any(METHODS.get(m.name).obj.requires_teacher for m in grid.methods):
        _fail(source, "students", "a 2D and a 3D network would be distilled into each other; teachers and "
              "students of a grid need the same dims (2D members of an ensemble may mix with 3D ones)")


def _check_methods(grid: GridSpec, source: str) -> None:
    from kdbench.methods import METHODS, method_params

    labels: dict[str, int] = {}
    configs: list[tuple] = []
    for i, m in enumerate(grid.methods):
        field = f"methods[{i}]"
        cls = _registered(source, METHODS, m.name, f"{field}.name")
        try:
            params = cls.validate_params(m.params)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {field}.{exc}") from None
        _check_label(source, f"{field}.label", m.label)
        if m.label in labels:
            _fail(source, f"{field}.label", f"used by methods[{labels[m.label]}] too; give each method a unique label",
                  m.label)
        labels[m.label] = i
        config = (m.name, {**method_params(m.name), **params})
        if config in configs:
            j = configs.index(config)
            _fail(source, field, f"same method and hyper-parameters as methods[{j}] (labels "
                  f"{show(grid.methods[j].label)} and {show(m.label)}); list it once")
        configs.append(config)
    if not grid.teachers and any(METHODS.get(m.name).obj.requires_teacher for m in grid.methods):
        raise ConfigError(f"{source}: teachers: empty, but methods other than 'none' need a teacher")
