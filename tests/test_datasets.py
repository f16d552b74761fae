"""Volume datasets (NIfTI): layouts, preprocessing, the preparation cache, errors, splits.

Every dataset here is a tiny fake written by the test itself (kdbench.datasets.fakes):
a few 24×24×4 volumes in each supported layout.  Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from kdbench.benchmark.evaluate import case_metrics, evaluate_model
from kdbench.benchmark.splits import dataset_split, kfold_cases, split_cases
from kdbench.datasets import SliceDataset, create_dataset, fakes
from kdbench.datasets.check import check_dataset
from kdbench.datasets.msd import parse_labels
from kdbench.datasets.prepare import PreparedDataset, cache_root, prepare_dataset
from kdbench.datasets.transforms import to_eval_resolution
from kdbench.errors import ConfigError, DatasetError, KdbenchError, MissingRootError


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """Every test prepares into its own cache folder."""
    path = tmp_path / "cache"
    monkeypatch.setenv("KDBENCH_CACHE", str(path))
    return path


@pytest.fixture
def counter(monkeypatch) -> list[str]:
    """Case ids for which preparation decoded and preprocessed a case."""
    calls: list[str] = []
    original = PreparedDataset.prepared_case

    def counted(self, source):
        calls.append(source.case_id)
        return original(self, source)

    monkeypatch.setattr(PreparedDataset, "prepared_case", counted)
    return calls


def assert_one_line_naming(exc: BaseException, path: Path) -> None:
    text = str(exc)
    assert "\n" not in text, text
    assert str(path) in text, text


LAYOUTS = {
    # name, builder, options, expected cases, expected official split sizes, in_channels
    "lits17": (fakes.make_lits, {}, 3, None, 1),
    "kits19": (fakes.make_kits, {}, 3, None, 1),
    "acdc": (fakes.make_acdc, {}, 5, (3, 2), 1),
    "segthor": (fakes.make_segthor, {}, 3, None, 1),
    "msd": (fakes.make_msd, {}, 3, None, 1),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_volume_layouts_load(tmp_path, name):
    build, options, n_cases, official, channels = LAYOUTS[name]
    root = build(tmp_path / name)
    ds = create_dataset(name, root=str(root), image_size=16, **options)
    ids = ds.case_ids()
    assert len(ids) == n_cases and ids == sorted(ids)
    assert ds.is_volume and ds.in_channels == channels
    split = ds.official_split()
    assert (None if split is None else (len(split["train"]), len(split["test"]))) == official
    for case_id in ids:
        case = ds.load_case(case_id)
        s = case.image.shape[0]
        assert case.image.shape == (s, channels, 16, 16) and case.image.dtype == np.float32
        assert case.label.shape == (s, 16, 16)
        assert set(np.unique(case.label)) <= set(range(ds.num_classes))
        assert case.eval_label is not None and case.eval_label.shape[0] == s
        h0, w0 = case.eval_label.shape[1:]
        z, y, x = case.spacing
        assert case.eval_spacing[0] == z
        assert y == pytest.approx(case.eval_spacing[1] * h0 / 16) and x == pytest.approx(case.eval_spacing[2] * w0 / 16)
        assert np.isfinite(case.image).all()
    # the training view: int64 labels, float images
    image, label = SliceDataset([ds.load_case(ids[0])])[0]
    assert image.dtype.is_floating_point and str(label.dtype) == "torch.int64"


def test_nnunet_v2_multichannel_and_regions(tmp_path):
    root = fakes.make_msd(tmp_path / "Dataset001_Organ", flavour="nnunetv2", channels=2, regions=True)
    ds = create_dataset("msd", root=str(root), image_size=16)
    assert ds.in_channels == 2 and ds.classes == ("background", "label_1", "lesion")
    assert ds.targets == {"whole": (1, 2), "lesion": (2,)}
    case = ds.load_case(ds.case_ids()[0])
    assert case.image.shape[1] == 2
    assert not np.allclose(case.image[:, 0], case.image[:, 1])  # the channels differ
    only_first = create_dataset("msd", root=str(root), image_size=16, channels=[1])
    assert only_first.in_channels == 1 and only_first.load_case("organ_0").image.shape[1] == 1
    msd4d = fakes.make_msd(tmp_path / "Task09_Organ", flavour="msd", channels=2)
    assert create_dataset("msd", root=str(msd4d), image_size=16).load_case("organ_1").image.shape[1] == 2


def test_msd_label_flavours(tmp_path):
    where = tmp_path / "dataset.json"
    assert parse_labels({"0": "background", "1": "liver", "2": "cancer"}, where) == (
        ("background", "liver", "cancer"), {"liver": (1,), "cancer": (2,)})
    assert parse_labels({"background": 0, "edema": 1, "tumour": [1, 2], "enhancing": 2}, where) == (
        ("background", "edema", "enhancing"), {"edema": (1,), "tumour": (1, 2), "enhancing": (2,)})
    with pytest.raises(DatasetError, match="expected an integer"):
        parse_labels({"background": 0, "x": "one"}, where)
    with pytest.raises(DatasetError, match="no foreground"):
        parse_labels({"0": "background"}, where)


def test_slices_follow_the_files(tmp_path):
    """Slice s of a case is voxel slice s along the dataset's slice axis (no flips here)."""
    lits = fakes.make_lits(tmp_path / "lits", batches=False)
    kits = fakes.make_kits(tmp_path / "kits")
    seg = np.asarray(nib.load(str(lits / "segmentation-1.nii")).dataobj)  # (x, y, z)
    case = create_dataset("lits17", root=str(lits), image_size=24).load_case("lits_001")
    assert np.array_equal(case.eval_label, np.moveaxis(seg, 2, 0))
    assert np.array_equal(case.label, case.eval_label)  # image_size = original size: nothing resampled
    seg = np.asarray(nib.load(str(kits / "data/case_00002/segmentation.nii.gz")).dataobj)  # (z, y, x)
    case = create_dataset("kits19", root=str(kits), image_size=24).load_case("case_00002")
    assert np.array_equal(case.eval_label, seg)
    assert case.eval_spacing == pytest.approx((3.0, 0.78, 0.78))


def test_orient_flips_axes_to_ras(tmp_path):
    root = tmp_path / "lits"
    image, label = fakes.synthetic_volume((24, 24, 4), seed=3)
    affine = np.diag([-0.8, 0.8, 2.5, 1.0])  # x runs towards L: flipped back to R
    fakes.save_nifti(root / "volume-0.nii", image, (0.8, 0.8, 2.5), affine)
    fakes.save_nifti(root / "segmentation-0.nii", label, (0.8, 0.8, 2.5), affine)
    oriented = create_dataset("lits17", root=str(root), image_size=24).load_case("lits_000")
    assert np.array_equal(oriented.eval_label, np.moveaxis(label[::-1], 2, 0))
    stored = create_dataset("lits17", root=str(root), image_size=24, orient=False).load_case("lits_000")
    assert np.array_equal(stored.eval_label, np.moveaxis(label, 2, 0))


def test_auto_slice_axis_picks_the_coarse_axis(tmp_path):
    root = tmp_path / "Task01"
    fakes.make_msd(root, shape=(4, 24, 24), spacing=(5.0, 0.8, 0.8))
    case = create_dataset("msd", root=str(root), image_size=16).load_case("organ_0")
    assert case.image.shape[0] == 4 and case.eval_spacing[0] == 5.0


def test_perfect_prediction_scores_one(tmp_path):
    root = fakes.make_kits(tmp_path / "kits")
    ds = create_dataset("kits19", root=str(root), image_size=24)
    for case_id in ds.case_ids():
        case = ds.load_case(case_id)
        pred = to_eval_resolution(np.asarray(case.label), case)
        rows = case_metrics(pred, np.asarray(case.eval_label), case.eval_spacing, ds.targets)
        dice = {r["target"]: r["value"] for r in rows if r["metric"] == "dice"}
        hd95 = {r["target"]: r["value"] for r in rows if r["metric"] == "hd95"}
        assert dice == {"kidney": 1.0, "tumour": 1.0}
        assert hd95["kidney"] == 0.0


class Oracle(torch.nn.Module):
    """A "model" that returns one-hot logits of the true label of every slice it was shown."""

    def __init__(self, cases, num_classes: int):
        super().__init__()
        self.table = {np.asarray(c.image[s]).tobytes(): np.asarray(c.label[s]) for c in cases
                      for s in range(c.image.shape[0])}
        self.num_classes = num_classes

    def forward(self, x):
        labels = torch.stack([torch.from_numpy(self.table[im.numpy().tobytes()].astype(np.int64)) for im in x])
        return torch.nn.functional.one_hot(labels, self.num_classes).permute(0, 3, 1, 2).float()


def test_perfect_model_through_the_evaluator(tmp_path):
    root = fakes.make_lits(tmp_path / "lits")
    ds = create_dataset("lits17", root=str(root), image_size=24)
    cases = [ds.load_case(c) for c in ds.case_ids()]
    frame = evaluate_model(Oracle(cases, ds.num_classes), cases, ds.targets, torch.device("cpu"))
    dice = frame[frame.metric == "dice"]
    assert len(dice) == 3 * 2 and (dice.value == 1.0).all()
    assert set(frame.case_id) == {"lits_000", "lits_001", "lits_002"}


def test_resampled_prediction_and_spacing_reach_hd95(tmp_path):
    root = fakes.make_lits(tmp_path / "lits")
    ds = create_dataset("lits17", root=str(root), image_size=16)
    case = ds.load_case("lits_000")
    pred = to_eval_resolution(np.asarray(case.label), case)  # 16 → 24, nearest
    assert pred.shape == case.eval_label.shape
    rows = case_metrics(pred, np.asarray(case.eval_label), case.eval_spacing, {"liver": (1, 2)})
    assert next(r["value"] for r in rows if r["metric"] == "dice") > 0.9
    # a prediction shifted by one row is off by exactly the row spacing (0.8 mm) at the original resolution
    ref = np.asarray(case.eval_label)
    shifted = np.zeros_like(ref)
    shifted[:, 1:] = ref[:, :-1]
    rows = case_metrics(shifted, ref, case.eval_spacing, {"liver": (1, 2)})
    hd95 = next(r["value"] for r in rows if r["metric"] == "hd95")
    assert hd95 == pytest.approx(0.8, abs=1e-3)


def test_crop_keeps_the_evaluated_region(tmp_path):
    root = fakes.make_lits(tmp_path / "lits")
    full = create_dataset("lits17", root=str(root), image_size=24).load_case("lits_000")
    cropped = create_dataset("lits17", root=str(root), image_size=24, crop=[0.25, 0.75, 0.0, 0.5]).load_case("lits_000")
    assert cropped.eval_label.shape == (4, 12, 12)
    assert np.array_equal(cropped.eval_label, full.eval_label[:, 6:18, 0:12])
    assert cropped.spacing[1] == pytest.approx(0.8 * 12 / 24)


def test_window_is_an_option_with_the_paper_defaults(tmp_path):
    root = fakes.make_lits(tmp_path / "lits")
    lits = create_dataset("lits17", root=str(root), image_size=16)
    assert lits.options.window == (-60.0, 140.0)
    kits = create_dataset("kits19", root=str(fakes.make_kits(tmp_path / "kits")), image_size=16)
    assert kits.options.window == (-200.0, 300.0)
    a = lits.load_case("lits_000").image
    b = create_dataset("lits17", root=str(root), image_size=16, window=[-40, 160]).load_case("lits_000").image
    assert 0.0 <= a.min() and a.max() <= 1.0 and not np.allclose(a, b)
    z = create_dataset("lits17", root=str(root), image_size=16, window=None).load_case("lits_000").image
    assert abs(float(np.mean(z))) < 1.0 and z.min() < 0  # z-scored


def test_bad_options_are_one_line_config_errors(tmp_path):
    root = fakes.make_lits(tmp_path / "lits")
    with pytest.raises(ConfigError, match="did you mean 'window'"):
        create_dataset("lits17", root=str(root), windw=[0, 1])
    with pytest.raises(ConfigError, match="window"):
        create_dataset("lits17", root=str(root), window=[140, -60])
    with pytest.raises(ConfigError, match="crop"):
        create_dataset("lits17", root=str(root), crop=[0.5, 0.2, 0, 1])
    with pytest.raises(ConfigError, match="slices"):
        create_dataset("lits17", root=str(root), slices="some")


def test_root_errors(tmp_path):
    with pytest.raises(MissingRootError, match=f"dataset kits19: root '{tmp_path / 'missing'}' does not exist") as info:
        create_dataset("kits19", root=str(tmp_path / "missing"))
    assert "\n" not in str(info.value) and "--root" not in str(info.value)
    assert "https://github.com/neheller/kits19" in str(info.value)  # where to get the data
    with pytest.raises(MissingRootError, match="dataset lits17 has no root"):
        create_dataset("lits17")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(MissingRootError, match="is a file"):
        create_dataset("lits17", root=str(tmp_path / "file.txt"))
    with pytest.raises(MissingRootError, match="folder holding"):
        create_dataset("folder", root="")
    wrong = tmp_path / "wrong"
    (wrong / "sub").mkdir(parents=True)
    (wrong / "sub" / "scan_1.nii.gz").write_bytes(b"")
    (wrong / "notes.txt").write_text("")
    with pytest.raises(DatasetError) as info:
        create_dataset("lits17", root=str(wrong))
    text = str(info.value)
    assert "expected volume-N.nii" in text and "found 2 files" in text and "notes.txt" in text
    with pytest.raises(DatasetError, match="dataset.json not found"):
        create_dataset("msd", root=str(wrong))


def prepared_dirs(ds) -> dict[str, str]:
    manifest = json.loads((ds.cache_dir / "manifest.json").read_text())
    return {case_id: entry["dir"] for case_id, entry in manifest["cases"].items()}


def test_prepare_once_then_no_work(tmp_path, cache, counter):
    root = fakes.make_kits(tmp_path / "kits")
    ds = create_dataset("kits19", root=str(root), image_size=16)
    folder = prepare_dataset(ds)
    assert folder.parent.parent == cache and folder == ds.cache_dir
    assert sorted(counter) == ["case_00000", "case_00001", "case_00002"]
    manifest = folder / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    data = json.loads(manifest.read_text())
    assert data["params"]["options"]["window"] == [-200.0, 300.0]
    assert set(data["cases"]["case_00000"]["sources"]) == {"data/case_00000/imaging.nii.gz",
                                                           "data/case_00000/segmentation.nii.gz"}
    arrays = np.load(folder / "cases" / data["cases"]["case_00000"]["dir"] / "image.npy", mmap_mode="r")
    assert isinstance(arrays, np.memmap) and arrays.shape == (4, 1, 16, 16)

    counter.clear()
    again = create_dataset("kits19", root=str(root), image_size=16)
    assert prepare_dataset(again) == folder and again.case_ids() == ds.case_ids()
    assert counter == [] and manifest.stat().st_mtime_ns == stamp

    # a new mtime with the same content: no re-preparation
    os.utime(root / "data/case_00001/imaging.nii.gz", ns=(1, 1))
    prepare_dataset(create_dataset("kits19", root=str(root), image_size=16))
    assert counter == []
    # changed content: only that case again
    image, label = fakes.synthetic_volume((4, 24, 24), seed=7, slice_axis=0)
    fakes.save_nifti(root / "data/case_00001/imaging.nii.gz", image + 5, (3.0, 0.78, 0.78))
    prepare_dataset(create_dataset("kits19", root=str(root), image_size=16))
    assert counter == ["case_00001"]
    # a changed preprocessing parameter: a new cache folder, every case prepared
    counter.clear()
    other = create_dataset("kits19", root=str(root), image_size=16, window=[-100, 200])
    assert other.cache_dir != folder
    prepare_dataset(other)
    assert sorted(counter) == ["case_00000", "case_00001", "case_00002"]
    # a serving option (which slices) shares the prepared arrays
    assert create_dataset("kits19", root=str(root), image_size=16, slices="foreground").cache_dir == folder
    # a removed case is dropped, its arrays deleted
    counter.clear()
    dirs = prepared_dirs(ds)
    (root / "data/case_00002/imaging.nii.gz").unlink()
    (root / "data/case_00002/segmentation.nii.gz").unlink()
    (root / "data/case_00002").rmdir()
    assert create_dataset("kits19", root=str(root), image_size=16).case_ids() == ["case_00000", "case_00001"]
    assert counter == [] and not (folder / "cases" / dirs["case_00002"]).exists()


def test_cache_location(tmp_path, monkeypatch):
    monkeypatch.delenv("KDBENCH_CACHE")
    assert cache_root() == Path.home() / ".cache" / "kdbench"
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    ds = create_dataset("lits17", root=str(fakes.make_lits(tmp_path / "lits")), cache_dir=str(tmp_path / "own"))
    assert ds.cache_dir.parent.parent == tmp_path / "own"


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_corrupt_nifti_is_one_line_and_keeps_prepared_cases(tmp_path, counter):
    root = fakes.make_lits(tmp_path / "lits")
    ds = create_dataset("lits17", root=str(root), image_size=16)
    prepare_dataset(ds)
    before = prepared_dirs(ds)
    bad = root / "Training Batch 2" / "volume-1.nii"
    truncate(bad)
    counter.clear()
    with pytest.raises(DatasetError) as info:
        create_dataset("lits17", root=str(root), image_size=16).case_ids()
    assert_one_line_naming(info.value, bad)
    assert "corrupt or truncated" in str(info.value)
    after = prepared_dirs(ds)
    assert after == {k: v for k, v in before.items() if k != "lits_001"}
    for name in after.values():
        assert (ds.cache_dir / "cases" / name / "image.npy").exists()
    assert counter == ["lits_001"]  # the others were not redone


def test_corrupt_gzip_on_first_preparation(tmp_path):
    root = fakes.make_kits(tmp_path / "kits")
    bad = root / "data/case_00001/segmentation.nii.gz"
    truncate(bad)
    ds = create_dataset("kits19", root=str(root), image_size=16)
    with pytest.raises(DatasetError) as info:
        ds.case_ids()
    assert_one_line_naming(info.value, bad)
    assert sorted(prepared_dirs(ds)) == ["case_00000", "case_00002"]  # the good cases are prepared


def test_missing_label_file(tmp_path):
    root = fakes.make_lits(tmp_path / "lits")
    ds = create_dataset("lits17", root=str(root), image_size=16)
    prepare_dataset(ds)
    before = prepared_dirs(ds)
    (root / "Training Batch 1" / "segmentation-2.nii").unlink()
    with pytest.raises(DatasetError) as info:
        prepare_dataset(create_dataset("lits17", root=str(root), image_size=16))
    assert_one_line_naming(info.value, root / "Training Batch 1" / "volume-2.nii")
    assert "segmentation-2.nii" in str(info.value)
    assert prepared_dirs(ds) == {k: v for k, v in before.items() if k != "lits_002"}
    kits = fakes.make_kits(tmp_path / "kits")
    (kits / "data/case_00000/segmentation.nii.gz").unlink()
    with pytest.raises(DatasetError, match="label file missing") as info:
        create_dataset("kits19", root=str(kits)).case_ids()
    assert "case_00000/segmentation.nii.gz" in str(info.value)


def test_shape_mismatch(tmp_path):
    root = fakes.make_kits(tmp_path / "kits")
    ds = create_dataset("kits19", root=str(root), image_size=16)
    prepare_dataset(ds)
    before = prepared_dirs(ds)
    _, label = fakes.synthetic_volume((4, 20, 24), seed=1, slice_axis=0)
    bad = fakes.save_nifti(root / "data/case_00001/segmentation.nii.gz", label, (3.0, 0.78, 0.78))
    with pytest.raises(DatasetError, match="does not match") as info:
        create_dataset("kits19", root=str(root), image_size=16).case_ids()
    assert_one_line_naming(info.value, bad)
    assert prepared_dirs(ds) == {k: v for k, v in before.items() if k != "case_00001"}


def test_affine_mismatch(tmp_path):
    root = fakes.make_lits(tmp_path / "lits", batches=False)
    label = np.asarray(nib.load(str(root / "segmentation-0.nii")).dataobj)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[:3, 3] = [5.0, 0.0, 0.0]
    bad = fakes.save_nifti(root / "segmentation-0.nii", label, (0.8, 0.8, 2.5), affine)
    with pytest.raises(DatasetError, match="affine differs") as info:
        create_dataset("lits17", root=str(root), image_size=16).case_ids()
    assert_one_line_naming(info.value, bad)
    assert len(create_dataset("lits17", root=str(root), image_size=16, check_affine=False).case_ids()) == 3


def test_labels_outside_the_declared_classes(tmp_path):
    root = fakes.make_lits(tmp_path / "lits", batches=False)
    label = np.asarray(nib.load(str(root / "segmentation-1.nii")).dataobj).copy()
    label[0, 0, 0] = 7
    bad = fakes.save_nifti(root / "segmentation-1.nii", label, (0.8, 0.8, 2.5))
    with pytest.raises(DatasetError, match=r"label values \[7\] outside") as info:
        create_dataset("lits17", root=str(root), image_size=16).case_ids()
    assert_one_line_naming(info.value, bad)


def test_failed_write_loses_nothing(tmp_path, monkeypatch):
    root = fakes.make_kits(tmp_path / "kits")
    ds = create_dataset("kits19", root=str(root), image_size=16)
    real_save = np.save
    calls = {"n": 0}

    def flaky_save(path, array, *args, **kwargs):
        calls["n"] += 1
        if "case_00001" in str(path):
            raise OSError(28, "No space left on device")
        return real_save(path, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", flaky_save)
    with pytest.raises(DatasetError, match=f"no space left on {ds.cache_dir} while preparing case_00001") as info:
        prepare_dataset(ds)
    assert "\n" not in str(info.value)
    monkeypatch.setattr(np, "save", real_save)
    assert list(prepared_dirs(ds)) == ["case_00000"]
    leftovers = [p.name for p in (ds.cache_dir / "cases").iterdir()]
    assert leftovers == [prepared_dirs(ds)["case_00000"]]  # no half-written case folder
    fresh = create_dataset("kits19", root=str(root), image_size=16)
    assert fresh.case_ids() == ["case_00000", "case_00001", "case_00002"]


def test_foreground_slice_selection(tmp_path):
    root = tmp_path / "kits"
    fakes.make_kits(root, cases=2, shape=(12, 24, 24))
    ds = create_dataset("kits19", root=str(root), image_size=16, targets=["tumour"], slices="foreground")
    full = create_dataset("kits19", root=str(root), image_size=16, targets=["tumour"])
    for case_id in ds.case_ids():
        case, whole = ds.load_case(case_id), full.load_case(case_id)
        assert 0 < case.image.shape[0] < whole.image.shape[0]
        assert all((case.eval_label[s] == 2).any() for s in range(case.image.shape[0]))
        assert case.eval_label.shape[0] == case.label.shape[0] == case.image.shape[0]
    some = create_dataset("kits19", root=str(root), image_size=16, targets=["tumour"], slices="foreground",
                          background_ratio=0.5)
    again = create_dataset("kits19", root=str(root), image_size=16, targets=["tumour"], slices="foreground",
                           background_ratio=0.5)
    a, b = some.load_case("case_00000"), again.load_case("case_00000")
    assert ds.load_case("case_00000").image.shape[0] < a.image.shape[0] < full.load_case("case_00000").image.shape[0]
    assert np.array_equal(a.image, b.image)  # seeded
    everything = create_dataset("kits19", root=str(root), image_size=16, slices="foreground", background_ratio=1.0)
    assert everything.load_case("case_00001").image.shape[0] == 12


def test_check_reports_every_problem(tmp_path, cache):
    root = fakes.make_lits(tmp_path / "lits", cases=6, batches=False)
    truncate(root / "volume-0.nii")
    (root / "segmentation-1.nii").unlink()
    _, small = fakes.synthetic_volume((20, 24, 4), seed=2)
    fakes.save_nifti(root / "segmentation-2.nii", small, (0.8, 0.8, 2.5))
    label = np.asarray(nib.load(str(root / "segmentation-3.nii")).dataobj).copy()
    label[1, 1, 1] = 5
    fakes.save_nifti(root / "segmentation-3.nii", label, (0.8, 0.8, 2.5))
    ds = create_dataset("lits17", root=str(root), image_size=16)
    problems = check_dataset(ds)
    assert len(problems) == 4, problems
    for expected in ("volume-0.nii", "volume-1.nii", "segmentation-2.nii", "segmentation-3.nii"):
        assert sum(expected in line for line in problems) == 1, (expected, problems)
    assert all("\n" not in line for line in problems)
    assert not cache.exists() or not any(cache.rglob("*.npy"))  # check writes nothing
    assert check_dataset(create_dataset("kits19", root=str(fakes.make_kits(tmp_path / "kits")))) == []


def test_check_reports_an_impossible_split(tmp_path):
    root = fakes.make_kits(tmp_path / "kits", cases=1)
    problems = check_dataset(create_dataset("kits19", root=str(root)))
    assert len(problems) == 1 and "empty train or test" in problems[0]
    problems = check_dataset(create_dataset("kits19", root=str(fakes.make_kits(tmp_path / "k3"))), folds=5)
    assert len(problems) == 1 and "folds = 5" in problems[0]


def test_kfold_is_by_case_and_covers_every_case():
    ids = [f"case_{i:02d}" for i in range(11)]
    folds = kfold_cases(ids, 5, seed=3)
    assert sorted(c for f in folds for c in f) == ids
    for k in range(5):
        split = split_cases(ids, folds=5, fold=k, seed=3)
        assert split["test"] == folds[k] and not set(split["train"]) & set(split["test"])
        assert sorted(split["train"] + split["test"]) == ids
    assert kfold_cases(ids, 5, seed=3) == folds and kfold_cases(ids, 5, seed=4) != folds
    with pytest.raises(ConfigError):
        kfold_cases(ids[:3], 5)


def test_slice_dataset_never_mixes_cases_across_a_split(tmp_path):
    root = fakes.make_kits(tmp_path / "kits", cases=5)
    ds = create_dataset("kits19", root=str(root), image_size=16)
    split = dataset_split(ds, folds=5, fold=2, seed=0)
    train = SliceDataset([ds.load_case(c) for c in split["train"]])
    assert len(train) == 4 * 4 and len(split["test"]) == 1


def test_dataset_split_conventions(tmp_path):
    kits = create_dataset("kits19", root=str(fakes.make_kits(tmp_path / "kits", cases=10)), image_size=16)
    split = dataset_split(kits, seed=0)
    assert len(split["test"]) == 2 and len(split["train"]) == 8  # holdout 0.2 (EMKD: 42 of 210)
    assert dataset_split(kits, seed=0) == split and dataset_split(kits, seed=1) != split
    assert len(dataset_split(kits, test_fraction=0.5)["test"]) == 5
    acdc = create_dataset("acdc", root=str(fakes.make_acdc(tmp_path / "acdc", train=4, test=3)), image_size=16)
    official = dataset_split(acdc)
    assert official == {"train": ["patient001", "patient002", "patient003", "patient004"],
                        "test": ["patient101", "patient102", "patient103"]}
    small = dataset_split(acdc, max_cases=3)
    assert len(small["train"]) >= 1 and len(small["test"]) >= 1 and len(small["train"] + small["test"]) == 3
    assert len(dataset_split(acdc, folds=7, fold=6)["test"]) == 1  # k-fold over all labelled cases
    with pytest.raises(ConfigError, match="empty test"):
        split_cases(["a", "b"], official={"train": ["a", "b"], "test": []})


def test_acdc_phase_is_one_frame_per_patient(tmp_path):
    root = fakes.make_acdc(tmp_path / "acdc", train=2, test=0)
    ed = create_dataset("acdc", root=str(root), image_size=16)
    es = create_dataset("acdc", root=str(root), image_size=16, phase="ES")
    assert ed.case_ids() == es.case_ids() == ["patient001", "patient002"]
    assert ed.cache_dir != es.cache_dir
    assert not np.array_equal(ed.load_case("patient001").image, es.load_case("patient001").image)


def test_phantom_is_not_prepared():
    with pytest.raises(KdbenchError, match="nothing to prepare"):
        prepare_dataset(create_dataset("phantom", cases=2, slices=2, image_size=16))
    assert check_dataset(create_dataset("phantom", cases=2, slices=2, image_size=16)) == []


def test_parallel_preparation_matches_serial(tmp_path):
    root = fakes.make_kits(tmp_path / "kits")
    serial = create_dataset("kits19", root=str(root), image_size=16, cache_dir=str(tmp_path / "serial"))
    parallel = create_dataset("kits19", root=str(root), image_size=16, cache_dir=str(tmp_path / "parallel"))
    seen = []
    prepare_dataset(serial)
    prepare_dataset(parallel, workers=2, progress=lambda done, total, case: seen.append((done, total)))
    assert sorted(seen) == [(1, 3), (2, 3), (3, 3)]
    for case_id in serial.case_ids():
        a, b = serial.load_case(case_id), parallel.load_case(case_id)
        assert np.array_equal(a.image, b.image) and np.array_equal(a.eval_label, b.eval_label)
