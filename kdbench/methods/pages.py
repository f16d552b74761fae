"""Markdown pages for the method registry, generated from registrations and docstrings.

The documentation build writes :func:`all_method_pages` to ``docs/methods/``; nothing
on these pages is written by hand, so they cannot drift from the code.
"""

from __future__ import annotations

import inspect
import warnings

import yaml

from kdbench.errors import KdbenchError, KdbenchNote
from kdbench.methods import METHODS, create_method, list_methods, method_params
from kdbench.models.roles import ROLES, FeatureRole


def _yaml(value) -> str:
    """A default as it would be written in a grid file (its ``repr`` when YAML cannot say it)."""
    if isinstance(value, tuple):
        value = list(value)
    try:
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip().removesuffix("\n...")
    except yaml.YAMLError:
        return repr(value)


def _default_taps(name: str) -> str:
    """The feature roles the method taps with its defaults, as markdown."""
    roles = {role: FeatureRole(role, 8, 1) for role in ROLES}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", KdbenchNote)
            taps = create_method(name, student_roles=roles, teacher_roles=roles).taps
    except KdbenchError:
        return "Depends on the configuration."
    return ", ".join(f"`{role}`" for role in taps) if taps else "None: logits only."


def _first_line(obj) -> str:
    """The first line of ``obj``'s docstring, or ``""`` when it has none."""
    doc = (inspect.getdoc(obj) or "").strip()
    return doc.splitlines()[0] if doc else ""


def method_page(name: str) -> str:
    """The markdown page of registered method ``name`` (a plugin's may lack docstrings)."""
    cls = METHODS.get(name).obj
    doc = inspect.cleandoc(cls.__doc__ or "")  # its own docstring, not one inherited
    summary, _, details = doc.partition("\n")
    module = inspect.getmodule(cls)
    lines = [f"# `{name}`", "", summary.strip() or "(no description)", ""]
    if details.strip():
        lines += [details.strip(), ""]
    module_name = module.__name__ if module else cls.__module__
    about = _first_line(module) if module else ""
    lines += [f"Module: `{module_name}`" + (f" — {about}" if about else ""), ""]
    params = method_params(name)
    lines += ["## Hyper-parameters", ""]
    if params:
        lines += ["| parameter | default |", "|---|---|"]
        lines += [f"| `{key}` | `{_yaml(value)}` |" for key, value in params.items()]
    else:
        lines.append("None.")
    lines += ["", "## Feature taps", "", _default_taps(name), "", "## In a grid file", "", "```yaml",
              f"methods: [{_grid_example(name, params)}]", "```", ""]
    return "\n".join(lines)


def _grid_example(name: str, params: dict) -> str:
    """How a grid names the method: its registered ``example``, else with one override."""
    example = METHODS.get(name).meta.get("example")
    if example or not params:
        return example or name
    key, value = next(iter(params.items()))
    return f"{name}, {{name: {name}, {key}: {_yaml(value)}, label: {name}_{key}}}"


def all_method_pages() -> dict[str, str]:
    """``{filename: markdown}``: one page per registered method plus ``index.md``."""
    names = list_methods()
    index = ["# Methods", "", "| method | description |", "|---|---|"]
    index += [f"| [`{n}`]({n}.md) | {METHODS.get(n).description} |" for n in names]
    return {"index.md": "\n".join(index) + "\n", **{f"{n}.md": method_page(n) for n in names}}
