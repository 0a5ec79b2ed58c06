"""Reading a snapshot back loads detector state, and nothing else.

An engine's or a detector's snapshot is a pickle (the C pickler: fast, and
the daemon's forked child writes it while records keep flowing). Loading a
pickle calls the globals it names, so a snapshot from outside could run any
function. :func:`loads` resolves no global but the classes the detector
state is made of (those defined in ``fundflow.detectors`` and
``fundflow.schemas``) and a fixed list of standard containers and numbers
(:data:`STANDARD`); a snapshot that names anything else (``os.system``,
``builtins.eval``, ``builtins.getattr``, a function of this package, a
dotted path through an allowed class) is refused with
:class:`SnapshotRefused` before anything it names is called. The daemon's
checkpoints are signed as well (``streams/checkpoint.py``); this holds
against a checkpoint signed with the right key too.

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
from typing import Any

#: Standard globals a snapshot may name: containers and numbers the
#: detectors keep, and how msgspec and array rebuild theirs.
STANDARD = frozenset(
    {
        ("collections", "deque"),
        ("collections", "OrderedDict"),
        ("array", "array"),
        ("array", "_array_reconstructor"),
        ("fractions", "Fraction"),
        ("decimal", "Decimal"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("msgspec._utils", "rebuild"),
    }
)
#: Packages whose classes are detector state.
STATE_PACKAGES = ("fundflow.detectors.", "fundflow.schemas.")


class SnapshotRefused(ValueError):
    """A snapshot names a global that is not detector state."""


class _StateUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in STANDARD:
            return super().find_class(module, name)
        if module.startswith(STATE_PACKAGES) and "." not in name and not name.startswith("__"):
            found = super().find_class(module, name)
            if (
                isinstance(found, type)
                and found.__module__ == module
                and not issubclass(found, BaseException)
            ):
                return found
        raise SnapshotRefused(f"snapshot names {module}.{name}, which is not detector state")


def loads(blob: bytes) -> Any:
    """A snapshot's state (see the module docstring); :class:`SnapshotRefused`
    when it names a global that is not detector state."""
    return _StateUnpickler(io.BytesIO(blob)).load()
