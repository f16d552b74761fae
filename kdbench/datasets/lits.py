"""LiTS17 — the Liver Tumor Segmentation Benchmark (ISBI 2017 / MICCAI 2017), CT volumes.

Layout as distributed: ``volume-N.nii`` with ``segmentation-N.nii`` (``.nii.gz`` also
read), in one folder or in sub-folders (``Training Batch 1``, ``Training Batch 2``);
labels 0 background, 1 liver, 2 tumour.  The 70 test volumes (``test-volume-N.nii``)
have no public labels and are skipped, so the cases are the official 131 labelled
training volumes.  Targets: liver = {1, 2} (the liver including its tumours, as the
challenge scores it), tumour = {2}.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from kdbench.datasets import register_dataset
from kdbench.datasets.prepare import Discovery, Source
from kdbench.datasets.volume import VolumeDataset, VolumeOptions, nifti_stem, walk_files

VOLUME = re.compile(r"^volume-(\d+)$")
SEGMENTATION = re.compile(r"^segmentation-(\d+)$")
TEST_VOLUME = re.compile(r"^test-volume-(\d+)$")


class LitsOptions(VolumeOptions):
    window: tuple[float, float] | None = (-60.0, 140.0)
    """HU window; default −60…140 as in EMKD's official code (the paper's text says −40…160)."""
    slice_axis: Literal[0, 1, 2, "auto"] = 2
    """Voxel axis cut into slices; LiTS volumes are stored (x, y, z), so 2 (axial)."""


@register_dataset("lits17")
class Lits17(VolumeDataset):
    """LiTS17 liver and liver-tumour CT (131 labelled volumes; nibabel, HU window −60…140)."""

    name = "lits17"
    Options: ClassVar = LitsOptions
    layout = "volume-N.nii[.gz] with segmentation-N.nii[.gz] (in the root or its sub-folders)"
    download = "https://competitions.codalab.org/competitions/17094"
    classes = ("background", "liver", "tumour")
    default_targets = {"liver": (1, 2), "tumour": (2,)}
    holdout = 0.2

    def discover(self) -> Discovery:
        found = Discovery()
        volumes: dict[int, list] = {}
        labels: dict[int, list] = {}
        for path in walk_files(self.root_path):
            found.seen += 1
            stem = nifti_stem(path)
            if stem is None:
                if len(found.examples) < 4:
                    found.examples.append(path.name)
                continue
            if m := VOLUME.match(stem):
                volumes.setdefault(int(m.group(1)), []).append(path)
            elif m := SEGMENTATION.match(stem):
                labels.setdefault(int(m.group(1)), []).append(path)
            elif not TEST_VOLUME.match(stem) and len(found.examples) < 4:
                found.examples.append(path.name)
        for n, paths in sorted(volumes.items()):
            for vol in paths:
                segs = labels.get(n, [])
                seg = next((s for s in segs if s.parent == vol.parent), segs[0] if segs else None)
                if seg is None:
                    found.problems.append(f"{vol}: no label file segmentation-{n}.nii[.gz] for it "
                                          f"(LiTS test volumes are named test-volume-N and are skipped)")
                    continue
                found.sources.append(Source(f"lits_{n:03d}", (vol,), seg, part="train"))
        for n, segs in sorted(labels.items()):
            if n not in volumes:
                found.problems.append(f"{segs[0]}: label without its image volume-{n}.nii[.gz]")
        return found
