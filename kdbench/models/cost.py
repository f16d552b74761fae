"""The size of a model, independent of any device: its parameters and FLOPs.

* Params: every parameter of the model (distillation adapters live in the method and
  are never counted).
* FLOPs: torch's ``FlopCounterMode`` on one forward pass at the stated input size; it
  counts a multiply-add as 2 FLOPs (papers that report MACs as "FLOPs" read half).

Used by the model zoo page and by :mod:`kdbench.benchmark.profile`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


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
