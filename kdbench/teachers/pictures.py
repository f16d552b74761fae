"""Pictures of FIG and BT images made from the built-in phantom, for the docs.

:func:`fig_bt_figure` writes a PNG that is byte-identical from run to run (fixed seeds,
the Agg renderer, no software/date metadata).  Needs matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from kdbench.datasets.phantom import make_phantom_case
from kdbench.teachers.bt import DEFAULT_DELTA, boundary_band, bt_images
from kdbench.teachers.fig import FIGTransform


class ThresholdTeacher(nn.Module):
    """A stand-in for a trained teacher: foreground where the first channel exceeds ``threshold``.

    Returns two-class logits ``(threshold − x, x − threshold)``.  On the phantom with the
    organ as the lesion, 0.4 (between body ≈ 0.15 and organ ≈ 0.6) misses the dark
    tumour inside the organ (false negatives) and takes bright noise in the body for
    organ (false positives): both FIG queues fill without training anything.
    """

    def __init__(self, threshold: float = 0.4):
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :1]
        return torch.cat([self.threshold - x, x - self.threshold], dim=1)


def phantom_batch(size: int = 128, slices: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The slices of phantom case 0 that contain organ.

    Returns images ``(B, 1, size, size)`` and binary organ labels ``(B, size, size)``.
    """
    case = make_phantom_case(0, seed, size, slices, noise=0.1, contrast=0.3)
    keep = (case.label != 0).reshape(len(case.label), -1).any(1)
    image = torch.from_numpy(np.ascontiguousarray(case.image[keep]))
    label = torch.from_numpy((case.label[keep] != 0).astype(np.int64))
    return image, label


def fig_bt_figure(path: str | Path, size: int = 128, delta: int = DEFAULT_DELTA, seed: int = 0) -> Path:
    """Write a PNG of FIG and BT images made from the phantom (organ as the lesion); returns its path.

    Top row: a phantom slice, a FIG image, the BT image of the slice.  Bottom row: the
    slice's mask, the FIG image's mask (a real mask of the batch), and the slice's BT
    band (orange) and interior (blue).  The FIG image comes from one call of
    :class:`FIGTransform` with :class:`ThresholdTeacher` and ``fill_first=False`` (the
    queues hold the false pixels of this one batch); the BT image uses band width
    ``delta``.  Everything is seeded by ``seed``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image, label = phantom_batch(size=size, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    fig_image, fig_mask = FIGTransform(ThresholdTeacher(), fill_first=False)(image, label, generator)
    bt_image = bt_images(image, label, delta, generator)
    i = len(image) // 2
    band = boundary_band(label[i:i + 1] != 0, delta)[0]
    regions = np.zeros((size, size, 3))
    regions[(label[i] != 0).numpy()] = (0.2, 0.4, 0.9)
    regions[band.numpy()] = (1.0, 0.6, 0.1)
    low, high = float(image.min()), float(image.max())
    panels = [
        ("phantom slice", image[i, 0].numpy(), "gray"), ("FIG image", fig_image[0, 0].numpy(), "gray"),
        (f"BT image (δ = {delta})", bt_image[i, 0].numpy(), "gray"),
        ("its mask", label[i].numpy(), "gray"), ("FIG mask (a real mask)", fig_mask[0].numpy(), "gray"),
        ("BT band / interior", regions, None),
    ]
    figure = Figure(figsize=(7.5, 5.2), dpi=100)
    FigureCanvasAgg(figure)
    for k, (title, picture, cmap) in enumerate(panels):
        axes = figure.add_subplot(2, 3, k + 1)
        if cmap is None:
            axes.imshow(picture, interpolation="nearest")
        elif picture.dtype.kind == "i":
            axes.imshow(picture, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        else:
            axes.imshow(picture, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
        axes.set_title(title, fontsize=10)
        axes.set_axis_off()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", metadata={"Software": None})
    return path
