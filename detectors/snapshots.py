"""Snapshots of detector state: data only, versioned, read back by building
only detector state.

An engine's or a detector's snapshot is MessagePack (msgspec) behind a
header: :data:`MAGIC` and the format version :data:`FORMAT`. Strings,
integers that fit 64 bits, bytes, booleans, ``None``, lists and dicts (keys
of any type below, insertion order kept) are MessagePack's own; every other
value is an extension of a fixed tag (:class:`Tag`), so a tuple stays a
tuple, a set a set and a record its class:

* the containers and numbers the detectors keep: ``tuple``, ``set``,
  ``frozenset``, ``deque`` (with its ``maxlen``), ``OrderedDict``,
  ``array.array``, ``Fraction`` and ``Decimal`` (as text of at most
  :data:`MAX_NUMBER_TEXT` characters) and integers beyond 64 bits (no
  ``float``: money is integer fen and rates are ``Fraction`` or
  ``Decimal``, and a float is refused when written);
* an object of a class of the fixed registry (:func:`state_classes`): every
  :class:`~fundflow.detectors.base.SlotState`, the records (msgspec structs
  of ``fundflow.schemas.records``, and ``Flow``), the compiled ``Table`` and
  the few other state holders named there, none of which does more than keep
  what it is given. It is written as its class's name and the state its
  ``__getstate__`` gives (a record: its field values).

:func:`loads` builds nothing but those: a class is looked up by name in the
registry and made with ``__new__`` and its own ``__setstate__`` (a record:
its constructor), and a state that names attributes may name only the
class's declared slots or the attributes its ``__init__`` sets. Anything
else (another header or version, such as every pickle, an unknown tag, a
class outside the registry, an attribute not declared, a truncated or
malformed blob, nesting too deep, a number text too long) is refused with
:class:`SnapshotRefused`. Nothing a snapshot holds is ever run.

>>> from collections import deque
>>> state = {"lots": deque([(1, 300, "T1")], maxlen=5), 7: {"a"}}
>>> loads(dumps(state))
{'lots': deque([(1, 300, 'T1')], maxlen=5), 7: {'a'}}
>>> import pickle
>>> try:
...     loads(pickle.dumps({"lots": []}))
... except SnapshotRefused as e:
...     print(e)
snapshot refused: not a fundflow snapshot of format 1 (a pickle, or another version)
"""

from __future__ import annotations

import array
import dis
import sys
from collections import OrderedDict, deque
from decimal import Decimal
from fractions import Fraction
from functools import cache
from typing import Any

import msgspec

#: The first bytes of every snapshot; the byte after them is :data:`FORMAT`.
MAGIC = b"FFSNAP"
#: The snapshot format this version writes and reads. A snapshot of another
#: format is refused, and the daemon rebuilds the partition from its inputs.
FORMAT = 1
_HEADER = MAGIC + bytes([FORMAT])
#: Longest text a ``Fraction`` or ``Decimal`` is read from: "1e999999999"
#: would cost time, and no amount or share held comes near it.
MAX_NUMBER_TEXT = 200
_INT64 = (-(2**63), 2**64 - 1)


class Tag:
    """MessagePack extension codes of the values MessagePack has no type for."""

    TUPLE = 1
    SET = 2
    FROZENSET = 3
    DEQUE = 4  # [maxlen, [items]]
    ORDERED_DICT = 5  # [[key, value], ...]
    ARRAY = 6  # [typecode, little-endian bytes]
    FRACTION = 7  # text
    DECIMAL = 8  # text
    BIG_INT = 9  # decimal text
    OBJECT = 10  # [class name, state]
    RECORD = 11  # [class name, field values]
    TABLE = 12  # [factory class name, names, kinds, defaults, values, rows]
    DICT = 13  # [[key, value], ...]: a dict with a key MessagePack cannot hold


class SnapshotRefused(ValueError):
    """A snapshot is not detector state of this format: it is not read."""


@cache
def state_classes() -> dict[str, type]:
    """The registry: ``"module:qualname"`` -> class, for every class a
    snapshot may hold."""
    from fundflow._core import Table  # noqa: PLC0415
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
    return {_name(cls): cls for cls in out}


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


@cache
def _declared(cls: type) -> frozenset[str] | None:
    """The attributes a state naming attributes may set on ``cls``: its
    slots, or, for a class with a ``__dict__``, what its ``__init__`` sets
    on ``self``. ``None`` when the class's own ``__setstate__`` reads a
    state of its own shape (a tuple, or keys that are not attributes)."""
    from fundflow._core import Table  # noqa: PLC0415

    from .base import SlotState  # noqa: PLC0415
    from .ownership import Ownership  # noqa: PLC0415
    from .reference import Reference  # noqa: PLC0415
    from .transfer_graph import TransferGraph  # noqa: PLC0415

    if issubclass(cls, SlotState):
        return frozenset(s for c in cls.__mro__ for s in getattr(c, "__slots__", ()))
    if cls in (Ownership, Reference, TransferGraph):
        init = cls.__init__.__code__
        return frozenset(i.argval for i in dis.get_instructions(init) if i.opname == "STORE_ATTR")
    assert cls is not Table
    return None


# -- encoding ----------------------------------------------------------------

_Ext = msgspec.msgpack.Ext
_encoder = msgspec.msgpack.Encoder()
_encode = _encoder.encode


def dumps(state: Any) -> bytes:
    """``state`` as a snapshot: the header and its tagged MessagePack.
    Raises ``TypeError`` for a value of a type a snapshot does not hold."""
    return _HEADER + _encode(_tree(state))


def _tree(v: Any) -> Any:
    """``v`` as values MessagePack encodes without losing a type."""
    t = type(v)
    if t is str or t is bool or v is None or t is bytes:
        return v
    if t is int:
        return v if _INT64[0] <= v <= _INT64[1] else _Ext(Tag.BIG_INT, _encode(str(v)))
    if t is list:
        return [_tree(x) for x in v]
    if t is dict:
        try:  # keys of str and int are MessagePack's own, and the common case
            return {_tree(k): _tree(x) for k, x in v.items()}
        except TypeError:  # a key that became an extension (a tuple)
            return _Ext(Tag.DICT, _encode([[_tree(k), _tree(x)] for k, x in v.items()]))
    if t is tuple:
        return _Ext(Tag.TUPLE, _encode([_tree(x) for x in v]))
    make = _TREES.get(t)
    if make is not None:
        return make(v)
    if isinstance(v, msgspec.Struct) and _name(t) in state_classes():
        return _Ext(
            Tag.RECORD,
            _encode([_name(t), [_tree(getattr(v, f)) for f in t.__struct_fields__]]),
        )
    if hasattr(t, "__getstate__") and _name(t) in state_classes():
        return _Ext(Tag.OBJECT, _encode([_name(t), _tree(v.__getstate__())]))
    raise TypeError(f"a snapshot holds no {t.__module__}.{t.__qualname__}")


def _table(v: Any) -> Any:
    cls, (factory, names, kinds, defaults), (values, rows) = v.__reduce__()
    return _Ext(
        Tag.TABLE,
        _encode([_name(factory), _tree(names), kinds, _tree(defaults), _tree(values), rows]),
    )


def _array(v: array.array) -> Any:
    if sys.byteorder != "little":
        v = array.array(v.typecode, v)
        v.byteswap()
    return _Ext(Tag.ARRAY, _encode([v.typecode, v.tobytes()]))


def _trees() -> dict[type, Any]:
    from fundflow._core import Table  # noqa: PLC0415

    def listed(tag: Tag) -> Any:
        return lambda v: _Ext(tag, _encode([_tree(x) for x in v]))

    return {
        set: listed(Tag.SET),
        frozenset: listed(Tag.FROZENSET),
        deque: lambda v: _Ext(Tag.DEQUE, _encode([v.maxlen, [_tree(x) for x in v]])),
        OrderedDict: lambda v: _Ext(
            Tag.ORDERED_DICT, _encode([[_tree(k), _tree(x)] for k, x in v.items()])
        ),
        array.array: _array,
        Fraction: lambda v: _Ext(Tag.FRACTION, _encode(str(v))),
        Decimal: lambda v: _Ext(Tag.DECIMAL, _encode(str(v))),
        Table: _table,
    }


class _LazyTrees(dict):  # type: ignore[type-arg]
    def get(self, key: Any, default: Any = None) -> Any:
        if not self:
            self.update(_trees())
        return dict.get(self, key, default)


_TREES = _LazyTrees()


# -- decoding ----------------------------------------------------------------


def loads(blob: bytes) -> Any:
    """The state of a snapshot :func:`dumps` wrote (see the module
    docstring); :class:`SnapshotRefused` for anything else."""
    if (
        not isinstance(blob, bytes | bytearray | memoryview)
        or bytes(blob[: len(_HEADER)]) != _HEADER
    ):
        raise SnapshotRefused(
            f"snapshot refused: not a fundflow snapshot of format {FORMAT} "
            "(a pickle, or another version)"
        )
    try:
        return _decoder.decode(memoryview(blob)[len(_HEADER) :])
    except SnapshotRefused:
        raise
    except RecursionError:
        raise SnapshotRefused("snapshot refused: nested too deep") from None
    except Exception as e:  # noqa: BLE001 - every malformed blob is one refusal
        raise SnapshotRefused(f"snapshot refused: {type(e).__name__}: {e}") from None


def _refuse(why: str) -> SnapshotRefused:
    return SnapshotRefused(f"snapshot refused: {why}")


def _class(name: Any) -> type:
    cls = state_classes().get(name) if isinstance(name, str) else None
    if cls is None:
        raise _refuse(f"it names {name!r}, which is not detector state")
    return cls


def _number_text(data: Any, what: str) -> str:
    if type(data) is not str or len(data) > MAX_NUMBER_TEXT:
        raise _refuse(f"a {what} is not a text of at most {MAX_NUMBER_TEXT} characters")
    return data


def _object(data: Any) -> Any:
    name, state = data
    cls = _class(name)
    from fundflow._core import Table  # noqa: PLC0415

    if isinstance(cls, type) and issubclass(cls, msgspec.Struct) or cls is Table:
        raise _refuse(f"{name} is not an object of plain state")
    declared = _declared(cls)
    if declared is not None:
        if type(state) is not dict:
            raise _refuse(f"the state of {name} is not a dict of its attributes")
        stray = [k for k in state if k not in declared]
        if stray:
            raise _refuse(f"it sets {stray[0]!r} on {name}, which declares no such attribute")
    obj = cls.__new__(cls)
    if "__setstate__" in _own(cls):
        obj.__setstate__(state)
    else:
        for k, x in state.items():
            object.__setattr__(obj, k, x)
    return obj


@cache
def _own(cls: type) -> frozenset[str]:
    """The names ``cls`` or a registry class it derives from defines (not
    ``object``'s defaults)."""
    return frozenset(k for c in cls.__mro__ if c is not object for k in vars(c))


def _record(data: Any) -> Any:
    name, values = data
    cls = _class(name)
    if not (isinstance(cls, type) and issubclass(cls, msgspec.Struct)):
        raise _refuse(f"{name} is not a record")
    if type(values) is not list or len(values) != len(cls.__struct_fields__):
        raise _refuse(f"{name} holds {len(cls.__struct_fields__)} fields")
    return cls(**dict(zip(cls.__struct_fields__, values, strict=True)))


def _table_of(data: Any) -> Any:
    from fundflow._core import Table  # noqa: PLC0415

    factory, names, kinds, defaults, values, rows = data
    table = Table(_class(factory), names, kinds, defaults)
    table.__setstate__((values, rows))
    return table


def _deque(data: Any) -> deque[Any]:
    maxlen, items = data
    return deque(items, maxlen)


def _array_of(data: Any) -> array.array:
    typecode, raw = data
    if typecode not in array.typecodes:
        raise _refuse(f"an array of type {typecode!r}")
    out = array.array(typecode)
    out.frombytes(raw)
    if sys.byteorder != "little":
        out.byteswap()
    return out


def _big_int(data: Any) -> int:
    return int(_number_text(data, "big integer"))


_BUILD = {
    Tag.TUPLE: tuple,
    Tag.SET: set,
    Tag.FROZENSET: frozenset,
    Tag.DEQUE: _deque,
    Tag.ORDERED_DICT: OrderedDict,
    Tag.DICT: dict,
    Tag.ARRAY: _array_of,
    Tag.FRACTION: lambda d: Fraction(_number_text(d, "fraction")),
    Tag.DECIMAL: lambda d: Decimal(_number_text(d, "decimal")),
    Tag.BIG_INT: _big_int,
    Tag.OBJECT: _object,
    Tag.RECORD: _record,
    Tag.TABLE: _table_of,
}
_LISTED = frozenset({Tag.TUPLE, Tag.SET, Tag.FROZENSET, Tag.ORDERED_DICT, Tag.DICT})


def _ext(code: int, data: memoryview) -> Any:
    build = _BUILD.get(code)  # type: ignore[call-overload]
    if build is None:
        raise _refuse(f"unknown tag {code}")
    inner = _decoder.decode(data)
    if code in _LISTED and type(inner) is not list:
        raise _refuse(f"tag {code} holds no list")
    return build(inner)


_decoder = msgspec.msgpack.Decoder(ext_hook=_ext)
