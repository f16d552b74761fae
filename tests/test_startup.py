"""Start-up (issue 11): what the command line and the light paths import, and layering.

Each check runs in a fresh interpreter and reads ``sys.modules`` afterwards: ``kdbench
--help`` loads no torch, ``list methods`` and leaderboard rendering load no MONAI, timm or
segmentation-models-pytorch, and nothing in ``kdbench.models`` or ``kdbench.datasets``
imports ``kdbench.benchmark``.  Wall times are measured by ``kdbench bench``, not here.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

HEAVY = ("monai", "timm", "segmentation_models_pytorch")


def imported_after(code: str, *names: str) -> list[str]:
    """Which of ``names`` are in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps(sorted(n for n in {list(names)!r} if n in sys.modules)), file=sys.stderr)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stderr.strip().splitlines()[-1])


def cli(*args: str) -> str:
    """Code that runs ``kdbench ARGS`` through ``main`` and checks it exited 0."""
    return f"""
        from kdbench.cli import main
        try:
            main({list(args)!r})
        except SystemExit as exc:
            assert exc.code == 0, exc.code
    """


def test_help_imports_no_torch():
    assert imported_after(cli("--help"), "torch", "torchvision", *HEAVY) == []


def test_import_kdbench_is_light_and_its_api_still_resolves():
    assert imported_after("import kdbench; assert kdbench.__version__", "torch") == []
    assert imported_after("""
        import kdbench
        assert kdbench.list_models("res*") == ["resnet18"]
        assert "kd" in kdbench.list_methods() and "phantom" in kdbench.list_datasets()
        assert callable(kdbench.create_model) and callable(kdbench.register_method)
    """, "timm") == ["timm"]  # the model registry loaded its modules on the first listing


def test_list_methods_imports_no_monai_timm_or_smp():
    assert imported_after(cli("list", "methods"), *HEAVY) == []


def test_registries_load_their_modules_on_first_use_only():
    assert imported_after("import kdbench.models, kdbench.methods, kdbench.datasets",
                          "kdbench.models.unet", "kdbench.methods.kd", "kdbench.datasets.phantom") == []
    assert imported_after("from kdbench.models import MODELS; assert 'tinyunet' in MODELS",
                          "kdbench.models.unet", "timm") == ["kdbench.models.unet", "timm"]


def test_rendering_a_leaderboard_imports_no_monai_timm_or_smp(tmp_path):
    from runbuild import make_run

    run = make_run(tmp_path / "run")
    assert imported_after(f"""
        from kdbench.leaderboards.render import render_markdown
        assert "| kd " in render_markdown({str(run)!r})
    """, *HEAVY) == []


def test_kdbench_leaderboard_imports_no_monai_timm_or_smp_without_checkpoints(tmp_path):
    """The hand-built run has no checkpoints: no overlays are drawn, so no network is built."""
    from runbuild import make_run

    run = make_run(tmp_path / "run")
    assert imported_after(cli("leaderboard", str(run)), *HEAVY) == []
    assert "| kd " in (run / "leaderboard.md").read_text()


def _imports(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["models", "datasets"])
def test_models_and_datasets_never_import_the_benchmark(package):
    offenders = {path.name: sorted(n for n in _imports(path) if n == "kdbench.benchmark"
                                   or n.startswith("kdbench.benchmark."))
                 for path in sorted((ROOT / "kdbench" / package).glob("*.py"))}
    assert {name: found for name, found in offenders.items() if found} == {}
    assert len(offenders) > 5  # the check did look at the package's modules
