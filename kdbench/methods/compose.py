"""Several methods combined into one (``{compose: [kd, at]}`` in a grid)."""

from __future__ import annotations

from torch import nn

from kdbench.methods import register_method
from kdbench.methods.base import Method


@register_method("compose", example="{compose: [kd, at], label: kd+at}")
class Compose(Method):
    """Sum of several methods' terms, each method with its own weights and taps.

    ``{compose: [kd, {name: at, weight: 100}], label: kd+at}`` in a grid builds
    ``create_method("compose", methods=["kd", {"name": "at", "weight": 100}])``: each
    part is a method name or a mapping with ``name``, an optional ``label`` and that
    method's hyper-parameters.  Terms are logged as ``<label>.<term>``; the taps are
    the union of the parts' taps, the trainable parameters and ``after_step`` those of
    every part.
    """

    def __init__(self, methods: list | tuple = (), **common):
        super().__init__(**common)
        from kdbench.methods import create_method

        if not methods:
            from kdbench.errors import ConfigError

            raise ConfigError("method 'compose' needs a non-empty list of methods")
        built = {}
        for spec in methods:
            spec = {"name": spec} if isinstance(spec, str) else dict(spec)
            name = spec.pop("name")
            label = spec.pop("label", None) or name
            built[label] = create_method(name, **common, **spec)
        self.parts = nn.ModuleDict(built)

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
