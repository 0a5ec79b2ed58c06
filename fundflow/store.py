"""The alert store: where alerts land, and where the CLI reads them back.

Writers implement :class:`AlertSink` (``upsert`` / ``flush`` / ``close``, and
``with`` closes). :class:`SQLiteSink` is the stdlib ``sqlite3`` one; a
PostgreSQL sink will implement the same protocol. Readers use
:func:`open_store`, which never creates a database.

Contract of every sink (wire-format.md, "Alerts"):

* keyed by ``alert_id``; of all the revisions of one alert the store keeps the
  **highest** ``revision``. A lower revision arriving late (a redelivery) is
  ignored; an equal one replaces the row (same detector run, same content).
* idempotent: upserting the same alerts again leaves the same rows, including
  the bookkeeping columns (``created_seq``, ``updated_seq``, ``status``).
* buffered: upserts are committed every ``batch_size`` alerts, and on
  ``flush()`` / ``close()``. Until then other readers do not see them.
* JSON columns (``accounts``, ``evidence``) are written with sorted keys, so
  an alert read back is *equal* to the one upserted but its ``evidence``
  dict iterates in key order.
* failures (unwritable path, disk full, not a store) raise :class:`StoreError`
  with a one-line message.

>>> import tempfile, os
>>> from fundflow.schemas.records import Alert
>>> a = Alert(alert_id="A1", detector="fund_pool", severity="high",
...           subject_id="P1", accounts=("X",), first_ts="2026-03-01T10:00:00+08:00",
...           last_ts="2026-03-01T11:00:00+08:00", amount="100.00",
...           summary="pooled", evidence={}, detector_version="1")
>>> path = os.path.join(tempfile.mkdtemp(), "alerts.db")
>>> with SQLiteSink(path) as sink:
...     sink.upsert([a])
>>> with open_store(path) as store:
...     store.get("A1") == a, store.count()
(True, 1)
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import msgspec

from fundflow.schemas.records import Alert

SCHEMA_VERSION = 1

# Column order of the alerts table as written and read; the first twelve are
# the Alert fields in declaration order.
_ALERT_FIELDS: tuple[str, ...] = Alert.__struct_fields__
_CONTENT = ", ".join(f for f in _ALERT_FIELDS if f != "alert_id")
_EXCLUDED = ", ".join(f"excluded.{f}" for f in _ALERT_FIELDS if f != "alert_id")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id         TEXT PRIMARY KEY,
    detector         TEXT NOT NULL,
    severity         TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    accounts         TEXT NOT NULL,
    first_ts         TEXT NOT NULL,
    last_ts          TEXT NOT NULL,
    amount           TEXT NOT NULL,
    summary          TEXT NOT NULL,
    evidence         TEXT NOT NULL,
    detector_version TEXT NOT NULL,
    revision         INTEGER NOT NULL,
    status           TEXT NOT NULL DEFAULT 'open',
    created_seq      INTEGER NOT NULL,
    updated_seq      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_detector_severity ON alerts (detector, severity);
CREATE INDEX IF NOT EXISTS alerts_subject ON alerts (subject_id);
CREATE INDEX IF NOT EXISTS alerts_updated_seq ON alerts (updated_seq);
"""

# ``updated_seq`` moves only when the row's content changes, so a replay of
# the same alerts is a true no-op; ``status`` (set by people triaging) and
# ``created_seq`` are never touched by an upsert.
_UPSERT = f"""
INSERT INTO alerts ({", ".join(_ALERT_FIELDS)}, created_seq, updated_seq)
VALUES ({", ".join("?" * len(_ALERT_FIELDS))}, ?, ?)
ON CONFLICT(alert_id) DO UPDATE SET
    ({_CONTENT}, updated_seq) = ({_EXCLUDED},
        CASE WHEN ({_EXCLUDED}) IS NOT ({_CONTENT})
             THEN excluded.updated_seq ELSE alerts.updated_seq END)
WHERE excluded.revision >= alerts.revision
"""

_SELECT = f"SELECT {', '.join(_ALERT_FIELDS)} FROM alerts"


class StoreError(Exception):
    """The store cannot be opened, read or written; ``str()`` is one line."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """A store opened for reading does not exist (nothing is created)."""


def _encode_json(value: Any) -> str:
    # Sorted keys: the same alert always gives the same bytes, so re-upserts
    # compare equal and the stored rows are reproducible.
    return msgspec.json.encode(value, order="deterministic").decode()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@runtime_checkable
class AlertSink(Protocol):
    """Where alerts go. ``upsert`` may buffer; ``flush`` makes everything
    upserted so far durable and visible; ``close`` flushes and releases the
    sink (idempotent). Subclass it to inherit the ``with`` support."""

    def upsert(self, alerts: Sequence[Alert]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> AlertSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        # Already failing: release the sink, but let the original error show.
        with contextlib.suppress(StoreError):
            self.close()


class SQLiteSink(AlertSink):
    """An :class:`AlertSink` on one SQLite file (created if missing) in WAL
    mode, so readers such as ``fundflow alerts list`` never block the writer.

    ``batch_size`` (>= 1) alerts make one transaction. A batch that fails to
    commit stays buffered and the :class:`StoreError` is raised.
    """

    def __init__(self, path: str | os.PathLike[str], batch_size: int = 500) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.path = str(path)
        self.batch_size = batch_size
        self._buffer: list[Alert] = []
        self._conn: sqlite3.Connection | None = None
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(self.path, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open alert store {self.path}: {_one_line(exc)}") from None
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"alert store {self.path}: WAL mode unavailable (got {mode})")
            conn.execute("PRAGMA synchronous=NORMAL")
            _create_or_check_schema(conn, self.path)
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open alert store {self.path}: {_one_line(exc)}") from None
        self._conn = conn

    @property
    def pending(self) -> int:
        """Alerts upserted but not yet committed."""
        return len(self._buffer)

    def upsert(self, alerts: Sequence[Alert]) -> None:
        """Buffer ``alerts``; commit each time ``batch_size`` are buffered."""
        self._check_open()
        self._buffer.extend(alerts)
        while len(self._buffer) >= self.batch_size:
            self._commit(self.batch_size)

    def flush(self) -> None:
        """Commit everything buffered."""
        self._check_open()
        while self._buffer:
            self._commit(self.batch_size)

    def close(self) -> None:
        """Flush and close; a second call does nothing."""
        if self._conn is None:
            return
        try:
            self.flush()
        finally:
            self._conn.close()
            self._conn = None

    def _check_open(self) -> None:
        if self._conn is None:
            raise StoreError(f"alert store {self.path} is closed")

    def _commit(self, n: int) -> None:
        assert self._conn is not None
        batch = self._buffer[:n]
        conn = self._conn
        try:
            # IMMEDIATE takes the write lock before reading the sequence, so
            # two writers on one file cannot hand out the same numbers.
            conn.execute("BEGIN IMMEDIATE")
            seq = conn.execute("SELECT COALESCE(MAX(updated_seq), 0) FROM alerts").fetchone()[0]
            conn.executemany(_UPSERT, (_row(a, seq + i + 1) for i, a in enumerate(batch)))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"cannot write alert store {self.path}: {_one_line(exc)}") from None
        del self._buffer[:n]


def _row(a: Alert, seq: int) -> tuple[Any, ...]:
    return (
        a.alert_id, a.detector, a.severity, a.subject_id, _encode_json(a.accounts),
        a.first_ts, a.last_ts, a.amount, a.summary, _encode_json(a.evidence),
        a.detector_version, a.revision, seq, seq,
    )  # fmt: skip


def _create_or_check_schema(conn: sqlite3.Connection, path: str) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        # One statement at a time: executescript() would commit our BEGIN.
        for statement in filter(str.strip, _SCHEMA.split(";")):
            conn.execute(statement)
        rows = conn.execute("SELECT version FROM schema_version").fetchall()
        if not rows:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif rows[0][0] != SCHEMA_VERSION:
            # Later versions migrate forward from here; a newer file is refused.
            raise StoreError(
                f"alert store {path} has schema version {rows[0][0]}, "
                f"this fundflow reads version {SCHEMA_VERSION}"
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class SQLiteStore:
    """Read-only view of an alert store written by :class:`SQLiteSink`.

    Results are :class:`Alert` objects equal to the highest revision upserted,
    ordered by ``(first_ts, alert_id)``. Filters are exact matches; ``None``
    means any.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        p = Path(self.path)
        if not p.exists():
            raise StoreNotFoundError(f"alert store not found: {self.path}")
        if not p.is_file():
            raise StoreError(f"alert store {self.path} is not a file")
        self._conn = _connect_reader(p)
        try:
            rows = self._conn.execute("SELECT version FROM schema_version").fetchall()
        except sqlite3.Error as exc:
            self._conn.close()
            msg = f"{self.path} is not a fundflow alert store: {_one_line(exc)}"
            raise StoreError(msg) from None
        if not rows or rows[0][0] != SCHEMA_VERSION:
            self._conn.close()
            version = rows[0][0] if rows else "none"
            raise StoreError(
                f"alert store {self.path} has schema version {version}, "
                f"this fundflow reads version {SCHEMA_VERSION}"
            )

    def iter(
        self,
        detector: str | None = None,
        severity: str | None = None,
        subject: str | None = None,
        limit: int | None = None,
    ) -> Iterator[Alert]:
        """Yield matching alerts one at a time (for exports of any size)."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit!r}")
        where, params = _where(detector, severity, subject)
        sql = f"{_SELECT}{where} ORDER BY first_ts, alert_id LIMIT ?"
        for row in self._query(sql, (*params, -1 if limit is None else limit)):
            yield _alert(row)

    def list(
        self,
        detector: str | None = None,
        severity: str | None = None,
        subject: str | None = None,
        limit: int | None = None,
    ) -> list[Alert]:
        """Matching alerts, at most ``limit`` of them."""
        return [*self.iter(detector, severity, subject, limit)]

    def get(self, alert_id: str) -> Alert | None:
        """The alert with this id, or ``None``."""
        rows = [*self._query(f"{_SELECT} WHERE alert_id = ?", (alert_id,))]
        return _alert(rows[0]) if rows else None

    def count(
        self,
        detector: str | None = None,
        severity: str | None = None,
        subject: str | None = None,
    ) -> int:
        """How many alerts match."""
        where, params = _where(detector, severity, subject)
        return int(next(self._query(f"SELECT COUNT(*) FROM alerts{where}", params))[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _query(self, sql: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        try:
            yield from self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read alert store {self.path}: {_one_line(exc)}") from None


def _connect_reader(path: Path) -> sqlite3.Connection:
    # mode=rw never creates the file, and query_only refuses writes. It is
    # preferred to mode=ro because the last connection to close checkpoints
    # and removes the -wal/-shm files; a mode=ro reader leaves them behind.
    # A file we may not write (read-only media, another user's) gets mode=ro.
    uri = path.resolve().as_uri()
    try:
        try:
            conn = sqlite3.connect(uri + "?mode=rw", uri=True)
        except sqlite3.OperationalError:
            conn = sqlite3.connect(uri + "?mode=ro", uri=True)
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open alert store {path}: {_one_line(exc)}") from None
    return conn


def open_store(path: str | os.PathLike[str]) -> SQLiteStore:
    """Open an existing alert store for reading.

    Raises :class:`StoreNotFoundError` (a ``FileNotFoundError``) when ``path``
    does not exist, :class:`StoreError` when it is not a readable store.
    """
    return SQLiteStore(path)


def _where(
    detector: str | None, severity: str | None, subject: str | None
) -> tuple[str, tuple[str, ...]]:
    clauses = [
        (col, value)
        for col, value in (("detector", detector), ("severity", severity), ("subject_id", subject))
        if value is not None
    ]
    if not clauses:
        return "", ()
    return " WHERE " + " AND ".join(f"{c} = ?" for c, _ in clauses), tuple(v for _, v in clauses)


def _alert(row: tuple[Any, ...]) -> Alert:
    fields = dict(zip(_ALERT_FIELDS, row, strict=True))
    fields["accounts"] = msgspec.json.decode(fields["accounts"], type=tuple[str, ...])
    fields["evidence"] = msgspec.json.decode(fields["evidence"], type=dict)
    return Alert(**fields)
