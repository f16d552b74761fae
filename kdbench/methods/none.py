"""The student trained alone: the baseline every method is compared against."""

from __future__ import annotations

from kdbench.methods import register_method
from kdbench.methods.base import Method


@register_method("none")
class NoDistillation(Method):
    """No distillation: the student trained on labels alone (the Δ baseline)."""

    requires_teacher = False

    def forward(self, student, teacher, batch):
        return {}
