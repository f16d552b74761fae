"""CI runs exactly the README's set-up commands, then the slow tests the default run leaves out."""

from conftest import ROOT


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.startswith((".venv/", "python3 "))]
    assert len(commands) == 3 and commands[2] == ".venv/bin/python -m pytest -m slow"
    for command in commands[:2]:  # the README's install + quickstart, and its test command
        assert f"\n{command}\n" in readme
