"""Training samples: 2D slices, or random 3D patches with foreground oversampling.

:func:`training_data` is what a training job trains on: the cases' 2D slices
(:class:`~kdbench.datasets.base.SliceDataset`) unless its config carries a 3D
``volume`` setting, then a :class:`PatchDataset`.  Patches are drawn as nnU-Net
draws them: a share of them (``foreground_share``, nnU-Net's 0.33) centred on a
foreground voxel, the rest anywhere — MONAI's ``RandCropByPosNegLabel`` on the volume,
padded first with ``SpatialPad`` where it is smaller than the patch.  Volumes are
resampled to a target ``spacing`` with MONAI's ``Resize`` (trilinear for images,
nearest for labels) when one is set.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from monai.transforms import RandCropByPosNegLabel, Resize, SpatialPad
from torch.utils.data import Dataset

from kdbench.datasets.base import Case, SliceDataset

PATCHES_PER_CASE = 4
"""Patches drawn from each training case per epoch unless a grid says otherwise."""


def spacing_shape(shape: tuple[int, ...], spacing: tuple[float, ...], target: tuple[float, ...] | None
                  ) -> tuple[int, int, int]:
    """The ``(D, H, W)`` a volume of ``shape`` at ``spacing`` has at ``target`` spacing (``None``: unchanged)."""
    if target is None:
        return tuple(int(s) for s in shape)
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def case_volume(case: Case, target: tuple[float, float, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A case's image ``(C, D, H, W)`` float32 and label ``(1, D, H, W)`` int64, resampled to ``target``."""
    image = torch.from_numpy(np.ascontiguousarray(case.image, dtype=np.float32)).movedim(1, 0)
    label = torch.from_numpy(np.asarray(case.label, dtype=np.int64))[None]
    size = spacing_shape(tuple(label.shape[1:]), case.spacing, target)
    if size != tuple(label.shape[1:]):
        image = torch.as_tensor(Resize(size, mode="trilinear")(image)).float()
        label = torch.as_tensor(Resize(size, mode="nearest")(label.float())).round().long()
    return image, label


class PatchDataset(Dataset):
    """Random ``patch``-sized 3D patches of the cases, as ``(image (C,D,H,W) float, label (D,H,W) long)``.

    One epoch is ``patches_per_case`` patches of every case (item ``i`` comes from case
    ``i // patches_per_case``).  Each patch is centred on a foreground voxel (label > 0)
    with probability ``foreground_share``, else on any voxel (a case without foreground
    gives the latter).  The randomness comes from ``generator`` (default: torch's global
    generator, which the training loop seeds), so a seeded run draws the same patches.
    """

    def __init__(self, cases: list[Case], patch: tuple[int, int, int] | list[int], foreground_share: float = 0.33,
                 patches_per_case: int = PATCHES_PER_CASE, spacing: tuple[float, float, float] | None = None,
                 generator: torch.Generator | None = None):
        self.patch = tuple(int(p) for p in patch)
        self.patches_per_case = patches_per_case
        self.generator = generator
        pad = SpatialPad(self.patch, mode="constant")
        self.volumes = []
        for case in cases:
            image, label = case_volume(case, tuple(spacing) if spacing is not None else None)
            self.volumes.append((torch.as_tensor(pad(image)), torch.as_tensor(pad(label))))
        self.crop = RandCropByPosNegLabel(self.patch, pos=foreground_share, neg=1.0 - foreground_share,
                                          num_samples=1, allow_smaller=False)

    def __len__(self) -> int:
        return len(self.volumes) * self.patches_per_case

    def __getitem__(self, i: int):
        image, label = self.volumes[i // self.patches_per_case]
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator))
        self.crop.set_random_state(seed=seed)
        with warnings.catch_warnings():  # a case without foreground: MONAI warns, then draws anywhere
            warnings.simplefilter("ignore")
            both = torch.cat([image, label.float()])
            patch = torch.as_tensor(self.crop(both, label=label)[0])
        return patch[:-1].float().contiguous(), patch[-1].round().long().contiguous()


def training_data(config: dict, cases: list[Case]) -> Dataset:
    """What a training job with ``config`` trains on: 2D slices, or 3D patches when the config's
    ``volume`` says ``dims: 3`` (patch, foreground_share, patches_per_case, spacing; see ``docs/3d.md``)."""
    volume = config.get("volume") or {}
    if volume.get("dims", 2) != 3:
        return SliceDataset(cases)
    return PatchDataset(cases, volume["patch"], foreground_share=volume.get("foreground_share", 0.33),
                        patches_per_case=volume.get("patches_per_case", PATCHES_PER_CASE),
                        spacing=volume.get("spacing"))
