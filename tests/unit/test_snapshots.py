"""Snapshots load detector state and nothing else (detectors/snapshots.py):
an engine running every detector, the business ones and the typologies,
snapshotted part-way through a simulated world and a transfer world,
restores through the restricted loader and goes on to the uninterrupted
run's alerts byte for byte; a snapshot naming any other global is refused
before the global is called."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import msgspec
import pytest

from fundflow.detectors import Engine, FundPool, load_config
from fundflow.detectors.snapshots import SnapshotRefused, loads
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


@pytest.mark.parametrize("world", ["simulated", "transfers"])
def test_a_snapshot_of_every_detector_restores_to_the_uninterrupted_alerts(
    tmp_path: Path, world: str
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
    assert len(expected) > 20

    first = Engine(load_config(overrides=EVERY))
    got = _run(first, records[:cut])
    blob = first.snapshot()
    again = Engine(load_config(overrides=EVERY)).restore(blob)
    got += _run(again, records[cut:])
    got += [msgspec.json.encode(a) for a in again.finish()]
    assert got == expected


class _Calls:
    """Pickles as a call of ``target`` with ``args``."""

    def __init__(self, target: object, *args: object) -> None:
        self.target, self.args = target, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (self.target, self.args)


@pytest.mark.parametrize(
    ("target", "args", "named"),
    [
        (os.system, ("touch {marker}",), "posix.system"),
        (eval, ("open({marker!r}, 'w')",), "builtins.eval"),
        (getattr, (FundPool, "restore"), "builtins.getattr"),
        (open, ("{marker}", "w"), ".open"),
        (load_config, ("{marker}",), "fundflow.detectors.config.load_config"),
        (ValueError, ("x",), "builtins.ValueError"),
    ],
)
def test_a_snapshot_naming_anything_else_is_refused_before_it_is_called(
    tmp_path: Path, target: object, args: tuple, named: str
) -> None:
    marker = tmp_path / "ran"
    args = tuple(a.format(marker=str(marker)) if isinstance(a, str) else a for a in args)
    blob = pickle.dumps({"state": [_Calls(target, *args)]})
    with pytest.raises(SnapshotRefused, match=r"^snapshot names .*") as e:
        loads(blob)
    assert named in str(e.value)
    assert not marker.exists()
    with pytest.raises(SnapshotRefused):
        Engine(load_config()).restore(blob)


def test_a_dotted_name_through_an_allowed_class_is_refused() -> None:
    # Protocol 4 resolves "Class.attr" paths: the loader takes plain names only.
    blob = pickle.dumps(Engine.__init__, protocol=4)
    assert b"Engine.__init__" in blob
    with pytest.raises(SnapshotRefused, match=r"fundflow\.detectors\.engine\.Engine\.__init__"):
        loads(blob)


def test_no_engine_detector_or_configuration_is_built_from_a_snapshot(tmp_path: Path) -> None:
    """Building an Engine would load a rule, importing the module it names."""
    from fundflow.detectors.engine import RULES  # noqa: PLC0415

    module = tmp_path / "side_effect.py"
    marker = tmp_path / "imported"
    module.write_text(f"open({str(marker)!r}, 'w').close()\n")
    for target, args in (
        (Engine, (None, ["side_effect:Rule"])),
        (FundPool, ()),
        (load_config, ()),
    ):
        with pytest.raises(SnapshotRefused, match=r"which is not detector state"):
            loads(pickle.dumps(_Calls(target, *args)))
    assert not marker.exists() and "side_effect" not in str(RULES)


def test_a_snapshot_that_alters_a_state_class_is_refused_and_the_class_put_back() -> None:
    from fundflow.detectors.ownership import Ownership  # noqa: PLC0415

    before, method = dict(vars(Ownership)), Ownership.update
    # Names the class itself, then "builds" it: setattr on the class.
    blob = (
        b"\x80\x04\x8c\x1cfundflow.detectors.ownership\x94\x8c\tOwnership\x94\x93\x94"
        b"N}\x94\x8c\x06update\x94K\x00s\x86\x94b."
    )
    with pytest.raises(
        SnapshotRefused, match=r"alters the class fundflow\.detectors\.ownership\.Ownership"
    ):
        loads(blob)
    assert dict(vars(Ownership)) == before and Ownership.update is method


def test_a_fraction_too_long_to_read_is_refused() -> None:
    from fractions import Fraction  # noqa: PLC0415

    assert loads(pickle.dumps(Fraction(3, 7))) == Fraction(3, 7)
    blob = pickle.dumps(_Calls(Fraction, "1" * 250))
    with pytest.raises(SnapshotRefused, match=r"a fraction of 250 characters"):
        loads(blob)
