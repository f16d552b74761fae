"""Keyword arguments checked against a callable's annotated signature, by type and range.

Methods, model factories and the phantom dataset declare their hyper-parameters as
annotated keyword arguments, ranges included::

    def __init__(self, T: Positive = 4.0, weight: NonNegative = 1.0, **common): ...

:func:`check_kwargs` validates a mapping (a grid entry, ``create_method``'s keywords)
against that signature with pydantic, so a misspelt, ill-typed or out-of-range value
fails before anything runs, as one line: ``T = 'hot': Input should be a valid number``.
Numbers are strict (a bool or the text ``hot`` is not a number, an int is a float,
NaN and ±inf are refused); text that spells a number (``1e-3``, which YAML 1.1 reads
as a string) is read as one.  Unannotated parameters accept any value.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from functools import lru_cache
from typing import Annotated, Any, Callable, Literal, Union

from pydantic import BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError

from kdbench.errors import ConfigError
from kdbench.registry import did_you_mean

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _number_from_text(value: Any) -> Any:
    """``"1e-3"`` → ``0.001`` (YAML 1.1 reads exponents without a dot as text); anything else as is."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


Real = Annotated[float, BeforeValidator(_number_from_text), Strict()]
"""A finite float: an int or a float (or text spelling one), never a bool."""
Int = Annotated[int, Strict()]
"""An int, never a bool or a float."""
Bool = Annotated[bool, Strict()]
"""``true`` or ``false`` only."""
Text = Annotated[str, Strict()]
"""A string, never a number."""

Positive = Annotated[float, Field(gt=0)]
"""A float > 0 (temperatures, learning rates)."""
NonNegative = Annotated[float, Field(ge=0)]
"""A float ≥ 0 (loss weights: 0 switches a term off)."""
Fraction = Annotated[float, Field(ge=0, le=1)]
"""A float in [0, 1]."""
Count = Annotated[int, Field(ge=1)]
"""An int ≥ 1 (sizes, queue lengths)."""

_LEAVES: dict[Any, Any] = {float: Real, int: Int, bool: Bool, str: Text}
_CONFIG = ConfigDict(allow_inf_nan=False, arbitrary_types_allowed=True)
_VALUE_CHARS = 60


def strict(annotation: Any) -> Any:
    """``annotation`` with every ``float``/``int``/``bool``/``str`` leaf made strict (see the module doc).

    Containers keep pydantic's lax matching, so a YAML list fills a ``tuple[str, ...]``.
    """
    if annotation in _LEAVES:
        return _LEAVES[annotation]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is None or origin is Literal or not args:
        return annotation
    if origin is Annotated:
        return Annotated[(strict(args[0]), *annotation.__metadata__)]
    new = tuple(a if a is Ellipsis else strict(a) for a in args)
    if origin in (Union, types.UnionType):
        return Union[new]
    try:
        return origin[new]
    except TypeError:  # an origin that cannot be subscripted again: keep it as written
        return annotation


def show(value: Any, limit: int = _VALUE_CHARS) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters."""
    text = one_line(repr(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str) -> str:
    """``text`` with every line break and control character escaped, so it prints as one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def loc_path(loc: tuple) -> str:
    """A pydantic error location as a field path: ``("pool", "kernel")`` → ``.pool.kernel``, ints as ``[i]``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{one_line(str(p))}" for p in loc if p != "[key]")


class _Signature:
    """The checkable part of a signature: one validator per keyword parameter."""

    def __init__(self, func: Callable, skip: tuple[str, ...]):
        target = func.__init__ if inspect.isclass(func) else func
        try:
            hints = typing.get_type_hints(target, include_extras=True)
        except Exception:  # unresolvable annotations (a plugin's): check names only
            hints = {}
        self.var_keyword = False
        self.params: dict[str, tuple[TypeAdapter | None, Any]] = {}
        for p in inspect.signature(func).parameters.values():
            if p.kind is p.VAR_KEYWORD:
                self.var_keyword = True
            elif p.kind is not p.VAR_POSITIONAL and p.name not in skip and p.name != "self":
                self.params[p.name] = (_adapter(hints.get(p.name, Any)), p.default)

    @property
    def defaults(self) -> dict[str, Any]:
        return {k: d for k, (_, d) in self.params.items() if d is not inspect.Parameter.empty}


def _adapter(annotation: Any) -> TypeAdapter | None:
    """A validator for ``annotation`` (strict leaves, finite floats); ``None`` for one pydantic cannot check."""
    if annotation is Any:
        return None
    for make in (lambda: TypeAdapter(strict(annotation), config=_CONFIG), lambda: TypeAdapter(strict(annotation))):
        try:
            return make()
        except Exception:  # e.g. a model type that brings its own config, or an arbitrary class
            continue
    return None


@lru_cache(maxsize=None)
def _signature(func: Callable, skip: tuple[str, ...]) -> _Signature:
    return _Signature(func, skip)


def signature_defaults(func: Callable, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keyword parameters of ``func`` (less ``skip``) that have defaults, with those defaults."""
    return _signature(func, tuple(skip)).defaults


def signature_params(func: Callable, skip: tuple[str, ...] = ()) -> list[str]:
    """The names of ``func``'s keyword parameters, less ``skip``."""
    return list(_signature(func, tuple(skip)).params)


def check_kwargs(func: Callable, kwargs: dict, skip: tuple[str, ...] = (), noun: str = "parameter",
                 allow_extra: bool | None = None) -> dict[str, Any]:
    """``kwargs`` validated against ``func``'s annotated signature: the given keys, their values converted.

    ``skip`` names parameters the caller sets itself; unknown keys are refused unless
    ``allow_extra`` (default: whether ``func`` takes ``**kwargs``).  Raises
    :class:`ConfigError` with a message relative to ``kwargs``:
    ``T = 'hot': Input should be a valid number`` or
    ``tau: no parameter 'tau' (allowed: T, weight)``.
    """
    sig = _signature(func, tuple(skip))
    extra_ok = sig.var_keyword if allow_extra is None else allow_extra
    names = list(sig.params)
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key not in sig.params:
            if extra_ok and isinstance(key, str):
                out[key] = value
                continue
            text = one_line(str(key))
            hint = did_you_mean(text, names) if isinstance(key, str) else ""
            raise ConfigError(f"{text}: no {noun} '{text}'{hint} (allowed: {', '.join(names) or 'none'})")
        adapter = sig.params[key][0]
        if adapter is None:
            out[key] = value
            continue
        try:
            out[key] = adapter.validate_python(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(err.get("loc", ()))
            shown = err.get("input", value)
            msg = one_line(str(err.get("msg", "invalid")).replace("Value error, ", ""))
            eq = "" if isinstance(shown, (dict, list, tuple)) else f" = {show(shown)}"
            raise ConfigError(f"{key}{loc_path(loc)}{eq}: {msg}") from None
        except RecursionError:
            raise ConfigError(f"{key}: nested too deeply") from None
    missing = [k for k, (_, d) in sig.params.items() if d is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise ConfigError(f"{missing[0]}: required {noun} missing")
    return out
