"""2D image datasets (Pillow): ISIC 2018, CVC-EndoSceneStill, IDRiD optic disc, any folder.

Each test writes a handful of small PNG/JPEG/BMP/TIFF files in the dataset's layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdbench.benchmark.evaluate import case_metrics
from kdbench.datasets import SliceDataset, create_dataset, fakes
from kdbench.datasets.check import check_dataset
from kdbench.datasets.transforms import to_eval_resolution
from kdbench.errors import ConfigError, DatasetError


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


LAYOUTS = {
    # name: (builder, options, cases, official (train, test))
    "isic2018": (fakes.make_isic, {}, 6, (4, 2)),
    "cvc_endoscene": (fakes.make_cvc, {}, 6, (3, 3)),
    "idrid_od": (fakes.make_idrid, {}, 5, (3, 2)),
    "folder": (fakes.make_folder, {}, 4, None),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_image_layouts_load(tmp_path, name):
    build, options, n_cases, official = LAYOUTS[name]
    ds = create_dataset(name, root=str(build(tmp_path / name)), image_size=16, **options)
    assert not ds.is_volume and ds.in_channels == 3
    ids = ds.case_ids()
    assert len(ids) == n_cases
    split = ds.official_split()
    assert (None if split is None else (len(split["train"]), len(split["test"]))) == official
    for case_id in ids:
        case = ds.load_case(case_id)
        assert case.image.shape == (1, 3, 16, 16) and case.image.dtype == np.float32
        assert 0.0 <= case.image.min() and case.image.max() <= 1.0
        assert case.label.shape == (1, 16, 16)
        assert 0 < int(np.asarray(case.label).sum()) < 256  # the blob is there, not everywhere
        assert case.eval_label is None and case.spacing[0] == 1.0
    image, label = SliceDataset([ds.load_case(ids[0])])[0]
    assert tuple(image.shape) == (3, 16, 16) and str(label.dtype) == "torch.int64"


def test_isic_and_cvc_validation_option(tmp_path):
    isic = fakes.make_isic(tmp_path / "isic")
    dropped = create_dataset("isic2018", root=str(isic), image_size=16, validation="drop").official_split()
    assert (len(dropped["train"]), len(dropped["test"])) == (3, 2)
    to_test = create_dataset("isic2018", root=str(isic), image_size=16, validation="test").official_split()
    assert (len(to_test["train"]), len(to_test["test"])) == (3, 3)
    cvc = fakes.make_cvc(tmp_path / "cvc")
    ds = create_dataset("cvc_endoscene", root=str(cvc), image_size=16)
    assert ds.official_split() == {"train": ["cvc300_001", "cvc300_002", "cvc612_026"],
                                   "test": ["cvc300_149", "cvc612_001", "cvc612_127"]}
    with_val = create_dataset("cvc_endoscene", root=str(cvc), image_size=16, validation="train").official_split()
    assert "cvc300_077" in with_val["train"] and "cvc612_051" in with_val["train"]


def test_cvc_repacked_layout(tmp_path):
    for part, names in (("TrainDataset", ["1", "2"]), ("ValidationDataset", ["3"]), ("TestDataset", ["4"])):
        for stem in names:
            image, mask = fakes.synthetic_image((20, 20), seed=int(stem))
            (tmp_path / part / "images").mkdir(parents=True, exist_ok=True)
            (tmp_path / part / "masks").mkdir(parents=True, exist_ok=True)
            image.save(tmp_path / part / "images" / f"{stem}.png")
            mask.save(tmp_path / part / "masks" / f"{stem}.png")
    ds = create_dataset("cvc_endoscene", root=str(tmp_path), image_size=16)
    assert ds.official_split() == {"train": ["train_1", "train_2"], "test": ["test_4"]}


def test_grey_folder_with_suffix_and_multiclass(tmp_path):
    root = fakes.make_folder(tmp_path / "grey", images="img", masks="gt", mask_suffix="_mask")
    ds = create_dataset("folder", root=str(root), image_size=16, images="img", masks="gt", mask_suffix="_mask",
                        in_channels=1)
    assert ds.in_channels == 1 and ds.load_case("img0").image.shape == (1, 1, 16, 16)
    multi = tmp_path / "multi"
    (multi / "images").mkdir(parents=True)
    (multi / "masks").mkdir()
    labels = np.zeros((12, 12), dtype=np.uint8)
    labels[2:6, 2:6], labels[7:10, 7:10] = 1, 2
    Image.fromarray(np.full((12, 12, 3), 90, dtype=np.uint8)).save(multi / "images" / "a.png")
    Image.fromarray(labels).save(multi / "masks" / "a.png")
    ds = create_dataset("folder", root=str(multi), image_size=12, classes=["background", "liver", "lesion"])
    assert ds.targets == {"liver": (1,), "lesion": (2,)}
    assert np.array_equal(ds.load_case("a").label[0], labels)
    Image.fromarray(labels * 3).save(multi / "masks" / "a.png")
    with pytest.raises(DatasetError, match=r"label values \[3, 6\] outside"):
        create_dataset("folder", root=str(multi), image_size=12, classes=["background", "liver", "lesion"]).case_ids()


def test_folder_official_test_split(tmp_path):
    root = fakes.make_folder(tmp_path / "f", cases=3)
    fakes.make_folder(tmp_path / "f", cases=2, images="test_images", masks="test_masks")
    for n in range(2):  # the test images must not share names with the training ones
        (root / "test_images" / f"img{n}.png").rename(root / "test_images" / f"t{n}.png")
        (root / "test_masks" / f"img{n}.png").rename(root / "test_masks" / f"t{n}.png")
    ds = create_dataset("folder", root=str(root), image_size=16, test_images="test_images", test_masks="test_masks")
    assert ds.official_split() == {"train": ["img0", "img1", "img2"], "test": ["t0", "t1"]}
    with pytest.raises(DatasetError, match="both test_images and test_masks"):
        create_dataset("folder", root=str(root), test_images="test_images")


def test_perfect_prediction_per_image_at_original_size(tmp_path):
    root = fakes.make_isic(tmp_path / "isic", train=2, validation=0, test=1)
    ds = create_dataset("isic2018", root=str(root), image_size=16, eval_original=True)
    for case_id in ds.case_ids():
        case = ds.load_case(case_id)
        assert case.eval_label.shape == (1, 30, 40) and case.eval_spacing == (1.0, 1.0, 1.0)
        rows = case_metrics(np.asarray(case.eval_label), np.asarray(case.eval_label), case.eval_spacing, ds.targets)
        assert {r["metric"]: r["value"] for r in rows}["dice"] == 1.0
        resized = to_eval_resolution(np.asarray(case.label), case)
        rows = case_metrics(resized, np.asarray(case.eval_label), case.eval_spacing, ds.targets)
        assert {r["metric"]: r["value"] for r in rows}["dice"] > 0.8  # 16 px back to 30×40


def test_truncated_image_and_mismatched_mask(tmp_path):
    root = fakes.make_isic(tmp_path / "isic", train=4, validation=0, test=0)
    bad = root / "ISIC2018_Task1-2_Training_Input" / "ISIC_0000001.jpg"
    bad.write_bytes(bad.read_bytes()[:200])
    ds = create_dataset("isic2018", root=str(root), image_size=16)
    with pytest.raises(DatasetError) as info:
        ds.case_ids()
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    mask = root / "ISIC2018_Task1_Training_GroundTruth" / "ISIC_0000002_segmentation.png"
    Image.new("L", (10, 10)).save(mask)
    problems = check_dataset(create_dataset("isic2018", root=str(root), image_size=16))
    assert len(problems) == 2
    assert any(str(mask) in p and "does not match" in p for p in problems)


def test_missing_mask(tmp_path):
    root = fakes.make_idrid(tmp_path / "idrid")
    missing = next(root.rglob("IDRiD_02_OD.tif"))
    missing.unlink()
    with pytest.raises(DatasetError, match="no optic-disc mask") as info:
        create_dataset("idrid_od", root=str(root), image_size=16).case_ids()
    assert "IDRiD_02.jpg" in str(info.value)
    folder = fakes.make_folder(tmp_path / "folder")
    (folder / "masks" / "img3.png").unlink()
    with pytest.raises(DatasetError, match="no mask img3") as info:
        create_dataset("folder", root=str(folder)).case_ids()
    assert str(folder / "images" / "img3.png") in str(info.value)


def test_image_layout_errors(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="expected images/ and masks/") as info:
        create_dataset("folder", root=str(tmp_path))
    assert "photos/" in str(info.value)
    with pytest.raises(DatasetError, match="no cases under") as info:
        create_dataset("isic2018", root=str(tmp_path))
    assert "ISIC2018_Task1-2_" in str(info.value) and "photos/a.jpg" in str(info.value)
    with pytest.raises(ConfigError, match="in_channels"):
        create_dataset("folder", root=str(tmp_path), in_channels=2)
