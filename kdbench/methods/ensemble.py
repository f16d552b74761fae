"""Ensemble KD (Noothout et al., "Knowledge distillation with ensembles of convolutional
neural networks for medical image segmentation", J. Med. Imaging 9(5), 2022)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from kdbench.benchmark.sources import Member, TeacherSide
from kdbench.methods import register_method
from kdbench.methods.base import Method, detached
from kdbench.params import Bool, Count, NonNegative, Text
from kdbench.teachers.ensemble import ensemble_loss

MemberLoss = Literal["ce", "dice", "dice_ce"]


@register_method("ensemble")
class EnsembleKD(Method):
    """Distil the mean softmax of an ensemble: MSE to its probabilities + CE to the labels.

    Noothout et al. 2022, Sec. 2.4: the teacher is an ensemble of six networks whose
    posterior probabilities are averaged; the student minimises
    ``L = L_s + L_h`` — ``L_s`` the mean squared error between its softmax and the
    ensemble's mean probabilities (per class, averaged; ``soft_loss: kl`` for a
    per-pixel KL instead), ``L_h`` the cross-entropy of its logits with the hard labels
    (the official code applies CE to probabilities; we do not).  The student trains
    with these two terms only (``seg_loss = "none"``).

    The members are teacher-side jobs the planner adds (``teacher_side``), cached and
    shared by every student that uses the same ensemble:

    * ``mode: uniform`` — ``k`` copies of one architecture (``architecture``, default
      the grid's teacher) with different seeds, all trained with ``loss``;
    * ``mode: diverse`` — every architecture of ``architectures`` trained once with each
      loss of ``losses`` (the paper: 3 architectures × {CE, soft Dice} = 6).

    Defaults: ``k = 6`` and ``losses = (ce, dice)`` as in the paper; ``loss = ce`` for
    uniform members (the best single network on ACDC, the 2D setting, was the dilated
    network with CE); ``init_from_best`` starts the student from the member with the
    lowest final training loss when its architecture equals the student's (the paper
    picks the best network on validation data, which a benchmark fold does not hold
    out: not given in the paper in this form).
    """

    requires_teacher = True
    seg_loss = "none"

    def __init__(self, mode: Literal["uniform", "diverse"] = "uniform", k: Count = 6,
                 architecture: Text | None = None, loss: MemberLoss = "ce",
                 architectures: tuple[Text, ...] = ("ens-unet", "ens-resnet", "ens-dilated"),
                 losses: tuple[MemberLoss, ...] = ("ce", "dice"), soft_loss: Literal["mse", "kl"] = "mse",
                 weight: NonNegative = 1.0, init_from_best: Bool = True, **common):
        super().__init__(**common)
        self.soft_loss = soft_loss
        self.weight = weight
        self.init_from_best = init_from_best

    @classmethod
    def teacher_side(cls, params: dict, teacher: dict | None) -> TeacherSide:
        """The members: ``k`` seeds of one architecture, or every architecture × loss."""
        if params["mode"] == "diverse":
            members = [Member({"name": a}, loss, i) for i, (a, loss) in
                       enumerate((a, loss) for a in params["architectures"] for loss in params["losses"])]
            return TeacherSide("ensemble", "ensemble(D)", tuple(members))
        model = {"name": params["architecture"]} if params["architecture"] else None
        if model is None and teacher is None:
            raise ValueError("ensemble: mode uniform needs an architecture or a grid teacher")
        return TeacherSide("ensemble", "ensemble(U)", tuple(Member(model, params["loss"], i)
                                                            for i in range(params["k"])))

    def initial_weights(self, store, config: dict) -> Path | None:
        """The checkpoint of the best member with the student's architecture, if any."""
        if not self.init_from_best:
            return None
        members = store.read_job(config["teacher"])["config"]["members"]
        same = [m for m in members if store.read_job(m)["config"]["model"] == config["model"]]
        if not same:
            return None
        best = min(same, key=lambda m: store.read_job(m)["summary"]["final"].get("loss", float("inf")))
        return store.job_dir(best) / "checkpoint.pt"

    def forward(self, student, teacher, batch):
        mean_probs = detached(teacher).logits.softmax(1)
        terms = ensemble_loss(student.logits, mean_probs, batch.label, soft_loss=self.soft_loss,
                              ignore_index=batch.ignore_index)
        return {"soft": self.weight * terms["soft"], "hard": terms["hard"]}
