"""The interface every distillation method implements.

A method is an ``nn.Module`` built with its hyper-parameters and the feature roles of
the student and teacher it will see.  Each training step it receives both networks'
:class:`Outputs` (logits plus the features it asked for by role) and the
:class:`Batch`, and returns a dict of named, already-weighted loss terms; the trainer
adds them to the segmentation loss and logs each one.  Trainable modules a method owns
(adapters, projection heads) are optimised with the student and never counted as the
student.  See ``docs/adding-a-method.md`` for a worked example.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Iterator, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from kdbench.benchmark.sources import TeacherSide
from kdbench.errors import KdbenchError
from kdbench.models.roles import ROLES, FeatureRole
from kdbench.params import check_kwargs

COMMON = ("student_roles", "teacher_roles", "num_classes")
"""The keyword arguments every method takes from the trainer, not from the grid."""

Role = Literal[ROLES]
"""A feature role name: ``low``, ``high`` or ``pre_logits``."""
Roles = Annotated[tuple[Role, ...], Field(min_length=1)]
"""A non-empty tuple of feature roles (a list in a grid)."""


@dataclass
class Outputs:
    """What a network produced for a batch: logits ``(B, C, *spatial)`` and tapped features."""

    logits: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class Batch:
    """The batch a step trains on, and where the step stands in training."""

    image: torch.Tensor
    label: torch.Tensor
    step: int = 0
    total_steps: int = 1
    ignore_index: int | None = None

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1]."""
        return min(1.0, self.step / max(1, self.total_steps))

    def valid_mask(self) -> torch.Tensor | None:
        """``(B, *spatial)`` bool mask of non-ignored pixels, or ``None`` when nothing is ignored."""
        if self.ignore_index is None:
            return None
        return self.label != self.ignore_index


class Method(nn.Module, ABC):
    """Base class of distillation methods.

    Subclasses set ``roles`` (the feature roles they read from both networks), take
    their hyper-parameters as annotated keyword arguments of ``__init__`` (after the
    three common ones; ranges with the types of :mod:`kdbench.params`, e.g.
    ``T: Positive = 4.0``), and implement :meth:`forward`.
    """

    roles: ClassVar[tuple[str, ...]] = ()
    requires_teacher: ClassVar[bool] = True
    #: the supervised loss the student trains with beside the method's terms
    #: (``dice_ce``; ``none`` when the method brings its own, as ensemble KD does)
    seg_loss: ClassVar[str] = "dice_ce"
    #: the spatial dimensionalities of the networks the method can distil: 2D maps
    #: ``(B, C, H, W)`` and 3D maps ``(B, C, D, H, W)`` by default.  A method that cannot work
    #: on 3D networks sets ``(2,)`` and says why in ``why_not_3d`` (one line a user
    #: understands); planning a 3D teacher → student pair with it is then a one-line error.
    spatial_dims: ClassVar[tuple[int, ...]] = (2, 3)
    why_not_3d: ClassVar[str] = ""

    def __init__(
        self,
        student_roles: dict[str, FeatureRole] | None = None,
        teacher_roles: dict[str, FeatureRole] | None = None,
        num_classes: int = 2,
    ):
        super().__init__()
        self.student_roles = dict(student_roles or {})
        self.teacher_roles = dict(teacher_roles or {})
        self.num_classes = num_classes

    @classmethod
    def validate_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` checked by name, type and range against ``__init__``'s annotations.

        Returns the given hyper-parameters with their values converted (a YAML list
        becomes a tuple); raises :class:`~kdbench.errors.ConfigError` with a message
        relative to ``params`` (``T = 0: Input should be greater than 0``).  Override it
        (calling this one) for checks that involve several hyper-parameters at once.
        """
        return check_kwargs(cls, params, skip=COMMON, allow_extra=False)

    @classmethod
    def teacher_side(cls, params: dict[str, Any], teacher: dict | None) -> TeacherSide | None:
        """What the method learns from besides the grid's teacher (see :mod:`kdbench.benchmark.sources`).

        ``params`` are all hyper-parameters (defaults filled in), ``teacher`` the grid
        teacher's model config (``None`` without one).  ``None``: the grid's teacher as it is.
        """
        return None

    @property
    def taps(self) -> tuple[str, ...]:
        """Feature roles to tap on both networks (may depend on hyper-parameters)."""
        return tuple(self.roles)

    @abstractmethod
    def forward(self, student: Outputs, teacher: Outputs | None, batch: Batch) -> dict[str, torch.Tensor]:
        """Named, weighted loss terms for this step."""

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters optimised together with the student (adapters, heads)."""
        return self.parameters()

    def after_step(self, student: Outputs, teacher: Outputs | None, batch: Batch) -> dict[str, float]:
        """Hook run after the student's optimiser step (e.g. a discriminator update)."""
        return {}


def resize_to(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Bilinear (trilinear for 3D) resize of ``(B, C, *spatial)`` to ``size``; no-op when equal."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    mode = "bilinear" if x.dim() == 4 else "trilinear"
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def resize_labels(label: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Nearest resize of an integer label map ``(B, *spatial)`` to ``size``."""
    if tuple(label.shape[1:]) == tuple(size):
        return label
    return F.interpolate(label[:, None].float(), size=size, mode="nearest")[:, 0].long()


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over positions where ``mask`` is true (all positions if ``None``)."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def conv1x1(in_channels: int, out_channels: int, dims: int = 2) -> nn.Module:
    """A 1×1 adapter without bias (2D or 3D)."""
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    return conv(in_channels, out_channels, kernel_size=1, bias=False)


def detached(outputs: Outputs) -> Outputs:
    """``outputs`` cut from the autograd graph: no method term may send gradients to a teacher."""
    return Outputs(outputs.logits.detach(), {k: v.detach() for k, v in outputs.features.items()})


def labels_at(batch: Batch, size: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The batch's labels nearest-resized to ``size`` and the valid mask there.

    The mask is ``None`` when nothing is ignored; ignored pixels are relabelled 0 so
    they can index safely (callers mask them out with the returned mask).
    """
    label = resize_labels(batch.label, size)
    if batch.ignore_index is None:
        return label, None
    mask = label != batch.ignore_index
    return label.where(mask, torch.zeros_like(label)), mask


def pointwise(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2D pointwise module (1×1 convs, ``BatchNorm2d``, activations) to a 2D or 3D map.

    A 3D map ``(B, C, D, H, W)`` is viewed as the 2D map ``(B, C, D, H·W)``: a 1×1
    convolution and batch statistics see exactly the same positions either way.
    """
    if x.dim() == 4:
        return module(x)
    return module(x.flatten(3)).unflatten(3, x.shape[3:])


def role_adapters(student_roles: dict[str, FeatureRole], teacher_roles: dict[str, FeatureRole],
                  layers: tuple[str, ...], identity_if_equal: bool = False) -> nn.ModuleDict:
    """One 1×1 adapter (no bias) per role, student channels → teacher channels.

    Roles that either side does not declare get none (a method built without roles,
    e.g. to validate a grid, is complete but cannot run); ``identity_if_equal`` puts
    ``nn.Identity`` where the channel counts already agree.
    """
    adapters = {}
    for role in layers:
        if role in student_roles and role in teacher_roles:
            cs, ct = student_roles[role].channels, teacher_roles[role].channels
            adapters[role] = nn.Identity() if identity_if_equal and cs == ct else conv1x1(cs, ct)
    return nn.ModuleDict(adapters)


def adapt(adapters: nn.ModuleDict, role: str, x: torch.Tensor) -> torch.Tensor:
    """Apply the adapter (or head) of ``role`` to the student feature ``x`` (2D or 3D)."""
    if role not in adapters:
        raise KdbenchError(
            f"no adapter for feature role '{role}': build the method with the student's and "
            "teacher's feature roles (student_roles=..., teacher_roles=...)"
        )
    first = next((m for m in adapters[role].modules() if isinstance(m, nn.Conv2d)), None)
    expected = x.shape[1] if first is None else first.in_channels
    if x.shape[1] != expected:
        raise KdbenchError(f"the student's '{role}' feature has {x.shape[1]} channels, "
                           f"but its feature role declares {expected}")
    return pointwise(adapters[role], x)


def class_masks(label: torch.Tensor, mask: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """One-hot class masks ``(B, K, positions)`` of a label map, zero at ignored positions."""
    masks = F.one_hot(label.flatten(1), num_classes).transpose(1, 2).float()
    return masks if mask is None else masks * mask.flatten(1)[:, None].float()


def class_prototypes(feature: torch.Tensor, masks: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per image and class, the mean feature over the class's positions ``(B, K, C)``.

    ``feature`` is ``(B, C, positions)``, ``masks`` ``(B, K, positions)``;
    ``r_k = Σ F·m_k / (Σ m_k + eps)`` (a zero vector for an absent class).
    """
    masks = masks.to(feature.dtype)
    return masks @ feature.transpose(1, 2) / (masks.sum(dim=2, keepdim=True) + eps)


class LayerwiseMethod(Method):
    """A method whose one term is a sum over tapped layers: ``Σ_layers layer_loss(F_s, F_t)``.

    For each role in ``layers`` the teacher's feature is detached, the student's is
    bilinearly resized to the teacher's spatial size (convention 2) and, for methods
    that own adapters, mapped by :meth:`student_feature`; subclasses give the
    per-layer loss and the term's name (``term``).
    """

    term: ClassVar[str] = ""

    def __init__(self, layers: tuple[str, ...], weight: float, **common):
        super().__init__(**common)
        self.layers = tuple(layers)
        self.weight = weight

    @property
    def taps(self) -> tuple[str, ...]:
        return self.layers

    def student_feature(self, role: str, feature: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        """The student's feature of ``role`` made comparable with the teacher's (resized)."""
        return resize_to(feature, size)

    @abstractmethod
    def layer_loss(self, f_s: torch.Tensor, f_t: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The unweighted loss of one layer pair."""

    def forward(self, student, teacher, batch):
        teacher = detached(teacher)
        total = 0.0
        for role in self.layers:
            f_t = teacher.features[role]
            total = total + self.layer_loss(self.student_feature(role, student.features[role], f_t.shape[2:]),
                                            f_t, batch)
        return {self.term: self.weight * total}
