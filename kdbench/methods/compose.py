"""Several methods combined into one (``{compose: [kd, at]}`` in a grid)."""

from __future__ import annotations

from typing import Any

from torch import nn

from kdbench.errors import ConfigError, KdbenchError
from kdbench.methods import register_method
from kdbench.methods.base import Method
from kdbench.params import one_line, show

LABEL_CHARS = 80


def part_label_problem(label: Any) -> str | None:
    """What is wrong with a compose part's label (it prefixes the part's logged terms, ``<label>.<term>``)."""
    if not isinstance(label, str) or not label:
        return "a label is a non-empty string"
    if len(label) > LABEL_CHARS:
        return f"{len(label)} characters (allowed: at most {LABEL_CHARS})"
    if not label.isprintable():
        return "contains a control character or line break (allowed: printable characters)"
    if "." in label:
        return "contains '.' (allowed: any printable character but '.', which separates label and term)"
    return None


@register_method("compose", example="{compose: [kd, at], label: kd+at}")
class Compose(Method):
    """Sum of several methods' terms, each method with its own weights and taps.

    ``{compose: [kd, {name: at, weight: 100}], label: kd+at}`` in a grid builds
    ``create_method("compose", methods=["kd", {"name": "at", "weight": 100}])``: each
    part is a method name or a mapping with ``name``, an optional ``label`` (default:
    the name; unique within the compose, without ``.``) and that method's
    hyper-parameters.  Terms are logged as ``<label>.<term>``; the taps are the union
    of the parts' taps, the trainable parameters and ``after_step`` those of every
    part.
    """

    def __init__(self, methods: list | tuple = (), **common):
        super().__init__(**common)
        from kdbench.methods import create_method

        built = {}
        for part in self.validate_params({"methods": methods})["methods"]:
            part = dict(part)
            name, label = part.pop("name"), part.pop("label")
            built[label] = create_method(name, **common, **part)
        self.parts = nn.ModuleDict(built)

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Every part checked by name, label and hyper-parameters (paths ``compose[i]...``).

        Returns ``{"methods": [{"name": ..., "label": ..., <hyper-parameters>}, ...]}``,
        every part with its label and its hyper-parameters checked (so checking again
        changes nothing).
        """
        from kdbench.methods import METHODS

        params = super().validate_params(params)
        parts = params.get("methods")
        if not isinstance(parts, (list, tuple)) or not parts:
            raise ConfigError("compose: needs a non-empty list of methods (names or {name: ..., <hyper-parameters>})")
        out, seen = [], {}
        for j, spec in enumerate(parts):
            where = f"compose[{j}]"
            if isinstance(spec, str):
                spec = {"name": spec}
            if not isinstance(spec, dict):
                raise ConfigError(f"{where} = {show(spec)}: a part is a method name or "
                                  "{name: ..., label: ..., <hyper-parameters>}")
            spec = dict(spec)
            name = spec.pop("name", None)
            if not isinstance(name, str):
                raise ConfigError(f"{where}: a part needs a method name (name: ...)"
                                  if name is None else f"{where}.name = {show(name)}: a method name is a string")
            try:
                entry = METHODS.get(name)
            except KdbenchError as exc:
                raise ConfigError(f"{where}.name = {show(name)}: {one_line(str(exc))}") from None
            label = spec.pop("label", name)
            problem = part_label_problem(label)
            if problem:
                raise ConfigError(f"{where}.label = {show(label)}: {problem}")
            if label in seen:
                raise ConfigError(f"{where}.label = {show(label)}: used by compose[{seen[label]}] too; "
                                  "give each part a unique label")
            seen[label] = j
            try:
                checked = entry.obj.validate_params(spec)
            except ConfigError as exc:
                raise ConfigError(f"{where}.{exc}") from None
            out.append({"name": name, "label": label, **checked})
        return {"methods": out}

    @property
    def taps(self):
        return tuple(dict.fromkeys(role for m in self.parts.values() for role in m.taps))

    def forward(self, student, teacher, batch):
        return {f"{label}.{term}": value for label, m in self.parts.items()
                for term, value in m(student, teacher, batch).items()}

    def trainable_parameters(self):
        for m in self.parts.values():
            yield from m.trainable_parameters()

    def after_step(self, student, teacher, batch):
        return {f"{label}.{k}": v for label, m in self.parts.items()
                for k, v in m.after_step(student, teacher, batch).items()}
