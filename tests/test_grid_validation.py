"""Bad grids are refused at load time, in one line naming file, field, value and what is allowed.

The YAML itself (size, encoding, depth, alias bombs, duplicate keys), the schema
(types, ranges, finite numbers), method hyper-parameters and model/dataset options
against their constructors, and the grid as a whole (safe name, labels, duplicates,
targets).  A few reproductions also go through the installed console script.
"""

from __future__ import annotations

import math
import time
import warnings

import pytest
import yaml

from kdbench.benchmark.grid import MAX_BYTES, load_grid
from kdbench.errors import ConfigError, KdbenchNote
from kdbench.methods import METHODS, create_method, method_params, validate_method_params

from conftest import run_cli, tiny_grid


def refused(path, pattern: str) -> str:
    """Load ``path``, expect a one-line ConfigError matching ``pattern`` that names the file."""
    with pytest.raises(ConfigError, match=pattern) as info:
        load_grid(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert len(message.splitlines()) == 1, message
    return message


# -- the YAML itself -------------------------------------------------------------------------

def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


RAW_FILES = {
    "not_utf8": ("name: caf\xe9\n".encode("latin-1"), r"not UTF-8 text \(byte 0xe9 at offset 9\)"),
    # kdbench's own words whichever stops it: the YAML library's cap (libyaml ≥ 0.2.5 in PyYAML
    # 6.0.4 stops at 1000 levels while scanning) or kdbench's composer (51 levels)
    "nested": (("methods: " + "[" * 50_000 + "]" * 50_000 + "\n").encode(),
               r"line 1: nested deeper than 50 levels \(allowed: at most 50\)"),
    "nested_51": (("methods: " + "[" * 51 + "]" * 51 + "\n").encode(),
                  r"line 1: nested deeper than 50 levels \(allowed: at most 50\)"),
    "recursive_alias": (b"name: x\nmethods: &a [kd, *a]\n", r"line 2: recursive alias"),
    "billion_laughs": (billion_laughs().encode(), r"more than 20000 values once aliases are expanded"),
    "deep_aliases": (("a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 80))).encode(),
                     r"nested deeper than 50 levels once aliases are expanded"),
    "duplicate_key": (b"name: x\ndatasets: [phantom]\nname: y\n",
                      r"line 3: key 'name' appears twice \(first on line 1; allowed: each key once\)"),
    "duplicate_flow_key": (b"train: {lr: 0.1, lr: 0.2}\n", r"line 1: key 'lr' appears twice"),
    "too_many_values": (("x: [" + ",".join(["1"] * 20_001) + "]\n").encode(), r"more than 20000 values"),
    "huge_int": (b"protocol: {folds: " + b"9" * 5000 + b"}\n", r"is not valid YAML \(Exceeds the limit"),
    "bad_date": (b"name: 2020-13-45\n", r"is not valid YAML \(month must be in 1\.\.12\)"),
    "nul": (b"name: a\x00b\n", r"is not valid YAML \(character #x0000 at offset 7"),
    "bad_yaml": (b"name: [unclosed\n", r"line 2 is not valid YAML"),
    "not_a_mapping": (b"- kd\n- at\n", r"a grid file is a mapping of fields"),
    "oversize": (b"# " + b"x" * MAX_BYTES + b"\n", r"larger than 1024 KiB \(allowed: at most 1024 KiB\)"),
}


@pytest.mark.parametrize("name", list(RAW_FILES))
def test_bad_yaml_is_refused_in_one_line(tmp_path, name):
    content, pattern = RAW_FILES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(content)
    start = time.perf_counter()
    refused(path, pattern)
    assert time.perf_counter() - start < 5, "a limit must stop the parser early"


def test_anchors_merge_keys_and_a_byte_order_mark_still_load(tmp_path):
    text = yaml.safe_dump(tiny_grid(), sort_keys=False)
    text += "teacher_train: &recipe {epochs: 2, lr: 1.0e-3}\n"
    text += "budgets: {quick: &q {epochs: 3}, smoke: {<<: *q, epochs: 1}}\n"
    path = tmp_path / "anchors.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    grid = load_grid(path)
    assert grid.budgets["smoke"].epochs == 1 and grid.budgets["quick"].epochs == 3
    assert grid.teacher_recipe().epochs == 2


# -- the schema and the grid as a whole ------------------------------------------------------

GRID_ERRORS = [
    # the name is a directory under --out
    ({"name": "../../x"}, r"name = '\.\./\.\./x': not a safe run-directory name \(allowed: 1 to 64"),
    ({"name": ""}, r"name = '': not a safe run-directory name"),
    ({"name": "a" * 300}, r"name = 'a+…: not a safe run-directory name"),
    ({"name": "a\x00b"}, r"name = 'a\\x00b': not a safe"),
    ({"name": "a\nb"}, r"name = 'a\\nb': not a safe"),
    ({"name": "a..b"}, r"name = 'a\.\.b': not a safe"),
    ({"name": 7}, r"name = 7: Input should be a valid string"),
    # labels and names print on one line
    ({"students": [{"name": "tinyunet", "label": "x\ny"}]},
     r"students\[0\]\.label = 'x\\ny': contains a control character or line break \(allowed: printable"),
    ({"students": [{"name": "tinyunet", "label": "s" * 81}]}, r"students\[0\]\.label = .*81 characters \(allowed: at most 80\)"),
    ({"methods": ["none", "k\nd"]}, r"methods\[1\]\.name = 'k\\nd': contains a control character"),
    ({"methods": ["none", {"name": "kd", "label": "a\u2028b"}]}, r"methods\[1\]\.label = 'a\\u2028b'"),
    ({"leaderboard": {"title": "a\nb"}}, r"leaderboard\.title = 'a\\nb': contains a control character"),
    # method hyper-parameters by type and range
    ({"methods": ["none", {"name": "kd", "T": "hot"}]}, r"methods\[1\]\.T = 'hot': Input should be a valid number"),
    ({"methods": ["none", {"name": "kd", "T": 0}]}, r"methods\[1\]\.T = 0: Input should be greater than 0"),
    ({"methods": ["none", {"name": "kd", "weight": float("nan")}]}, r"methods\[1\]\.weight = nan: Input should be a finite"),
    ({"methods": ["none", {"name": "kd", "T": True}]}, r"methods\[1\]\.T = True: Input should be a valid number"),
    ({"methods": ["none", {"name": "dkd", "warmup": 2}]}, r"methods\[1\]\.warmup = 2: Input should be less than or equal to 1"),
    ({"methods": ["none", {"name": "at", "layers": ["low", "middle"]}]},
     r"methods\[1\]\.layers\[1\] = 'middle': Input should be 'low', 'high' or 'pre_logits'"),
    ({"methods": ["none", {"name": "cirkd", "pixel_memory": 1.5}]}, r"methods\[1\]\.pixel_memory = 1\.5: Input should be a valid integer"),
    ({"methods": ["none", {"name": "pa", "pool": {"kernel": 2, "fraction": 0.5}}]}, r"methods\[1\]\.pool: give exactly one of"),
    ({"methods": ["none", {"name": "skd", "adversarial": "lsgan"}]}, r"methods\[1\]\.adversarial = 'lsgan': Input should be 'wgan-gp' or 'hinge'"),
    ({"methods": ["none", {"name": "emkd", "parts": []}]}, r"methods\[1\]\.parts: choose a non-empty subset of pmd, imd, rad"),
    ({"methods": [{"name": "kd", "tau": 2}]}, r"methods\[0\]\.tau: no parameter 'tau' \(allowed: T, weight\)"),
    ({"methods": [{"T": 2}]}, r"methods\[0\]\.name: Field required"),
    # compose parts
    ({"methods": ["none", {"compose": [1, 2]}]}, r"methods\[1\]\.compose\[0\] = 1: a part is a method name or \{name: "),
    ({"methods": ["none", {"compose": ["kd", {"T": 2}]}]}, r"methods\[1\]\.compose\[1\]: a part needs a method name"),
    ({"methods": ["none", {"compose": ["kd", {"name": "at", "label": "a.b"}]}]},
     r"methods\[1\]\.compose\[1\]\.label = 'a\.b': contains '\.' \(allowed: any printable character but '\.'"),
    ({"methods": ["none", {"compose": ["kd", {"name": "pa", "pool": {"kernel": 0}}]}]},
     r"methods\[1\]\.compose\[1\]\.pool\.kernel = 0: Input should be greater than 0"),
    ({"methods": ["none", {"compose": ["kd", "kd"]}]}, r"methods\[1\]\.compose\[1\]\.label = 'kd': used by compose\[0\] too"),
    ({"methods": ["none", {"compose": ["kd", "kdd"]}]}, r"methods\[1\]\.compose\[1\]\.name = 'kdd': unknown method 'kdd'"),
    ({"methods": ["none", {"compose": []}]}, r"methods\[1\]: compose needs a non-empty list of methods"),
    # duplicates
    ({"methods": ["none", "kd", {"name": "kd", "label": "kd_again"}]},
     r"methods\[2\]: same method and hyper-parameters as methods\[1\] \(labels 'kd' and 'kd_again'\)"),
    ({"methods": ["none", "kd", {"name": "kd", "T": 4, "label": "kd4"}]}, r"methods\[2\]: same method and hyper-parameters as methods\[1\]"),
    ({"methods": ["none", "kd", {"name": "at", "label": "kd"}]}, r"methods\[2\]\.label = 'kd': used by methods\[1\] too"),
    ({"teachers": [{"name": "tinyunet", "label": "a"}, {"name": "tinyunet", "label": "b"}]},
     r"teachers\[1\]: same model as teachers\[0\] \(name, width and options\)"),
    ({"teachers": [{"name": "tinyunet"}, {"name": "unet", "label": "tinyunet"}]},
     r"teachers\[1\]\.label = 'tinyunet': teachers\[0\] has this label too"),
    ({"datasets": [{"name": "phantom"}, {"name": "phantom"}]}, r"datasets\[1\]: same dataset as datasets\[0\]"),
    ({"leaderboard": {"metrics": ["dice", "hd95", "dice"]}}, r"leaderboard\.metrics: 'dice' appears twice"),
    ({"leaderboard": {"cost": ["params", "params"]}}, r"leaderboard\.cost: 'params' appears twice"),
    ({"protocol": {"seeds": [1, 2, 1]}}, r"protocol\.seeds: 1 appears twice"),
    # ranges
    ({"protocol": {"folds": 1_000_000_000_000}}, r"protocol\.folds = 1000000000000: Input should be less than or equal to 100"),
    ({"protocol": {"folds": 3, "run_folds": [0, 3]}}, r"protocol: run_folds: fold 3 does not exist with folds = 3 \(allowed: 0 to 2\)"),
    ({"protocol": {"folds": 3, "run_folds": [1, 1]}}, r"protocol\.run_folds: 1 appears twice"),
    ({"protocol": {"seeds": [2**70]}}, r"protocol\.seeds\[0\] = 1180591620717411303424: Input should be less than 4294967296"),
    ({"protocol": {"seeds": [-1]}}, r"protocol\.seeds\[0\] = -1: Input should be greater than or equal to 0"),
    ({"protocol": {"seeds": []}}, r"protocol\.seeds: List should have at least 1 item"),
    ({"protocol": {"split_seed": -5}}, r"protocol\.split_seed = -5: Input should be greater than or equal to 0"),
    ({"protocol": {"test_fraction": float("inf")}}, r"protocol\.test_fraction = inf: Input should be a finite number"),
    ({"students": [{"name": "tinyunet", "width": float("inf")}]}, r"students\[0\]\.width = inf: Input should be a finite number"),
    ({"students": [{"name": "tinyunet", "width": 0}]}, r"students\[0\]\.width = 0: Input should be greater than or equal to 0\.015625"),
    ({"budgets": {"quick": {"width": float("nan")}}}, r"budgets\.quick\.width = nan: Input should be a finite number"),
    ({"train": {"lr": True}}, r"train\.lr = True: Input should be a valid number"),
    ({"train": {"epochs": 2.5}}, r"train\.epochs = 2\.5: Input should be a valid integer"),
    ({"train": {"image_size": 100_000}}, r"train\.image_size = 100000: Input should be less than or equal to 4096"),
    ({"train": {"lr": 1e-3, "min_lr": 1e-2}}, r"train: min_lr = 0\.01 is above lr = 0\.001 \(allowed: min_lr ≤ lr\)"),
    # teacher_train: a typed partial recipe
    ({"teacher_train": {"lr": -1}}, r"teacher_train\.lr = -1: Input should be greater than 0"),
    ({"teacher_train": {"lr": None}}, r"teacher_train\.lr: Input should be a valid number"),
    ({"teacher_train": {"optimizer": "adamm"}}, r"teacher_train\.optimizer = 'adamm': Input should be 'adam', 'adamw' or 'sgd'"),
    ({"teacher_train": {"learning_rate": 1}}, r"teacher_train\.learning_rate: unknown field .*allowed: epochs, optimizer, lr"),
    ({"teacher_train": {"lr": 1e-7}}, r"teacher_train: min_lr = 1e-06 is above lr = 1e-07 .* in the teacher recipe"),
    # targets and the leaderboard
    ({"datasets": [{"name": "phantom", "targets": []}]}, r"datasets\[0\]\.targets: List should have at least 1 item"),
    ({"datasets": [{"name": "phantom", "targets": {}}]}, r"datasets\[0\]\.targets: Dictionary should have at least 1 item"),
    ({"datasets": [{"name": "phantom", "targets": ["liver"]}]},
     r"datasets\[0\]\.targets\[0\] = 'liver': dataset 'phantom' has no target 'liver' \(allowed: organ, tumour"),
    ({"datasets": [{"name": "phantom", "targets": {"x": [7]}}]}, r"datasets\[0\]\.targets\.x = \[7\]: label 7 outside 0 to 2"),
    ({"datasets": [{"name": "phantom", "targets": {"x": "liver"}}]}, r"datasets\[0\]\.targets\.x = 'liver': no class 'liver'"),
    ({"datasets": [{"name": "phantom", "targets": {"x": 1.5}}]}, r"datasets\[0\]\.targets\.x = 1\.5: Input should be a valid integer"),
    ({"leaderboard": {"metrics": []}}, r"leaderboard\.metrics: List should have at least 1 item"),
    ({"leaderboard": {"targets": []}}, r"leaderboard\.targets: List should have at least 1 item"),
    ({"leaderboard": {"targets": ["liver"]}},
     r"leaderboard\.targets\[0\] = 'liver': no dataset defines this target \(targets: organ, tumour\)"),
    ({"datasets": [{"name": "phantom", "targets": {"whole": [1, 2]}}], "leaderboard": {"targets": ["organ"]}},
     r"leaderboard\.targets\[0\] = 'organ': no dataset defines this target \(targets: whole\)"),
    # model and dataset options against their constructors
    ({"students": [{"name": "unet", "options": {"upsampel": "conv"}}]},
     r"students\[0\]\.options\.upsampel: no option 'upsampel' — did you mean 'upsample'\? \(allowed: upsample\)"),
    ({"students": [{"name": "unet", "options": {"upsample": 3}}]}, r"students\[0\]\.options\.upsample = 3: Input should be a valid string"),
    ({"students": [{"name": "tinyunet", "options": {"bogus": 1}}]}, r"students\[0\]\.options\.bogus: no option 'bogus' \(allowed: none\)"),
    ({"students": [{"name": "tinyunet", "options": {"width": 2}}]}, r"students\[0\]\.options\.width: no option 'width'"),
    ({"datasets": [{"name": "phantom", "options": {"casez": 3}}]},
     r"datasets\[0\]\.options\.casez: no option 'casez' — did you mean 'cases'\? \(allowed: cases, slices, seed, noise, contrast\)"),
    ({"datasets": [{"name": "phantom", "options": {"cases": "many"}}]}, r"datasets\[0\]\.options\.cases = 'many': Input should be a valid integer"),
    ({"datasets": [{"name": "phantom", "options": {"noise": float("nan")}}]}, r"datasets\[0\]\.options\.noise = nan: Input should be a finite number"),
    ({"datasets": [{"name": "phantom", "options": {"root": "/x"}}]}, r"datasets\[0\]\.options\.root: no option 'root'"),
    ({"datasets": [{"name": "isic2018", "root": "/nowhere", "options": {"bogus": 1}}]},
     r"datasets\[0\]\.options: dataset isic2018: unknown option 'bogus'"),
]


@pytest.mark.parametrize("change, pattern", GRID_ERRORS, ids=[p for _, p in GRID_ERRORS])
def test_bad_grids_are_refused_in_one_line(write_grid, change, pattern):
    refused(write_grid(tiny_grid(**change)), pattern)


def test_valid_values_in_every_accepted_form(write_grid):
    data = tiny_grid(
        name="my-grid_2.v1",
        methods=["none", {"name": "kd", "T": 2, "label": "kd_T2"}, {"name": "at", "layers": ["high"]},
                 {"name": "pa", "pool": {"fraction": 0.5}}, {"compose": ["kd", {"name": "at", "label": "at-high"}]}],
        teacher_train={"epochs": 2, "max_steps": None},
        datasets=[{"name": "phantom", "targets": {"whole": ["organ", 2]}, "options": {"cases": 4, "noise": 0}}],
        leaderboard={"targets": ["whole"], "metrics": ["dice", "iou"], "cost": []})
    del data["train"]
    path = write_grid(data)
    path.write_text(path.read_text() + "train: {epochs: 1, lr: 1e-3, min_lr: 1e-6}\n")  # YAML 1.1 reads 1e-3 as text
    grid = load_grid(path)
    assert grid.name == "my-grid_2.v1" and grid.train.lr == 1e-3
    assert grid.methods[1].params == {"T": 2} and grid.methods[4].label == "kd+at-high"
    assert grid.model_dump(mode="json")["teacher_train"] == {"epochs": 2, "max_steps": None}
    assert grid.teacher_recipe().epochs == 2 and grid.teacher_recipe().max_steps is None


def test_the_file_stem_default_name_must_be_safe(tmp_path):
    data = tiny_grid()
    del data["name"]
    path = tmp_path / "my grid.yaml"
    path.write_text(yaml.safe_dump(data))
    refused(path, r"name = 'my grid': not a safe run-directory name .*the default is the file's stem")


# -- method hyper-parameters: the same checks from Python --------------------------------------

@pytest.mark.parametrize("name", [n for n in METHODS.names() if n != "compose"])
def test_every_method_default_validates(name):
    defaults = method_params(name)
    assert validate_method_params(name, defaults).keys() == defaults.keys()


def test_create_method_applies_the_same_validation():
    with pytest.raises(ConfigError, match=r"^method 'kd': T = 'hot': Input should be a valid number$"):
        create_method("kd", T="hot")
    with pytest.raises(ConfigError, match=r"^method 'compose': compose\[0\]\.label = 'a\.b': contains '\.'"):
        create_method("compose", methods=[{"name": "kd", "label": "a.b"}])
    assert create_method("kd", T=2).T == 2.0


def test_dkd_on_binary_masks_says_once_that_only_tckd_trains():
    with pytest.warns(KdbenchNote, match=r"dkd: .*NCKD is identically 0, so only TCKD trains"):
        create_method("dkd", num_classes=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KdbenchNote)
        create_method("dkd", num_classes=3)


# -- through the console script ----------------------------------------------------------------

def cli_refuses(tmp_path, path, field: str) -> str:
    """``kdbench run --grid PATH --dry-run``: exit 2, one stderr line naming ``field``, nothing written."""
    before = sorted(p for p in tmp_path.parent.rglob("*"))
    out = tmp_path / "deep" / "out"
    result = run_cli("run", "--grid", str(path), "--out", str(out), "--dry-run", timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1 and field in lines[0], result.stderr
    assert sorted(p for p in tmp_path.parent.rglob("*")) == before, "nothing may be written"
    assert result.returncode == 2, result.stderr
    return lines[0]


CLI_FILES = {
    "not_utf8": (lambda: "name: caf\xe9\n".encode("latin-1"), "not UTF-8"),
    "nested": (lambda: RAW_FILES["nested"][0], "nested deeper than 50 levels"),
    "recursive_alias": (lambda: RAW_FILES["recursive_alias"][0], "recursive alias"),
    "billion_laughs": (billion_laughs, "more than 20000 values"),
    "duplicate_key": (lambda: RAW_FILES["duplicate_key"][0], "key 'name' appears twice"),
}


@pytest.mark.parametrize("name", [n if n == "billion_laughs" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in CLI_FILES])
def test_cli_refuses_bad_yaml(tmp_path, name):
    make, field = CLI_FILES[name]
    path = tmp_path / "grid.yaml"
    content = make()
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    start = time.monotonic()
    cli_refuses(tmp_path, path, field)
    assert time.monotonic() - start < 60


CLI_GRIDS = {
    "name_escapes_out": ({"name": "../../x"}, "name = '../../x'"),
    "name_newline": ({"name": "a\nb"}, "name = 'a\\nb'"),
    "T_hot": ({"methods": ["none", {"name": "kd", "T": "hot"}]}, "methods[1].T = 'hot'"),
    "folds_huge": ({"protocol": {"folds": 1_000_000_000_000}}, "protocol.folds = 1000000000000"),
    "no_metrics": ({"leaderboard": {"metrics": []}}, "leaderboard.metrics"),
    "teacher_train": ({"teacher_train": {"lr": -1}}, "teacher_train.lr = -1"),
    "model_option": ({"students": [{"name": "unet", "options": {"bogus": 1}}]}, "students[0].options.bogus"),
}


@pytest.mark.parametrize("name", [n if n == "name_escapes_out" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in CLI_GRIDS])
def test_cli_refuses_bad_grids(tmp_path, name):
    change, field = CLI_GRIDS[name]
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(tiny_grid(**change)))
    cli_refuses(tmp_path, path, field)


# Every other reproduction of issue 8 (grids), through the console script as well; slow in all
# (each call pays kdbench's start-up), so CI runs them with `-m slow`.
CLI_GRIDS_MORE = {
    "name_empty": ({"name": ""}, "name = ''"),
    "name_300_chars": ({"name": "x" * 300}, "not a safe run-directory name"),
    "name_nul": ({"name": "a\x00b"}, "name = 'a\\x00b'"),
    "T_zero": ({"methods": ["none", {"name": "kd", "T": 0}]}, "methods[1].T = 0"),
    "weight_nan": ({"methods": ["none", {"name": "kd", "weight": math.nan}]}, "methods[1].weight = nan"),
    "width_inf": ({"students": [{"name": "tinyunet", "width": math.inf}]}, "students[0].width = inf"),
    "phantom_option": ({"datasets": [{"name": "phantom", "options": {"casess": 4}}]}, "options.casess"),
    "seed_2_70": ({"protocol": {"seeds": [2**70]}}, "protocol.seeds[0]"),
    "split_seed_negative": ({"protocol": {"split_seed": -5}}, "protocol.split_seed = -5"),
    "targets_empty": ({"datasets": [{"name": "phantom", "targets": []}]}, "datasets[0].targets"),
    "leaderboard_target": ({"leaderboard": {"targets": ["liver"]}}, "leaderboard.targets[0] = 'liver'"),
    "duplicate_teachers": ({"teachers": ["tinyunet", "tinyunet"]}, "teachers[1]"),
    "duplicate_datasets": ({"datasets": [{"name": "phantom"}, {"name": "phantom"}]}, "datasets[1]"),
    "duplicate_metrics": ({"leaderboard": {"metrics": ["dice", "dice"]}}, "leaderboard.metrics"),
    "min_lr_above_lr": ({"train": {"epochs": 1, "batch_size": 2, "image_size": 32, "lr": 1e-4, "min_lr": 1e-3}},
                        "min_lr = 0.001 is above lr"),
    "compose_numbers": ({"methods": [{"compose": [1, 2]}]}, "methods[0].compose[0] = 1"),
    "compose_part_without_name": ({"methods": [{"compose": [{"T": 2}]}]}, "methods[0].compose[0]"),
    "compose_label_with_dot": ({"methods": [{"compose": ["kd", {"name": "at", "label": "a.b"}]}]},
                               "compose[1].label = 'a.b'"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CLI_GRIDS_MORE))
def test_cli_refuses_every_other_bad_grid(tmp_path, name):
    change, field = CLI_GRIDS_MORE[name]
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(tiny_grid(**change)))
    cli_refuses(tmp_path, path, field)
