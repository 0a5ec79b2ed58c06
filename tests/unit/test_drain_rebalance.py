"""A drain's finish when a rebalance moves partitions under it
(streams/lifecycle.py, ``Lifecycle._finish_all``): a worker whose partner
leaves the group first has every partition revoked for a moment, and must
not stop as drained having finished none of them."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from ledger import at, clearing, payment_institution

from fundflow.detectors import load_config
from fundflow.detectors.reference import Reference
from fundflow.streams import engines
from fundflow.streams.merge import PartitionMerge
from fundflow.streams.partitions import PartitionState
from fundflow.streams.settings import KafkaSettings
from fundflow.streams.worker import Worker


def _worker(monkeypatch: pytest.MonkeyPatch, revoke_during_end: bool) -> Worker:
    """A worker holding partitions 0 and 1 (no broker: the stream's end is
    the engines' own, checkpoints succeed), each with a record held by
    its ordering stage."""
    worker = Worker(KafkaSettings(), load_config())
    ref = Reference(names=False)
    for p in (0, 1):
        eng = engines.new_engine(load_config(), ref)
        for rec in payment_institution():
            ref.add(rec)
            engines.feed_reference(eng, rec)
        eng.submit(clearing(f"IN{p}", at(0, 9), "C1P", "R1", "1000", purpose="topup"))
        worker.parts[p] = PartitionState(p, eng, PartitionMerge(), {}, {})
    emitted: list[Any] = []
    monkeypatch.setattr(
        worker, "_emit", lambda st, alerts, released_ms=-1: emitted.extend(alerts) or len(alerts)
    )
    saved: list[int] = []

    async def checkpoint(st: PartitionState, force: bool = False) -> bool:
        saved.append(st.partition)
        return True

    monkeypatch.setattr(worker, "_checkpoint", checkpoint)

    def stream_end(tail: int = 64) -> int:
        if revoke_during_end:
            worker.on_revoked([_TP("in", 0), _TP("in", 1)])
        return -1

    monkeypatch.setattr(worker, "stream_end", stream_end)
    monkeypatch.setattr(worker, "inputs", {"in": "clearing"}, raising=False)
    worker.saved = saved  # type: ignore[attr-defined]
    return worker


class _TP:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition


def test_a_finish_whose_partitions_are_revoked_is_not_a_drain(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fundflow.worker")
    worker = _worker(monkeypatch, revoke_during_end=True)
    held = dict(worker.parts)
    assert asyncio.run(worker._finish_all()) is False
    assert worker.parts == {}
    assert [st.finished for st in held.values()] == [False, False]
    assert worker.saved == []  # type: ignore[attr-defined]
    assert worker.stats["finished_partitions"] == 0
    assert (
        "partitions moved while finishing ([0, 1], now []): the drain waits for the new "
        "assignment" in caplog.messages
    )


def test_a_finish_on_a_stable_assignment_finishes_and_checkpoints_every_partition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = _worker(monkeypatch, revoke_during_end=False)
    assert asyncio.run(worker._finish_all()) is True
    assert [st.finished for st in worker.parts.values()] == [True, True]
    assert [st.engine.held for st in worker.parts.values()] == [0, 0]
    assert worker.saved == [0, 1]  # type: ignore[attr-defined]
    assert worker.stats["finished_partitions"] == 2
