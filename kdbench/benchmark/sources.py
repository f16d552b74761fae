"""Teacher sources: what a student learns from, and the teacher-side jobs that build it.

A student reads one *teacher source*, itself a job of the plan:

* ``teacher`` — one trained network (the grid's ``teachers``);
* ``ensemble`` — K member networks whose softmax outputs are averaged (Noothout et
  al., J. Med. Imaging 2022); the members are ``teacher`` jobs of their own;
* ``team`` — a teacher with assistants and a correction step (PLC-KD, Wang et al.,
  MICCAI 2024); the assistants are ``assistant`` jobs.

A method that needs more than the grid's teacher says so with a classmethod
``teacher_side(params, teacher)`` returning a :class:`TeacherSide`; the planner turns
it into jobs.  Jobs hash their configuration, so every student (and every method)
that asks for the same members or assistants shares them: they train once.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Member:
    """One network of an ensemble: its model config, training loss and member index.

    ``model`` is a model config (``name``, ``width``, ``options``; channels and
    classes are filled in by the planner), or ``None`` for the grid teacher's own.
    ``loss`` is ``dice_ce`` (default), ``ce`` or ``dice``.
    """

    model: dict | None
    loss: str = "dice_ce"
    index: int = 0


@dataclass(frozen=True)
class Assistant:
    """A network trained on transformed images, next to the teacher (PLC-KD's TA_f, TA_b).

    It has the teacher's architecture and recipe; ``transform`` names the per-batch
    image transform it trains on (``{"kind": "fig", ...}`` or ``{"kind": "bt", ...}``);
    ``needs_teacher`` makes its job depend on the trained teacher (FIG reads the
    teacher's mistakes).
    """

    name: str
    transform: dict
    needs_teacher: bool = False


@dataclass(frozen=True)
class TeacherSide:
    """The teacher-side work a method declares: an ensemble, or a team.

    ``label`` names the source in leaderboards (``ensemble(U)``); ``options`` are
    stored in the source job's config (e.g. PLC-KD's ``sc`` switch).
    """

    kind: str
    label: str
    members: tuple[Member, ...] = ()
    assistants: tuple[Assistant, ...] = ()
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in ("ensemble", "team"):
            raise ValueError(f"teacher side kind '{self.kind}': expected 'ensemble' or 'team'")
        if self.kind == "ensemble" and not self.members:
            raise ValueError("an ensemble needs at least one member")
