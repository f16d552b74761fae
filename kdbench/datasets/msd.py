"""Any Medical Segmentation Decathlon task or nnU-Net v2 raw dataset, described by ``dataset.json``.

The root is the task folder (``Task03_Liver/``, ``Dataset003_Liver/``) holding
``dataset.json``, ``imagesTr/`` and ``labelsTr/``.  Both flavours of ``dataset.json``:

* MSD: ``"labels": {"0": "background", "1": "liver", ...}`` and a ``"training"`` list of
  ``{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}``; multi-modal
  images are 4D with the modalities last (``"modality"`` names them);
* nnU-Net v2: ``"labels": {"background": 0, "liver": 1, ...}`` — a label may be a
  region, a list of values (``"whole tumour": [1, 2, 3]``) — with ``"channel_names"``
  and ``"file_ending"``; images are one file per channel, ``imagesTr/<case>_0000.nii.gz``,
  ``_0001``, ..., labels ``labelsTr/<case>.nii.gz``.

Classes are the label values, named from ``dataset.json``; the default targets are one
per named label (its value, or its region's values).  ``imagesTs/`` has no labels and is
not read.  Intensities: no window by default (per-case z-score); set ``window`` for CT.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import ClassVar

from kdbench.datasets import register_dataset
from kdbench.datasets.prepare import Discovery, Source
from kdbench.datasets.volume import NIFTI_SUFFIXES, VolumeDataset, VolumeOptions, nifti_stem
from kdbench.errors import DatasetError

CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


class MsdOptions(VolumeOptions):
    channels: tuple[int, ...] | None = None
    """Image channels (modalities) to use, by index in dataset.json; null: all."""


def parse_labels(labels, where: Path) -> tuple[tuple[str, ...], dict[str, tuple[int, ...]]]:
    """``(classes, default targets)`` from either flavour of ``"labels"``."""
    if not isinstance(labels, dict) or not labels:
        raise DatasetError(f"{where}: 'labels' must be a non-empty mapping")
    names: dict[int, str] = {}
    targets: dict[str, tuple[int, ...]] = {}
    if all(re.fullmatch(r"\d+", str(k)) for k in labels):  # MSD: value → name
        for key, name in labels.items():
            names[int(key)] = str(name)
        targets = {name: (value,) for value, name in sorted(names.items()) if value != 0}
        values = set(names)
    else:  # nnU-Net v2: name → value or region
        values = set()
        for name, value in labels.items():
            if isinstance(value, int) and not isinstance(value, bool):
                names.setdefault(value, str(name))
                region = (value,)
            elif isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                region = tuple(sorted(set(value)))
            else:
                raise DatasetError(f"{where}: label '{name}' = {value!r}; expected an integer or a list of integers")
            values.update(region)
            if region != (0,):
                targets[str(name)] = tuple(v for v in region if v != 0)
    if min(values) < 0:
        raise DatasetError(f"{where}: negative label value {min(values)}")
    count = max(values) + 1
    if count > 255:
        raise DatasetError(f"{where}: label values up to {count - 1}; kdbench stores labels as uint8 (< 255)")
    classes = tuple(names.get(i, "background" if i == 0 else f"label_{i}") for i in range(count))
    if not targets:
        raise DatasetError(f"{where}: no foreground label")
    return classes, targets


def parse_channels(data: dict, where: Path) -> list[str]:
    """The channel names from ``"channel_names"`` (nnU-Net v2) or ``"modality"`` (MSD).

    A mapping ``{"0": "T1", "1": "T2"}`` gives the channels in key order; a single name
    (``"modality": "CT"``) one channel; a list of names, those channels.  Anything else
    is a one-line error naming the file and the field.  Neither field: one channel.
    """
    field = "channel_names" if data.get("channel_names") else "modality"
    value = data.get(field)
    if not value:
        return ["image"]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, dict) and all(re.fullmatch(r"\d+", str(k)) for k in value):
        return [str(value[k]) for k in sorted(value, key=int)]
    raise DatasetError(f"{where}: '{field}' = {json.dumps(value)[:80]}; expected a mapping of channel numbers to "
                       f"names, e.g. {{\"0\": \"CT\"}}")


@register_dataset("msd")
class Msd(VolumeDataset):
    """Any Medical Segmentation Decathlon task or nnU-Net v2 raw dataset (dataset.json)."""

    name = "msd"
    Options: ClassVar = MsdOptions
    layout = "dataset.json with imagesTr/ and labelsTr/ (an MSD TaskNN_* or nnU-Net v2 DatasetNNN_* folder)"
    download = "http://medicaldecathlon.com/"
    holdout = 0.2

    def configure(self) -> None:
        path = self.root_path / "dataset.json"
        if not path.is_file():
            found = ", ".join(sorted(p.name for p in self.root_path.iterdir())[:5]) or "nothing"
            raise DatasetError(f"dataset msd: {path} not found — the root must be one task folder holding "
                               f"dataset.json, imagesTr/ and labelsTr/ (found: {found})")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: not valid JSON ({' '.join(str(exc).split())})") from None
        if not isinstance(data, dict):
            raise DatasetError(f"{path}: expected a JSON object")
        self.description = data
        self.classes, self.default_targets = parse_labels(data.get("labels"), path)
        self.modalities = parse_channels(data, path)
        self.file_ending = str(data.get("file_ending", ".nii.gz"))
        if self.file_ending not in NIFTI_SUFFIXES:
            raise DatasetError(f"{path}: file_ending '{self.file_ending}' is not NIfTI; dataset msd reads "
                               f".nii/.nii.gz (2D image sets: use the folder dataset)")
        channels = self.options.channels
        if channels is not None:
            bad = [c for c in channels if not 0 <= c < len(self.modalities)]
            if bad or not channels:
                raise DatasetError(f"dataset msd: option channels = {list(channels)}; {path} declares "
                                   f"{len(self.modalities)} ({', '.join(self.modalities)})")
            self.channel_indices = tuple(channels)
        self.in_channels = len(channels) if channels else len(self.modalities)
        self.json_path = path

    def discover(self) -> Discovery:
        training = self.description.get("training")
        if isinstance(training, list) and training and all(isinstance(t, dict) and "image" in t for t in training):
            return self._discover_listed(training)
        return self._discover_scanned()

    def _path(self, text: str) -> Path:
        return (self.root_path / str(text)).resolve()

    def _discover_listed(self, training: list[dict]) -> Discovery:
        found = Discovery()
        for item in training:
            found.seen += 1
            image, label = self._path(item["image"]), item.get("label")
            if label is None:
                found.problems.append(f"{self.json_path}: training entry {item['image']} has no label")
                continue
            label = self._path(label)
            if not image.is_file():
                found.problems.append(f"{image}: listed in dataset.json but missing")
                continue
            if not label.is_file():
                found.problems.append(f"{label}: label file missing for {image}")
                continue
            found.sources.append(Source(nifti_stem(label) or label.name, (image,), label, part="train"))
        return found

    def _discover_scanned(self) -> Discovery:
        found = Discovery()
        images_dir, labels_dir = self.root_path / "imagesTr", self.root_path / "labelsTr"
        if not images_dir.is_dir():
            found.problems.append(f"{images_dir}: missing (an nnU-Net v2 dataset keeps its training images there)")
            return found
        ending = self.file_ending
        cases: dict[str, dict[int, Path]] = {}
        for path in sorted(images_dir.iterdir()):
            if path.name.startswith(".") or not path.name.endswith(ending):
                continue
            found.seen += 1
            m = CHANNEL.match(path.name[: -len(ending)])
            if not m:
                found.problems.append(f"{path}: image name lacks the _NNNN channel suffix (expected <case>_0000{ending})")
                continue
            cases.setdefault(m.group("case"), {})[int(m.group("channel"))] = path
        n_channels = len(self.modalities)
        for case, files in sorted(cases.items()):
            missing = [c for c in range(n_channels) if c not in files]
            if missing:
                found.problems.append(f"{images_dir / f'{case}_{missing[0]:04d}{ending}'}: channel file missing "
                                      f"({self.json_path.name} declares {n_channels} channels)")
                continue
            label = labels_dir / f"{case}{ending}"
            if not label.is_file():
                found.problems.append(f"{label}: label file missing for {files[0]}")
                continue
            found.sources.append(Source(case, tuple(files[c] for c in range(n_channels)), label, part="train"))
        if labels_dir.is_dir():
            for path in sorted(labels_dir.iterdir()):
                if path.name.endswith(ending) and not path.name.startswith(".") and path.name[: -len(ending)] not in cases:
                    found.problems.append(f"{path}: label without images in imagesTr/")
        return found
