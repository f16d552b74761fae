"""Structured knowledge distillation (Liu et al., "Structured knowledge distillation for semantic segmentation", CVPR 2019)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from kdbench.errors import ConfigError
from kdbench.methods import register_method
from kdbench.methods.base import Method, Roles, detached, labels_at, resize_to
from kdbench.methods.kd import pixel_kd
from kdbench.methods.pa import Pool, check_pool, pair_affinity_loss
from kdbench.params import Count, NonNegative, Positive

ADVERSARIAL = ("wgan-gp", "hinge")


class Discriminator(nn.Module):
    """A small fully convolutional critic: one score per (image, class-probability map) pair.

    Three stride-2 3×3 convolutions (``width``, 2·``width``, 4·``width`` channels) with
    LeakyReLU(0.2), a 1×1 convolution to one channel, averaged over positions.  No
    normalisation layers, as the gradient penalty is taken per sample.
    """

    def __init__(self, in_channels: int, width: int = 64, dims: int = 2):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        layers, channels = [], in_channels
        for i in range(3):
            layers += [conv(channels, width * 2**i, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels = width * 2**i
        self.net = nn.Sequential(*layers, conv(channels, 1, 1))

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.net(pair).flatten(1).mean(dim=1)


@register_method("skd")
class SKD(Method):
    """SKD: pixel-wise KD + pair-wise affinity + an adversarial holistic term (Liu et al. 2019).

    Liu et al., CVPR 2019, Sec. 3 (pixel-wise, pair-wise and holistic
    distillation, and their joint objective): ``L = λ_pi·PI + λ_pa·PA + λ_adv·L_adv``.
    ``PI`` is pixel-wise KD exactly as the ``kd`` method (per-pixel batchmean × T²),
    ``PA`` exactly as the ``pa`` method.  The holistic term: a small conv
    discriminator (``Discriminator`` in this module) scores (image,
    class-probability map) pairs — the image resized to the student's logits, the
    teacher's probabilities as real, the student's as fake; the student minimises
    ``L_adv = −mean D(x, softmax(z_s))``.  The discriminator has its own Adam optimiser
    (β = 0.9, 0.99) and is updated in ``after_step`` on detached outputs with
    ``λ_d · (mean D(fake) − mean D(real) + gp·GP)`` (Wasserstein with gradient
    penalty, the original) or ``λ_d · (mean relu(1 − D(real)) + mean relu(1 + D(fake)))``
    (``adversarial: hinge``, CIRKD).  It is never optimised with the student; it is
    built on the first step, once the image channels and dimensions are known.

    Defaults (the original code): ``lambda_pi = 1``, ``lambda_pa = 10``,
    ``lambda_adv = 0.001``, ``disc_lr = 4e-4``, ``lambda_d = 0.1``, ``gp = 10``;
    ``T = 4`` (the ``kd`` default; the original uses 1); PA on ``pre_logits`` with
    ``pool = {kernel: 2}``.  Discriminator width 64 is kdbench's choice (the original
    uses a SAGAN critic).  Taps ``layers``.
    """

    def __init__(self, lambda_pi: NonNegative = 1.0, lambda_pa: NonNegative = 10.0,
                 lambda_adv: NonNegative = 0.001, T: Positive = 4.0, layers: Roles = ("pre_logits",),
                 pool: Pool = {"kernel": 2},  # noqa: B006 (read-only, copied)
                 adversarial: Literal["wgan-gp", "hinge"] = "wgan-gp", gp: NonNegative = 10.0,
                 lambda_d: NonNegative = 0.1, disc_lr: Positive = 4e-4, disc_width: Count = 64, **common):
        super().__init__(**common)
        if adversarial not in ADVERSARIAL:
            raise ConfigError(f"adversarial = '{adversarial}': choose one of {', '.join(ADVERSARIAL)}")
        self.lambda_pi, self.lambda_pa, self.lambda_adv = lambda_pi, lambda_pa, lambda_adv
        self.T = T
        self.layers = tuple(layers)
        self.pool = check_pool(pool)
        self.adversarial, self.gp, self.lambda_d = adversarial, gp, lambda_d
        self.disc_lr, self.disc_width = disc_lr, disc_width
        self.discriminator: Discriminator | None = None
        self.disc_optimizer: torch.optim.Optimizer | None = None

    @property
    def taps(self):
        return self.layers

    def trainable_parameters(self):
        return (p for name, p in self.named_parameters() if not name.startswith("discriminator."))

    def _build(self, in_channels: int, dims: int, device: torch.device, dtype: torch.dtype) -> None:
        """Create the critic and its optimiser (on the first step, or when a checkpoint is loaded)."""
        self.discriminator = Discriminator(in_channels, self.disc_width, dims).to(device, dtype)
        self.disc_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.disc_lr, betas=(0.9, 0.99))

    def get_extra_state(self) -> dict:
        """The lazily built critic's shape and its optimiser's state, so that a training checkpoint
        (``state_dict``) restores them; empty before the first step."""
        if self.discriminator is None:
            return {}
        first = self.discriminator.net[0]
        return {"in_channels": first.in_channels, "dims": first.weight.dim() - 2,
                "dtype": str(first.weight.dtype).removeprefix("torch."),
                "optimizer": self.disc_optimizer.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        """Rebuild the critic from :meth:`get_extra_state` (its weights load right after)."""
        if state:
            device = next((t.device for t in self.parameters()), torch.device("cpu"))
            self._build(state["in_channels"], state["dims"], device, getattr(torch, state["dtype"]))
            self.disc_optimizer.load_state_dict(state["optimizer"])

    def _pair(self, image: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The critic's input: the image at the logits' resolution and the class probabilities."""
        if self.discriminator is None:  # never a half-precision critic
            self._build(image.shape[1] + logits.shape[1], logits.dim() - 2, logits.device,
                        torch.promote_types(logits.dtype, torch.float32))
        image = resize_to(image.to(logits.dtype), logits.shape[2:])
        return torch.cat([image, F.softmax(logits, dim=1)], dim=1)

    def forward(self, student, teacher, batch):
        teacher = detached(teacher)
        z_s = student.logits
        _, mask = labels_at(batch, z_s.shape[2:])
        pa = sum(pair_affinity_loss(student.features[r], teacher.features[r], self.pool) for r in self.layers)
        terms = {"pi": self.lambda_pi * pixel_kd(z_s, teacher.logits, self.T, mask), "pa": self.lambda_pa * pa}
        if self.lambda_adv:
            pair = self._pair(batch.image, z_s)
            terms["adv"] = -self.lambda_adv * self.discriminator(pair).mean()
        return terms

    def after_step(self, student, teacher, batch):
        if not self.lambda_adv or teacher is None:
            return {}
        z_s = student.logits.detach()
        fake = self._pair(batch.image, z_s)
        real = self._pair(batch.image, resize_to(teacher.logits.detach(), z_s.shape[2:]))
        d_fake, d_real = self.discriminator(fake), self.discriminator(real)
        if self.adversarial == "hinge":
            loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        else:
            loss = d_fake.mean() - d_real.mean() + self.gp * self.gradient_penalty(real, fake)
        loss = self.lambda_d * loss
        self.disc_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.disc_optimizer.step()
        return {"disc": loss.detach()}

    def gradient_penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """``mean_b (‖∇_x̂ D(x̂)‖₂ − 1)²`` at random interpolates of real and fake pairs (Gulrajani 2017)."""
        eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), device=real.device, dtype=real.dtype)
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.discriminator(mixed).sum(), mixed, create_graph=True)
        return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
