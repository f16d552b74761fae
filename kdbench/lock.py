"""The pinned installs kdbench is tested with, and how the running environment differs from them.

A benchmark's numbers depend on the versions of torch, MONAI, timm and the rest, so the
README installs from a lock: ``kdbench/locks/cpu.txt`` (the CPU build of PyTorch) or
``kdbench/locks/cuda.txt`` (PyPI's CUDA build), both compiled by ``uv pip compile`` from
``pyproject.toml``'s ranges (``kdbench/locks/compile.sh``), every distribution pinned with
``==``, for CPython :data:`LOCK_PYTHON` on Linux x86_64.  ``pyproject.toml`` keeps ranges,
so that kdbench can be installed inside other projects; there, :func:`environment_drift`
says which packages differ from the lock, and ``kdbench info`` and every leaderboard
header repeat it.

Only the standard library and ``packaging`` are imported: ``kdbench info`` and planning
call this without loading torch.
"""

from __future__ import annotations

import platform
from importlib import metadata, resources

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

LOCKS = ("cpu", "cuda")
"""The locks kdbench ships: ``kdbench/locks/<name>.txt``."""
LOCK_PYTHON = "3.11"
"""The Python (major.minor) the locks were compiled for."""


def read_lock(name: str) -> dict[str, str]:
    """The pins of lock ``name`` (``cpu`` or ``cuda``): canonical distribution name → version."""
    if name not in LOCKS:
        raise ValueError(f"no lock {name!r} (locks: {', '.join(LOCKS)})")
    text = resources.files("kdbench").joinpath("locks", f"{name}.txt").read_text(encoding="utf-8")
    return parse_pins(text)


def parse_pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a requirements file (comments and ``# via`` lines skipped)."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise ValueError(f"not a pin: {line!r} (a lock pins every distribution with ==)")
        pins[canonicalize_name(name.split("[", 1)[0].strip())] = version.split(";", 1)[0].strip()
    return pins


def installed_versions() -> dict[str, str]:
    """Every distribution installed in this environment: canonical name → version."""
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            out.setdefault(canonicalize_name(name), dist.version)
    return out


def lock_for(installed: dict[str, str]) -> str:
    """The lock an environment is compared with: ``cpu`` for a CPU build of torch (``+cpu``) or no
    torch, else ``cuda``."""
    torch = installed.get("torch")
    return "cuda" if torch is not None and "+cpu" not in torch else "cpu"


def _same(installed: str, pinned: str) -> bool:
    try:
        return Version(installed) == Version(pinned)
    except InvalidVersion:
        return installed == pinned


def environment_drift(lock: str | None = None, installed: dict[str, str] | None = None,
                      python: str | None = None) -> dict:
    """How the running environment differs from lock ``lock`` (default: :func:`lock_for`).

    Returns ``{"lock": name, "pinned": n, "differs": [...]}``, where each entry of
    ``differs`` is one line: ``torch 2.11.0+cu130 (lock: 2.13.0+cpu)``, ``monai not
    installed (lock: 1.6.1)`` or ``python 3.12 (lock: 3.11)``.  Packages installed beside
    the lock's are not listed: they are not kdbench's dependencies.
    """
    installed = installed_versions() if installed is None else installed
    lock = lock or lock_for(installed)
    pins = read_lock(lock)
    python = python or ".".join(platform.python_version_tuple()[:2])
    differs = [] if python == LOCK_PYTHON else [f"python {python} (lock: {LOCK_PYTHON})"]
    for name, pinned in pins.items():
        have = installed.get(name)
        if have is None:
            differs.append(f"{name} not installed (lock: {pinned})")
        elif not _same(have, pinned):
            differs.append(f"{name} {have} (lock: {pinned})")
    return {"lock": lock, "pinned": len(pins), "differs": differs}


def drift_text(drift: dict) -> str:
    """One line for ``kdbench info`` and leaderboard headers: the environment against its lock."""
    where = f"`kdbench/locks/{drift['lock']}.txt`"
    if not drift["differs"]:
        return f"as locked: every one of the {drift['pinned']} pinned packages matches {where}"
    return (f"differs from {where} in {len(drift['differs'])}: {'; '.join(drift['differs'])} — numbers may not "
            f"reproduce with the lock")
