"""One small generic registry, used for models, methods and datasets.

Modelled on timm's ``register_model`` / ``create_model`` / ``list_models``: a name maps
to a class or factory function, registered with a decorator.  Third-party packages
register their own entries through the entry-point group ``kdbench.plugins``; each
entry point names a module (importing it registers) or a callable (called once).

A registry loads lazily (issue 11, start-up): it knows the modules that register its
built-in entries and imports them on the first lookup or listing, so importing a
package (``kdbench.models``) does not import every network and its libraries.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import sys
import threading
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Sequence

from kdbench.errors import KdbenchError, UnknownNameError

PLUGIN_GROUP = "kdbench.plugins"
_plugins_loaded = False


@dataclass(frozen=True)
class Entry:
    """A registered name: the object it builds and what it says about itself."""

    name: str
    obj: Any
    meta: dict = field(default_factory=dict)

    @property
    def description(self) -> str:
        """The first line of the object's docstring."""
        doc = inspect.getdoc(self.obj) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


def did_you_mean(name: str, choices: list[str]) -> str:
    """A ``" — did you mean 'x'?"`` suffix naming the closest choices, or ``""``."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if not close:
        return ""
    return " — did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def load_plugins() -> None:
    """Import every entry point of the ``kdbench.plugins`` group, once.

    A plugin that fails to import (or whose registration call fails) must not break
    kdbench: it is named on stderr in one line, once per process, and skipped.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            loaded = ep.load()
            if callable(loaded) and not inspect.ismodule(loaded):
                loaded()
        except Exception as exc:  # a broken plugin must not break kdbench
            problem = " ".join(f"{type(exc).__name__}: {exc}".split())
            print(f"warning: plugin '{ep.name}' ({ep.value}) failed to load and is skipped: {problem}",
                  file=sys.stderr)


class Registry:
    """Names → classes or factories of one kind (``"model"``, ``"method"``, ``"dataset"``).

    ``modules`` are the modules whose import registers the built-in entries; they are
    imported on the first lookup or listing, after ``prepare()`` (if given) has run.
    """

    def __init__(self, kind: str, modules: Sequence[str] = (), prepare: Callable[[], Any] | None = None):
        self.kind = kind
        self.modules = tuple(modules)
        self.prepare = prepare
        self._entries: dict[str, Entry] = {}
        self._loaded = False
        self._lock = threading.RLock()

    def load(self) -> None:
        """Import the built-in modules (once), then the plugins."""
        with self._lock:
            if not self._loaded:
                self._loaded = True  # a module being imported may look itself up
                try:
                    if self.prepare is not None:
                        self.prepare()
                    for module in self.modules:
                        importlib.import_module(module)
                except BaseException:
                    self._loaded = False
                    raise
        load_plugins()

    def register(self, name: str | None = None, **meta: Any) -> Callable[[Any], Any]:
        """Decorator: register a class or function under ``name`` (default: its own name)."""

        def decorator(obj: Any) -> Any:
            key = name or obj.__name__
            if key in self._entries and self._entries[key].obj is not obj:
                raise KdbenchError(f"{self.kind} '{key}' is registered twice")
            self._entries[key] = Entry(key, obj, dict(meta))
            return obj

        return decorator

    def get(self, name: str) -> Entry:
        """The entry for ``name``; an unknown name raises with the closest matches."""
        self.load()
        if name not in self._entries:
            raise UnknownNameError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, list(self._entries))}"
                f" (known: {', '.join(sorted(self._entries))})"
            )
        return self._entries[name]

    def build(self, name: str, **kwargs: Any) -> Any:
        """Call the registered class or factory with ``kwargs``."""
        return self.get(name).obj(**kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style ``pattern``, sorted."""
        self.load()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def entries(self, pattern: str = "*") -> list[Entry]:
        """Registered entries matching ``pattern``, sorted by name."""
        return [self._entries[n] for n in self.names(pattern)]

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._entries
