"""How the worker restores a partition from its checkpoint table
(streams/partitions.py ``Partitions._state``), with the table's rows in memory and
no broker: a checkpoint that fails its HMAC is refused with one log line and
the partition starts again from its topics' start; a worker with no key does
not start. The Kafka run of the same is
tests/integration/test_daemon.py::test_a_forged_checkpoint_is_refused_and_the_partition_rebuilt."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from fundflow.cli import main
from fundflow.detectors import load_config
from fundflow.streams import engines
from fundflow.streams.checkpoint import Checkpoint, encode_checkpoint
from fundflow.streams.settings import KafkaSettings
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
    state = engines.snapshot(engines.new_engine(worker.config, worker.ref), worker.ref)
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
    assert engines.snapshot(st.engine, worker.ref) == engines.snapshot(fresh, worker.ref)
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
