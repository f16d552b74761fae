"""Every supported on-disk layout runs through ``kdbench run`` end to end."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from kdbench import create_dataset
from kdbench.benchmark.splits import dataset_split
from kdbench.datasets import fakes

from conftest import run_cli

LAYOUTS = {
    "lits17": lambda root: fakes.make_lits(root, cases=4),
    "kits19": lambda root: fakes.make_kits(root, cases=4),
    "acdc": lambda root: fakes.make_acdc(root),
    "segthor": lambda root: fakes.make_segthor(root, patients=4),
    "msd": lambda root: fakes.make_msd(root, flavour="msd", cases=4),
    "msd-nnunetv2": lambda root: fakes.make_msd(root, flavour="nnunetv2", cases=4),
    "isic2018": lambda root: fakes.make_isic(root),
    "cvc_endoscene": lambda root: fakes.make_cvc(root),
    "idrid_od": lambda root: fakes.make_idrid(root),
    "folder": lambda root: fakes.make_folder(root, cases=4),
}


def test_every_registered_dataset_has_a_layout_here():
    from kdbench import list_datasets

    assert set(list_datasets()) - {"phantom"} == {name.split("-")[0] for name in LAYOUTS}


@pytest.mark.slow
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_run_end_to_end(layout, tmp_path, monkeypatch):
    monkeypatch.setenv("KDBENCH_CACHE", str(tmp_path / "cache"))
    name = layout.split("-")[0]
    root = LAYOUTS[layout](tmp_path / "data")
    grid = {"name": f"fake_{layout}", "datasets": [{"name": name, "root": str(root)}],
            "students": [{"name": "tinyunet", "width": 0.5}], "methods": ["none"],
            "train": {"epochs": 1, "batch_size": 2, "image_size": 32}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    result = run_cli("run", "--grid", str(path), "--out", str(tmp_path / "runs"), "--budget", "smoke",
                     env={"KDBENCH_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-2000:]
    dataset = create_dataset(name, root=str(root), image_size=32)
    expected = dataset_split(dataset, max_cases=6)["test"]
    results = sorted((tmp_path / "runs" / f"fake_{layout}").rglob("results.csv"))
    assert len(results) == 1, results
    frame = pd.read_csv(results[0])
    assert sorted(frame["case_id"].unique()) == sorted(expected)
    assert len(frame) == len(expected) * len(dataset.targets) * 6
    assert frame[frame.metric == "dice"]["value"].between(0, 1).all()
