"""Property: any grid file loads as a GridSpec or is refused with a one-line KdbenchError — never a crash.

Hypothesis generates 2 000 grids: structured mutations of a valid tiny grid (fields set
to wrong types, NaN, huge ints, nested lists, unicode and control characters; fields
deleted or added; ``--set`` overrides) and raw YAML-ish text (anchors, aliases, tags,
brackets).  Each is written to a file and read through :func:`load_grid`.
"""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdbench.benchmark.grid import GridSpec, load_grid
from kdbench.errors import KdbenchError

from conftest import tiny_grid

BASE = tiny_grid(methods=["none", "kd", {"name": "at", "weight": 10.0, "label": "at10"},
                          {"compose": ["kd", {"name": "pa", "pool": {"kernel": 2}}]}],
                 teacher_train={"lr": 0.01})
FIELDS = ["name", "label", "width", "options", "targets", "T", "weight", "compose", "params", "lr",
          "min_lr", "seeds", "folds", "run_folds", "split_seed", "metrics", "cost", "root", "layers", "pool",
          "epochs", "image_size", "max_steps", "test_fraction", "reproduces", "cases", "upsample"]
WORDS = ["kd", "at", "none", "dkd", "compose", "phantom", "tinyunet", "unet", "organ", "tumour", "dice",
         "params", "paper", "smoke", "low", "high", "pre_logits", "..", "../../x", "", "a.b", "a\nb", "\x00",
         "\u2028", "é", "1e-3", "hot", ".nan", "kernel", "fraction"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, -1, 10**12, 2**32, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(WORDS),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6)
                                                                | st.integers(-3, 3), inner, max_size=4),
    max_leaves=12,
)


def _paths(node, prefix=()):
    """Every (container, key) pair in a nested grid."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield prefix, key
        yield from _paths(child, (*prefix, key))


def _at(node, path):
    for key in path:
        node = node[key]
    return node


def plausible(original):
    """Values near ``original``'s kind: boundary numbers, known words, copies of its own items."""
    if isinstance(original, bool):
        return st.booleans()
    if isinstance(original, (int, float)):
        return st.sampled_from([0, 1, 2, -1, 0.5, 1e-9, 10**12, 2**32, 2**70, float("nan"), float("inf")])
    if isinstance(original, str):
        return st.sampled_from(WORDS) | st.text(max_size=8)
    if isinstance(original, list) and original:
        return st.lists(st.sampled_from(original), max_size=4)
    if isinstance(original, dict) and original:
        return st.dictionaries(st.sampled_from(list(original)), st.sampled_from(list(original.values())), max_size=3)
    return values


@st.composite
def mutated_grids(draw) -> str:
    grid = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(grid))
        if not paths:
            break
        path, key = draw(st.sampled_from(paths))
        parent = _at(grid, path)
        action = draw(st.sampled_from(["near", "near", "near", "set", "delete", "add", "repeat"]))
        if action == "near":
            parent[key] = draw(plausible(parent[key]))
        elif action == "set":
            parent[key] = draw(values)
        elif action == "delete":
            del parent[key]
        elif action == "repeat" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(FIELDS) | st.text(max_size=6))] = draw(values)
        else:
            parent.append(draw(values))
    return yaml.safe_dump(grid, sort_keys=False, allow_unicode=draw(st.booleans()))


yamlish = st.lists(st.sampled_from(["name: ", "x", "\n", "  ", "- ", "[", "]", "{", "}", ", ", ": ", "&a ", "*a",
                                    "&b ", "*b", "<<: ", "!!binary ", "!!python/object:os.system ", "!!set ",
                                    "? ", "'", '"', "\t", "\\", "#", "---\n", "...\n", "methods", "datasets",
                                    "1e400", "0x1F", "2020-13-45", "\ufeff", "é", "\x85", "%YAML 1.1\n"]),
                   max_size=40).map("".join)
overrides = st.lists(st.tuples(st.sampled_from(["train.lr", "methods.1.T", "methods.0", "protocol.seeds", "name",
                                                "students.0.options.x", "leaderboard.metrics", "x.y.z", "1bad",
                                                "teacher_train.min_lr"]),
                               st.sampled_from(["1e-3", "hot", "[1, 2]", "&a [*a]", "{", "", ".inf", "-5", "kd"]))
                     .map("=".join), max_size=2) | st.just([])


@settings(max_examples=2000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(text=st.one_of(mutated_grids(), mutated_grids(), mutated_grids(), yamlish), sets=overrides)
def test_any_grid_loads_or_is_refused_in_one_line(tmp_path, text, sets):
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        grid = load_grid(path, sets)
    except KdbenchError as exc:
        message = str(exc)
        assert message and len(message.splitlines()) == 1 and "\n" not in message, repr(message)
    else:
        assert isinstance(grid, GridSpec)
