"""The worker's alert-store guard: backoff, kept alerts, no checkpoint while
alerts are unwritten, a PostgreSQL store down when the worker starts, and
which failures to open a store a retry may mend. No broker, no database
server: a buffered sink whose commits fail on demand, an opener that fails
on demand, and a clock the test moves."""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fundflow.detectors import load_config
from fundflow.kafka_cli import KafkaRuntimeError, _open_sink
from fundflow.store import (
    BufferedSink,
    DeferredSink,
    StoreError,
    StoreUnavailableError,
    open_sink,
)
from fundflow.streams.settings import KafkaSettings, load_kafka_settings
from fundflow.streams.worker import StoreGuard, Worker


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


# -- a PostgreSQL store down when the worker starts ---------------------------------

REFUSED = (
    "cannot open alert store postgresql://fundflow@127.0.0.1:5432/alerts: connection failed: "
    'connection to server at "127.0.0.1", port 5432 failed: Connection refused'
)


class Opener:
    """Opens a :class:`FlakySink` once ``up`` is set; until then raises what
    a PostgreSQL sink raises for a server not listening."""

    def __init__(self, up: bool = False, error: StoreError | None = None) -> None:
        self.up = up
        self.error = error or StoreUnavailableError(REFUSED)
        self.calls = 0
        self.sink = FlakySink()

    def __call__(self) -> FlakySink:
        self.calls += 1
        if not self.up:
            raise self.error
        return self.sink


def test_a_deferred_sink_opens_on_first_use_and_keeps_the_alerts_until_then() -> None:
    opener = Opener()
    sink = DeferredSink(opener, "postgresql://fundflow@127.0.0.1:5432/alerts")
    assert (sink.opened, str(sink.error), opener.calls, sink.pending) == (False, REFUSED, 1, 0)

    with pytest.raises(StoreUnavailableError, match="Connection refused"):
        sink.upsert(["a1", "a2", "a3"])
    with pytest.raises(StoreUnavailableError):
        sink.flush()
    with pytest.raises(StoreUnavailableError):
        sink.upsert(["a4"])
    assert (sink.opened, opener.calls, sink.pending) == (False, 4, 4)

    opener.up = True
    sink.upsert(["a5"])  # opened: the waiting alerts go first, in order (batches of 2)
    assert (sink.opened, sink.error, opener.calls) == (True, None, 5)
    assert (opener.sink.written, sink.pending) == (["a1", "a2", "a3", "a4"], 1)
    sink.flush()
    sink.upsert(["a6"])
    assert (opener.sink.written, sink.pending, opener.calls) == (
        ["a1", "a2", "a3", "a4", "a5"],
        1,
        5,
    )
    sink.close()
    assert opener.sink.written == ["a1", "a2", "a3", "a4", "a5", "a6"]
    sink.close()  # a second close does nothing
    with pytest.raises(StoreError, match=r"^alert store postgresql://.*/alerts is closed$"):
        sink.upsert(["a7"])


def test_a_deferred_sink_opened_at_once_passes_every_call_on() -> None:
    opener = Opener(up=True)
    sink = DeferredSink(opener, "pg")
    assert (sink.opened, sink.error, opener.calls) == (True, None, 1)
    sink.upsert(["a1", "a2", "a3"])
    assert (opener.sink.written, sink.pending) == (["a1", "a2"], 1)
    opener.sink.down = True  # a failed commit after opening: the sink keeps the batch
    with pytest.raises(StoreError, match="connection refused"):
        sink.flush()
    assert (sink.pending, opener.calls) == (1, 1)


def test_a_deferred_sink_never_opened_closes_without_trying() -> None:
    opener = Opener()
    sink = DeferredSink(opener, "pg")
    with pytest.raises(StoreUnavailableError):
        sink.upsert(["a1", "a2"])
    sink.close()
    assert (opener.calls, sink.pending) == (2, 2)  # what close left unwritten


def test_an_error_a_retry_cannot_mend_is_raised_at_the_first_open() -> None:
    refused = StoreError(
        "cannot open alert store postgresql://fundflow:***@127.0.0.1:5432/alerts: connection "
        'failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  password '
        'authentication failed for user "fundflow"'
    )
    opener = Opener(error=refused)
    with pytest.raises(StoreError) as info:
        DeferredSink(opener, "pg")
    assert info.value is refused and opener.calls == 1


def test_a_store_down_at_start_starts_the_guard_down(caplog: pytest.LogCaptureFixture) -> None:
    opener, clock = Opener(), Clock()
    with caplog.at_level(logging.WARNING, logger="fundflow.worker"):
        guard = StoreGuard(DeferredSink(opener, "pg"), 1.0, 30.0, 6, clock=clock)
    assert (guard.down, guard.failures, guard.delay, guard.retry_at) == (True, 1, 1.0, 1001.0)
    assert guard.status() == "unavailable (retry in 1 s)"
    assert caplog.messages == [
        f"alert store unavailable at start ({REFUSED}): 0 alerts kept, no checkpoint until "
        "they are written; retry in 1 s"
    ]

    guard.upsert(["a1", "a2", "a3"])  # kept: no attempt to open before the retry is due
    assert (guard.pending, guard.backlog, opener.calls) == (3, ["a1", "a2", "a3"], 1)
    assert guard.flush() is False  # not due: no checkpoint, no attempt
    assert opener.calls == 1

    delays = []
    for _ in range(6):
        clock.now = guard.retry_at  # type: ignore[assignment]
        assert guard.flush() is False  # the retry opens the sink: refused again
        delays.append(guard.delay)
        guard.upsert([f"b{len(delays)}"])
    assert delays == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]  # the same backoff as after a start
    assert (opener.calls, guard.failures, guard.pending) == (7, 7, 9)
    assert guard.backlog == ["b6"]  # the others wait in the unopened sink
    assert guard.status() == "unavailable (retry in 30 s)"

    opener.up = True
    clock.now = guard.retry_at  # type: ignore[assignment]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fundflow.worker"):
        assert guard.flush() is True  # opened, and every kept alert written
    assert opener.calls == 8
    assert opener.sink.written == ["a1", "a2", "a3", "b1", "b2", "b3", "b4", "b5", "b6"]
    assert (guard.down, guard.pending, guard.delay, guard.status()) == (False, 0, 0.0, "ok")
    assert caplog.messages == ["alert store back after 7 failed attempts; every kept alert written"]
    guard.upsert(["c1", "c2"])  # up: straight to the store
    assert opener.sink.written[-2:] == ["c1", "c2"]


def test_a_store_never_reached_is_reported_at_close() -> None:
    opener, clock = Opener(), Clock()
    guard = StoreGuard(DeferredSink(opener, "pg"), 1.0, 30.0, 6, clock=clock)
    guard.upsert(["a1", "a2", "a3"])
    assert guard.close() == 3  # one last attempt (not due, tried anyway), then closed
    assert opener.calls == 2

    opener, clock = Opener(), Clock()
    guard = StoreGuard(DeferredSink(opener, "pg"), 1.0, 30.0, 6, clock=clock)
    guard.upsert(["a1", "a2", "a3"])
    opener.up = True
    assert guard.close() == 0
    assert opener.sink.written == ["a1", "a2", "a3"]


def test_a_worker_with_the_store_down_at_start_says_so_in_its_health() -> None:
    worker = Worker(KafkaSettings(), load_config(), DeferredSink(Opener(), "pg"))
    health = worker.health()
    assert (health["status"], health["store"], health["store_pending"], health["checkpoints"]) == (
        "starting",
        "unavailable (retry in 1 s)",
        0,
        0,
    )
    assert worker.store is not None and worker.store.failures == 1


# -- which failures to open a PostgreSQL store a retry may mend -----------------------

_AT = 'connection failed: connection to server at "10.0.0.5", port 5432 failed: '


@pytest.mark.parametrize(
    ("message", "mendable"),
    [
        (_AT + "Connection refused\n\tIs the server running on that host?", True),
        (_AT + "FATAL:  the database system is starting up", True),
        (_AT + "FATAL:  the database system is not yet accepting connections", True),
        (_AT + "FATAL:  the database system is shutting down", True),
        (_AT + "FATAL:  sorry, too many clients already", True),
        (_AT + "timeout expired", True),
        (_AT + "No route to host", True),
        ("failed to resolve host 'db': [Errno -2] Name or service not known", True),
        ("failed to resolve host 'db': [Errno -3] Temporary failure in name resolution", True),
        (
            'connection is bad: connection to server on socket "/run/postgresql/.s.PGSQL.5432" '
            "failed: No such file or directory",
            True,
        ),
        (_AT + 'FATAL:  password authentication failed for user "fundflow"', False),
        (_AT + "fe_sendauth: no password supplied", False),
        (_AT + 'FATAL:  database "alerts" does not exist', False),
        (_AT + 'FATAL:  role "fundflow" does not exist', False),
        (_AT + 'FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "fundflow"', False),
        (_AT + "server does not support SSL, but SSL was required", False),
        ("failed to resolve host 'db': [Errno -8] Servname not supported for ai_socktype", False),
        # two addresses of one name: one refused, the other refused the password
        (
            "connection failed: Multiple connection attempts failed. - Connection refused "
            '- FATAL:  password authentication failed for user "fundflow"',
            False,
        ),
    ],
)
def test_failures_to_connect_that_a_retry_may_mend(
    monkeypatch: pytest.MonkeyPatch, message: str, mendable: bool
) -> None:
    store_pg = pytest.importorskip("fundflow.store.postgres")

    def refuse(url: str, **kwargs: object) -> None:
        raise store_pg.psycopg.OperationalError(message)

    monkeypatch.setattr(store_pg.psycopg, "connect", refuse)
    monkeypatch.delenv("FUNDFLOW_PG_PASSWORD_FILE", raising=False)
    with pytest.raises(StoreError) as info:
        open_sink("postgresql://fundflow:s3cret@10.0.0.5/alerts")
    assert isinstance(info.value, StoreUnavailableError) is mendable
    assert str(info.value) == (
        "cannot open alert store postgresql://fundflow:***@10.0.0.5/alerts: "
        + " ".join(message.split())
    )


def test_errors_of_an_open_connection_by_sqlstate() -> None:
    store_pg = pytest.importorskip("fundflow.store.postgres")
    errors = store_pg.pg_errors
    mendable = [errors.AdminShutdown(), errors.CannotConnectNow(), errors.TooManyConnections()]
    mendable.append(errors.ConnectionFailure())
    fatal = [errors.InsufficientPrivilege(), errors.UndefinedTable()]
    assert [store_pg.unreachable(e) for e in mendable] == [True, True, True, True]
    assert [store_pg.unreachable(e) for e in fatal] == [False, False]
    # a malformed URL is a ProgrammingError, whatever its text says
    assert store_pg.unreachable(store_pg.psycopg.ProgrammingError("Connection refused")) is False


# -- `fundflow worker`: which stores it starts without -------------------------------


def test_the_worker_starts_without_a_postgres_server_that_refuses_connections() -> None:
    pytest.importorskip("psycopg")
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = _open_sink(f"postgresql://fundflow:pw@127.0.0.1:{port}/alerts?connect_timeout=5")
    assert isinstance(sink, DeferredSink)
    assert (sink.opened, sink.name) == (
        False,
        f"postgresql://fundflow:***@127.0.0.1:{port}/alerts?connect_timeout=5",
    )
    assert isinstance(sink.error, StoreUnavailableError)
    assert "Connection refused" in str(sink.error)
    sink.close()


@pytest.mark.parametrize(
    ("db", "message"),
    [
        (
            "postgresql://fundflow:pw@127.0.0.1/alerts?bogus=1",
            "cannot open alert store postgresql://fundflow:***@127.0.0.1/alerts?bogus=1: "
            'invalid URI query parameter: "bogus"',
        ),
        (
            "mysql://root@localhost/fundflow",
            "unsupported alert store URL scheme 'mysql': "
            "use a SQLite file path or a postgresql:// URL",
        ),
    ],
)
def test_a_store_a_retry_cannot_mend_stops_the_worker_at_start(db: str, message: str) -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(KafkaRuntimeError) as info:
        _open_sink(db)
    assert (info.value.exit_code, info.value.format_message()) == (1, message)


def test_a_sqlite_path_that_cannot_be_opened_stops_the_worker_at_start(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(KafkaRuntimeError) as info:
        _open_sink(str(tmp_path / "file" / "alerts.db"))
    assert (info.value.exit_code, info.value.format_message()) == (
        1,
        f"cannot open alert store {tmp_path / 'file' / 'alerts.db'}: unable to open database file",
    )


def test_a_refused_password_stops_the_worker_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    store_pg = pytest.importorskip("fundflow.store.postgres")

    def refuse(url: str, **kwargs: object) -> None:
        raise store_pg.psycopg.OperationalError(
            _AT + 'FATAL:  password authentication failed for user "fundflow"'
        )

    monkeypatch.setattr(store_pg.psycopg, "connect", refuse)
    monkeypatch.delenv("FUNDFLOW_PG_PASSWORD_FILE", raising=False)
    with pytest.raises(KafkaRuntimeError) as info:
        _open_sink("postgresql://fundflow:s3cret@10.0.0.5/alerts")
    assert (info.value.exit_code, info.value.format_message()) == (
        1,
        "cannot open alert store postgresql://fundflow:***@10.0.0.5/alerts: "
        + " ".join(_AT.split())
        + ' FATAL: password authentication failed for user "fundflow"',
    )
