"""The generic registry: decorator, lookup errors with close matches, plugins."""

from __future__ import annotations

import os
import textwrap

import pytest

from kdbench import registry as registry_mod
from kdbench.errors import KdbenchError, UnknownNameError
from kdbench.methods import METHODS
from kdbench.models import MODELS
from kdbench.registry import Registry, did_you_mean

from conftest import run_cli


def test_register_get_list():
    reg = Registry("thing")

    @reg.register("alpha", paper="x")
    class Alpha:
        """The first thing.

        More text."""

    @reg.register()
    def beta():
        """Second."""

    assert reg.get("alpha").obj is Alpha
    assert reg.get("alpha").meta == {"paper": "x"}
    assert reg.get("alpha").description == "The first thing."
    assert reg.names() == ["alpha", "beta"]
    assert reg.names("a*") == ["alpha"]
    assert "beta" in reg and "gamma" not in reg


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError, match=r"unknown method 'kdd' — did you mean 'kd'"):
        METHODS.get("kdd")
    assert did_you_mean("unnet", MODELS.names()).startswith(" — did you mean 'unet'")
    assert did_you_mean("zzzzzz", ["kd", "at"]) == ""


def test_double_registration_of_another_object_is_refused():
    reg = Registry("thing")
    reg.register("a")(lambda: 1)
    with pytest.raises(KdbenchError, match="registered twice"):
        reg.register("a")(lambda: 2)


def _install_plugin(site, dist="kdbench_demo_plugin"):
    """Install a throwaway plugin distribution (package + dist-info with an entry point)."""
    pkg = site / dist
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from kdbench.methods import register_method
        from kdbench.methods.kd import KD


        @register_method("demo_plugin_kd")
        class DemoPluginKD(KD):
            """KD registered by a third-party plugin package."""
    '''))
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[kdbench.plugins]\ndemo = {dist}\n")
    (info / "RECORD").write_text("")


def test_plugin_registers_through_entry_points(tmp_path, monkeypatch):
    _install_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry_mod, "_plugins_loaded", False)
    assert "demo_plugin_kd" in METHODS.names()
    # and the command line sees it too, from a fresh process
    result = run_cli("list", "methods", "demo*", env={"PYTHONPATH": f"{tmp_path}{os.pathsep}"
                                                      f"{os.environ.get('PYTHONPATH', '')}"})
    assert result.returncode == 0, result.stderr
    assert "demo_plugin_kd" in result.stdout and "third-party plugin" in result.stdout


def _install_broken_plugin(site):
    info = site / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken_plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[kdbench.plugins]\nbroken = no_such_module_xyz\n")


def test_broken_plugin_is_named_once_and_skipped(tmp_path, monkeypatch, capsys):
    _install_broken_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry_mod, "_plugins_loaded", False)
    assert "kd" in METHODS.names()  # kdbench goes on
    assert "kd" in METHODS.names()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert "plugin 'broken'" in lines[0] and "no_such_module_xyz" in lines[0]


def test_broken_plugin_does_not_break_the_command_line(tmp_path):
    _install_broken_plugin(tmp_path)
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = run_cli("list", "methods", env=env)
    assert result.returncode == 0, result.stderr
    assert "kd" in result.stdout.split()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "plugin 'broken'" in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_method_pages_of_a_plugin_without_docstrings(monkeypatch):
    """A plugin module and class without docstrings still get a page (``mkdocs build --strict``)."""
    import sys
    import types

    from kdbench.methods.base import Method
    from kdbench.methods.pages import all_method_pages, method_page

    module = types.ModuleType("undocumented_plugin")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = {"__module__": module.__name__, "forward": lambda self, student, teacher, batch: {},
                 "__init__": lambda self, gain=1.0, **common: Method.__init__(self, **common)}
    cls = type("Undocumented", (Method,), namespace)
    monkeypatch.setitem(METHODS._entries, "undocumented", registry_mod.Entry("undocumented", cls))
    page = method_page("undocumented")
    assert page.startswith("# `undocumented`") and "(no description)" in page
    assert "Module: `undocumented_plugin`" in page and "| `gain` | `1.0` |" in page
    assert "undocumented.md" in all_method_pages()
