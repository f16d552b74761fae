"""The teacher team's correction of soft labels (Wang et al., PLC-KD, MICCAI 2024, Sec. 2.1–2.4).

``Y^I = T(X)``; ``Y^F`` = TA_f's correction of ``Y^I``; ``Y^B`` = TA_b's correction of
``Y^F``; the similarity-based correction SC turns ``Y^B`` into the all-correct ``Y^U``,
which the student learns with ``λ·KL``.  All maps are probabilities ``(B, K, *spatial)``
(2D or 3D) at the label's resolution; pixels carrying ``ignore_index`` are never
corrected.  Corrections are targets: they run without gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdbench.methods.base import masked_mean, resize_to

SC_MAX_ELEMENTS = 2**24
"""Entries of one wrong × correct cosine-similarity block in SC (64 MiB in float32).  At 512²
a whole image has up to 262,144 correct candidates, so a block is 64 wrong pixels; a full
wrong × correct matrix could need hundreds of GiB."""


def _valid(label: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    return torch.ones_like(label, dtype=torch.bool) if ignore_index is None else label != ignore_index


@torch.no_grad()
def assistant_correct(probs: torch.Tensor, assistant_probs: torch.Tensor, label: torch.Tensor,
                      ignore_index: int | None = None) -> torch.Tensor:
    """An assistant's correction of a probability map (``Y^I → Y^F`` with TA_f, ``Y^F → Y^B`` with TA_b).

    The paper does not give the combination rule.  Default of the spec card: on the
    pixels where ``argmax(probs)`` disagrees with the label, take the assistant's
    probability vector; every other pixel keeps its own.  The assistant's map is
    bilinearly resized to ``probs``' size first.  Returns a new tensor.
    """
    assistant_probs = resize_to(assistant_probs, probs.shape[2:]).to(probs.dtype)
    wrong = (probs.argmax(1) != label) & _valid(label, ignore_index)
    return torch.where(wrong[:, None], assistant_probs, probs)


def _agreeing(vectors: torch.Tensor, cls: int) -> torch.Tensor:
    """SC's fallback for ``(K, n)`` probability vectors that must agree with class ``cls``.

    Each vector keeps its values with the entries of its top class and of ``cls``
    exchanged, so ``cls`` takes the top probability and the teacher's confidence profile
    survives; a vector whose top value is tied (the exchange changes nothing) becomes the
    one-hot vector of ``cls``.
    """
    columns = torch.arange(vectors.shape[1], device=vectors.device)
    top = vectors.argmax(0)
    out = vectors.clone()
    out[cls, columns] = vectors[top, columns]
    out[top, columns] = vectors[cls, columns]
    onehot = torch.zeros_like(vectors)
    onehot[cls] = 1
    return torch.where(out.argmax(0) == cls, out, onehot)


@torch.no_grad()
def similarity_correct(probs: torch.Tensor, features: torch.Tensor, label: torch.Tensor,
                       ignore_index: int | None = None, max_elements: int = SC_MAX_ELEMENTS) -> torch.Tensor:
    """Similarity-based correction SC (PLC-KD Sec. 2.1): ``Y^B → Y^U``, all pixels correct.

    ``features`` ``(B, Cf, *spatial)`` (the teacher's; the paper says "feature space") are
    bilinearly resized to the probability map's size.  For every pixel whose
    ``argmax(probs)`` differs from its label ``c``, the most cosine-similar pixel of the
    same image among those predicted correctly *and* labelled ``c`` gives its
    probability vector, which is copied.  The paper copies "the most similar and correct
    pixel" and calls the result "all-correct"; restricting the candidates to the label's
    class is what makes both hold (a correct pixel of class ``c`` has ``argmax = c``).
    If the image has no correct pixel of class ``c``, the pixel keeps its own vector with
    the probabilities of its predicted class and of ``c`` exchanged (one-hot ``c`` on a
    tie); the paper does not cover this case.  Pixels already correct, and ignored
    pixels, are untouched.  The similarity matrix is computed in blocks of at most
    ``max_elements`` entries (``SC_MAX_ELEMENTS``); ties go to the first candidate in
    raster order.  Returns a new tensor.
    """
    features = resize_to(features, probs.shape[2:])
    pred = probs.argmax(1)
    valid = _valid(label, ignore_index)
    wrong, correct = (pred != label) & valid, (pred == label) & valid
    out = probs.clone(memory_format=torch.contiguous_format)
    num_classes = probs.shape[1]
    for b in range(len(probs)):
        rows_all = wrong[b].flatten().nonzero()[:, 0]
        if len(rows_all) == 0:
            continue
        y = label[b].flatten()
        source = probs[b].reshape(num_classes, -1)
        target = out[b].view(num_classes, -1)
        unit = F.normalize(features[b].reshape(features.shape[1], -1), dim=0)  # (Cf, positions)
        for cls in y[rows_all].unique().tolist():
            rows = rows_all[y[rows_all] == cls]
            candidates = (correct[b].flatten() & (y == cls)).nonzero()[:, 0]
            if len(candidates) == 0:
                target[:, rows] = _agreeing(source[:, rows], cls)
                continue
            keys = unit[:, candidates]
            step = max(1, max_elements // len(candidates))
            for start in range(0, len(rows), step):
                block = rows[start:start + step]
                best = (unit[:, block].T @ keys).argmax(1)
                target[:, block] = source[:, candidates[best]]
    return out


@dataclass
class TeamOutput:
    """The teacher team's probability maps, one per stage (PLC-KD Fig. 1)."""

    initial: torch.Tensor
    """``Y^I``: the teacher's probabilities."""
    false_pixel: torch.Tensor
    """``Y^F``: after TA_f's correction (``Y^I`` when TA_f is switched off)."""
    boundary: torch.Tensor
    """``Y^B``: after TA_b's correction (``Y^F`` when TA_b is switched off)."""
    ultimate: torch.Tensor
    """``Y^U``: after SC, all-correct (``Y^B`` when SC is switched off)."""


@torch.no_grad()
def team_soft_labels(t_probs: torch.Tensor, t_features: torch.Tensor | None, label: torch.Tensor,
                     ta_f_probs: torch.Tensor | None = None, ta_b_probs: torch.Tensor | None = None,
                     sc: bool = True, ignore_index: int | None = None) -> TeamOutput:
    """``Y^I → Y^F → Y^B → Y^U`` (PLC-KD Sec. 2.1, Stage 2) with switchable parts (Table 2).

    ``ta_f_probs`` / ``ta_b_probs`` are the assistants' probabilities (``None`` switches
    the assistant off); ``sc`` switches the similarity correction, which needs the
    teacher's features ``t_features``.  Everything is computed at ``t_probs``' size,
    which must be the label's: correct at the student's resolution (resize the
    teacher's logits first, methods.md convention 2) so that no resize can undo SC.
    """
    if sc and t_features is None:
        raise ValueError("team_soft_labels: sc=True needs the teacher's features (t_features)")
    y_f = t_probs if ta_f_probs is None else assistant_correct(t_probs, ta_f_probs, label, ignore_index)
    y_b = y_f if ta_b_probs is None else assistant_correct(y_f, ta_b_probs, label, ignore_index)
    y_u = similarity_correct(y_b, t_features, label, ignore_index) if sc else y_b
    return TeamOutput(initial=t_probs, false_pixel=y_f, boundary=y_b, ultimate=y_u)


def plckd_kl(student_logits: torch.Tensor, soft_labels: torch.Tensor, weight: float = 1.0,
             mask: torch.Tensor | None = None) -> torch.Tensor:
    """The student's distillation term of PLC-KD Eq. (1): ``λ · mean_pixels KL(Y^U ‖ softmax(z_s))``.

    The paper writes ``L_KD(f_S(X), Y^U)`` and "adopt[s] the KL divergence paradigm"; the
    spec card writes it ``KL(S(X) ‖ Y^U)``, the arguments in the order of Eq. (1).  The
    divergence is taken from the soft labels to the student, as in KD (Hinton et al.):
    Table 2's "VanillaKD" row is this loss with every part switched off (``Y^U = Y^I``),
    and it stays finite where SC's fallback puts exact zeros in ``Y^U``.  No temperature
    (the paper gives none).  Per-pixel batchmean (methods.md convention 1): the KL is
    summed over classes and averaged over the (``mask``-valid) pixels.  ``soft_labels``
    are detached and bilinearly resized to the student's size if they differ; gradients
    reach the student only.
    """
    soft = resize_to(soft_labels.detach(), student_logits.shape[2:]).to(student_logits.dtype)
    log_s = F.log_softmax(student_logits, dim=1)
    kl = (torch.xlogy(soft, soft) - soft * log_s).sum(dim=1)
    return weight * masked_mean(kl, mask)
