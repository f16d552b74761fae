"""Cross-image relational knowledge distillation (Yang et al., CVPR 2022)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from kdbench.methods import register_method
from kdbench.methods.base import Method, Role, adapt, class_masks, conv1x1, detached, labels_at, resize_to
from kdbench.params import Count, NonNegative, Positive


def pool_large(feature: torch.Tensor, size: int, minimum: int) -> torch.Tensor:
    """Average-pool the last two (in-plane) dims by ``size`` when both are ≥ ``minimum``."""
    h, w = feature.shape[-2:]
    if size <= 1 or h < minimum or w < minimum:
        return feature
    if feature.dim() == 4:
        return F.avg_pool2d(feature, size, ceil_mode=True)
    return F.avg_pool3d(feature, (1, size, size), ceil_mode=True)


def row_kl(log_p_s: torch.Tensor, log_p_t: torch.Tensor) -> torch.Tensor:
    """``KL(p_t ‖ p_s)`` of every row (last dim), from log-probabilities."""
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1)


def pair_relation_kl(s_i: torch.Tensor, s_j: torch.Tensor, t_i: torch.Tensor, t_j: torch.Tensor,
                     tau: float) -> torch.Tensor:
    """``mean_rows KL(softmax_row(t_iᵀ t_j / τ) ‖ softmax_row(s_iᵀ s_j / τ))`` of one image pair."""
    log_p_s = F.log_softmax(s_i.t() @ s_j / tau, dim=1)
    log_p_t = F.log_softmax(t_i.t() @ t_j / tau, dim=1)
    return row_kl(log_p_s, log_p_t).mean()


def mini_batch_relation(f_s: torch.Tensor, f_t: torch.Tensor, tau: float) -> torch.Tensor:
    """``(1/B²) Σ_{i,j} mean_rows KL(softmax_row(S^t_ij/τ) ‖ softmax_row(S^s_ij/τ))``, ``S_ij = f_iᵀ f_j``.

    Features are ``(B, C, positions)`` and already L2-normalised along C.  Each pair's
    positions × positions maps are recomputed in the backward pass (activation
    checkpointing), so memory holds one pair at a time, not B².
    """
    b = f_s.shape[0]
    total = 0.0
    for i, j in itertools.product(range(b), repeat=2):
        args = (f_s[i], f_s[j], f_t[i], f_t[j], tau)
        if f_s.requires_grad and torch.is_grad_enabled():
            total = total + checkpoint(pair_relation_kl, *args, use_reentrant=False)
        else:
            total = total + pair_relation_kl(*args)
    return total / (b * b)


@register_method("cirkd")
class CIRKD(Method):
    """CIRKD: cross-image pixel relations, within the batch and against class memories (Yang 2022).

    Yang et al., "Cross-image relational knowledge distillation for semantic
    segmentation", CVPR 2022 (v1).  Features ``pre_logits`` (the student's bilinearly
    resized to the teacher's size), average-pooled 4×4 when h, w ≥ 256, L2-normalised
    along C.

    * Mini-batch term (pixel-to-pixel, within the batch): for every ordered pair
      (i, j) of images ``S_ij = f_iᵀ f_j`` (positions × positions);
      ``L_mb = (1/B²) Σ_{i,j} mean_rows KL(softmax_row(S^t_ij/τ) ‖ softmax_row(S^s_ij/τ))``,
      no τ² factor.
    * Memory terms (pixel-to-pixel and pixel-to-region, against memories): the
      student's feature goes through a projection head (1×1 conv → BatchNorm → ReLU →
      1×1 conv to Ct) and is L2-normalised.  Per-class queues hold teacher pixel
      embeddings (``pixel_update`` random pixels per class and image per step) and
      region embeddings (the normalised mean of a class's pixels in one image).
      Every valid pixel is an anchor; its similarities / τ to ``pixel_contrast``
      (``region_contrast``) random entries of each class's queue are matched by
      ``τ_kd² · KL`` at temperature ``τ_kd``, batchmean over anchors.  A class takes
      part only once its queue has been filled with real teacher features; the terms
      are 0 until one class has.

    Defaults: ``tau = 0.1``, ``tau_kd = 1``, ``lambda_mb = 1``, ``lambda_pixel =
    lambda_region = 0.1`` (the CIRKD scripts); queues of ``pixel_memory = 2000`` pixels
    and ``region_memory = 200`` regions per class (the reference's 20 000 / 2 000 are
    too large for a rare tumour class), sampling 400 / 100 per class (about the
    reference's fractions).  Taps ``layer``.  Caveat: single device — no all-gather
    across ranks, plain BatchNorm in the head; the mini-batch term is quadratic in the
    (pooled) positions.
    """

    def __init__(self, layer: Role = "pre_logits", tau: Positive = 0.1, tau_kd: Positive = 1.0,
                 lambda_mb: NonNegative = 1.0, lambda_pixel: NonNegative = 0.1, lambda_region: NonNegative = 0.1,
                 pixel_memory: Count = 2000, region_memory: Count = 200, pixel_contrast: Count = 400,
                 region_contrast: Count = 100, pixel_update: Count = 16, pool_size: Count = 4,
                 pool_min: Count = 256, **common):
        super().__init__(**common)
        self.layer = layer
        self.tau, self.tau_kd = tau, tau_kd
        self.lambda_mb, self.lambda_pixel, self.lambda_region = lambda_mb, lambda_pixel, lambda_region
        self.pixel_memory, self.region_memory = pixel_memory, region_memory
        self.pixel_contrast, self.region_contrast = pixel_contrast, region_contrast
        self.pixel_update = pixel_update
        self.pool_size, self.pool_min = pool_size, pool_min
        self.head = nn.ModuleDict()  # role -> projection head, once the roles are known
        if layer in self.student_roles and layer in self.teacher_roles:
            cs, ct = self.student_roles[layer].channels, self.teacher_roles[layer].channels
            self.head[layer] = nn.Sequential(conv1x1(cs, ct), nn.BatchNorm2d(ct), nn.ReLU(inplace=True),
                                             conv1x1(ct, ct))
            k = self.num_classes
            self.register_buffer("pixel_queue", torch.zeros(k, pixel_memory, ct))
            self.register_buffer("region_queue", torch.zeros(k, region_memory, ct))
            self.register_buffer("pixel_count", torch.zeros(k, dtype=torch.long))
            self.register_buffer("region_count", torch.zeros(k, dtype=torch.long))

    @property
    def taps(self):
        return (self.layer,)

    @torch.no_grad()
    def enqueue(self, t: torch.Tensor, label: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Push the teacher's pixels and region means of every class present, image by image.

        ``t`` is ``(B, Ct, positions)``, L2-normalised; ``label``/``mask`` ``(B, positions)``.
        """
        masks = class_masks(label, None if mask is None else mask.flatten(1), self.num_classes).bool()
        for b in range(t.shape[0]):
            for k in range(self.num_classes):
                where = masks[b, k].nonzero()[:, 0]
                if where.numel() == 0:
                    continue
                feats = t[b][:, where].t().to(self.pixel_queue.dtype)
                slot = self.region_count[k] % self.region_memory
                self.region_queue[k, slot] = F.normalize(feats.mean(dim=0), dim=0)
                self.region_count[k] += 1
                pick = feats[torch.randperm(len(feats), device=feats.device)[: self.pixel_update]]
                slots = (self.pixel_count[k] + torch.arange(len(pick), device=pick.device)) % self.pixel_memory
                self.pixel_queue[k, slots] = pick
                self.pixel_count[k] += len(pick)

    def memory_kl(self, s: torch.Tensor, t: torch.Tensor, queue: torch.Tensor, count: torch.Tensor,
                  samples: int) -> torch.Tensor:
        """``τ_kd² · KL`` of anchors' similarities to random entries of the filled classes' queues."""
        filled = (count >= queue.shape[1]).nonzero()[:, 0]
        if filled.numel() == 0 or s.shape[0] == 0:
            return s.new_zeros(())
        pick = torch.randperm(queue.shape[1], device=queue.device)[:samples]
        bank = queue[filled][:, pick].flatten(0, 1).to(s.dtype)
        log_p_s = F.log_softmax(s @ bank.t() / (self.tau * self.tau_kd), dim=1)
        log_p_t = F.log_softmax(t @ bank.t() / (self.tau * self.tau_kd), dim=1)
        return row_kl(log_p_s, log_p_t).mean() * self.tau_kd ** 2

    def forward(self, student, teacher, batch):
        teacher = detached(teacher)
        f_t = pool_large(teacher.features[self.layer], self.pool_size, self.pool_min)
        f_s = pool_large(resize_to(student.features[self.layer], teacher.features[self.layer].shape[2:]),
                         self.pool_size, self.pool_min)
        t = F.normalize(f_t.flatten(2), dim=1)
        terms = {"mb": self.lambda_mb * mini_batch_relation(F.normalize(f_s.flatten(2), dim=1), t, self.tau)}
        if not (self.lambda_pixel or self.lambda_region):
            return terms
        s = F.normalize(adapt(self.head, self.layer, f_s).flatten(2), dim=1)
        label, mask = labels_at(batch, f_t.shape[2:])
        if self.training:
            self.enqueue(t, label.flatten(1), mask)
        s, t = s.transpose(1, 2).flatten(0, 1), t.transpose(1, 2).flatten(0, 1)
        if mask is not None:
            s, t = s[mask.flatten()], t[mask.flatten()]
        terms["pixel_mem"] = self.lambda_pixel * self.memory_kl(s, t, self.pixel_queue, self.pixel_count,
                                                                self.pixel_contrast)
        terms["region_mem"] = self.lambda_region * self.memory_kl(s, t, self.region_queue, self.region_count,
                                                                  self.region_contrast)
        return terms
