"""PLC-KD (Wang et al., "Progressive soft label correction knowledge distillation for
medical image segmentation", MICCAI 2024)."""

from __future__ import annotations

from kdbench.benchmark.sources import Assistant, TeacherSide
from kdbench.methods import register_method
from kdbench.methods.base import Method, detached
from kdbench.params import Bool, Count, NonNegative
from kdbench.teachers.bt import DEFAULT_DELTA
from kdbench.teachers.correction import plckd_kl
from kdbench.teachers.fig import DEFAULT_K, DEFAULT_LENGTH


@register_method("plckd")
class PLCKD(Method):
    """KL to a teacher team's corrected soft labels (T → TA_f → TA_b → SC), plus CE + Dice.

    Wang et al. 2024, Eq. 1: ``L_S = L_seg(S(X), Y) + λ·KL(S(X) ‖ Y^U)`` with L_seg =
    CE + Dice.  The teacher side is a *team*: the grid's teacher T; the false-pixel-aware
    assistant TA_f (T's architecture, trained on FIG images built from T's false
    negatives and false positives, Sec. 2.2); the boundary-aware assistant TA_b (trained
    on BT images whose lesion boundary band of ``delta`` pixels swapped values with the
    interior, Sec. 2.3); and the similarity-based correction SC (Sec. 2.4).  For each
    batch: ``Y^I = T(X)``, ``Y^F``/``Y^B`` take TA_f's/TA_b's probabilities where the
    current map is wrong (the paper gives no combination rule: this is the spec's),
    and SC copies, to every pixel still wrong, the probabilities of the most
    cosine-similar correctly predicted pixel in T's ``pre_logits`` features.  The
    assistants are teacher-side jobs: trained once and shared by every student.

    ``ta_f``, ``ta_b``, ``sc`` switch the parts (PLC-KD Table 2; all off is vanilla KD
    at T = 1).  Defaults: ``weight`` (λ) = 1 (spec; not given in the paper); ``delta``,
    ``queue_length`` and ``pixels_per_image`` (k) are not given in the paper — see
    :mod:`kdbench.teachers.fig` and :mod:`kdbench.teachers.bt` for the values and why.

    FIG and BT images made from the phantom (left to right: slice, mask; FIG image, its
    mask; BT image, its band — see [the teacher side](../teachers.md)):

    ![FIG and BT images made from the phantom](../teachers/fig_bt.png)
    """

    requires_teacher = True

    def __init__(self, weight: NonNegative = 1.0, ta_f: Bool = True, ta_b: Bool = True, sc: Bool = True,
                 delta: Count = DEFAULT_DELTA, queue_length: Count = DEFAULT_LENGTH,
                 pixels_per_image: Count = DEFAULT_K, **common):
        super().__init__(**common)
        self.weight = weight

    @classmethod
    def teacher_side(cls, params: dict, teacher: dict | None) -> TeacherSide:
        """The team: TA_f (FIG, needs T's mistakes) and TA_b (BT) as switched on, and SC."""
        assistants = []
        if params["ta_f"]:
            assistants.append(Assistant("ta_f", {"kind": "fig", "length": params["queue_length"],
                                                 "k": params["pixels_per_image"]}, needs_teacher=True))
        if params["ta_b"]:
            assistants.append(Assistant("ta_b", {"kind": "bt", "delta": params["delta"]}))
        parts = [p for p in ("ta_f", "ta_b", "sc") if params[p]]
        return TeacherSide("team", "team[" + "+".join(parts or ["T"]) + "]", assistants=tuple(assistants),
                           options={"sc": params["sc"]})

    def forward(self, student, teacher, batch):
        soft_labels = detached(teacher).logits.softmax(1)
        return {"plckd": plckd_kl(student.logits, soft_labels, self.weight, batch.valid_mask())}
