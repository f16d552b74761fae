"""False-pixel Image Generation, FIG (Wang et al., PLC-KD, MICCAI 2024, Sec. 2.2).

The teacher's false pixels (its prediction XOR the ground truth) are split into false
negatives (label lesion, prediction background) and false positives (prediction lesion,
label background); ``k`` random pixels per image and kind go into two FIFO queues of
pixel values (all channels of a pixel).  A synthetic image takes a random ground-truth
lesion mask of the batch, fills the lesion with values drawn from the false-negative
queue and the background with values drawn from the false-positive queue; the mask is
its label.  The false-pixel-aware assistant TA_f trains on such images.

"Lesion" is foreground: ``label != 0`` and ``pred != 0``.  With several classes a pixel
labelled 1 and predicted 2 is neither a false negative nor a false positive (both are
lesion), and a synthetic image's label is the chosen real label map, classes kept.
Images ``(B, C, *spatial)`` and label maps ``(B, *spatial)`` may be 2D or 3D.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from kdbench.methods.base import resize_to

DEFAULT_LENGTH = 2048
"""Queue length M = N.  Not given in the paper: 2048 pixel values hold the false pixels of
at least ``length / k`` = 64 images, so one synthetic image mixes errors from many images
and several batches, while the queues still fill within the first epochs of a short run."""

DEFAULT_K = 32
"""Pixels taken per image and queue.  Not given in the paper: 32 keeps one image (or one
large error blob) from dominating a queue (see ``DEFAULT_LENGTH``)."""


class PixelQueues:
    """The false-negative and false-positive FIFO queues of pixel values (PLC-KD Sec. 2.2).

    ``fn`` and ``fp`` are ``(n, C)`` tensors, oldest first; each holds at most ``length``
    values (the paper's M and N, equal here).  Created empty; the channel count, device
    and dtype come from the first pushed image.
    """

    def __init__(self, length: int = DEFAULT_LENGTH):
        if length < 1:
            raise ValueError(f"queue length = {length}; needs at least 1")
        self.length = length
        self.fn: torch.Tensor | None = None
        self.fp: torch.Tensor | None = None

    @property
    def full(self) -> bool:
        """Whether both queues hold ``length`` values."""
        return self.fn is not None and len(self.fn) == self.length and len(self.fp) == self.length

    @property
    def empty(self) -> bool:
        """Whether either queue holds no value (no synthetic image can be built)."""
        return self.fn is None or len(self.fn) == 0 or len(self.fp) == 0

    @torch.no_grad()
    def push(self, image: torch.Tensor, pred: torch.Tensor, label: torch.Tensor, k: int,
             generator: torch.Generator) -> None:
        """Push up to ``k`` random false-negative and ``k`` random false-positive pixels per image.

        ``image`` is ``(B, C, *spatial)``, ``pred`` and ``label`` integer maps ``(B, *spatial)``.
        An image with fewer than ``k`` false pixels of a kind gives all it has.  Values
        enter in batch order; the oldest leave once a queue is longer than ``length``.
        """
        if self.fn is None:
            self.fn = image.new_empty((0, image.shape[1]))
            self.fp = image.new_empty((0, image.shape[1]))
        new_fn, new_fp = [self.fn], [self.fp]
        for x, p, y in zip(image, pred, label):
            pixels = x.flatten(1).T  # (positions, C)
            for kind, out in (((y != 0) & (p == 0), new_fn), ((p != 0) & (y == 0), new_fp)):
                where = kind.flatten().nonzero()[:, 0]
                pick = torch.randperm(len(where), generator=generator, device=generator.device)[:k]
                out.append(pixels[where[pick.to(where.device)]].to(self.fn.dtype))
        self.fn = torch.cat(new_fn)[-self.length:]
        self.fp = torch.cat(new_fp)[-self.length:]


@torch.no_grad()
def fig_images(labels: torch.Tensor, queues: PixelQueues,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of synthetic FIG images and their masks (PLC-KD Sec. 2.2, "False Pixel Image Construction").

    For each of the ``B`` outputs a lesion mask is drawn uniformly from the batch's label
    maps ``(B, *spatial)`` that contain lesion (``label != 0``); images with an empty mask
    are skipped, as they have no lesion to fill (the paper draws "a ground-truth lesion
    mask").  If no label of the batch has lesion, each output takes its own (empty)
    label and is all background.  Lesion pixels take values drawn uniformly, with
    replacement, from the false-negative queue; all other pixels from the
    false-positive queue.  Returns ``(images (B, C, *spatial), masks (B, *spatial))``,
    each mask the chosen real label map.  Needs both queues non-empty.
    """
    if queues.empty:
        raise ValueError("fig_images needs both pixel queues non-empty; push false pixels first")
    device = labels.device
    with_lesion = (labels != 0).flatten(1).any(1).nonzero()[:, 0]
    if len(with_lesion):
        draw = torch.randint(len(with_lesion), (len(labels),), generator=generator, device=generator.device)
        chosen = with_lesion[draw.to(device)]
    else:
        chosen = torch.arange(len(labels), device=device)
    masks = labels[chosen].clone()
    lesion = masks != 0
    fn, fp = queues.fn.to(device), queues.fp.to(device)
    images = fn.new_empty((len(labels), fn.shape[1], *labels.shape[1:]))
    for out, queue, where in ((images, fn, lesion), (images, fp, ~lesion)):
        n = int(where.sum())
        draw = torch.randint(len(queue), (n,), generator=generator, device=generator.device).to(device)
        out.movedim(1, -1)[where] = queue[draw]
    return images, masks


class FIGTransform:
    """The per-batch transform of TA_f's training loop: ``(image, label, generator) -> (image, label)``.

    Each call runs ``teacher`` on the batch (under ``no_grad``, in eval mode, its mode
    restored afterwards), pushes its false pixels into the queues (``PixelQueues.push``)
    and returns a synthetic batch of the same size (``fig_images``): queue filling and
    image construction alternate, as in PLC-KD Sec. 2.2.  ``last_synthetic`` tells
    whether the returned batch was synthetic.

    Args:
        teacher: the trained teacher T, a network or any callable ``image -> logits
            (B, K, *spatial)``; logits of another size are resized to the label's.
        length: queue length M = N (``DEFAULT_LENGTH``; not given in the paper).
        k: pixels per image and queue (``DEFAULT_K``; not given in the paper).
        fill_first: the paper performs "only the former operation [queue generation]
            during the initial training phase until the false pixel queues are filled".
            With ``True`` (default) the real batch is returned unchanged until both
            queues are full; the paper does not say what the assistant trains on
            meanwhile, and training it on the real batch keeps every step of the
            trainer a training step.  With ``False`` synthetic images are built as soon
            as both queues hold a value.
        Whenever a queue is still empty (a teacher without false negatives or false
        positives so far) the real batch is returned unchanged: there is nothing to
        fill that region with (not covered by the paper).
    """

    def __init__(self, teacher: Callable[[torch.Tensor], torch.Tensor], length: int = DEFAULT_LENGTH,
                 k: int = DEFAULT_K, fill_first: bool = True):
        if k < 1:
            raise ValueError(f"k = {k}; needs at least 1")
        self.teacher = teacher
        self.queues = PixelQueues(length)
        self.k = k
        self.fill_first = fill_first
        self.last_synthetic = False

    @torch.no_grad()
    def predict(self, image: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
        """The teacher's hard prediction ``(B, *size)`` for ``image``."""
        was_training = isinstance(self.teacher, nn.Module) and self.teacher.training
        if was_training:
            self.teacher.eval()
        try:
            logits = self.teacher(image)
        finally:
            if was_training:
                self.teacher.train()
        return resize_to(logits.float(), size).argmax(1)

    def __call__(self, image: torch.Tensor, label: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        self.queues.push(image, self.predict(image, tuple(label.shape[1:])), label, self.k, generator)
        self.last_synthetic = self.queues.full if self.fill_first else not self.queues.empty
        if not self.last_synthetic:
            return image, label
        images, masks = fig_images(label, self.queues, generator)
        return images.to(image.dtype), masks
