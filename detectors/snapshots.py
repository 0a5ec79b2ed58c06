"""Reading a snapshot back loads detector state, and nothing else.

An engine's or a detector's snapshot is a pickle (the C pickler: fast, and
the daemon's forked child writes it while records keep flowing). Loading a
pickle calls the globals it names, with arguments it chooses, and sets
attributes on what it builds, so a snapshot from outside could run code.
:func:`loads` resolves no global but

* the classes the detector state is made of: every
  :class:`~fundflow.detectors.base.SlotState`, the records (msgspec
  structs of ``fundflow.schemas.records``, and ``Flow``), and the few other
  state holders named in :func:`_state_classes`, none of which does more
  than keep what it is given (no engine, detector, configuration or rule:
  building an ``Engine`` could import a module);
* a fixed list of standard containers and numbers (:data:`STANDARD`), a
  ``Fraction`` read only from a string of at most 200 characters;

and a snapshot that names anything else (``os.system``, ``builtins.eval``,
``builtins.getattr``, a function, a dotted path through an allowed class)
is refused with :class:`SnapshotRefused` before anything it names is
called. A snapshot that sets attributes on an allowed class itself (a
pickle "build" of a type) is refused after the load, and the class put
back as it was. The daemon's checkpoints are signed as well
(``streams/checkpoint.py``); this holds against a checkpoint signed with
the right key too.

>>> import pickle
>>> loads(pickle.dumps({"lots": [(1, 300, "T1")]}))
{'lots': [(1, 300, 'T1')]}
>>> import os
>>> class Evil:
...     def __reduce__(self):
...         return (os.system, ("true",))
>>> try:
...     loads(pickle.dumps(Evil()))
... except SnapshotRefused as e:
...     print(e)
snapshot names posix.system, which is not detector state
"""

from __future__ import annotations

import io
import pickle
from fractions import Fraction
from functools import cache
from typing import Any

#: Standard globals a snapshot may name: containers and numbers the
#: detectors keep, and how msgspec and array rebuild theirs.
STANDARD = frozenset(
    {
        ("collections", "deque"),
        ("collections", "OrderedDict"),
        ("array", "array"),
        ("array", "_array_reconstructor"),
        ("decimal", "Decimal"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("msgspec._utils", "rebuild"),
    }
)


class SnapshotRefused(ValueError):
    """A snapshot names a global that is not detector state, or alters one."""


def _fraction(value: Any = 0, denominator: Any = None) -> Fraction:
    """``Fraction`` as a snapshot rebuilds it (from its text), refusing a
    text long enough to cost time ("1e999999999")."""
    if isinstance(value, str) and len(value) > 200:
        raise SnapshotRefused(f"snapshot holds a fraction of {len(value)} characters")
    return Fraction(value) if denominator is None else Fraction(value, denominator)


@cache
def _state_classes() -> frozenset[type]:
    import msgspec  # noqa: PLC0415

    from fundflow.schemas import records  # noqa: PLC0415

    from . import (  # noqa: PLC0415 - every state class is known once all are imported
        alerting,
        data_scale,
        engine,  # imports every detector module, so every SlotState is defined
        maturity_mismatch,
        ordering,
        ownership,
        reference,
        reserve_misuse,
        transfer_graph,
    )
    from ._table import Table  # noqa: PLC0415
    from .base import SlotState  # noqa: PLC0415

    del engine
    out: set[type] = set()
    todo = [SlotState]
    while todo:
        cls = todo.pop()
        out.add(cls)
        todo.extend(cls.__subclasses__())
    out.discard(SlotState)
    out.update(
        v
        for v in vars(records).values()
        if isinstance(v, type)
        and issubclass(v, msgspec.Struct)
        and v.__module__ == records.__name__
    )
    out.update(
        {
            reference.Flow,
            reference.Reference,
            Table,
            alerting._Said,
            alerting.Stated,
            ordering.EventOrder,
            transfer_graph.TransferGraph,
            data_scale.AmountScale,
            ownership.Ownership,
            maturity_mismatch._Expiries,
            reserve_misuse._Reserve,
        }
    )
    return frozenset(out)


class _StateUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("fractions", "Fraction"):
            return _fraction
        if (module, name) in STANDARD:
            return super().find_class(module, name)
        if module.startswith(("fundflow.detectors.", "fundflow.schemas.")) and "." not in name:
            found = super().find_class(module, name)
            if found in _state_classes():
                return found
        raise SnapshotRefused(f"snapshot names {module}.{name}, which is not detector state")


def loads(blob: bytes) -> Any:
    """A snapshot's state (see the module docstring); :class:`SnapshotRefused`
    when it names a global that is not detector state, or alters one."""
    classes = _state_classes()
    before = {cls: dict(vars(cls)) for cls in classes}
    try:
        return _StateUnpickler(io.BytesIO(blob)).load()
    finally:
        altered = [cls for cls in classes if not _same(before[cls], vars(cls))]
        for cls in altered:
            _put_back(cls, before[cls])
        if altered:
            names = ", ".join(sorted(f"{c.__module__}.{c.__qualname__}" for c in altered))
            raise SnapshotRefused(f"snapshot alters the class {names}")


def _same(before: dict[str, Any], now: Any) -> bool:
    return before.keys() == now.keys() and all(now[k] is v for k, v in before.items())


def _put_back(cls: type, saved: dict[str, Any]) -> None:
    for key in [k for k in vars(cls) if k not in saved]:
        delattr(cls, key)
    for key, value in saved.items():
        if vars(cls).get(key) is not value:
            setattr(cls, key, value)
