"""``evolve``: a changed copy of one of our frozen, slotted value types, on hot paths.

Why not ``dataclasses.replace``: it walks the class's fields and calls the generated
``__init__`` (one ``object.__setattr__`` per field of a frozen class) on every call. The
IVR changes its state about ten times per call and the journal its session (about forty
fields) a few times more: measured with cProfile on the FastAGI door, ``replace`` was the
engine's largest single cost per call. ``evolve`` copies the slots directly. It only takes
classes for which that is the same thing: dataclasses with ``slots=True``, every field in
``__init__`` and no ``__post_init__`` (checked once per class, :class:`TypeError` if not).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["evolve"]

_T = TypeVar("_T")

# class -> (its field names, the same as a set)
_FIELDS: dict[type, tuple[tuple[str, ...], frozenset[str]]] = {}


def evolve(value: _T, /, **changes: Any) -> _T:
    """``value`` with ``changes`` (field name -> new value), as ``dataclasses.replace``."""
    cls = type(value)
    known = _FIELDS.get(cls)
    if known is None:
        known = _FIELDS[cls] = _fields_of(cls)
    names, name_set = known
    if not name_set.issuperset(changes):
        unknown = sorted(set(changes) - name_set)
        raise TypeError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    copy = object.__new__(cls)
    put = object.__setattr__
    for name in names:
        put(copy, name, changes[name] if name in changes else getattr(value, name))
    return copy


def _fields_of(cls: type) -> tuple[tuple[str, ...], frozenset[str]]:
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
    names = tuple(f.name for f in fields)
    return names, frozenset(names)
