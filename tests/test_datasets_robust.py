"""Malformed dataset inputs: each is read correctly or refused with one line naming the file.

Every test writes its own small files (Pillow, nibabel) in ``tmp_path``.  The last tests
go through the installed ``kdbench`` console script: a bad data file found while a job
prepares its dataset fails that job (exit 1, the failure line names the file);
``kdbench datasets prepare`` refuses it as bad input (exit 2, one line).
"""

from __future__ import annotations

import errno
import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from kdbench.datasets import create_dataset, fakes, list_datasets
from kdbench.datasets import prepare as prepare_module
from kdbench.datasets.check import check_dataset
from kdbench.datasets.cli import datasets_app
from kdbench.datasets.prepare import CacheWriteError, prepare_dataset
from kdbench.errors import DatasetError, KdbenchNote, MissingRootError

from conftest import run_cli


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def refused(call, path: Path, *fragments: str) -> str:
    """Run ``call``; it must raise one DatasetError line naming ``path`` (and ``fragments``)."""
    with pytest.raises(DatasetError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text and str(path) in text, text
    for fragment in fragments:
        assert fragment in text, text
    return text


def image_values(root: Path, case: str = "img0", **options) -> np.ndarray:
    return np.asarray(create_dataset("folder", root=str(root), **options).load_case(case).image)


def grey_folder(root: Path, cases: int = 3) -> tuple[Path, list[np.ndarray]]:
    """A grey 8-bit folder (24 × 24) and its images as arrays."""
    fakes.make_folder(root, cases=cases)
    return root, [np.asarray(Image.open(root / "images" / f"img{n}.png")) for n in range(cases)]


# -- 2D images: intensities -------------------------------------------------------------------


@pytest.mark.parametrize("size", [24, 16])
def test_16bit_grey_png_is_scaled_by_its_range(tmp_path, size):
    eight, arrays = grey_folder(tmp_path / "eight")
    sixteen, _ = grey_folder(tmp_path / "sixteen")
    for n, arr in enumerate(arrays):
        Image.fromarray(arr.astype(np.uint16) * 257).save(sixteen / "images" / f"img{n}.png")
    assert Image.open(sixteen / "images" / "img0.png").mode.startswith("I")
    for channels in (1, 3):
        a = image_values(eight, image_size=size, in_channels=channels)
        b = image_values(sixteen, image_size=size, in_channels=channels)
        assert b.shape == a.shape == (1, channels, size, size) and b.dtype == np.float32
        assert 0.1 < b.std()  # not a constant image (it was all 1.0)
        assert np.allclose(a, b, atol=1e-6 if size == 24 else 1.5 / 255)


def test_32bit_integer_tiff(tmp_path):
    root, arrays = grey_folder(tmp_path / "f", cases=2)
    Image.fromarray(arrays[0].astype(np.int32) * 257).save(root / "images" / "img0.tif")
    (root / "images" / "img0.png").unlink()
    wide = arrays[1].astype(np.int32) * 1000 - 50_000  # beyond 16 bits: min–max per image
    Image.fromarray(wide).save(root / "images" / "img1.tif")
    (root / "images" / "img1.png").unlink()
    assert np.allclose(image_values(root, image_size=24, in_channels=1)[0, 0], arrays[0] / 255.0, atol=1e-6)
    got = image_values(root, "img1", image_size=24, in_channels=1)[0, 0]
    expected = (wide - wide.min()) / (wide.max() - wide.min())
    assert np.allclose(got, expected, atol=1e-6)


def test_float_tiff_is_min_max_scaled_per_image(tmp_path):
    root, arrays = grey_folder(tmp_path / "f")
    hu = arrays[0].astype(np.float32) * 8.0 - 1000.0  # arbitrary units
    Image.fromarray(hu).save(root / "images" / "img0.tif")
    Image.fromarray(np.full((24, 24), 0.5, dtype=np.float32)).save(root / "images" / "img1.tif")
    for n in (0, 1):
        (root / "images" / f"img{n}.png").unlink()
    assert Image.open(root / "images" / "img0.tif").mode == "F"
    got = image_values(root, image_size=24, in_channels=1)[0, 0]
    assert np.allclose(got, (hu - hu.min()) / (hu.max() - hu.min()), atol=1e-6)
    assert got.min() == 0.0 and got.max() == 1.0  # it was all 0
    assert not image_values(root, "img1", image_size=24, in_channels=1).any()  # constant: 0
    resized = image_values(root, image_size=16)
    assert resized.shape == (1, 3, 16, 16) and 0.0 <= resized.min() and resized.max() <= 1.0


def test_float_image_with_nan_is_refused(tmp_path):
    root, arrays = grey_folder(tmp_path / "f")
    values = arrays[0].astype(np.float32)
    values[3, 4] = np.nan
    bad = root / "images" / "img0.tif"
    Image.fromarray(values).save(bad)
    (root / "images" / "img0.png").unlink()
    refused(lambda: create_dataset("folder", root=str(root)).case_ids(), bad, "NaN or inf in 1 pixels")


@pytest.mark.parametrize("limit, kind", [(400, "DecompressionBombWarning"), (200, "DecompressionBombError")])
def test_decompression_bomb_is_refused(tmp_path, monkeypatch, limit, kind):
    root, _ = grey_folder(tmp_path / "f")  # 24 × 24 = 576 pixels; Pillow errors above twice the limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    bad = root / "images" / "img0.png"
    refused(lambda: create_dataset("folder", root=str(root)).case_ids(), bad, "decompression bomb", kind)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "text"])
@pytest.mark.parametrize("which", ["images/img1.png", "masks/img1.png"])
def test_unreadable_images_are_one_line(tmp_path, damage, which):
    root, _ = grey_folder(tmp_path / "f")
    bad = root / which
    data = bad.read_bytes()
    bad.write_bytes({"truncated": data[: len(data) // 2], "garbage": data[:16] + bytes(range(256)) * 4,
                     "empty": b"", "text": b"not an image\n"}[damage])
    ds = create_dataset("folder", root=str(root))
    refused(ds.case_ids, bad)
    assert [p for p in check_dataset(create_dataset("folder", root=str(root))) if str(bad) in p]


# -- 2D images: masks -------------------------------------------------------------------------


def folder_with_mask(root: Path, values: np.ndarray, suffix: str = ".png", mode: str | None = None) -> Path:
    """A folder of one 12 × 12 grey image and the mask ``values``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    Image.fromarray(np.full((12, 12), 100, dtype=np.uint8)).save(root / "images" / "a.png")
    mask = Image.fromarray(values) if mode is None else Image.fromarray(values).convert(mode)
    mask.save(root / "masks" / f"a{suffix}")
    return root / "masks" / f"a{suffix}"


def blob(foreground: int, dtype=np.uint8) -> np.ndarray:
    values = np.zeros((12, 12), dtype=dtype)
    values[3:8, 2:9] = foreground
    return values


@pytest.mark.parametrize("foreground, dtype", [(1, np.uint8), (255, np.uint8), (65535, np.uint16), (1, np.uint16)])
def test_binary_masks_of_0_and_one_value(tmp_path, foreground, dtype):
    folder_with_mask(tmp_path / "f", blob(foreground, dtype))
    label = create_dataset("folder", root=str(tmp_path / "f"), image_size=12).load_case("a").label[0]
    assert np.array_equal(label, blob(1))


@pytest.mark.parametrize("values, shown", [
    ([0, 1, 2], "[0, 1, 2]"), ([0, 128, 255], "[0, 128, 255]"), ([0, 1, 255], "[0, 1, 255]"),
    (list(range(12)), "[0, 1, 2, 3, 4, 5, 6, 7, … (12 distinct values)]"),
])
def test_binary_mask_with_other_values_is_refused(tmp_path, values, shown):
    mask = blob(values[1])
    mask[0, : len(values)] = values
    bad = folder_with_mask(tmp_path / "f", mask)
    text = refused(lambda: create_dataset("folder", root=str(tmp_path / "f")).case_ids(), bad,
                   f"binary mask holds the values {shown}", "0 and one of 1, 255 or 65535", "mask_threshold",
                   "option classes")
    assert text.count(str(bad)) == 1
    problems = check_dataset(create_dataset("folder", root=str(tmp_path / "f")))
    assert len([p for p in problems if str(bad) in p]) == 1, problems


def test_the_mask_options_read_what_binary_mode_refuses(tmp_path):
    mask = blob(1)
    mask[0, 0:3] = 2
    folder_with_mask(tmp_path / "f", mask)
    threshold = create_dataset("folder", root=str(tmp_path / "f"), image_size=12, mask_threshold=0)
    assert np.array_equal(threshold.load_case("a").label[0], (mask > 0).astype(np.uint8))
    labels = create_dataset("folder", root=str(tmp_path / "f"), image_size=12, classes=["bg", "one", "two"])
    assert np.array_equal(labels.load_case("a").label[0], mask)


def test_named_image_sets_refuse_ambiguous_masks_without_naming_classes(tmp_path):
    root = fakes.make_isic(tmp_path / "isic", train=2, validation=0, test=1)
    bad = root / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000001_segmentation.png"
    mask = np.asarray(Image.open(bad)).copy() // 255
    mask[0, 0] = 2
    Image.fromarray(mask).save(bad)
    text = refused(lambda: create_dataset("isic2018", root=str(root)).case_ids(), bad, "[0, 1, 2]", "mask_threshold")
    assert "option classes" not in text  # isic2018 has no such option


@pytest.mark.parametrize("suffix, mode", [(".gif", None), (".gif", "1"), (".bmp", None), (".tif", None),
                                          (".tiff", None), (".png", "P"), (".png", "RGB")])
def test_lossless_mask_formats(tmp_path, suffix, mode):
    folder_with_mask(tmp_path / "f", blob(255), suffix, mode)
    label = create_dataset("folder", root=str(tmp_path / "f"), image_size=12).load_case("a").label[0]
    assert np.array_equal(label, blob(1))


def test_multiclass_gif_masks_hold_the_labels(tmp_path):
    mask = blob(1)
    mask[9:11, 9:11] = 2
    folder_with_mask(tmp_path / "f", mask, ".gif")
    ds = create_dataset("folder", root=str(tmp_path / "f"), image_size=12, classes=["bg", "a", "b"])
    assert np.array_equal(ds.load_case("a").label[0], mask)


def test_jpeg_masks_are_binarised_at_127_with_a_note(tmp_path):
    root = tmp_path / "f"
    folder_with_mask(root, blob(255), ".jpg")
    noisy = np.asarray(Image.open(root / "masks" / "a.jpg"))
    assert len(np.unique(noisy)) > 2  # lossy: in-between values at the edges
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = create_dataset("folder", root=str(root), image_size=12)
    notes = [str(w.message) for w in caught if issubclass(w.category, KdbenchNote)]
    assert len(notes) == 1 and str(root / "masks") in notes[0] and "127" in notes[0]
    assert np.array_equal(ds.load_case("a").label[0], (noisy > 127).astype(np.uint8))
    bad = root / "masks" / "a.jpg"
    refused(lambda: create_dataset("folder", root=str(root), classes=["bg", "a", "b"]).case_ids(), bad, "lossy")


def test_no_matching_mask_names_the_masks_folder(tmp_path):
    root, _ = grey_folder(tmp_path / "f", cases=2)
    for n in range(2):
        (root / "masks" / f"img{n}.png").rename(root / "masks" / f"img{n}.npy")
    with pytest.raises(DatasetError) as info:
        create_dataset("folder", root=str(root))
    text = str(info.value)
    assert f"no mask img0.* in {root / 'masks'} (it holds no png, jpg" in text and "gif" in text, text
    assert "\n" not in text


def test_spacing_unit():
    from kdbench.datasets import DATASETS

    units = {name: DATASETS.get(name).obj.spacing_unit for name in list_datasets()}
    assert units == {"phantom": "mm", "lits17": "mm", "kits19": "mm", "acdc": "mm", "segthor": "mm", "msd": "mm",
                     "isic2018": "px", "cvc_endoscene": "px", "idrid_od": "px", "folder": "px"}


@pytest.mark.parametrize("root", ["/no/such\nroot", "/bad\x00root"])
def test_unusable_roots_are_one_line(root):
    with pytest.raises(MissingRootError) as info:
        create_dataset("folder", root=root)
    assert "\n" not in str(info.value) and "dataset folder: root" in str(info.value)


# -- volumes ----------------------------------------------------------------------------------


def lits_with(root: Path, name: str, array: np.ndarray, affine=None, spacing=(0.8, 0.8, 2.5)) -> Path:
    """A fake LiTS whose file ``name`` is replaced by ``array``."""
    fakes.make_lits(root, batches=False)
    return fakes.save_nifti(root / name, array, spacing, affine)


def stored(root: Path, name: str) -> np.ndarray:
    return np.asarray(nib.load(str(root / name)).dataobj).copy()


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_nan_in_a_label_map_is_refused(tmp_path, bad_value):
    fakes.make_lits(tmp_path / "lits", batches=False)
    label = stored(tmp_path / "lits", "segmentation-1.nii").astype(np.float32)
    label[2, 3, 1] = bad_value
    bad = fakes.save_nifti(tmp_path / "lits" / "segmentation-1.nii", label, (0.8, 0.8, 2.5))
    refused(lambda: create_dataset("lits17", root=str(tmp_path / "lits"), image_size=16).case_ids(), bad,
            "label map holds NaN or inf in 1 voxels")


@pytest.mark.parametrize("bad_value", [np.nan, -np.inf])
def test_nan_or_inf_in_an_image_is_refused(tmp_path, bad_value):
    fakes.make_lits(tmp_path / "lits", batches=False)
    image = stored(tmp_path / "lits", "volume-2.nii").astype(np.float32)
    image[0, 0, 0] = image[5, 5, 2] = bad_value
    bad = fakes.save_nifti(tmp_path / "lits" / "volume-2.nii", image, (0.8, 0.8, 2.5))
    ds = create_dataset("lits17", root=str(tmp_path / "lits"), image_size=16)
    refused(ds.case_ids, bad, "image holds NaN or inf in 2 voxels")
    problems = check_dataset(create_dataset("lits17", root=str(tmp_path / "lits"), image_size=16))
    assert len(problems) == 1 and str(bad) in problems[0]


def zero_pixdim(path: Path, axis: int) -> None:
    """Overwrite ``pixdim[axis + 1]`` of an uncompressed NIfTI-1 file with 0 (as some writers leave it)."""
    data = bytearray(path.read_bytes())
    offset = 76 + 4 * (axis + 1)
    data[offset:offset + 4] = np.float32(0.0).tobytes()
    path.write_bytes(bytes(data))


def test_zero_pixdim_takes_the_spacing_from_the_sform(tmp_path):
    root = fakes.make_lits(tmp_path / "lits", batches=False)
    for name in ("volume-0.nii", "segmentation-0.nii"):
        zero_pixdim(root / name, axis=2)
    header = nib.Nifti1Header.from_fileobj(open(root / "volume-0.nii", "rb"), check=False)
    assert header["pixdim"][3] == 0 and nib.load(str(root / "volume-0.nii")).header.get_zooms()[2] == 1.0
    case = create_dataset("lits17", root=str(root), image_size=16).load_case("lits_000")
    assert case.eval_spacing == pytest.approx((2.5, 0.8, 0.8))  # not nibabel's 1.0
    assert case.spacing == pytest.approx((2.5, 0.8 * 24 / 16, 0.8 * 24 / 16))


def test_pixdim_disagreeing_with_the_sform_is_refused(tmp_path):
    root = fakes.make_lits(tmp_path / "lits", batches=False)
    image = nib.load(str(root / "volume-1.nii"))
    img = nib.Nifti1Image(np.asarray(image.dataobj).copy(), np.diag([0.8, 0.8, 2.5, 1.0]))
    img.header.set_zooms((0.8, 0.8, 1.0))
    bad = root / "volume-1.nii"
    nib.save(img, str(bad))
    refused(lambda: create_dataset("lits17", root=str(root), image_size=16).case_ids(), bad,
            "axis 2 is 1 mm in pixdim but 2.5 mm in the sform", "check_affine: false")
    ds = create_dataset("lits17", root=str(root), image_size=16, check_affine=False)
    assert ds.load_case("lits_001").eval_spacing == pytest.approx((1.0, 0.8, 0.8))


def test_no_spacing_anywhere_is_refused(tmp_path):
    root = fakes.make_lits(tmp_path / "lits", batches=False)
    image = stored(root, "volume-1.nii")
    img = nib.Nifti1Image(image, None)  # no sform, no qform
    bad = root / "volume-1.nii"
    nib.save(img, str(bad))
    zero_pixdim(bad, axis=2)
    refused(lambda: create_dataset("lits17", root=str(root), image_size=16, check_affine=False).case_ids(), bad,
            "is not positive", "axis 2")


RGB = [("R", "u1"), ("G", "u1"), ("B", "u1")]


@pytest.mark.parametrize("name, what", [("volume-1.nii", "image stores RGB colour voxels"),
                                        ("segmentation-1.nii", "label map stores RGB colour voxels")])
def test_rgb24_nifti_is_refused(tmp_path, name, what):
    root = fakes.make_lits(tmp_path / "lits", batches=False)
    bad = root / name
    nib.save(nib.Nifti1Image(np.zeros((24, 24, 4), dtype=RGB), np.diag([0.8, 0.8, 2.5, 1.0])), str(bad))
    assert nib.load(str(bad)).header["datatype"] == 128  # RGB24
    refused(lambda: create_dataset("lits17", root=str(root), image_size=16).case_ids(), bad, what)


@pytest.mark.parametrize("field, value, channels", [
    ("modality", "CT", ["CT"]), ("modality", ["CT"], ["CT"]), ("channel_names", "CT", ["CT"]),
    ("modality", {"0": "CT"}, ["CT"]),
])
def test_msd_channel_names_as_a_string_or_list(tmp_path, field, value, channels):
    root = fakes.make_msd(tmp_path / "msd")
    desc = json.loads((root / "dataset.json").read_text())
    desc.pop("modality")
    desc[field] = value
    (root / "dataset.json").write_text(json.dumps(desc))
    ds = create_dataset("msd", root=str(root), image_size=16)
    assert ds.modalities == channels and ds.in_channels == 1
    assert ds.load_case("organ_0").image.shape[1] == 1


@pytest.mark.parametrize("value", [{"a": "CT"}, 3, [1, 2], {"0": "CT", "x": "MR"}])
def test_msd_malformed_channel_names_are_refused(tmp_path, value):
    root = fakes.make_msd(tmp_path / "msd")
    desc = json.loads((root / "dataset.json").read_text())
    desc["modality"] = value
    (root / "dataset.json").write_text(json.dumps(desc))
    refused(lambda: create_dataset("msd", root=str(root)), root / "dataset.json", "'modality'")


# -- the preparation cache --------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders anywhere under ``folder``."""
    return [str(p) for p in folder.rglob("*") if ".tmp" in p.name]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_disk_full_while_writing_arrays(tmp_path, monkeypatch, code):
    root = fakes.make_folder(tmp_path / "f", cases=3)
    ds = create_dataset("folder", root=str(root), image_size=16)
    real_save = np.save

    def full(path, array, *args, **kwargs):
        if "img1" in str(path) and str(path).endswith("label.npy"):  # after image.npy was written
            raise OSError(code, "No space left on device")
        return real_save(path, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(CacheWriteError) as info:
        prepare_dataset(ds)
    assert str(info.value) == (f"no space left on {ds.cache_dir} while preparing img1; free some space, or set "
                               f"KDBENCH_CACHE or the dataset option cache_dir to another disk")
    assert not leftovers(ds.cache_dir)
    manifest = json.loads((ds.cache_dir / "manifest.json").read_text())
    assert sorted(manifest["cases"]) == ["img0"]  # prepared before the disk filled: still valid
    assert sorted(p.name for p in (ds.cache_dir / "cases").iterdir()) == [manifest["cases"]["img0"]["dir"]]
    monkeypatch.setattr(np, "save", real_save)
    again = create_dataset("folder", root=str(root), image_size=16)
    assert again.case_ids() == ["img0", "img1", "img2"]
    assert again.load_case("img1").image.shape == (1, 3, 16, 16)


def test_disk_full_while_writing_the_manifest(tmp_path, monkeypatch):
    root = fakes.make_folder(tmp_path / "f", cases=3)
    prepare_dataset(create_dataset("folder", root=str(root), image_size=16))
    before = json.loads((create_dataset("folder", root=str(root), image_size=16).cache_dir
                         / "manifest.json").read_text())
    Image.fromarray(np.zeros((24, 24), dtype=np.uint8)).save(root / "images" / "img1.png")  # changed: redo
    real_dump = json.dump

    def full(data, fh, *args, **kwargs):
        fh.write("{")  # something half-written first
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prepare_module.json, "dump", full)
    ds = create_dataset("folder", root=str(root), image_size=16)
    with pytest.raises(CacheWriteError, match=f"no space left on {ds.cache_dir} while writing manifest.json"):
        prepare_dataset(ds)
    monkeypatch.setattr(prepare_module.json, "dump", real_dump)
    assert not leftovers(ds.cache_dir)
    assert json.loads((ds.cache_dir / "manifest.json").read_text()) == before  # the old one, intact
    dirs = sorted(p.name for p in (ds.cache_dir / "cases").iterdir())
    assert dirs == sorted(e["dir"] for e in before["cases"].values())  # the new case's arrays removed
    fresh = create_dataset("folder", root=str(root), image_size=16)
    assert not fresh.load_case("img1").image.any()


def test_prepare_command_exit_codes(tmp_path, monkeypatch):
    root = fakes.make_folder(tmp_path / "f", cases=2)
    monkeypatch.setattr(np, "save", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    result = CliRunner().invoke(datasets_app, ["prepare", "folder", "--root", str(root), "--image-size", "16"])
    assert result.exit_code == 1  # the cache, not the input
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "no space left on" in lines[0] and "Traceback" not in result.output


# -- through the console script ---------------------------------------------------------------


def run_grid(tmp_path: Path, dataset: dict, **changes):
    """``kdbench run`` of a one-student grid on ``dataset`` (smoke budget); returns (result, out)."""
    grid = {"name": "robust", "datasets": [dataset], "students": [{"name": "tinyunet", "width": 0.5}],
            "methods": ["none"], "train": {"epochs": 1, "batch_size": 2, "image_size": 32}, **changes}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    out = tmp_path / "runs"
    result = run_cli("run", "--grid", str(path), "--out", str(out), "--budget", "smoke",
                     env={"KDBENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"})
    return result, out


def assert_failed_job_names(result, path: Path, message: str) -> None:
    """A job failed on bad data: exit 1, one stderr line naming the file, no traceback."""
    assert result.returncode == 1, result.stderr[-2000:]
    naming = [line for line in result.stderr.splitlines() if str(path) in line]
    assert len(naming) == 1 and message in naming[0], result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr


def assert_refused_by_prepare(name: str, root: Path, path: Path, message: str, tmp_path: Path) -> None:
    result = run_cli("datasets", "prepare", name, "--root", str(root), "--image-size", "16",
                     env={"KDBENCH_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
def test_cli_16bit_png_runs_with_the_8bit_values(tmp_path, monkeypatch):
    root, arrays = grey_folder(tmp_path / "sixteen", cases=4)
    for n, arr in enumerate(arrays):
        Image.fromarray(arr.astype(np.uint16) * 257).save(root / "images" / f"img{n}.png")
    result, out = run_grid(tmp_path, {"name": "folder", "root": str(root)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    prepared = create_dataset("folder", root=str(root), image_size=32).load_case("img0").image
    eight, _ = grey_folder(tmp_path / "eight", cases=1)
    assert np.allclose(prepared, image_values(eight, image_size=32), atol=1.5 / 255)


@pytest.mark.slow
def test_cli_mask_with_three_values_is_refused(tmp_path):
    root, _ = grey_folder(tmp_path / "f", cases=4)
    bad = root / "masks" / "img2.png"
    mask = np.asarray(Image.open(bad)) // 255
    mask[:2, :2] = 2
    Image.fromarray(mask.astype(np.uint8)).save(bad)
    message = "binary mask holds the values [0, 1, 2]"
    result, _ = run_grid(tmp_path, {"name": "folder", "root": str(root)})
    assert_failed_job_names(result, bad, message)
    assert_refused_by_prepare("folder", root, bad, message, tmp_path)
    check = run_cli("datasets", "check", "folder", "--root", str(root), env={"KDBENCH_CACHE": str(tmp_path / "c")})
    assert check.returncode == 1 and str(bad) in check.stdout and "Traceback" not in check.stdout + check.stderr


@pytest.mark.slow
def test_cli_nan_label_is_refused(tmp_path):
    root = fakes.make_lits(tmp_path / "lits", cases=4, batches=False)
    label = stored(root, "segmentation-3.nii").astype(np.float32)
    label[1, 1, 1] = np.nan
    bad = fakes.save_nifti(root / "segmentation-3.nii", label, (0.8, 0.8, 2.5))
    message = "label map holds NaN or inf"
    result, _ = run_grid(tmp_path, {"name": "lits17", "root": str(root)})
    assert_failed_job_names(result, bad, message)
    assert_refused_by_prepare("lits17", root, bad, message, tmp_path)


@pytest.mark.slow
def test_cli_gif_masks_run_end_to_end_in_pixels(tmp_path):
    root = fakes.make_folder(tmp_path / "vessels", cases=4, mask_format="gif")
    assert sorted(p.name for p in (root / "masks").iterdir()) == [f"img{n}.gif" for n in range(4)]
    dataset = create_dataset("folder", root=str(root), image_size=32)
    assert dataset.spacing_unit == "px" and len(dataset.case_ids()) == 4
    result, out = run_grid(tmp_path, {"name": "folder", "root": str(root)},
                           leaderboard={"metrics": ["dice", "hd95"]})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    results = list(out.rglob("results.csv"))
    assert results and "dice" in results[0].read_text()
    board = next(out.rglob("leaderboard.md")).read_text()
    assert "HD95 (px" in board and "(mm" not in board



def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` grey pixels (a decompression bomb's shape)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.slow
def test_cli_bad_images_and_volumes_are_refused_naming_the_file(tmp_path):
    """NaN in an image, RGB24 NIfTI, a decompression-bomb PNG: `datasets prepare` exits 2 naming the file."""
    root, arrays = grey_folder(tmp_path / "nan", cases=3)
    values = arrays[0].astype(np.float32)
    values[3, 4] = np.nan
    bad = root / "images" / "img0.tif"
    Image.fromarray(values).save(bad)
    (root / "images" / "img0.png").unlink()
    assert_refused_by_prepare("folder", root, bad, "NaN or inf", tmp_path)

    lits = fakes.make_lits(tmp_path / "rgb", batches=False)
    bad = lits / "volume-1.nii"
    nib.save(nib.Nifti1Image(np.zeros((24, 24, 4), dtype=RGB), np.diag([0.8, 0.8, 2.5, 1.0])), str(bad))
    assert_refused_by_prepare("lits17", lits, bad, "RGB colour voxels", tmp_path)

    root, _ = grey_folder(tmp_path / "bomb", cases=3)
    bad = root / "images" / "img1.png"
    bad.write_bytes(png_claiming(20000, 20000))
    assert_refused_by_prepare("folder", root, bad, "decompression bomb", tmp_path)


@pytest.mark.slow
def test_cli_float_tiff_string_modality_and_zero_pixdim_are_read(tmp_path):
    """What was read wrong (float TIFF as 0, modality as a string, pixdim z = 0) now prepares and runs."""
    root, arrays = grey_folder(tmp_path / "tiff", cases=4)
    for n, arr in enumerate(arrays):
        Image.fromarray(arr.astype(np.float32) * 8.0 - 1000.0).save(root / "images" / f"img{n}.tif")
        (root / "images" / f"img{n}.png").unlink()
    (tmp_path / "a").mkdir()
    result, _ = run_grid(tmp_path / "a", {"name": "folder", "root": str(root)})
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert image_values(root, image_size=24, in_channels=1).max() == 1.0

    msd = fakes.make_msd(tmp_path / "msd")
    desc = json.loads((msd / "dataset.json").read_text())
    desc["modality"] = "CT"
    (msd / "dataset.json").write_text(json.dumps(desc))
    prepare = run_cli("datasets", "prepare", "msd", "--root", str(msd), "--image-size", "16",
                      env={"KDBENCH_CACHE": str(tmp_path / "cache")})
    assert prepare.returncode == 0 and "Traceback" not in prepare.stderr, prepare.stderr[-2000:]

    lits = fakes.make_lits(tmp_path / "lits", batches=False)
    for path in lits.glob("*.nii"):
        zero_pixdim(path, 2)
    prepare = run_cli("datasets", "prepare", "lits17", "--root", str(lits), "--image-size", "16",
                      env={"KDBENCH_CACHE": str(tmp_path / "cache")})
    assert prepare.returncode == 0 and "Traceback" not in prepare.stderr, prepare.stderr[-2000:]
    case = create_dataset("lits17", root=str(lits), image_size=16).load_case(
        create_dataset("lits17", root=str(lits), image_size=16).case_ids()[0])
    assert case.spacing[0] == pytest.approx(2.5)  # from the affine, not nibabel's 1 mm for pixdim 0
