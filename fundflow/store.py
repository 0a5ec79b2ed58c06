"""The alert store: where alerts land, and where the CLI reads them back.

Writers implement :class:`AlertSink` (``upsert`` / ``flush`` / ``close``, and
``with`` closes); readers implement :class:`AlertStore`. :func:`open_sink`
and :func:`open_store` choose the backend from ``db``: a ``postgresql://``
or ``postgres://`` URL is PostgreSQL (:mod:`fundflow.store_pg`, psycopg 3),
anything else is a SQLite file (:class:`SQLiteSink`, :class:`SQLiteStore`,
stdlib ``sqlite3``). Readers never create a store.

Contract of every sink (docs/wire-format.md, "Alerts"):

* keyed by ``alert_id``; of all the revisions of one alert the store keeps the
  **highest** ``revision``. A lower revision arriving late (a redelivery) is
  ignored; an equal one replaces the row (same detector run, same content).
* idempotent: upserting the same alerts again leaves the same rows, including
  the bookkeeping columns (SQLite ``created_seq`` / ``updated_seq``,
  PostgreSQL ``created_at`` / ``updated_at``, and ``status``).
* an upsert leaves ``status`` alone, with one exception: a **closed** alert
  that arrives with a higher revision (it grew after someone closed it, so
  its figures changed) goes back to ``open``, with an audit event
  ``reopened`` by ``fundflow``. An acknowledged alert stays acknowledged.
* buffered: upserts are committed every ``batch_size`` alerts, and on
  ``flush()`` / ``close()``. Until then other readers do not see them.
* JSON columns (``accounts``, ``evidence``) are written with sorted keys, so
  an alert read back is *equal* to the one upserted but its ``evidence``
  dict iterates in key order.
* failures (unwritable path, disk full, not a store, no server) raise
  :class:`StoreError` with a one-line message that never shows a password.

Lifecycle, the same in every store: ``open`` → ``acknowledged`` →
``closed``, and ``open`` → ``closed``. ``store.ack(id, by, note)`` and
``store.close_alert(id, by, note)`` move an alert along and append an
:class:`AlertEvent` to its audit trail (``store.events(id)``); an unknown id
or any other move raises :class:`StoreError`. (The method is ``close_alert``
because ``close()`` releases the store, as on every sink and file.)

>>> import tempfile, os
>>> from fundflow.schemas.records import Alert
>>> a = Alert(alert_id="A1", detector="fund_pool", severity="high",
...           subject_id="P1", accounts=("X",), first_ts="2026-03-01T10:00:00+08:00",
...           last_ts="2026-03-01T11:00:00+08:00", amount="100.00",
...           summary="pooled", evidence={}, detector_version="1")
>>> path = os.path.join(tempfile.mkdtemp(), "alerts.db")
>>> with open_sink(path) as sink:
...     sink.upsert([a])
>>> with open_store(path) as store:
...     store.get("A1") == a, store.count(), store.status("A1")
(True, 1, 'open')
>>> with open_store(path) as store:
...     store.ack("A1", by="wang", note="checking the custody ledger").action
...     store.close_alert("A1", by="wang").action, store.status("A1")
'acknowledged'
('closed', 'closed')
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote

import msgspec

from fundflow.schemas.records import Alert

STATUSES: tuple[str, ...] = ("open", "acknowledged", "closed")

# Actor of the events the store records by itself (a closed alert reopened).
SYSTEM_ACTOR = "fundflow"

# Column order of the alerts table as written and read; the first twelve are
# the Alert fields in declaration order.
_ALERT_FIELDS: tuple[str, ...] = Alert.__struct_fields__
_CONTENT = ", ".join(f for f in _ALERT_FIELDS if f != "alert_id")
_EXCLUDED = ", ".join(f"excluded.{f}" for f in _ALERT_FIELDS if f != "alert_id")

# Migration N (1-based) brings a version N-1 file to version N. Version 1 is
# the original schema, written with IF NOT EXISTS so a v1 file passes through
# it unchanged; later steps must be plain, each one runs exactly once.
_SQLITE_MIGRATIONS: tuple[tuple[str, ...], ...] = (
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
)
SCHEMA_VERSION = len(_SQLITE_MIGRATIONS)

# ``updated_seq`` moves only when the row's content changes, so a replay of
# the same alerts is a true no-op; ``status`` (set by people triaging) and
# ``created_seq`` are never touched by this statement (a reopen is separate).
_UPSERT = f"""
INSERT INTO alerts ({", ".join(_ALERT_FIELDS)}, created_seq, updated_seq)
VALUES ({", ".join("?" * len(_ALERT_FIELDS))}, ?, ?)
ON CONFLICT(alert_id) DO UPDATE SET
    ({_CONTENT}, updated_seq) = ({_EXCLUDED},
        CASE WHEN ({_EXCLUDED}) IS NOT ({_CONTENT})
             THEN excluded.updated_seq ELSE alerts.updated_seq END)
WHERE excluded.revision >= alerts.revision
"""

_SELECT = f"SELECT {', '.join(_ALERT_FIELDS)}, status FROM alerts"


class StoreError(Exception):
    """The store cannot be opened, read or written, or an alert cannot move
    that way; ``str()`` is one line."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """A store opened for reading does not exist (nothing is created)."""


class StoreUnavailableError(StoreError):
    """The store's server cannot be reached, or does not take connections
    yet: refused, not started, starting up or shutting down, out of
    connection slots, a host name not resolvable yet, a timeout. The same
    attempt later may succeed (see :class:`DeferredSink`). Wrong
    credentials, an unknown database or role, a malformed URL and an
    unwritable SQLite path are plain :class:`StoreError`: retrying cannot
    mend them."""


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One line of an alert's audit trail.

    ``action`` is ``acknowledged``, ``closed`` or ``reopened``; ``actor`` is
    who did it (``fundflow`` for a reopen); ``at`` is an aware UTC datetime.
    ``id`` rises with every event of a store.
    """

    id: int
    alert_id: str
    action: str
    actor: str
    note: str | None
    at: datetime


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


class AlertStore(Protocol):
    """Reading and triaging an alert store (``open_store``'s result).

    Filters are exact matches and ``None`` means any; results are ordered by
    ``(first_ts, alert_id)``. ``name`` is what messages call the store (a
    path, or a URL with its password masked).
    """

    name: str

    def iter(
        self,
        detector: str | None = None,
        severity: str | None = None,
        subject: str | None = None,
        limit: int | None = None,
        status: str | None = None,
    ) -> Iterator[Alert]: ...

    def iter_with_status(
        self,
        detector: str | None = None,
        severity: str | None = None,
        subject: str | None = None,
        limit: int | None = None,
        status: str | None = None,
    ) -> Iterator[tuple[Alert, str]]: ...

    def list(
        self,
        detector: str | None = None,
        severity: str | None = None,
        subject: str | None = None,
        limit: int | None = None,
        status: str | None = None,
    ) -> list[Alert]: ...

    def get(self, alert_id: str) -> Alert | None: ...

    def status(self, alert_id: str) -> str | None: ...

    def count(
        self,
        detector: str | None = None,
        severity: str | None = None,
        subject: str | None = None,
        status: str | None = None,
    ) -> int: ...

    def events(self, alert_id: str) -> list[AlertEvent]: ...

    def ack(self, alert_id: str, by: str, note: str | None = None) -> AlertEvent: ...

    def close_alert(self, alert_id: str, by: str, note: str | None = None) -> AlertEvent: ...

    def close(self) -> None: ...

    def __enter__(self) -> AlertStore: ...

    def __exit__(self, *exc_info: object) -> None: ...


# --- choosing a backend -------------------------------------------------------

_PG_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(db: str | os.PathLike[str]) -> bool:
    """Whether ``db`` names a PostgreSQL store (``postgresql://``, ``postgres://``)."""
    return isinstance(db, str) and db.startswith(_PG_SCHEMES)


def _check_not_other_url(db: str | os.PathLike[str]) -> None:
    text = os.fspath(db)
    if isinstance(text, str) and re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        scheme = text.split("://", 1)[0]
        raise StoreError(
            f"unsupported alert store URL scheme {scheme!r}: "
            "use a SQLite file path or a postgresql:// URL"
        )


def _pg_module():  # type: ignore[no-untyped-def]
    try:
        from fundflow import store_pg
    except ImportError as exc:
        if getattr(exc, "name", None) in ("psycopg", "psycopg_binary", "psycopg_c"):
            raise StoreError(
                "a postgresql:// alert store needs psycopg: pip install 'psycopg[binary]>=3.1'"
            ) from None
        raise
    return store_pg


def open_sink(db: str | os.PathLike[str], batch_size: int = 500) -> AlertSink:
    """A sink for ``db``: :class:`~fundflow.store_pg.PostgresSink` for a
    ``postgresql://`` / ``postgres://`` URL (TLS, ``PGPASSWORD`` and
    ``PGPASSFILE`` as libpq reads them), else :class:`SQLiteSink` on that file
    (created if missing). The schema is created or migrated. Raises
    :class:`StoreError` (one line, password masked) when it cannot be opened:
    :class:`StoreUnavailableError` when the server cannot be reached yet.
    """
    if is_postgres_url(db):
        return _pg_module().PostgresSink(str(db), batch_size=batch_size)  # type: ignore[no-any-return]
    _check_not_other_url(db)
    return SQLiteSink(db, batch_size=batch_size)


def open_store(db: str | os.PathLike[str]) -> AlertStore:
    """Open an existing alert store for reading and triage (see ``open_sink``
    for how ``db`` is read). Nothing is created.

    Raises :class:`StoreNotFoundError` (a ``FileNotFoundError``) when a SQLite
    path does not exist, :class:`StoreError` when ``db`` is not a readable
    store (or the server cannot be reached).
    """
    if is_postgres_url(db):
        return _pg_module().PostgresStore(str(db))  # type: ignore[no-any-return]
    _check_not_other_url(db)
    return SQLiteStore(db)


class DeferredSink(AlertSink):
    """A sink whose store may not take connections yet (a PostgreSQL server
    still down or starting up when the worker starts).

    ``opener`` (e.g. ``lambda: open_sink(db)``) is called once at
    construction. :class:`StoreUnavailableError` there leaves the sink
    unopened, with the error in :attr:`error`; any other :class:`StoreError`
    (wrong password, unknown database, malformed URL, newer schema, an
    unwritable SQLite path) is raised, since a later attempt would fail the
    same way. While unopened, ``upsert`` and ``flush`` call ``opener``
    again (so the schema is created or checked then, as usual) and raise
    its :class:`StoreError` while it fails; the alerts upserted meanwhile
    wait here, counted in :attr:`pending`, and go to the opened sink first,
    in order. Opened, it passes every call on. ``close`` does not try to
    open: alerts still waiting then are not written (``pending`` says how
    many).
    """

    def __init__(self, opener: Callable[[], AlertSink], name: str) -> None:
        self.name = name
        self._opener = opener
        self._sink: AlertSink | None = None
        self._waiting: list[Alert] = []
        self._closed = False
        self.error: StoreError | None = None
        try:
            self._sink = opener()
        except StoreUnavailableError as exc:
            self.error = exc

    @property
    def opened(self) -> bool:
        return self._sink is not None

    @property
    def pending(self) -> int:
        """Alerts upserted but not yet committed (waiting here or in the sink)."""
        return len(self._waiting) + int(getattr(self._sink, "pending", 0))

    def upsert(self, alerts: Sequence[Alert]) -> None:
        self._check_open()
        self._waiting.extend(alerts)
        self._opened_sink()

    def flush(self) -> None:
        self._check_open()
        self._opened_sink().flush()

    def close(self) -> None:
        """Closes the opened sink (flushing it); a second call does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._sink is not None:
            self._sink.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"alert store {self.name} is closed")

    def _opened_sink(self) -> AlertSink:
        if self._sink is None:
            try:
                self._sink = self._opener()
            except StoreError as exc:
                self.error = exc
                raise
            self.error = None
        if self._waiting:
            # Handed over before the upsert: what it cannot commit stays in the sink.
            waiting, self._waiting = self._waiting, []
            self._sink.upsert(waiting)
        return self._sink


# --- masking passwords --------------------------------------------------------

# libpq's URI: scheme://[userinfo@]hosts[/dbname][?params]. The userinfo ends
# at the last '@' before the first '/' or '?' after the scheme.
_URL_AUTHORITY = re.compile(r"^(?P<scheme>[^:/?#]+://)(?P<authority>[^/?]*)")
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&]*)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs).

    >>> mask_url("postgresql://alice:s3cret@db.example:5432/fundflow?sslmode=verify-full")
    'postgresql://alice:***@db.example:5432/fundflow?sslmode=verify-full'
    >>> mask_url("postgres://db/fundflow?user=alice&password=s3cret")
    'postgres://db/fundflow?user=alice&password=***'
    """
    m = _URL_AUTHORITY.match(url)
    if m and "@" in m["authority"]:
        userinfo, _, hosts = m["authority"].rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        url = m["scheme"] + userinfo + "@" + hosts + url[m.end() :]
    return _QUERY_PASSWORD.sub(r"\1***", url)


def url_secrets(url: str, env: Mapping[str, str] | None = None) -> list[str]:
    """The password strings ``url`` (raw and percent-decoded) and ``PGPASSWORD``
    carry, longest first: what :func:`scrub` removes from a message."""
    found: list[str] = []
    m = _URL_AUTHORITY.match(url)
    if m and "@" in m["authority"]:
        userinfo = m["authority"].rpartition("@")[0]
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    found += [q.group(2) for q in _QUERY_PASSWORD.finditer(url)]
    env_password = (os.environ if env is None else env).get("PGPASSWORD")
    if env_password:
        found.append(env_password)
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(message: str, secrets: Iterable[str]) -> str:
    """``message`` on one line, with every secret replaced by ``***``."""
    text = " ".join(message.split())
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


# --- lifecycle rules, shared by every backend ---------------------------------

# (move, current status) -> new status; anything else is refused.
_MOVES: dict[tuple[str, str], str] = {
    ("ack", "open"): "acknowledged",
    ("close", "open"): "closed",
    ("close", "acknowledged"): "closed",
}
_VERBS = {"ack": "acknowledge", "close": "close"}


def next_status(alert_id: str, move: str, current: str) -> str:
    """The status ``move`` (``ack`` / ``close``) leads to from ``current``,
    or :class:`StoreError` naming why it cannot happen."""
    new = _MOVES.get((move, current))
    if new is None:
        already = " already" if _MOVES.get((move, "open")) == current else ""
        raise StoreError(f"cannot {_VERBS[move]} alert {alert_id!r}: it is{already} {current}")
    return new


def check_actor(by: str, note: str | None) -> tuple[str, str | None]:
    """``by`` and ``note`` cleaned for the audit trail (``note`` ``""`` is
    ``None``); ``ValueError`` when ``by`` names nobody."""
    if not isinstance(by, str) or not by.strip():
        raise ValueError(f"by must name who acts, got {by!r}")
    if note is not None and not isinstance(note, str):
        raise ValueError(f"note must be text, got {note!r}")
    return by.strip(), (note.strip() or None) if note is not None else None


def check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")


def latest_per_id(batch: Sequence[Alert]) -> dict[str, Alert]:
    """The alert each id ends up as after upserting ``batch`` in order: the
    highest revision, the last of equals."""
    latest: dict[str, Alert] = {}
    for a in batch:
        kept = latest.get(a.alert_id)
        if kept is None or a.revision >= kept.revision:
            latest[a.alert_id] = a
    return latest


def reopened(latest: Mapping[str, Alert], stored: Mapping[str, tuple[int, str]]) -> list[Alert]:
    """Of ``latest`` (see :func:`latest_per_id`), the alerts stored
    (``{id: (revision, status)}``) as closed at a lower revision."""
    return [
        a
        for alert_id, (revision, status) in stored.items()
        if status == "closed" and (a := latest[alert_id]).revision > revision
    ]


def reopen_note(alert: Alert, old_revision: int) -> str:
    return (
        f"revision {alert.revision} replaced revision {old_revision} after closing: "
        f"severity {alert.severity}, amount {alert.amount}"
    )


# --- SQLite -------------------------------------------------------------------


class BufferedSink(AlertSink):
    """The buffering every database sink shares: ``upsert`` collects alerts
    and commits each time ``batch_size`` are waiting; ``flush`` commits the
    rest; ``close`` flushes and releases the connection once. Subclasses set
    ``name``, ``batch_size``, ``_buffer`` and ``_conn`` and implement
    ``_commit(n)``, which writes the first ``n`` buffered alerts in one
    transaction and removes them from the buffer only when it succeeds."""

    name: str
    batch_size: int
    _buffer: list[Alert]
    _conn: Any

    @staticmethod
    def _check_batch_size(batch_size: object) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")

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
            raise StoreError(f"alert store {self.name} is closed")


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
    """An :class:`AlertSink` on one SQLite file (created if missing) in WAL
    mode, so readers such as ``fundflow alerts list`` never block the writer.
    A file of an older schema version is migrated when the sink opens it.

    ``batch_size`` (>= 1) alerts make one transaction. A batch that fails to
    commit stays buffered and the :class:`StoreError` is raised.
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
            raise StoreError(f"cannot open alert store {self.path}: {_one_line(exc)}") from None
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
            raise StoreError(f"cannot open alert store {self.path}: {_one_line(exc)}") from None
        self._conn = conn

    def _commit(self, n: int) -> None:
        assert self._conn is not None
        batch = self._buffer[:n]
        conn = self._conn
        try:
            # IMMEDIATE takes the write lock before reading the sequence, so
            # two writers on one file cannot hand out the same numbers.
            conn.execute("BEGIN IMMEDIATE")
            seq = conn.execute("SELECT COALESCE(MAX(updated_seq), 0) FROM alerts").fetchone()[0]
            latest = latest_per_id(batch)
            stored = {
                alert_id: (revision, status)
                for alert_id, revision, status in conn.execute(
                    "SELECT alert_id, revision, status FROM alerts"
                    " WHERE alert_id IN (SELECT value FROM json_each(?))",
                    (_encode_json(list(latest)),),
                )
            }
            conn.executemany(_UPSERT, (_row(a, seq + i + 1) for i, a in enumerate(batch)))
            now = _utc_text(datetime.now(UTC))
            for a in reopened(latest, stored):
                conn.execute("UPDATE alerts SET status = 'open' WHERE alert_id = ?", (a.alert_id,))
                conn.execute(
                    "INSERT INTO alert_events (alert_id, action, actor, note, at)"
                    " VALUES (?, 'reopened', ?, ?, ?)",
                    (a.alert_id, SYSTEM_ACTOR, reopen_note(a, stored[a.alert_id][0]), now),
                )
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


def _utc_text(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


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
        for step in _SQLITE_MIGRATIONS[current:]:
            for statement in step:
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


class StoreReader:
    """What every store's reader derives from ``iter_with_status``."""

    def iter_with_status(
        self,
        detector: str | None = None,
        severity: str | None = None,
        subject: str | None = None,
        limit: int | None = None,
        status: str | None = None,
    ) -> Iterator[tuple[Alert, str]]:
        raise StoreError(f"{type(self).__name__} cannot list alerts")

    def iter(
        self,
        detector: str | None = None,
        severity: str | None = None,
        subject: str | None = None,
        limit: int | None = None,
        status: str | None = None,
    ) -> Iterator[Alert]:
        """Yield matching alerts one at a time (for exports of any size)."""
        for alert, _ in self.iter_with_status(detector, severity, subject, limit, status):
            yield alert

    def list(
        self,
        detector: str | None = None,
        severity: str | None = None,
        subject: str | None = None,
        limit: int | None = None,
        status: str | None = None,
    ) -> list[Alert]:
        """Matching alerts, at most ``limit`` of them."""
        return [*self.iter(detector, severity, subject, limit, status)]


class SQLiteStore(StoreReader):
    """An :class:`AlertStore` on a file written by :class:`SQLiteSink`.

    Reads never write: the connection is ``query_only`` except inside
    :meth:`ack` / :meth:`close_alert`, which first migrate an older file
    (a version 1 file reads fine as it is; it just has no audit trail yet).
    Results are :class:`Alert` objects equal to the highest revision
    upserted, ordered by ``(first_ts, alert_id)``.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = self.name = str(path)
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
        version = rows[0][0] if rows else "none"
        if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
            self._conn.close()
            raise _refused(self.path, version)
        self._version = version

    def iter_with_status(
        self,
        detector: str | None = None,
        severity: str | None = None,
        subject: str | None = None,
        limit: int | None = None,
        status: str | None = None,
    ) -> Iterator[tuple[Alert, str]]:
        """Yield matching ``(alert, status)`` pairs one at a time."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit!r}")
        check_status(status)
        where, params = _where(detector, severity, subject, status, "?")
        sql = f"{_SELECT}{where} ORDER BY first_ts, alert_id LIMIT ?"
        for row in self._query(sql, (*params, -1 if limit is None else limit)):
            yield _alert(row[:-1]), row[-1]

    def get(self, alert_id: str) -> Alert | None:
        """The alert with this id, or ``None``."""
        rows = [*self._query(f"{_SELECT} WHERE alert_id = ?", (alert_id,))]
        return _alert(rows[0][:-1]) if rows else None

    def status(self, alert_id: str) -> str | None:
        """The alert's status (``open``, ``acknowledged``, ``closed``), or ``None``."""
        rows = [*self._query("SELECT status FROM alerts WHERE alert_id = ?", (alert_id,))]
        return str(rows[0][0]) if rows else None

    def count(
        self,
        detector: str | None = None,
        severity: str | None = None,
        subject: str | None = None,
        status: str | None = None,
    ) -> int:
        """How many alerts match."""
        check_status(status)
        where, params = _where(detector, severity, subject, status, "?")
        return int(next(self._query(f"SELECT COUNT(*) FROM alerts{where}", params))[0])

    def events(self, alert_id: str) -> list[AlertEvent]:
        """The alert's audit trail, oldest first (empty for an unknown id)."""
        if self._version < 2:
            return []
        sql = (
            "SELECT id, alert_id, action, actor, note, at FROM alert_events"
            " WHERE alert_id = ? ORDER BY id"
        )
        return [
            AlertEvent(i, a, action, actor, note, datetime.fromisoformat(at))
            for i, a, action, actor, note, at in self._query(sql, (alert_id,))
        ]

    def ack(self, alert_id: str, by: str, note: str | None = None) -> AlertEvent:
        """``open`` → ``acknowledged``, recorded as by ``by``."""
        return self._move(alert_id, "ack", by, note)

    def close_alert(self, alert_id: str, by: str, note: str | None = None) -> AlertEvent:
        """``open`` or ``acknowledged`` → ``closed``, recorded as by ``by``."""
        return self._move(alert_id, "close", by, note)

    def close(self) -> None:
        """Release the store (not an alert: see :meth:`close_alert`)."""
        self._conn.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _move(self, alert_id: str, move: str, by: str, note: str | None) -> AlertEvent:
        by, note = check_actor(by, note)
        conn = self._conn
        try:
            conn.execute("PRAGMA query_only = OFF")
            try:
                if self._version < SCHEMA_VERSION:
                    _migrate(conn, self.path)
                    self._version = SCHEMA_VERSION
                conn.execute("BEGIN IMMEDIATE")
                try:
                    row = conn.execute(
                        "SELECT status FROM alerts WHERE alert_id = ?", (alert_id,)
                    ).fetchone()
                    if row is None:
                        raise StoreError(f"no alert {alert_id!r} in {self.path}")
                    new = next_status(alert_id, move, row[0])
                    at = datetime.now(UTC)
                    conn.execute("UPDATE alerts SET status = ? WHERE alert_id = ?", (new, alert_id))
                    event_id = conn.execute(
                        "INSERT INTO alert_events (alert_id, action, actor, note, at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (alert_id, new, by, note, _utc_text(at)),
                    ).lastrowid
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            finally:
                conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write alert store {self.path}: {_one_line(exc)}") from None
        return AlertEvent(int(event_id or 0), alert_id, new, by, note, at)

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
            conn = sqlite3.connect(uri + "?mode=rw", uri=True, isolation_level=None)
        except sqlite3.OperationalError:
            conn = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None)
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open alert store {path}: {_one_line(exc)}") from None
    return conn


def _where(
    detector: str | None,
    severity: str | None,
    subject: str | None,
    status: str | None,
    placeholder: str,
) -> tuple[str, tuple[str, ...]]:
    """A ``WHERE`` clause (or ``""``) and its parameters; ``placeholder`` is
    the driver's (``?`` for sqlite3, ``%s`` for psycopg)."""
    clauses = [
        (col, value)
        for col, value in (
            ("detector", detector),
            ("severity", severity),
            ("subject_id", subject),
            ("status", status),
        )
        if value is not None
    ]
    if not clauses:
        return "", ()
    where = " AND ".join(f"{c} = {placeholder}" for c, _ in clauses)
    return " WHERE " + where, tuple(v for _, v in clauses)


def _alert(row: Sequence[Any]) -> Alert:
    fields = dict(zip(_ALERT_FIELDS, row, strict=True))
    fields["accounts"] = msgspec.json.decode(fields["accounts"], type=tuple[str, ...])
    fields["evidence"] = msgspec.json.decode(fields["evidence"], type=dict)
    return Alert(**fields)
