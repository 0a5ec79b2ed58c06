"""The SQLite alert store: :class:`SQLiteSink` and :class:`SQLiteStore`, on
one file with the stdlib ``sqlite3``, in WAL mode so readers never block
the writer.

Schema (``schema_version`` holds one row, the version):

1. ``alerts``: the Alert fields (``accounts`` / ``evidence`` as JSON text
   with sorted keys), ``revision``, ``status``, ``created_seq`` and
   ``updated_seq`` (a store-wide sequence, moved only when the content
   changes).
2. ``alert_events(id, alert_id, action, actor, note, at)``: the audit trail.
3. the triage tables: ``alerts`` gains ``assignee`` and the sort and search
   columns ``last_utc`` (``last_ts`` as fixed-width UTC text),
   ``severity_rank``, ``amount_fen``, ``haystack``; new tables
   ``alert_revisions``, ``users``, ``tokens``, ``cases``, ``case_alerts``,
   ``case_events``, ``notices``, ``deliveries``, ``alert_counts`` (alerts
   per status, severity and detector, kept by every write) and ``store_meta`` (the
   cursor-signing key). Migrating fills the new columns, and
   ``alert_revisions`` with each alert's stored revision; it writes no
   notices (alerts stored before the outbox existed are not announced).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from fundflow.schemas.records import Alert

from .base import (
    BufferedSink,
    StoreError,
    StoreNotFoundError,
    alert_instant,
    alert_json,
    amount_fen,
    encode_json,
    haystack,
    latest_per_id,
    one_line,
    severity_rank,
    utc_text,
)
from .sql import SQLStore, stored_state, write_batch_effects

_ALERT_FIELDS: tuple[str, ...] = Alert.__struct_fields__
# Derived from the Alert fields at every upsert: the sort and search columns.
_DERIVED: tuple[str, ...] = ("last_utc", "severity_rank", "amount_fen", "haystack")
_CONTENT_COLUMNS = [f for f in _ALERT_FIELDS if f != "alert_id"] + list(_DERIVED)
_CONTENT = ", ".join(_CONTENT_COLUMNS)
_EXCLUDED = ", ".join(f"excluded.{c}" for c in _CONTENT_COLUMNS)
_WRITTEN = (*_ALERT_FIELDS, *_DERIVED, "created_seq", "updated_seq")


def _derived(a: Alert, strict: bool = True) -> tuple[Any, ...]:
    """The sort and search columns of an alert; :class:`StoreError` for a
    time or amount that would not sort or read back (``strict=False``, for
    rows stored before these columns existed: the raw text and 0 instead)."""
    if strict:
        alert_instant(a, "first_ts")
    try:
        last = utc_text(alert_instant(a, "last_ts"))
    except StoreError:
        if strict:
            raise
        last = str(a.last_ts)
    try:
        fen = amount_fen(a)
    except StoreError:
        if strict:
            raise
        fen = 0
    return last, severity_rank(a.severity), fen, haystack(a)


def _backfill(conn: sqlite3.Connection) -> None:
    """Migration 3's data step: the new columns of every alert, and its
    stored revision as the first one seen."""
    now = utc_text(datetime.now(UTC))
    rows = conn.execute(f"SELECT {', '.join(_ALERT_FIELDS)} FROM alerts").fetchall()
    for row in rows:
        a = _alert(row)
        conn.execute(
            f"UPDATE alerts SET {', '.join(c + ' = ?' for c in _DERIVED)} WHERE alert_id = ?",
            (*_derived(a, strict=False), a.alert_id),
        )
        conn.execute(
            "INSERT OR IGNORE INTO alert_revisions (alert_id, revision, body, seen_at)"
            " VALUES (?, ?, ?, ?)",
            (a.alert_id, a.revision, alert_json(a).decode(), now),
        )


def _cursor_key(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO store_meta (key, value) VALUES ('cursor_key', ?)", (secrets.token_hex(32),)
    )


Step = str | Callable[[sqlite3.Connection], None]

# Migration N (1-based) brings a version N-1 file to version N. Version 1 is
# the original schema, written with IF NOT EXISTS so a v1 file passes through
# it unchanged; later steps must be plain, each one runs exactly once.
_MIGRATIONS: tuple[tuple[Step, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS alerts (
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
        )""",
        "CREATE INDEX IF NOT EXISTS alerts_detector_severity ON alerts (detector, severity)",
        "CREATE INDEX IF NOT EXISTS alerts_subject ON alerts (subject_id)",
        "CREATE INDEX IF NOT EXISTS alerts_updated_seq ON alerts (updated_seq)",
    ),
    (
        """CREATE TABLE alert_events (
            id       INTEGER PRIMARY KEY,
            alert_id TEXT NOT NULL REFERENCES alerts (alert_id),
            action   TEXT NOT NULL,
            actor    TEXT NOT NULL,
            note     TEXT,
            at       TEXT NOT NULL
        )""",
        "CREATE INDEX alert_events_alert ON alert_events (alert_id, id)",
        "CREATE INDEX alerts_status ON alerts (status)",
    ),
    (
        "ALTER TABLE alerts ADD COLUMN assignee TEXT",
        "ALTER TABLE alerts ADD COLUMN last_utc TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE alerts ADD COLUMN severity_rank INTEGER NOT NULL DEFAULT -1",
        "ALTER TABLE alerts ADD COLUMN amount_fen INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE alerts ADD COLUMN haystack TEXT NOT NULL DEFAULT ''",
        """CREATE TABLE alert_revisions (
            alert_id TEXT NOT NULL,
            revision INTEGER NOT NULL,
            body     TEXT NOT NULL,
            seen_at  TEXT NOT NULL,
            PRIMARY KEY (alert_id, revision)
        )""",
        """CREATE TABLE users (
            name          TEXT PRIMARY KEY,
            role          TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            disabled      INTEGER NOT NULL DEFAULT 0,
            created_at    TEXT NOT NULL
        )""",
        """CREATE TABLE tokens (
            token_hash TEXT PRIMARY KEY,
            user_name  TEXT NOT NULL REFERENCES users (name),
            kind       TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            csrf_hash  TEXT
        )""",
        "CREATE INDEX tokens_user ON tokens (user_name)",
        """CREATE TABLE cases (
            case_id    INTEGER PRIMARY KEY AUTOINCREMENT,
            title      TEXT NOT NULL,
            status     TEXT NOT NULL,
            owner      TEXT,
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE case_alerts (
            case_id  INTEGER NOT NULL REFERENCES cases (case_id),
            alert_id TEXT NOT NULL REFERENCES alerts (alert_id),
            added_by TEXT NOT NULL,
            added_at TEXT NOT NULL,
            PRIMARY KEY (case_id, alert_id)
        )""",
        "CREATE INDEX case_alerts_alert ON case_alerts (alert_id, case_id)",
        """CREATE TABLE case_events (
            id       INTEGER PRIMARY KEY,
            case_id  INTEGER NOT NULL REFERENCES cases (case_id),
            action   TEXT NOT NULL,
            actor    TEXT NOT NULL,
            note     TEXT,
            alert_id TEXT,
            at       TEXT NOT NULL
        )""",
        "CREATE INDEX case_events_case ON case_events (case_id, id)",
        """CREATE TABLE notices (
            notice_id  INTEGER PRIMARY KEY AUTOINCREMENT,
            alert_id   TEXT NOT NULL,
            revision   INTEGER NOT NULL,
            kind       TEXT NOT NULL,
            severity   TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE deliveries (
            notice_id    INTEGER NOT NULL REFERENCES notices (notice_id),
            hook         TEXT NOT NULL,
            state        TEXT NOT NULL,
            attempts     INTEGER NOT NULL,
            next_at      TEXT,
            last_error   TEXT,
            delivered_at TEXT,
            retried_by   TEXT,
            retried_at   TEXT,
            PRIMARY KEY (notice_id, hook)
        )""",
        "CREATE INDEX deliveries_due ON deliveries (state, next_at, notice_id)",
        "CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        _cursor_key,
        _backfill,
        """CREATE TABLE alert_counts (
            status        TEXT NOT NULL,
            severity_rank INTEGER NOT NULL,
            detector      TEXT NOT NULL,
            n             INTEGER NOT NULL,
            PRIMARY KEY (status, severity_rank, detector)
        )""",
        "INSERT INTO alert_counts (status, severity_rank, detector, n)"
        " SELECT status, severity_rank, detector, COUNT(*) FROM alerts"
        " GROUP BY status, severity_rank, detector",
        # The queue's orders and filters, each ending in the keyset's keys.
        "DROP INDEX alerts_detector_severity",
        "DROP INDEX alerts_subject",
        "DROP INDEX alerts_status",
        "CREATE INDEX alerts_last ON alerts (last_utc, alert_id)",
        "CREATE INDEX alerts_status_last ON alerts (status, last_utc, alert_id)",
        "CREATE INDEX alerts_detector_severity_last"
        " ON alerts (detector, severity, last_utc, alert_id)",
        "CREATE INDEX alerts_severity_last ON alerts (severity_rank, last_utc, alert_id)",
        "CREATE INDEX alerts_amount ON alerts (amount_fen, alert_id)",
        "CREATE INDEX alerts_detector_id ON alerts (detector, alert_id)",
        "CREATE INDEX alerts_subject_id ON alerts (subject_id, alert_id)",
        "CREATE INDEX alerts_assignee_last ON alerts (assignee, last_utc, alert_id)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)
MIGRATIONS = _MIGRATIONS

# ``updated_seq`` moves only when the row's content changes, so a replay of
# the same alerts is a true no-op; ``status``, ``assignee`` (set by people
# triaging) and ``created_seq`` are never touched by this statement (a
# reopen is separate).
_UPSERT = f"""
INSERT INTO alerts ({", ".join(_WRITTEN)})
VALUES ({", ".join("?" * len(_WRITTEN))})
ON CONFLICT(alert_id) DO UPDATE SET
    ({_CONTENT}, updated_seq) = ({_EXCLUDED},
        CASE WHEN ({_EXCLUDED}) IS NOT ({_CONTENT})
             THEN excluded.updated_seq ELSE alerts.updated_seq END)
WHERE excluded.revision >= alerts.revision
"""

#: How long opening a SQLite store waits for other connections' locks.
_LOCK_WAIT_S = 30.0


def _wal_mode(conn: sqlite3.Connection) -> str:
    """Switches the file to WAL. Several writers opening one new file at
    once may find it locked by another's switch or migration, and SQLite
    does not always wait on its busy handler there: retry until
    ``_LOCK_WAIT_S`` has passed."""
    deadline = time.monotonic() + _LOCK_WAIT_S
    delay = 0.01
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(0.5, delay * 2)


class SQLiteSink(BufferedSink):
    """An :class:`~fundflow.store.base.AlertSink` on one SQLite file (created
    if missing) in WAL mode, so readers such as ``fundflow alerts list``
    never block the writer. A file of an older schema version is migrated
    when the sink opens it.

    ``batch_size`` (>= 1) alerts make one transaction, which also writes
    every revision seen, the reopen events and the notices. An alert whose
    ``last_ts`` is not ISO-8601 with an offset, or whose amount is not yuan
    with two decimals, is refused with :class:`StoreError` before anything
    is written. A batch that fails to commit stays buffered and the
    :class:`StoreError` is raised.
    """

    def __init__(self, path: str | os.PathLike[str], batch_size: int = 500) -> None:
        self._check_batch_size(batch_size)
        self.path = self.name = str(path)
        self.batch_size = batch_size
        self._buffer: list[Alert] = []
        self._conn: sqlite3.Connection | None = None
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=_LOCK_WAIT_S)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open alert store {self.path}: {one_line(exc)}") from None
        try:
            mode = _wal_mode(conn)
            if str(mode).lower() != "wal":
                raise StoreError(f"alert store {self.path}: WAL mode unavailable (got {mode})")
            conn.execute("PRAGMA synchronous=NORMAL")
            _migrate(conn, self.path)
        except StoreError:
            conn.close()
            raise
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open alert store {self.path}: {one_line(exc)}") from None
        self._conn = conn

    def _commit(self, n: int) -> None:
        assert self._conn is not None
        batch = self._buffer[:n]
        derived = [_derived(a) for a in batch]  # refuses a bad alert before writing
        latest = latest_per_id(batch)
        conn = self._conn
        try:
            # IMMEDIATE takes the write lock before reading the sequence, so
            # two writers on one file cannot hand out the same numbers.
            conn.execute("BEGIN IMMEDIATE")
            seq = conn.execute("SELECT COALESCE(MAX(updated_seq), 0) FROM alerts").fetchone()[0]
            stored = stored_state(
                conn.execute(
                    "SELECT alert_id, revision, status, severity, detector FROM alerts"
                    " WHERE alert_id IN (SELECT value FROM json_each(?))",
                    (encode_json(list(latest)),),
                ).fetchall()
            )
            conn.executemany(
                _UPSERT,
                (
                    _row(a, d, seq + i + 1)
                    for i, (a, d) in enumerate(zip(batch, derived, strict=True))
                ),
            )
            write_batch_effects(conn, batch, latest, stored, utc_text(datetime.now(UTC)))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"cannot write alert store {self.path}: {one_line(exc)}") from None
        del self._buffer[:n]


def _row(a: Alert, derived: tuple[Any, ...], seq: int) -> tuple[Any, ...]:
    return (
        a.alert_id, a.detector, a.severity, a.subject_id, encode_json(a.accounts),
        a.first_ts, a.last_ts, a.amount, a.summary, encode_json(a.evidence),
        a.detector_version, a.revision, *derived, seq, seq,
    )  # fmt: skip


def _refused(path: str, version: object) -> StoreError:
    return StoreError(
        f"alert store {path} has schema version {version}, "
        f"this fundflow reads versions 1 to {SCHEMA_VERSION}"
    )


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    """Create the schema, or bring an older file up to :data:`SCHEMA_VERSION`,
    in one IMMEDIATE transaction (so two writers opening one file do not
    race). A file of a newer version is refused and left untouched."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        # One statement at a time: executescript() would commit our BEGIN.
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        rows = conn.execute("SELECT version FROM schema_version").fetchall()
        current = rows[0][0] if rows else 0
        if not isinstance(current, int) or not 0 <= current <= SCHEMA_VERSION:
            raise _refused(path, current)
        for step in _MIGRATIONS[current:]:
            for statement in step:
                if callable(statement):
                    statement(conn)
                else:
                    conn.execute(statement)
        if not rows:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif current != SCHEMA_VERSION:
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class _Tx:
    """A write transaction's statements, each fully stepped (so COMMIT never
    meets a statement still open after ``RETURNING``)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Result:
        cur = self._conn.execute(sql, params)
        return _Result(cur.fetchall(), cur.rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)


class _Result:
    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows


class SQLiteStore(SQLStore):
    """An :class:`~fundflow.store.base.AlertStore` on a file written by
    :class:`SQLiteSink`.

    Reads never write: the connection is ``query_only`` except inside a
    write (an action, a user, a case, a delivery), which first migrates an
    older file. A version 1 or 2 file reads as it is through ``iter``,
    ``get``, ``status``, ``count`` and ``events``; the triage reads
    (``page``, ``row``, ``revisions``, ...) migrate it first, or raise
    :class:`StoreError` when the file cannot be written. Results are
    :class:`Alert` objects equal to the highest revision upserted.

    One store may serve several threads: its calls take turns on its one
    connection (a lock), except ``iter`` / ``iter_with_status``, whose
    stream belongs to the thread reading it.
    """

    schema_version = SCHEMA_VERSION
    alert_columns = ", ".join(_ALERT_FIELDS)
    last_ts_column = "last_utc"
    case_ids_column = (
        "(SELECT group_concat(ca.case_id) FROM case_alerts ca WHERE ca.alert_id = alerts.alert_id)"
    )

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = self.name = str(path)
        p = Path(self.path)
        if not p.exists():
            raise StoreNotFoundError(f"alert store not found: {self.path}")
        if not p.is_file():
            raise StoreError(f"alert store {self.path} is not a file")
        self._conn = _connect_reader(p)
        self._lock = threading.RLock()
        try:
            rows = self._conn.execute("SELECT version FROM schema_version").fetchall()
        except sqlite3.Error as exc:
            self._conn.close()
            msg = f"{self.path} is not a fundflow alert store: {one_line(exc)}"
            raise StoreError(msg) from None
        version = rows[0][0] if rows else "none"
        if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
            self._conn.close()
            raise _refused(self.path, version)
        self._version = version

    def close(self) -> None:
        """Release the store (not an alert: see :meth:`close_alert`)."""
        self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- hooks of SQLStore -------------------------------------------------------

    def _no_limit(self) -> Any:
        return -1

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._fetch_unlocked(sql, params)

    def _fetch_unlocked(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read alert store {self.path}: {one_line(exc)}") from None

    @contextlib.contextmanager
    def _read_together(self) -> Iterator[None]:
        # One read transaction: its snapshot holds until COMMIT (WAL).
        with self._lock:
            try:
                self._conn.execute("BEGIN")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read alert store {self.path}: {one_line(exc)}") from None
            try:
                yield
            finally:
                with contextlib.suppress(sqlite3.Error):  # a read: nothing to keep or lose
                    self._conn.execute("COMMIT")

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        try:
            yield from self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read alert store {self.path}: {one_line(exc)}") from None

    @contextlib.contextmanager
    def _writable(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        conn.execute("PRAGMA query_only = OFF")
        try:
            if self._version < SCHEMA_VERSION:
                _migrate(conn, self.path)
                self._version = SCHEMA_VERSION
            yield conn
        finally:
            conn.execute("PRAGMA query_only = ON")

    @contextlib.contextmanager
    def _tx(self) -> Iterator[_Tx]:
        with self._lock, self._tx_unlocked() as tx:
            yield tx

    @contextlib.contextmanager
    def _tx_unlocked(self) -> Iterator[_Tx]:
        try:
            with self._writable() as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield _Tx(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write alert store {self.path}: {one_line(exc)}") from None

    def _migrate_for_reading(self) -> None:
        with self._lock:
            self._migrate_for_reading_unlocked()

    def _migrate_for_reading_unlocked(self) -> None:
        try:
            with self._writable():
                pass
        except sqlite3.Error as exc:
            raise StoreError(
                f"alert store {self.path} has schema version {self._version} and cannot be"
                f" brought to version {SCHEMA_VERSION} for triage: {one_line(exc)}"
            ) from None

    def _bind_time(self, at: datetime) -> Any:
        return utc_text(at)

    def _read_time(self, value: Any) -> datetime:
        return datetime.fromisoformat(value)

    def _decode_alert(self, row: Sequence[Any]) -> Alert:
        return _alert(row)

    def _decode_case_ids(self, value: Any) -> tuple[int, ...]:
        return tuple(sorted(int(i) for i in value.split(","))) if value else ()


def _connect_reader(path: Path) -> sqlite3.Connection:
    # mode=rw never creates the file, and query_only refuses writes. It is
    # preferred to mode=ro because the last connection to close checkpoints
    # and removes the -wal/-shm files; a mode=ro reader leaves them behind.
    # A file we may not write (read-only media, another user's) gets mode=ro.
    uri = path.resolve().as_uri()
    try:
        try:
            conn = sqlite3.connect(
                uri + "?mode=rw", uri=True, isolation_level=None, check_same_thread=False
            )
        except sqlite3.OperationalError:
            conn = sqlite3.connect(
                uri + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open alert store {path}: {one_line(exc)}") from None
    return conn


def _alert(row: Sequence[Any]) -> Alert:
    fields = dict(zip(_ALERT_FIELDS, row, strict=True))
    fields["accounts"] = msgspec.json.decode(fields["accounts"], type=tuple[str, ...])
    fields["evidence"] = msgspec.json.decode(fields["evidence"], type=dict)
    return Alert(**fields)
