"""Dataset options: validated, documented, hashable.

Every dataset that reads files declares its options as a pydantic model (a subclass of
:class:`DatasetOptions`); the grid's ``options:`` mapping and the CLI's ``--set`` pairs
are validated against it, so a misspelt or ill-typed option fails with one line that
names the dataset, the option and what is allowed.  Options listed in
``runtime_fields`` change only how prepared arrays are served (which slices, which
cache folder); every other option changes the prepared arrays and is therefore part
of the cache key.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from kdbench.errors import ConfigError
from kdbench.registry import did_you_mean


class DatasetOptions(BaseModel):
    """Base of every dataset's options (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    #: options that do not change the prepared arrays (left out of the cache key)
    runtime_fields: ClassVar[frozenset[str]] = frozenset({"cache_dir"})

    cache_dir: str | None = None
    """Where prepared arrays go; default ``$KDBENCH_CACHE`` or ``~/.cache/kdbench``."""

    def cache_params(self) -> dict[str, Any]:
        """The options that change the prepared arrays, JSON-ready."""
        data = self.model_dump(mode="json")
        return {k: v for k, v in sorted(data.items()) if k not in self.runtime_fields}

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """``(name, default, description)`` for every option, for docs and ``--help``."""
        rows = []
        for name, field in cls.model_fields.items():
            rows.append((name, repr(field.default), field.description or ""))
        return rows


def parse_options(model: type[DatasetOptions], options: dict[str, Any] | None, dataset: str) -> DatasetOptions:
    """Validate ``options`` for ``dataset``; errors are one :class:`ConfigError` line."""
    options = dict(options or {})
    known = list(model.model_fields)
    for key in options:
        if key not in known:
            raise ConfigError(
                f"dataset {dataset}: unknown option '{key}'{did_you_mean(key, known)} "
                f"(options: {', '.join(known)})"
            )
    try:
        return model(**options)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "options"
        value = err.get("input")
        msg = str(err.get("msg", "invalid")).replace("\n", " ")
        raise ConfigError(f"dataset {dataset}: option '{where}' = {value!r}: {msg}") from None
