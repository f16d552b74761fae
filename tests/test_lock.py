"""The pinned installs: each lock satisfies pyproject.toml, the installed environment is the lock,
the environment's drift from the lock is reported, and the version is one number everywhere."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import kdbench
from kdbench.leaderboards.render import _provenance
from kdbench.lock import LOCK_PYTHON, LOCKS, drift_text, environment_drift, lock_for, parse_pins, read_lock

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = ("dev", "docs")  # what the README installs (dev pulls in export and slurm)
# The platform both locks are compiled for (kdbench/locks/compile.sh).
LOCK_MARKERS = {**default_environment(), "python_version": LOCK_PYTHON, "python_full_version": f"{LOCK_PYTHON}.0",
                "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def requirements(extras=EXTRAS) -> list[Requirement]:
    """pyproject's requirements for ``extras``, self-references (``kdbench[export]``) expanded."""
    out, todo, seen = [], [None, *extras], set()
    optional = PYPROJECT["project"]["optional-dependencies"]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in PYPROJECT["project"]["dependencies"] if extra is None else optional[extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == "kdbench":
                todo.extend(req.extras)
            elif req.marker is None or req.marker.evaluate({**LOCK_MARKERS, "extra": extra or ""}):
                out.append(req)
    return out


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_satisfies_pyproject(lock):
    pins = read_lock(lock)
    reqs = requirements()
    assert len(reqs) > 20
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock}: {req.name} is required by pyproject.toml but not pinned"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), (
            f"{lock}: {name}=={pins[name]} violates pyproject.toml's {req}")


def test_locks_pin_the_declared_torch_and_differ_only_in_its_build():
    declared = parse_pins((ROOT / "kdbench" / "locks" / "torch.txt").read_text())
    cpu, cuda = read_lock("cpu"), read_lock("cuda")
    for name, version in declared.items():
        assert Version(cuda[name]) == Version(version)
        assert Version(cpu[name]).public == version
    assert cpu["torch"].endswith("+cpu") and "+" not in cuda["torch"]
    assert not any(n.startswith("nvidia-") for n in cpu), "the CPU lock must not pull CUDA libraries"
    assert any(n.startswith("nvidia-") for n in cuda)
    shared = set(cpu) & set(cuda)
    assert {n for n in shared if cpu[n] != cuda[n]} == {"torch"}


def test_parse_pins_refuses_a_range():
    assert parse_pins("a==1.0\n    # via b\nB_c[x]==2 ; python_version >= '3'\n") == {"a": "1.0", "b-c": "2"}
    with pytest.raises(ValueError, match="not a pin"):
        parse_pins("torch>=2\n")


@pytest.mark.skipif(os.environ.get("KDBENCH_SKIP_LOCK_CHECK") == "1",
                    reason="KDBENCH_SKIP_LOCK_CHECK=1: testing an environment not installed from a lock")
def test_installed_environment_is_exactly_the_lock():
    """`pip freeze` of this venv against the lock its torch build selects: nothing unpinned, nothing off
    (pip itself, the installer, is the one distribution a lock leaves out)."""
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable", "--exclude", "pip"],
                            capture_output=True, text=True, check=True).stdout
    installed = {}
    for line in frozen.splitlines():
        if line.strip() and not line.startswith("#"):
            assert "==" in line, f"pip freeze lists {line!r}, not a released version"
            name, version = line.split("==", 1)
            installed[canonicalize_name(name)] = version.strip()
    lock = lock_for(installed)
    pins = read_lock(lock)
    unpinned = sorted(set(installed) - set(pins))
    assert not unpinned, f"installed but not in kdbench/locks/{lock}.txt: {unpinned}"
    off = {n: (v, pins[n]) for n, v in installed.items() if Version(v) != Version(pins[n])}
    assert not off, f"installed versions differ from kdbench/locks/{lock}.txt: {off}"
    missing = sorted(set(pins) - set(installed))
    assert not missing, f"pinned in kdbench/locks/{lock}.txt but not installed: {missing}"
    assert environment_drift(lock)["differs"] == []


def test_drift_names_each_package_that_differs():
    pins = read_lock("cpu")
    installed = dict(pins)
    installed["torch"] = "2.11.0+cu130"
    del installed["monai"]
    installed["some-other-tool"] = "1.0"  # beside the lock: not kdbench's business
    assert lock_for(installed) == "cuda"
    drift = environment_drift("cpu", installed, python="3.12")
    assert drift["lock"] == "cpu" and drift["pinned"] == len(pins)
    assert drift["differs"] == [f"python 3.12 (lock: {LOCK_PYTHON})", f"monai not installed (lock: {pins['monai']})",
                                f"torch 2.11.0+cu130 (lock: {pins['torch']})"]
    text = drift_text(drift)
    assert "differs from `kdbench/locks/cpu.txt` in 3: python 3.12" in text and "torch 2.11.0+cu130" in text
    same = environment_drift("cpu", dict(pins), python=LOCK_PYTHON)
    assert same["differs"] == [] and drift_text(same).startswith("as locked")
    assert lock_for(dict(pins)) == "cpu" and lock_for({}) == "cpu"


def test_leaderboard_header_says_how_the_environment_differs():
    drift = {"lock": "cpu", "pinned": 86, "differs": ["timm 1.0.20 (lock: 1.0.31)"]}
    lines = _provenance({"grid_sha256": "ab", "versions": {"kdbench": kdbench.__version__}, "environment": drift,
                         "job_environments": ["timm 1.0.20 (lock: 1.0.31)", "numpy 2.0.0 (lock: 2.4.6)"]})
    assert f"kdbench {kdbench.__version__}" in lines[1]
    assert lines[2] == "- **Environment:** " + drift_text(drift)
    assert lines[3] == "- **Jobs ran where the environment differs from the lock:** numpy 2.0.0 (lock: 2.4.6)"
    old = _provenance({})
    assert "not compared with a lock" in old[2] and len(old) == 3


def test_version_is_one_number_everywhere():
    from importlib.metadata import version

    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "kdbench.__version__"}
    assert version("kdbench") == kdbench.__version__
    top = re.search(r"^## (\S+)", (ROOT / "CHANGELOG.md").read_text(), flags=re.M).group(1)
    assert top == kdbench.__version__
