"""PLC-KD's teacher team as one module: T, the assistants TA_f and TA_b, and SC.

Wang et al., MICCAI 2024, Sec. 2.1 Stage 2: for a batch, ``Y^I = softmax(T(X))``;
TA_f and TA_b correct it where it is wrong (``Y^F``, ``Y^B``); SC copies to every pixel
still wrong the probabilities of the most similar correct pixel in T's ``pre_logits``
features (``Y^U``).  The student's trainer calls :meth:`TeamTeacher.soft_targets` with
the batch's labels; without labels (``forward``) the team is T alone.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.methods.base import Outputs, resize_to
from kdbench.models.roles import FeatureTaps
from kdbench.teachers.correction import team_soft_labels

SC_ROLE = "pre_logits"
"""The teacher feature SC compares pixels in (the decoder feature before the classifier)."""


class TeamTeacher(nn.Module):
    """T with optional assistants ``ta_f``, ``ta_b`` and the similarity correction ``sc``."""

    def __init__(self, teacher: nn.Module, ta_f: nn.Module | None = None, ta_b: nn.Module | None = None,
                 sc: bool = True):
        super().__init__()
        self.teacher, self.ta_f, self.ta_b, self.sc = teacher, ta_f, ta_b, sc
        self.feature_roles = getattr(teacher, "feature_roles", {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher(x)

    @torch.no_grad()
    def soft_targets(self, image: torch.Tensor, label: torch.Tensor, taps: tuple[str, ...] = ()) -> Outputs:
        """The corrected soft labels ``Y^U`` as logits (their log), at the label's size,
        with the teacher's features for ``taps``."""
        roles = tuple(dict.fromkeys((*taps, SC_ROLE))) if self.sc else tuple(taps)
        with FeatureTaps(self.teacher, roles) as t_taps:
            logits = self.teacher(image).float()
        size = label.shape[1:]

        def probs(net: nn.Module | None) -> torch.Tensor | None:
            return None if net is None else resize_to(net(image).float(), size).softmax(1)

        features = t_taps.features.get(SC_ROLE).float() if self.sc else None
        team = team_soft_labels(resize_to(logits, size).softmax(1), features, label, probs(self.ta_f),
                                probs(self.ta_b), sc=self.sc)
        return Outputs(torch.log(team.ultimate.clamp_min(1e-12)),
                       {k: t_taps.features[k].float() for k in taps})
