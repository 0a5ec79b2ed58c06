"""The worker's alert-store guard: backoff, kept alerts, no checkpoint while
alerts are unwritten. No broker, no database server: a buffered sink whose
commits fail on demand, and a clock the test moves."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from fundflow.store import BufferedSink, StoreError
from fundflow.streams.settings import KafkaSettings, load_kafka_settings
from fundflow.streams.worker import StoreGuard


class FlakySink(BufferedSink):
    """A :class:`BufferedSink` whose commits fail while ``down`` is set."""

    def __init__(self, batch_size: int = 2) -> None:
        self.name = "flaky"
        self.batch_size = batch_size
        self._buffer: list[Any] = []
        self._conn = SimpleNamespace(close=lambda: None)
        self.down = False
        self.written: list[Any] = []
        self.attempts = 0

    def _commit(self, n: int) -> None:
        self.attempts += 1
        if self.down:
            raise StoreError("cannot write alert store flaky: connection refused")
        self.written.extend(self._buffer[:n])
        del self._buffer[:n]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _guard(limit: int = 6) -> tuple[StoreGuard, FlakySink, Clock]:
    sink, clock = FlakySink(), Clock()
    return StoreGuard(sink, 1.0, 30.0, limit, clock=clock), sink, clock


def test_a_failed_write_keeps_the_alerts_and_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    guard, sink, clock = _guard()
    sink.down = True
    with caplog.at_level(logging.WARNING, logger="fundflow.worker"):
        guard.upsert(["a1", "a2", "a3"])  # a batch of 2 is due: its commit fails
    assert (guard.down, guard.pending, guard.delay, sink.attempts) == (True, 3, 1.0, 1)
    assert guard.status() == "unavailable (retry in 1 s)"
    assert "3 alerts kept, no checkpoint until they are written; retry in 1 s" in caplog.text

    guard.upsert(["a4", "a5"])  # kept aside: no commit attempt while down
    assert (guard.pending, guard.backlog, sink.attempts) == (5, ["a4", "a5"], 1)
    assert guard.flush() is False  # the retry is not due
    assert sink.attempts == 1

    delays = []
    for _ in range(7):
        clock.now = guard.retry_at  # type: ignore[assignment]
        assert guard.flush() is False
        delays.append(guard.delay)
    assert delays == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]  # doubling, capped
    assert guard.failures == 8
    assert guard.status() == "unavailable (retry in 30 s)"
    clock.now += 29.5
    assert guard.status() == "unavailable (retry in 1 s)"

    sink.down = False
    clock.now = guard.retry_at  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="fundflow.worker"):
        assert guard.flush() is True
    assert sink.written == ["a1", "a2", "a3", "a4", "a5"]  # every alert, in order, once
    assert (guard.down, guard.pending, guard.delay, guard.status()) == (False, 0, 0.0, "ok")
    assert "alert store back after 8 failed attempts" in caplog.text

    sink.down = True  # a new outage starts from the first delay again
    guard.upsert(["b1", "b2"])
    assert (guard.delay, guard.pending) == (1.0, 2)


def test_full_only_while_down_and_at_the_limit() -> None:
    guard, sink, clock = _guard(limit=4)
    guard.upsert(["a1", "a2", "a3", "a4", "a5"])  # the store is up: written in batches
    assert (guard.full, guard.pending, sink.written) == (False, 1, ["a1", "a2", "a3", "a4"])
    sink.down = True
    assert guard.flush() is False
    assert (guard.full, guard.pending) == (False, 1)
    guard.upsert(["a6", "a7"])
    assert (guard.full, guard.pending) == (False, 3)
    guard.upsert(["a8"])
    assert (guard.full, guard.pending) == (True, 4)
    sink.down = False
    clock.now += 1.0
    assert guard.flush() is True
    assert guard.full is False
    assert sink.written == ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"]


def test_close_tries_once_more_and_reports_what_is_left() -> None:
    guard, sink, _ = _guard()
    sink.down = True
    guard.upsert(["a1", "a2"])
    guard.upsert(["a3"])
    assert guard.close() == 3  # the retry was not due: tried anyway, failed
    assert sink.attempts == 3  # the guard's attempt, then the sink's own on closing

    guard, sink, _ = _guard()
    sink.down = True
    guard.upsert(["a1", "a2"])
    guard.upsert(["a3"])
    sink.down = False
    assert guard.close() == 0
    assert sink.written == ["a1", "a2", "a3"]


def test_store_settings_are_checked_and_read_from_the_environment() -> None:
    s = load_kafka_settings(
        None,
        env={
            "FUNDFLOW_KAFKA_STORE_RETRY_SECONDS": "0.5",
            "FUNDFLOW_KAFKA_STORE_RETRY_MAX_SECONDS": "4",
            "FUNDFLOW_KAFKA_STORE_BUFFER_LIMIT": "1000",
        },
    )
    assert (s.store_retry_seconds, s.store_retry_max_seconds, s.store_buffer_limit) == (
        0.5,
        4.0,
        1000,
    )
    d = KafkaSettings()
    assert (d.store_retry_seconds, d.store_retry_max_seconds, d.store_buffer_limit) == (
        1.0,
        30.0,
        100_000,
    )
    with pytest.raises(ValueError, match=r"store_retry_seconds .* got 0 and 30"):
        KafkaSettings(store_retry_seconds=0)
    with pytest.raises(ValueError, match=r"got 5.0 and 2.0"):
        KafkaSettings(store_retry_seconds=5.0, store_retry_max_seconds=2.0)
    with pytest.raises(ValueError, match="kafka.store_buffer_limit must be >= 1, got 0"):
        KafkaSettings(store_buffer_limit=0)
