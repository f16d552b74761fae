"""Tiny synthetic datasets written in the on-disk layouts kdbench reads.

For tests and for trying the loaders without the real data: each ``make_*`` function
writes a few small cases under ``root`` in one dataset's layout as distributed (NIfTI
volumes with nibabel, images with Pillow) and returns the root to pass as ``root:``.
Volumes hold a body, an organ (label 1) and a tumour inside it (label 2) in plausible
CT numbers; images hold a bright blob and its mask.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image


def synthetic_volume(shape: tuple[int, int, int], seed: int, slice_axis: int = 2, num_labels: int = 2,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(image int16 HU, label uint8)`` of ``shape``; structures grow along ``slice_axis``."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    plane = [g for i, g in enumerate(grids) if i != slice_axis]
    along = grids[slice_axis]
    centre = rng.uniform(-0.15, 0.15, size=2)
    radius = rng.uniform(0.45, 0.6)
    r2 = ((plane[0] - centre[0]) ** 2 + (plane[1] - centre[1]) ** 2) / radius ** 2 + 0.3 * along ** 2
    label = np.zeros(shape, dtype=np.uint8)
    label[r2 <= 1.0] = 1
    image = np.where(np.hypot(plane[0], plane[1]) < 0.95, 40.0, -1000.0)
    image = image + 60.0 * (r2 <= 1.0)
    for value in range(2, num_labels + 1):
        c = centre + rng.uniform(-0.1, 0.1, size=2)
        t2 = ((plane[0] - c[0]) ** 2 + (plane[1] - c[1]) ** 2) / (0.4 * radius / value) ** 2 + along ** 2
        label[(t2 <= 1.0) & (label > 0)] = value
        image = image - 30.0 * ((t2 <= 1.0) & (label > 0))
    image = image + rng.normal(0, 5, size=shape)
    return image.astype(np.int16), label


def save_nifti(path: Path, array: np.ndarray, spacing: tuple[float, float, float],
               affine: np.ndarray | None = None) -> Path:
    """Write ``array`` as NIfTI (``.nii`` or ``.nii.gz`` by the name) with voxel ``spacing``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if affine is None:
        affine = np.diag([*spacing, 1.0])
    img = nib.Nifti1Image(array, affine)
    img.header.set_zooms(tuple(spacing) + tuple(img.header.get_zooms()[3:]))
    nib.save(img, str(path))
    return path


def make_lits(root: Path, cases: int = 3, shape=(24, 24, 4), spacing=(0.8, 0.8, 2.5), batches: bool = True) -> Path:
    """``Training Batch k/volume-N.nii`` + ``segmentation-N.nii``, and one unlabelled test volume."""
    root = Path(root)
    for n in range(cases):
        folder = root / (f"Training Batch {1 + n % 2}" if batches else "")
        image, label = synthetic_volume(shape, seed=n, slice_axis=2)
        save_nifti(folder / f"volume-{n}.nii", image, spacing)
        save_nifti(folder / f"segmentation-{n}.nii", label, spacing)
    image, _ = synthetic_volume(shape, seed=99)
    save_nifti(root / "Test Batch" / "test-volume-0.nii", image, spacing)
    return root


def make_kits(root: Path, cases: int = 3, shape=(4, 24, 24), spacing=(3.0, 0.78, 0.78)) -> Path:
    """``data/case_NNNNN/imaging.nii.gz`` + ``segmentation.nii.gz`` (slice axis first), one test case."""
    root = Path(root)
    for n in range(cases):
        image, label = synthetic_volume(shape, seed=100 + n, slice_axis=0)
        save_nifti(root / "data" / f"case_{n:05d}" / "imaging.nii.gz", image, spacing)
        save_nifti(root / "data" / f"case_{n:05d}" / "segmentation.nii.gz", label, spacing)
    image, _ = synthetic_volume(shape, seed=300, slice_axis=0)
    save_nifti(root / "data" / "case_00210" / "imaging.nii.gz", image, spacing)
    return root


def make_acdc(root: Path, train: int = 3, test: int = 2, shape=(20, 24, 4), spacing=(1.5, 1.5, 10.0)) -> Path:
    """``training/patientNNN`` and ``testing/patientNNN`` with Info.cfg, ED/ES frames and labels."""
    root = Path(root)
    patients = [("training", i + 1) for i in range(train)] + [("testing", 101 + i) for i in range(test)]
    for part, number in patients:
        folder = root / part / f"patient{number:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        es = 8 + number % 4
        (folder / "Info.cfg").write_text(f"ED: 1\nES: {es}\nGroup: NOR\nHeight: 180.0\nNbFrame: 20\nWeight: 80.0\n")
        for frame in (1, es):
            image, label = synthetic_volume(shape, seed=number * 10 + frame, num_labels=3)
            image = (image.astype(np.float32) + 1000.0) / 4.0  # MRI-like, positive
            save_nifti(folder / f"patient{number:03d}_frame{frame:02d}.nii.gz", image, spacing)
            save_nifti(folder / f"patient{number:03d}_frame{frame:02d}_gt.nii.gz", label, spacing)
    return root


def make_segthor(root: Path, patients: int = 3, shape=(24, 24, 5), spacing=(0.98, 0.98, 2.5)) -> Path:
    """``train/Patient_NN/Patient_NN.nii.gz`` + ``GT.nii.gz``, and a flat unlabelled ``test/``."""
    root = Path(root)
    for n in range(1, patients + 1):
        image, label = synthetic_volume(shape, seed=200 + n, num_labels=4)
        save_nifti(root / "train" / f"Patient_{n:02d}" / f"Patient_{n:02d}.nii.gz", image, spacing)
        save_nifti(root / "train" / f"Patient_{n:02d}" / "GT.nii.gz", label, spacing)
    image, _ = synthetic_volume(shape, seed=299)
    save_nifti(root / "test" / "Patient_41.nii.gz", image, spacing)
    return root


def make_msd(root: Path, flavour: str = "msd", cases: int = 3, channels: int = 1, shape=(24, 24, 4),
             spacing=(0.8, 0.8, 2.5), regions: bool = False) -> Path:
    """An MSD task (``flavour="msd"``) or nnU-Net v2 raw dataset (``"nnunetv2"``) with dataset.json."""
    import json

    root = Path(root)
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names = [f"CT{c}" if c == 0 else f"MR{c}" for c in range(channels)]
    training = []
    for n in range(cases):
        case = f"organ_{n}"
        image, label = synthetic_volume(shape, seed=400 + n)
        save_nifti(root / "labelsTr" / f"{case}.nii.gz", label, spacing)
        if flavour == "msd":
            data = np.stack([image * (-1) ** c for c in range(channels)], axis=-1) if channels > 1 else image
            save_nifti(root / "imagesTr" / f"{case}.nii.gz", data, spacing)
            training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
        else:
            for c in range(channels):
                save_nifti(root / "imagesTr" / f"{case}_{c:04d}.nii.gz", image * (-1) ** c, spacing)
    if flavour == "msd":
        desc = {"name": "Organ", "modality": {str(c): names[c] for c in range(channels)},
                "labels": {"0": "background", "1": "organ", "2": "lesion"},
                "numTraining": cases, "training": training, "test": []}
    else:
        labels = {"background": 0, "organ": 1, "lesion": 2}
        if regions:
            labels = {"background": 0, "whole": [1, 2], "lesion": 2}
        desc = {"name": "Organ", "channel_names": {str(c): names[c] for c in range(channels)},
                "labels": labels, "numTraining": cases, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(desc, indent=1))
    return root


def synthetic_image(size: tuple[int, int], seed: int, colour: bool = True) -> tuple[Image.Image, Image.Image]:
    """``(image, mask)``: a bright elliptical blob on a textured background, and its 0/255 mask."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    cy, cx = rng.uniform(-0.3, 0.3, size=2)
    ry, rx = rng.uniform(0.25, 0.5, size=2)
    blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    base = 60 + 40 * rng.random((h, w)) + 120 * blob
    if colour:
        rgb = np.stack([base, base * 0.8, base * 0.6], axis=-1).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(rgb, mode="RGB")
    else:
        image = Image.fromarray(base.clip(0, 255).astype(np.uint8), mode="L")
    return image, Image.fromarray((blob * 255).astype(np.uint8), mode="L")


def make_isic(root: Path, train: int = 3, validation: int = 1, test: int = 2, size=(30, 40)) -> Path:
    """The ISIC 2018 Task 1 folders (Training/Validation/Test, inputs and ground truth)."""
    root = Path(root)
    index = 0
    for part, count in (("Training", train), ("Validation", validation), ("Test", test)):
        inputs = root / f"ISIC2018_Task1-2_{part}_Input"
        truth = root / f"ISIC2018_Task1_{part}_GroundTruth"
        inputs.mkdir(parents=True, exist_ok=True)
        truth.mkdir(parents=True, exist_ok=True)
        (inputs / "LICENSE.txt").write_text("CC-BY-NC\n")
        for _ in range(count):
            image, mask = synthetic_image(size, seed=index)
            image.save(inputs / f"ISIC_{index:07d}.jpg", quality=95)
            mask.save(truth / f"ISIC_{index:07d}_segmentation.png")
            index += 1
    return root


def make_cvc(root: Path, size=(28, 36)) -> Path:
    """``CVC-300`` and ``CVC-612`` with ``bbdd/`` frames and ``gtpolyp/`` masks, a few frames of each part."""
    root = Path(root)
    frames = {"CVC-300": ([1, 2], [77], [149]), "CVC-612": ([26], [51], [1, 127])}
    for db, parts in frames.items():
        for numbers in parts:
            for number in numbers:
                image, mask = synthetic_image(size, seed=number + (1000 if db == "CVC-612" else 0))
                (root / db / "bbdd").mkdir(parents=True, exist_ok=True)
                (root / db / "gtpolyp").mkdir(parents=True, exist_ok=True)
                image.save(root / db / "bbdd" / f"{number}.bmp")
                mask.save(root / db / "gtpolyp" / f"{number}.{'tif' if db == 'CVC-612' else 'bmp'}")
    return root


def make_idrid(root: Path, train: int = 3, test: int = 2, size=(32, 48)) -> Path:
    """IDRiD part A: original images and red-on-black optic-disc masks, training and testing sets."""
    root = Path(root) / "A. Segmentation"
    number = 1
    for part, count in (("a. Training Set", train), ("b. Testing Set", test)):
        images = root / "1. Original Images" / part
        masks = root / "2. All Segmentation Groundtruths" / part / "5. Optic Disc"
        images.mkdir(parents=True, exist_ok=True)
        masks.mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            image, mask = synthetic_image(size, seed=500 + number)
            image.save(images / f"IDRiD_{number:02d}.jpg", quality=95)
            red = np.zeros((*size, 3), dtype=np.uint8)
            red[..., 0] = np.asarray(mask)
            Image.fromarray(red, mode="RGB").save(masks / f"IDRiD_{number:02d}_OD.tif")
            number += 1
    return root.parent


def make_folder(root: Path, cases: int = 4, size=(24, 24), colour: bool = False, images: str = "images",
                masks: str = "masks", mask_suffix: str = "", mask_format: str = "png") -> Path:
    """``images/NAME.png`` and ``masks/NAME{mask_suffix}.{mask_format}`` (e.g. gif, as retinal-vessel sets ship)."""
    root = Path(root)
    (root / images).mkdir(parents=True, exist_ok=True)
    (root / masks).mkdir(parents=True, exist_ok=True)
    for n in range(cases):
        image, mask = synthetic_image(size, seed=700 + n, colour=colour)
        image.save(root / images / f"img{n}.png")
        mask.save(root / masks / f"img{n}{mask_suffix}.{mask_format}")
    return root
