"""The torchvision import guard (pytorch/vision#9085) is active only on that exact failure."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from kdbench import _compat


def test_kdbench_imports_whatever_torchvision_does():
    plain = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True, text=True)
    guarded = subprocess.run([sys.executable, "-c", "import kdbench; kdbench.list_models(); import torchvision; print(torchvision.__version__)"],
                             capture_output=True, text=True)
    assert guarded.returncode == 0, guarded.stderr
    if plain.returncode != 0:  # the CPU-torch + CUDA-torchvision case this guard exists for
        assert _compat.NMS_ERROR in plain.stderr


def test_other_import_errors_are_not_swallowed(monkeypatch):
    real_import = __import__

    def fake_import(name, *args, **kwargs):
        if name == "torchvision":
            raise RuntimeError("something else entirely")
        return real_import(name, *args, **kwargs)

    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.delitem(sys.modules, "torchvision")
    monkeypatch.setattr("builtins.__import__", fake_import)
    with pytest.raises(RuntimeError, match="something else"):
        _compat.import_torchvision()


def test_nms_failure_retries_without_meta_registrations(monkeypatch):
    real_import = __import__
    calls = []

    def fake_import(name, *args, **kwargs):
        if name == "torchvision":
            calls.append(isinstance(sys.modules.get("torchvision._meta_registrations"), types.ModuleType))
            if len(calls) == 1:
                raise RuntimeError(_compat.NMS_ERROR)
            return types.ModuleType("torchvision")
        return real_import(name, *args, **kwargs)

    for name in [m for m in sys.modules if m.startswith("torchvision")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr("builtins.__import__", fake_import)
    assert _compat.import_torchvision() is not None
    assert calls == [False, True]
