"""docs/adding-a-method.md can be copied block by block: the files it names work as written.

The page's blocks are written into one plugin folder: ``my_methods.py`` (the first
Python block, by its ``# my_methods.py`` line) and ``pyproject.toml``; every other
Python block runs on its own in a fresh interpreter with that folder on the path, and
the grid block validates with the plugin imported.  Nothing is installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest

from conftest import ROOT

PAGE = ROOT / "docs" / "adding-a-method.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), flags=re.S)


@pytest.fixture
def plugin(tmp_path):
    """The plugin folder: ``my_methods.py`` as the page writes it."""
    module = blocks("python")[0]
    first_line = module.splitlines()[0]
    assert first_line == "# my_methods.py", first_line
    (tmp_path / "my_methods.py").write_text(module)
    return tmp_path


def run_python(folder, code: str) -> subprocess.CompletedProcess:
    script = folder / "block.py"
    script.write_text(code)
    env = {**os.environ, "PYTHONPATH": str(folder), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(script)], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)


def test_every_python_block_runs_on_its_own(plugin):
    others = blocks("python")[1:]
    assert others, "the page has a 'Check it' block"
    for code in others:
        result = run_python(plugin, code)
        assert result.returncode == 0, result.stderr[-3000:]
    assert "weight = -1: Input should be greater than or equal to 0" in result.stdout


def test_grid_block_validates_with_the_plugin(plugin):
    (grid_block,) = blocks("yaml")
    check = f'''
import yaml
import my_methods
from kdbench.benchmark.grid import validate_grid

data = yaml.safe_load("""
name: plugin
datasets: [{{name: phantom}}]
teachers: [tinyunet]
students: [{{name: tinyunet, label: student}}]
""")
data.update(yaml.safe_load("""{grid_block}"""))
grid = validate_grid(data, "page")
print([m.name for m in grid.methods])
'''
    result = run_python(plugin, check)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cosine_hint" in result.stdout


def test_pyproject_block_is_a_complete_installable_plugin():
    (text,) = blocks("toml")
    project = tomllib.loads(text)
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert any(req.startswith("setuptools") for req in project["build-system"]["requires"])
    assert project["project"]["name"] and project["project"]["version"]
    assert project["tool"]["setuptools"]["py-modules"] == ["my_methods"]
    assert project["project"]["entry-points"]["kdbench.plugins"] == {"my_methods": "my_methods"}


def test_install_step_is_given_in_the_plugin_folder():
    (shell,) = blocks("bash")
    lines = [line.split("#")[0].strip() for line in shell.splitlines()]
    assert lines[0].startswith("cd ")
    assert any(line.endswith(".venv/bin/pip install -e .") for line in lines)
