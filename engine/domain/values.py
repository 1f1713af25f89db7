"""``evolve``: a changed copy of one of our frozen, slotted value types, on hot paths.

Why not ``dataclasses.replace``: it walks the class's fields and calls the generated
``__init__`` (one ``object.__setattr__`` per field of a frozen class) on every call. The
IVR changes its state about ten times per call and the journal its session (about forty
fields) a few times more: measured with cProfile on the FastAGI door, ``replace`` was the
engine's largest single cost per call. ``evolve`` copies the slots directly, with a copier
generated once per class (a line per field). It only takes
classes for which that is the same thing: dataclasses with ``slots=True``, every field in
``__init__`` and no ``__post_init__`` (checked once per class, :class:`TypeError` if not).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final, TypeVar

__all__ = ["evolve"]

_T = TypeVar("_T")

# class -> its copier: ``copier(value, **changes)``, generated once per class
_COPIERS: dict[type, Callable[..., Any]] = {}
_KEEP: Final = object()  # a copier's default for a field not changed


def evolve(value: _T, /, **changes: Any) -> _T:
    """``value`` with ``changes`` (field name -> new value), as ``dataclasses.replace``."""
    cls = type(value)
    copier = _COPIERS.get(cls)
    if copier is None:
        copier = _COPIERS[cls] = _copier(cls)
    try:
        copy: _T = copier(value, **changes)
    except TypeError:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {', '.join(unknown)}") from None
        raise
    return copy


def _copier(cls: type) -> Callable[..., Any]:
    """A function copying ``cls``'s slots straight (one line per field, no loop: the
    generated code is about twice as fast as a loop over the names)."""
    if (
        not dataclasses.is_dataclass(cls)
        or "__slots__" not in cls.__dict__
        or hasattr(cls, "__post_init__")
    ):
        raise TypeError(
            f"evolve() copies slotted dataclasses without __post_init__, not {cls.__name__}"
        )
    fields = dataclasses.fields(cls)
    if not all(f.init for f in fields):
        raise TypeError(f"evolve(): {cls.__name__} has fields outside __init__")
    names = [f.name for f in fields]
    scope: dict[str, Any] = {
        "_evolve_cls": cls,
        "_evolve_keep": _KEEP,
        "_evolve_new": object.__new__,
    }
    lines = [
        f"def copy(_evolve_src, /, *, {', '.join(f'{n}=_evolve_keep' for n in names)}):",
        "    _evolve_copy = _evolve_new(_evolve_cls)",
    ]
    for i, name in enumerate(names):
        scope[f"_evolve_set{i}"] = cls.__dict__[name].__set__  # the slot's descriptor
        lines.append(
            f"    _evolve_set{i}(_evolve_copy, "
            f"_evolve_src.{name} if {name} is _evolve_keep else {name})"
        )
    lines.append("    return _evolve_copy")
    exec("\n".join(lines), scope)  # field names of a dataclass: identifiers
    copier: Callable[..., Any] = scope["copy"]
    return copier
