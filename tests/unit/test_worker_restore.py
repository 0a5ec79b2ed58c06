"""How the worker restores a partition from its checkpoint table
(streams/partitions.py ``Partitions._state``), with the table's rows in memory and
no broker: a checkpoint that fails its HMAC is refused with one log line and
the partition starts again from its topics' start; a worker with no key does
not start; a partition's snapshot holds none of the shared reference data and
restores to the alerts of an uninterrupted run. The Kafka run of the same is
tests/integration/test_daemon.py::test_a_forged_checkpoint_is_refused_and_the_partition_rebuilt."""

from __future__ import annotations

import asyncio
import logging
import pickle
import zlib
from pathlib import Path
from types import SimpleNamespace

import msgspec
import pytest
from click.testing import CliRunner
from ledger import mixed_stream

from fundflow.cli import main
from fundflow.detectors import load_config, snapshots
from fundflow.detectors.reference import Reference
from fundflow.schemas.decode import encode_record
from fundflow.streams import checkpoint, engines
from fundflow.streams.checkpoint import Checkpoint, encode_checkpoint, encode_compressed
from fundflow.streams.settings import KafkaSettings
from fundflow.streams.topics import REFERENCE_KINDS
from fundflow.streams.worker import Worker, WorkerError

KEY = b"the worker's checkpoint key, 32b"


class _CreatesFile:
    """Unpickled, it opens ``path`` for writing (so the file appears)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def _worker(rows: list[tuple[str, bytes]]) -> Worker:
    worker = Worker(KafkaSettings(), load_config(), checkpoint_key=KEY)
    worker.table = SimpleNamespace(data={k.encode(): v for k, v in rows})
    return worker


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "fundflow.worker" and r.levelno >= level]


def test_a_checkpoint_signed_with_the_key_is_restored(caplog: pytest.LogCaptureFixture) -> None:
    worker = _worker([])
    state = engines.new_engine(worker.config, worker.ref).snapshot()
    cp = Checkpoint(0, 3, {"custody": 40, "clearing": 7}, {}, state, finished=False)
    worker.table.data = {k.encode(): v for k, v in encode_checkpoint(cp, KEY)}
    caplog.set_level(logging.INFO, logger="fundflow.worker")
    st = worker._state(0)
    assert (st.offsets, st.generation) == ({"custody": 40, "clearing": 7}, 3)
    assert not _lines(caplog, logging.WARNING)
    assert [r.getMessage() for r in _lines(caplog, logging.INFO)] == [
        "partition 0 assigned (checkpoint generation 3, offsets {'custody': 40, 'clearing': 7})"
    ]


def test_a_forged_checkpoint_is_refused_with_one_line_and_the_partition_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "unpickled"
    forged = Checkpoint(
        partition=0, generation=9, offsets={"custody": 10**6}, ref_offsets={},
        state=pickle.dumps(_CreatesFile(marker)), finished=True,
    )  # fmt: skip
    worker = _worker(encode_checkpoint(forged, b"a key that is not the worker's"))
    caplog.set_level(logging.INFO, logger="fundflow.worker")
    st = worker._state(0)
    assert not marker.exists(), "the forged state was unpickled"
    (line,) = _lines(caplog, logging.WARNING)
    assert line.levelno == logging.ERROR and line.exc_info is None
    assert line.getMessage() == (
        "partition 0: checkpoint refused: its HMAC does not match (another key, or altered); "
        "rebuilding partition 0 from the start of its topics"
    )
    assert KEY.decode() not in caplog.text
    # Rebuilt: a fresh engine, no offsets (its topics are read from the log
    # start), generation 0, not finished.
    assert (st.offsets, st.generation, st.finished) == ({}, 0, False)
    fresh = engines.new_engine(worker.config, worker.ref)
    assert st.engine.snapshot() == fresh.snapshot()
    assert "partition 0 assigned (no checkpoint)" in caplog.text


def test_a_worker_without_a_key_does_not_start() -> None:
    worker = Worker(KafkaSettings(), load_config())
    with pytest.raises(WorkerError, match="no checkpoint key: set FUNDFLOW_CHECKPOINT_KEY or "):
        worker.run()


def test_the_worker_command_without_a_key_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FUNDFLOW_CHECKPOINT_KEY", raising=False)
    monkeypatch.delenv("FUNDFLOW_CHECKPOINT_KEY_FILE", raising=False)
    # Port 1: nothing is asked of the broker before the key is read.
    result = CliRunner().invoke(main, ["worker", "--broker", "127.0.0.1:1", "--no-db"])
    assert result.exit_code == 2
    assert result.output == (
        "fundflow: no checkpoint key: set FUNDFLOW_CHECKPOINT_KEY or "
        "FUNDFLOW_CHECKPOINT_KEY_FILE (a file holding the key, e.g. made by "
        "`head -c 32 /dev/urandom | base64`)\n"
    )


def _fed_reference(worker: Worker) -> list[object]:
    """The reference records of the mixed stream through the worker's
    reference feed, as read from the reference topic; returns the stream."""
    topic, offset, stream = worker.names.reference, 0, []
    for rec in mixed_stream():
        if rec.TYPE in REFERENCE_KINDS:
            worker._reference_record(topic, 0, offset, msgspec.json.encode(encode_record(rec)))
            offset += 1
        else:
            stream.append(rec)
    return stream


def test_a_partition_snapshot_holds_no_reference_data_and_restores_to_the_same_alerts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    worker = _worker([])
    stream = _fed_reference(worker)
    assert (len(worker.ref.accounts), len(stream)) == (54, 50)
    st = worker._state(0)
    cut = 35
    before = [a for i, r in enumerate(stream[:cut]) for a in st.engine.submit(r, f"t/0@{i}")]
    # Processed records in the detectors, others held in the ordering stage.
    assert (st.engine.counts["accepted"], st.engine.held) == (3, 32)
    cp = Checkpoint(0, 1, {"custody": cut}, dict(st.ref_offsets), b"", finished=False)

    def no_reference(self: Reference) -> object:
        raise AssertionError("the shared reference was written into a partition's snapshot")

    with monkeypatch.context() as m:
        m.setattr(Reference, "__getstate__", no_reference)
        blob, mac = asyncio.run(worker._snapshot(st, cp))  # no datadir: taken in-process
    assert snapshots.loads(zlib.decompress(blob))["ref"] is None

    # Another worker, the same reference topic read, restores the partition.
    other = _worker(encode_compressed(cp, blob, mac))
    assert _fed_reference(other) == stream
    caplog.set_level(logging.INFO, logger="fundflow.worker")
    restored = other._state(0)
    assert caplog.messages == [
        "partition 0 assigned (checkpoint generation 1, offsets {'custody': 35})"
    ]
    assert restored.engine.ref is other.ref
    assert all(det.ref is other.ref for det in restored.engine.detectors)

    def rest(engine: object) -> list[object]:
        out = [a for i, r in enumerate(stream[cut:], cut) for a in engine.submit(r, f"t/0@{i}")]
        return out + engine.release() + engine.finish()

    uninterrupted, resumed = rest(st.engine), rest(restored.engine)
    assert msgspec.json.encode(resumed) == msgspec.json.encode(uninterrupted)
    assert restored.engine.counts == st.engine.counts
    assert [(a.detector, a.revision) for a in before] == [("reserve_misuse", 1)]
    assert sorted((a.detector, a.revision) for a in resumed) == [
        ("cross_bank_clearing", 1),
        ("down_payment_loan", 1),
        ("excessive_return", 1),
        ("excessive_return", 1),
        ("excessive_return", 1),
        ("fund_pool", 1),
        ("fund_pool", 1),
        ("fund_pool", 2),
        ("guaranteed_return", 1),
        ("maturity_mismatch", 1),
        ("private_product_split", 1),
        ("reserve_misuse", 1),
        ("reserve_misuse", 2),
        ("self_financing", 1),
        ("unlicensed_business", 1),
    ]


def test_a_checkpoint_of_the_pickle_format_is_refused_and_the_partition_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Format 2 as it was written: signed with the worker's own key, its state
    # a pickle (here one that would create a file when unpickled).
    marker = tmp_path / "unpickled"
    old = Checkpoint(0, 9, {"custody": 10**6}, {}, pickle.dumps(_CreatesFile(marker)), True)
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 2)
    rows = encode_checkpoint(old, KEY)
    monkeypatch.undo()
    worker = _worker(rows)
    caplog.set_level(logging.INFO, logger="fundflow.worker")
    st = worker._state(0)
    assert not marker.exists()
    (line,) = _lines(caplog, logging.WARNING)
    assert line.getMessage() == (
        "partition 0: checkpoint refused: format version 2, this worker reads 3; "
        "rebuilding partition 0 from the start of its topics"
    )
    assert (st.offsets, st.generation, st.finished) == ({}, 0, False)
    assert st.engine.snapshot() == engines.new_engine(worker.config, worker.ref).snapshot()


def test_a_signed_checkpoint_whose_state_is_not_a_snapshot_is_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The head of this version, signed with the key, over a pickle: the
    # engine refuses the state, and the partition is rebuilt.
    marker = tmp_path / "unpickled"
    cp = Checkpoint(0, 4, {"custody": 10**6}, {}, pickle.dumps(_CreatesFile(marker)), True)
    worker = _worker(encode_checkpoint(cp, KEY))
    caplog.set_level(logging.INFO, logger="fundflow.worker")
    st = worker._state(0)
    assert not marker.exists()
    (line,) = _lines(caplog, logging.WARNING)
    assert line.getMessage() == (
        "partition 0: checkpoint generation 4 cannot be restored (SnapshotRefused: "
        "snapshot refused: not a fundflow snapshot of format 1 (a pickle, or another "
        "version)); rebuilding from the start of its topics"
    )
    assert (st.offsets, st.generation, st.finished) == ({}, 0, False)
    assert "partition 0 assigned (no checkpoint)" in caplog.text
