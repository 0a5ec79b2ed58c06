"""Snapshots are data and read back as detector state only
(detectors/snapshots.py): an engine running every detector, the business
ones and the typologies, snapshotted part-way through a simulated world and
a transfer world, restores to the same state, type for type, and goes on to
the uninterrupted run's alerts byte for byte; a pickle, a blob of another
format, and every malformed or hostile blob is refused with
``SnapshotRefused`` and runs nothing."""

from __future__ import annotations

import array
import contextlib
import os
import pickle
import random
from collections import OrderedDict, deque
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import msgspec
import pytest

from fundflow.detectors import Engine, FundPool, load_config, snapshots
from fundflow.detectors.snapshots import MAGIC, SnapshotRefused, Tag, dumps, loads
from fundflow.replay import iter_records
from fundflow.schemas import DeadLetter, RecordDecoder
from fundflow.schemas.decode import ColumnMap
from fundflow.simulate import write_world
from fundflow.transfers import COLUMN_MAP, CONSTANTS, write_transfers

EVERY = {"engine": {"detectors": ["default", "typologies"]}}


def _records(path: Path) -> list:
    dec = RecordDecoder()
    out = [dec.decode(line) for line in path.read_bytes().splitlines()]
    return [r for r in out if type(r) is not DeadLetter]


def _transfers(folder: Path) -> list:
    truth = write_transfers(folder, seed=2, days=8)
    dec = RecordDecoder()
    dec.columns = ColumnMap.parse("clearing_txn", COLUMN_MAP, CONSTANTS)
    records = iter_records([str(folder / truth["file"])], dec, "clearing_txn")
    return [r for r, _ in records if type(r) is not DeadLetter]


def _run(engine: Engine, records: list) -> list[bytes]:
    out = []
    for r in records:
        out += engine.submit(r, "")
    return [msgspec.json.encode(a) for a in out]


@pytest.mark.parametrize(("world", "alerts"), [("simulated", 459), ("transfers", 113)])
def test_a_snapshot_of_every_detector_restores_to_the_uninterrupted_alerts(
    tmp_path: Path, world: str, alerts: int
) -> None:
    if world == "simulated":
        write_world(tmp_path, seed=4, days=12)
        records = _records(tmp_path / "world.jsonl")
    else:
        records = _transfers(tmp_path)
    cut = len(records) * 3 // 5
    whole = Engine(load_config(overrides=EVERY))
    expected = _run(whole, records)
    expected += [msgspec.json.encode(a) for a in whole.finish()]
    assert len(expected) == alerts

    first = Engine(load_config(overrides=EVERY))
    got = _run(first, records[:cut])
    blob = first.snapshot()
    again = Engine(load_config(overrides=EVERY)).restore(blob)
    got += _run(again, records[cut:])
    got += [msgspec.json.encode(a) for a in again.finish()]
    assert got == expected


def _same(a: object, b: object) -> bool:
    """``a`` and ``b`` are equal and of the same types all the way down
    (dict keys and their order included)."""
    t = type(a)
    if t is not type(b):
        return False
    if t in (list, tuple, deque):
        return (
            len(a) == len(b)  # type: ignore[arg-type]
            and getattr(a, "maxlen", None) == getattr(b, "maxlen", None)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[call-overload]
        )
    if t in (set, frozenset):
        return a == b and sorted(map(repr, map(type, a))) == sorted(map(repr, map(type, b)))  # type: ignore[call-overload]
    if isinstance(a, dict):
        return list(map(type, a)) == list(map(type, b)) and _same(list(a.items()), list(b.items()))  # type: ignore[attr-defined]
    if isinstance(a, msgspec.Struct):
        return all(_same(getattr(a, f), getattr(b, f)) for f in t.__struct_fields__)
    if t.__name__ == "Table":
        return _same(a.__reduce__()[1:], b.__reduce__()[1:])  # type: ignore[union-attr]
    if snapshots._name(t) in snapshots.state_classes():
        return _same(a.__getstate__(), b.__getstate__())  # type: ignore[attr-defined]
    return a == b


@pytest.mark.parametrize("world", ["simulated", "transfers"])
def test_every_detector_state_reads_back_type_for_type(tmp_path: Path, world: str) -> None:
    if world == "simulated":
        write_world(tmp_path, seed=4, days=12)
        records = _records(tmp_path / "world.jsonl")
    else:
        records = _transfers(tmp_path)
    engine = Engine(load_config(overrides=EVERY))
    _run(engine, records)
    blob = engine.snapshot()
    payload = loads(blob)
    assert _same(loads(dumps(payload)), payload)
    for det in engine.detectors:
        state = loads(det.snapshot())
        assert state["state"].keys() == set(det._state_names)
        assert _same(state["state"], {k: getattr(det, k) for k in det._state_names})
        assert _same(state["said"], det.book.said)


def test_the_standard_values_read_back_as_themselves() -> None:
    state = {
        "tuple": (1, (2, "x"), ()),
        7: {1, 2},
        (1, "b"): frozenset({"a"}),
        "deque": deque([(1, 300, "T1")], maxlen=20),
        "unbounded": deque([1]),
        "ordered": OrderedDict([(3, "c"), (1, "a")]),
        "array": array.array("q", [1, -2, 2**62]),
        "fraction": Fraction(1, 3),
        "decimal": Decimal("0.0425"),
        "big": 2**100,
        "negative big": -(2**70),
        "max u64": 2**64 - 1,
        None: b"\x00bytes",
        True: False,
        "empty": {},
    }
    assert _same(loads(dumps(state)), state)


def test_a_snapshot_starts_with_the_magic_and_the_format() -> None:
    assert dumps({}) == MAGIC + bytes([snapshots.FORMAT]) + b"\x80"


def test_a_value_of_another_type_is_not_written() -> None:
    with pytest.raises(TypeError, match="a snapshot holds no builtins.float"):
        dumps({"rate": 0.1})
    with pytest.raises(TypeError, match="a snapshot holds no builtins.object"):
        dumps([object()])
    with pytest.raises(TypeError, match="a snapshot holds no .*_Stranger"):
        dumps(_Stranger())


class _Stranger(msgspec.Struct):
    """A record type outside the registry."""


class _Calls:
    """Pickles to a call of ``target(*args)`` when loaded."""

    def __init__(self, target: object, *args: object) -> None:
        self.target, self.args = target, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.target, self.args


def test_a_pickle_is_refused_and_never_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    blob = pickle.dumps({"state": [_Calls(os.system, f"touch {marker}")]})
    with pytest.raises(SnapshotRefused, match=r"not a fundflow snapshot of format 1"):
        loads(blob)
    with pytest.raises(SnapshotRefused, match=r"not a fundflow snapshot of format 1"):
        FundPool(load_config()).restore(blob)
    assert not marker.exists()


def _ext(tag: int, inner: object) -> msgspec.msgpack.Ext:
    return msgspec.msgpack.Ext(tag, msgspec.msgpack.encode(inner))


def _blob(tree: object) -> bytes:
    return MAGIC + bytes([snapshots.FORMAT]) + msgspec.msgpack.encode(tree)


HOSTILE = {
    "empty": b"",
    "header only": MAGIC,
    "another format": MAGIC + bytes([snapshots.FORMAT + 1]) + b"\x80",
    "format 0": MAGIC + b"\x00\x80",
    "truncated": dumps({"lots": [(1, 300, "T1")] * 10})[:-5],
    "trailing bytes": dumps({}) + b"\x00",
    "unknown tag": _blob([_ext(99, [1])]),
    "negative tag": _blob([_ext(-5, [1])]),
    "tuple of no list": _blob(_ext(Tag.TUPLE, 5)),
    "set of unhashables": _blob(_ext(Tag.SET, [[1]])),
    "deque of no pair": _blob(_ext(Tag.DEQUE, [1, 2, 3])),
    "deque of a bad maxlen": _blob(_ext(Tag.DEQUE, ["x", []])),
    "array of a bad code": _blob(_ext(Tag.ARRAY, ["O", b""])),
    "array of a ragged buffer": _blob(_ext(Tag.ARRAY, ["q", b"\x00" * 7])),
    "huge fraction": _blob(_ext(Tag.FRACTION, "1e" + "9" * 300)),
    "fraction of no text": _blob(_ext(Tag.FRACTION, 3)),
    "bad fraction": _blob(_ext(Tag.FRACTION, "one half")),
    "huge decimal": _blob(_ext(Tag.DECIMAL, "9" * 1000)),
    "huge integer": _blob(_ext(Tag.BIG_INT, "9" * 5000)),
    "class outside the registry": _blob(_ext(Tag.OBJECT, ["os:system", {}])),
    "engine": _blob(_ext(Tag.OBJECT, ["fundflow.detectors.engine:Engine", {}])),
    "detector": _blob(_ext(Tag.OBJECT, ["fundflow.detectors.fund_pool:FundPool", {}])),
    "dotted path": _blob(_ext(Tag.OBJECT, ["fundflow.detectors.fund_pool:_Platform.__init__", {}])),
    "class of no text": _blob(_ext(Tag.OBJECT, [7, {}])),
    "attribute not a slot": _blob(
        _ext(Tag.OBJECT, ["fundflow.detectors.fund_pool:_Platform", {"__class__": 1}])
    ),
    "attribute not set by __init__": _blob(
        _ext(Tag.OBJECT, ["fundflow.detectors.ownership:Ownership", {"__dict__": {}}])
    ),
    "slot state of no dict": _blob(
        _ext(Tag.OBJECT, ["fundflow.detectors.fund_pool:_Platform", [1]])
    ),
    "record as an object": _blob(_ext(Tag.OBJECT, ["fundflow.schemas.records:Account", {}])),
    "object as a record": _blob(_ext(Tag.RECORD, ["fundflow.detectors.fund_pool:_Platform", []])),
    "record of too few fields": _blob(_ext(Tag.RECORD, ["fundflow.schemas.records:Account", [1]])),
    "record of a wrong type": _blob(
        _ext(Tag.RECORD, ["fundflow.detectors.alerting:_Said", [1, 2, 3, 4]])
    ),
    "table of a factory outside": _blob(_ext(Tag.TABLE, ["os:system", [], "", [], [], b""])),
    "table of bad rows": _blob(
        _ext(
            Tag.TABLE,
            ["fundflow.schemas.records:Account", ["account_id"], "s", [None], [], b"\xff" * 9],
        )
    ),
    "tuple-state of a wrong size": _blob(
        _ext(Tag.OBJECT, ["fundflow.detectors.reserve_misuse:_Reserve", [1, 2]])
    ),
}


def _deep(depth: int) -> bytes:
    tree: object = 1
    for _ in range(depth):
        tree = _ext(Tag.TUPLE, [tree])
    return _blob(tree)


@pytest.mark.parametrize("blob", list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_hostile_blob_is_refused(blob: bytes) -> None:
    with pytest.raises(SnapshotRefused, match=r"^snapshot refused: "):
        loads(blob)


def test_nesting_too_deep_is_refused() -> None:
    with pytest.raises(SnapshotRefused, match=r"^snapshot refused: "):
        loads(_deep(5000))
    with pytest.raises(SnapshotRefused, match=r"^snapshot refused: "):
        loads(MAGIC + bytes([snapshots.FORMAT]) + b"\x91" * 100_000)


def test_random_bytes_are_refused_and_nothing_else_is_raised() -> None:
    rng = random.Random(7)
    good = dumps(loads(Engine(load_config(overrides=EVERY)).snapshot()))
    header = MAGIC + bytes([snapshots.FORMAT])
    for _ in range(400):
        noise = rng.randbytes(rng.randrange(1, 200))
        with pytest.raises(SnapshotRefused):
            loads(noise)
        with pytest.raises(SnapshotRefused):
            loads(header + noise + b"\xc1")
    # Flip bytes of a real snapshot: each either reads back or is refused.
    for _ in range(400):
        at = rng.randrange(len(header), len(good))
        bad = bytearray(good)
        bad[at] = rng.randrange(256)
        with contextlib.suppress(SnapshotRefused):
            loads(bytes(bad))


def test_a_detector_snapshot_setting_a_state_it_does_not_keep_is_refused() -> None:
    det = FundPool(load_config())
    payload = loads(det.snapshot())
    payload["state"]["config"] = None
    with pytest.raises(SnapshotRefused, match="fund_pool keeps no state 'config'"):
        det.restore(dumps(payload))
