"""The PostgreSQL alert store: :class:`PostgresSink` and :class:`PostgresStore`.

The same contract as the SQLite store (see :mod:`fundflow.store`): keyed by
``alert_id``, highest revision kept, idempotent, buffered in batches of
``batch_size`` (one transaction each, written with ``executemany``), status
left alone by upserts except that a closed alert which grows is reopened,
and the same lifecycle and audit trail. Opened through
:func:`fundflow.store.open_sink` / :func:`~fundflow.store.open_store` with a
``postgresql://`` or ``postgres://`` URL, passed to libpq as it is: TLS
(``sslmode``, ``sslrootcert``, ...), ``PGPASSWORD``, ``PGPASSFILE`` and the
other ``PG*`` variables work as libpq documents them.

Schema (the tables live in the connection's ``search_path``):

* ``fundflow_schema_version(version, applied_at)``: one row per migration
  applied. :data:`MIGRATIONS` is the ordered list of steps; a sink applies
  the missing ones in one transaction under a transaction-scoped advisory
  lock, so workers starting together do not race. Version numbers mean the
  same as SQLite's (1: alerts, 2: audit trail).
* ``alerts``: the Alert fields (``accounts`` / ``evidence`` JSONB,
  ``first_ts`` / ``last_ts`` timestamptz plus their original text in
  ``first_ts_text`` / ``last_ts_text`` so an alert reads back *equal*,
  ``amount`` numeric(20,2)), ``revision``, ``status``, ``created_at``, and
  ``updated_at`` (moves when the content changes, like SQLite's
  ``updated_seq``; status changes are in the audit trail).
* ``alert_events(id, alert_id, action, actor, note, at)``.

Every :class:`psycopg.Error` becomes a one-line
:class:`~fundflow.store.StoreError` in which the URL's password and
``PGPASSWORD`` are replaced by ``***``.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from fundflow.schemas.records import Alert

from .redact import read_secret_file
from .store import (
    SYSTEM_ACTOR,
    AlertEvent,
    BufferedSink,
    StoreError,
    StoreReader,
    StoreUnavailableError,
    _encode_json,
    _where,
    check_actor,
    check_status,
    latest_per_id,
    mask_url,
    next_status,
    reopen_note,
    reopened,
    scrub,
    url_secrets,
)

# pg_advisory_xact_lock key for migrations: "fundflow" in ASCII.
MIGRATION_LOCK = 0x66756E64666C6F77

# Migration N (1-based) brings version N-1 to N; each runs exactly once, in
# order, in the transaction that records it. Never edit a released step:
# append a new one. Identifiers are "C"-collated so ordering and uniqueness
# are by code point, as in SQLite and Python, whatever the database locale.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE alerts (
            alert_id         text COLLATE "C" PRIMARY KEY,
            detector         text COLLATE "C" NOT NULL,
            severity         text COLLATE "C" NOT NULL,
            subject_id       text COLLATE "C" NOT NULL,
            accounts         jsonb NOT NULL,
            first_ts         timestamptz NOT NULL,
            last_ts          timestamptz NOT NULL,
            amount           numeric(20, 2) NOT NULL,
            summary          text NOT NULL,
            evidence         jsonb NOT NULL,
            detector_version text NOT NULL,
            revision         integer NOT NULL,
            first_ts_text    text NOT NULL,
            last_ts_text     text NOT NULL,
            status           text NOT NULL DEFAULT 'open'
                             CHECK (status IN ('open', 'acknowledged', 'closed')),
            created_at       timestamptz NOT NULL DEFAULT now(),
            updated_at       timestamptz NOT NULL DEFAULT now()
        )""",
        "CREATE INDEX alerts_detector_severity ON alerts (detector, severity)",
        "CREATE INDEX alerts_subject ON alerts (subject_id)",
        "CREATE INDEX alerts_status ON alerts (status)",
        "CREATE INDEX alerts_last_ts ON alerts (last_ts)",
    ),
    (
        """CREATE TABLE alert_events (
            id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            alert_id text COLLATE "C" NOT NULL REFERENCES alerts (alert_id),
            action   text NOT NULL CHECK (action IN ('acknowledged', 'closed', 'reopened')),
            actor    text NOT NULL,
            note     text,
            at       timestamptz NOT NULL DEFAULT now()
        )""",
        "CREATE INDEX alert_events_alert ON alert_events (alert_id, id)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# Written columns, in the order of _row().
_COLUMNS = (
    "alert_id", "detector", "severity", "subject_id", "accounts", "first_ts", "last_ts",
    "amount", "summary", "evidence", "detector_version", "revision",
    "first_ts_text", "last_ts_text",
)  # fmt: skip
_CONTENT = [c for c in _COLUMNS if c != "alert_id"]
_CASTS = {"accounts": "::jsonb", "evidence": "::jsonb"}

# A lower revision, or the same row again, writes nothing (not even a new
# row version), so a replay is a true no-op and updated_at keeps its time.
_UPSERT = f"""
INSERT INTO alerts ({", ".join(_COLUMNS)})
VALUES ({", ".join("%s" + _CASTS.get(c, "") for c in _COLUMNS)})
ON CONFLICT (alert_id) DO UPDATE SET
    ({", ".join(_CONTENT)}, updated_at) = ({", ".join("excluded." + c for c in _CONTENT)}, now())
WHERE excluded.revision >= alerts.revision
  AND ({", ".join("alerts." + c for c in _CONTENT)})
      IS DISTINCT FROM ({", ".join("excluded." + c for c in _CONTENT)})
"""

# Read back in Alert field order, then status; text forms so that the
# decoding is the SQLite store's.
_SELECT = (
    "SELECT alert_id, detector, severity, subject_id, accounts::text, first_ts_text,"
    " last_ts_text, amount::text, summary, evidence::text, detector_version, revision,"
    " status FROM alerts"
)

_AMOUNT = re.compile(r"-?[0-9]{1,18}\.[0-9]{2}")
_DEADLOCK_RETRIES = 3
_cursor_names = (f"fundflow_alerts_{i}" for i in itertools.count(1))
#: Names a file holding the password, for a URL without one (when PGPASSWORD
#: is not set either): the way container and systemd secrets arrive.
PASSWORD_FILE_ENV = "FUNDFLOW_PG_PASSWORD_FILE"

# A failed connection has no SQLSTATE in psycopg, only libpq's text (and the
# server's, for a FATAL at start-up): these say the server is not there or
# not taking connections yet, so the same attempt later may succeed...
_UNREACHABLE = re.compile(
    "|".join(
        (
            r"Connection refused",
            r"on socket \"[^\"]*\" failed: No such file or directory",  # server not started
            r"timeout expired",
            r"Connection timed out",
            r"Network is unreachable",
            r"No route to host",
            r"Connection reset by peer",
            r"server closed the connection unexpectedly",
            r"Name or service not known",
            r"Temporary failure in name resolution",
            r"No address associated with hostname",
            r"the database system is (starting up|shutting down|in recovery mode)",
            r"the database system is not (yet )?accepting connections",
            r"sorry, too many clients already",
            r"remaining connection slots are reserved",
        )
    ),
    re.IGNORECASE,
)
# ...unless the text also says the server refused who we are or what we ask
# for (several hosts, or several addresses of one, are tried in turn).
_REFUSED = re.compile(
    r"authentication failed|no password supplied|no pg_hba\.conf entry|does not exist"
    r"|permission denied|SSL was required|certificate",
    re.IGNORECASE,
)
# SQLSTATEs of an open connection that a new one may not meet: class 08
# (connection exception), admin / crash shutdown, cannot connect now, too
# many connections.
_UNREACHABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def unreachable(exc: psycopg.Error) -> bool:
    """Whether ``exc`` says the server cannot be reached or does not take
    connections yet (a retry may mend it), rather than refusing these
    credentials, this database or this URL (it cannot).

    libpq's and the server's English texts are matched (psycopg gives no
    SQLSTATE for a failed connection); a text in another language, or any
    failure not listed, counts as not mendable.
    """
    if not isinstance(exc, psycopg.OperationalError):
        return False  # ProgrammingError: a malformed URL or option
    state = exc.sqlstate
    if state is not None:
        return state.startswith("08") or state in _UNREACHABLE_STATES
    text = str(exc)
    return bool(_UNREACHABLE.search(text)) and not _REFUSED.search(text)


def connect(url: str, name: str) -> psycopg.Connection[Any]:
    """An autocommit connection to ``url``; :class:`StoreError` (one line,
    no password) when the URL is malformed or the server refuses, and
    :class:`~fundflow.store.StoreUnavailableError` when it cannot be reached
    or does not take connections yet (see :func:`unreachable`)."""
    secrets = url_secrets(url)
    extra: dict[str, Any] = {}
    password_file = os.environ.get(PASSWORD_FILE_ENV)
    if password_file:
        # A secret mounted as a file (Docker/Kubernetes secrets, systemd
        # credentials); a password in the URL or PGPASSWORD still wins.
        try:
            extra["password"] = read_secret_file(password_file, PASSWORD_FILE_ENV)
        except ValueError as exc:
            raise StoreError(f"cannot open alert store {name}: {exc}") from None
        secrets = sorted({*secrets, extra["password"]}, key=len, reverse=True)
    try:
        params = conninfo_to_dict(url)
        if "password" in params or "PGPASSWORD" in os.environ:
            extra.pop("password", None)
        if "connect_timeout" not in params and "PGCONNECT_TIMEOUT" not in os.environ:
            extra["connect_timeout"] = 10
        if "application_name" not in params and "PGAPPNAME" not in os.environ:
            extra["application_name"] = "fundflow"
        return psycopg.connect(url, autocommit=True, **extra)
    except psycopg.Error as exc:
        error = StoreUnavailableError if unreachable(exc) else StoreError
        raise error(f"cannot open alert store {name}: {scrub(str(exc), secrets)}") from None


def schema_version(conn: psycopg.Connection[Any]) -> int | None:
    """The store's schema version; ``None`` when there is no version table."""
    if conn.execute("SELECT to_regclass('fundflow_schema_version')").fetchone() == (None,):
        return None
    row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM fundflow_schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: psycopg.Connection[Any], name: str) -> int:
    """Bring the store up to :data:`SCHEMA_VERSION` and return it.

    A store already current is only read (no DDL, no lock), so a role with
    no CREATE privilege can write alerts once an owner has migrated. The
    steps run in one transaction holding :data:`MIGRATION_LOCK`; a second
    worker waits for it, then finds nothing left to do. A newer store is
    refused with :class:`StoreError`.
    """
    version = schema_version(conn)
    if version == SCHEMA_VERSION:
        return version
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS fundflow_schema_version ("
            " version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        version = schema_version(conn) or 0
        if version > SCHEMA_VERSION:
            raise _refused(name, version)
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[number - 1]:
                conn.execute(statement)
            conn.execute("INSERT INTO fundflow_schema_version (version) VALUES (%s)", (number,))
    return SCHEMA_VERSION


def _refused(name: str, version: object) -> StoreError:
    return StoreError(
        f"alert store {name} has schema version {version}, "
        f"this fundflow reads versions 1 to {SCHEMA_VERSION}"
    )


class PostgresSink(BufferedSink):
    """An :class:`~fundflow.store.AlertSink` on a PostgreSQL database.

    Opening it connects and migrates the schema. Each batch is one
    transaction: the batch's existing rows are locked in ``alert_id`` order,
    the alerts are upserted in that order with ``executemany`` (pipelined),
    and closed alerts that grew are reopened. A batch that fails to commit
    stays buffered and :class:`StoreError` is raised; if the connection was
    lost, the next ``flush`` reconnects. ``name`` is the URL with its
    password masked.
    """

    def __init__(self, url: str, batch_size: int = 500) -> None:
        self._check_batch_size(batch_size)
        self.name = mask_url(url)
        self.batch_size = batch_size
        self._url = url
        self._secrets = url_secrets(url)
        self._buffer: list[Alert] = []
        self._conn: psycopg.Connection[Any] | None = None
        self._conn = self._open()

    def _open(self) -> psycopg.Connection[Any]:
        conn = connect(self._url, self.name)
        try:
            migrate(conn, self.name)
        except StoreError:
            conn.close()
            raise
        except psycopg.Error as exc:
            conn.close()
            error = StoreUnavailableError if unreachable(exc) else StoreError
            raise error(f"cannot open alert store {self.name}: {self._scrub(exc)}") from None
        return conn

    def _scrub(self, exc: BaseException) -> str:
        return scrub(str(exc), self._secrets) or type(exc).__name__

    def _commit(self, n: int) -> None:
        assert self._conn is not None
        latest = latest_per_id(self._buffer[:n])
        # Sorted: every writer locks and inserts rows in the same order, so
        # two sinks with overlapping batches wait for each other, not deadlock.
        ids = sorted(latest)
        rows = [_row(latest[i]) for i in ids]
        if self._conn.closed:
            self._conn = self._open()
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                self._write(ids, rows, latest)
                break
            except pg_errors.DeadlockDetected as exc:
                if attempt == _DEADLOCK_RETRIES - 1:
                    raise StoreError(
                        f"cannot write alert store {self.name}: {self._scrub(exc)}"
                    ) from None
            except psycopg.Error as exc:
                raise StoreError(
                    f"cannot write alert store {self.name}: {self._scrub(exc)}"
                ) from None
        del self._buffer[:n]

    def _write(self, ids: list[str], rows: list[tuple[Any, ...]], latest: dict[str, Alert]) -> None:
        assert self._conn is not None
        with self._conn.transaction(), self._conn.cursor() as cur:
            # Locking the existing rows first means nobody closes one of them
            # between our reading its status and our upserting it.
            cur.execute(
                "SELECT alert_id, revision, status FROM alerts"
                " WHERE alert_id = ANY(%s) ORDER BY alert_id FOR UPDATE",
                (ids,),
            )
            stored = {alert_id: (revision, status) for alert_id, revision, status in cur}
            cur.executemany(_UPSERT, rows)
            back = reopened(latest, stored)
            if back:
                cur.executemany(
                    "UPDATE alerts SET status = 'open' WHERE alert_id = %s",
                    [(a.alert_id,) for a in back],
                )
                cur.executemany(
                    "INSERT INTO alert_events (alert_id, action, actor, note)"
                    " VALUES (%s, 'reopened', %s, %s)",
                    [
                        (a.alert_id, SYSTEM_ACTOR, reopen_note(a, stored[a.alert_id][0]))
                        for a in back
                    ],
                )


def _row(a: Alert) -> tuple[Any, ...]:
    if not isinstance(a.amount, str) or not _AMOUNT.fullmatch(a.amount):
        # numeric(20,2) would round or pad it, and it would not read back equal.
        raise StoreError(f"alert {a.alert_id}: amount {a.amount!r} is not yuan with 2 decimals")
    return (
        a.alert_id, a.detector, a.severity, a.subject_id, _encode_json(a.accounts),
        _instant(a, "first_ts"), _instant(a, "last_ts"), Decimal(a.amount), a.summary,
        _encode_json(a.evidence), a.detector_version, a.revision, a.first_ts, a.last_ts,
    )  # fmt: skip


def _instant(a: Alert, field: str) -> datetime:
    text = getattr(a, field)
    try:
        at = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise StoreError(f"alert {a.alert_id}: {field} {text!r} is not an ISO-8601 time") from None
    if at.tzinfo is None:
        raise StoreError(f"alert {a.alert_id}: {field} {text!r} has no UTC offset")
    return at


def _alert(row: Sequence[Any]) -> Alert:
    fields: dict[str, Any] = dict(zip(Alert.__struct_fields__, row, strict=True))
    fields["accounts"] = msgspec.json.decode(fields["accounts"], type=tuple[str, ...])
    # jsonb keeps keys in its own order (shortest first); sort them as the
    # SQLite store does, so exports of both stores are byte-identical.
    evidence = msgspec.json.decode(fields["evidence"], type=dict)
    fields["evidence"] = msgspec.json.decode(_encode_json(evidence), type=dict)
    return Alert(**fields)


class PostgresStore(StoreReader):
    """An :class:`~fundflow.store.AlertStore` on a PostgreSQL database.

    Opening it never creates anything: a database without
    ``fundflow_schema_version`` is not a store (:class:`StoreError`). Reads
    need only SELECT; :meth:`ack` / :meth:`close_alert` migrate an older
    store first. ``iter`` streams through a server-side cursor, so exports
    of any size run in constant memory. Ordered by ``(first_ts, alert_id)``,
    ``first_ts`` as an instant.
    """

    def __init__(self, url: str) -> None:
        self.name = mask_url(url)
        self._secrets = url_secrets(url)
        self._conn = connect(url, self.name)
        try:
            version = schema_version(self._conn)
        except psycopg.Error as exc:
            self._conn.close()
            raise StoreError(f"cannot read alert store {self.name}: {self._scrub(exc)}") from None
        if version is None:
            self._conn.close()
            raise StoreError(
                f"{self.name} is not a fundflow alert store: no fundflow_schema_version table"
            )
        if not 1 <= version <= SCHEMA_VERSION:
            self._conn.close()
            raise _refused(self.name, version)
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
        where, params = _where(detector, severity, subject, status, "%s")
        sql = f"{_SELECT}{where} ORDER BY first_ts, alert_id LIMIT %s"
        try:
            with self._conn.transaction(), self._conn.cursor(name=next(_cursor_names)) as cur:
                cur.itersize = 1000
                cur.execute(sql, (*params, limit))
                for row in cur:
                    yield _alert(row[:-1]), row[-1]
        except psycopg.Error as exc:
            raise StoreError(f"cannot read alert store {self.name}: {self._scrub(exc)}") from None

    def get(self, alert_id: str) -> Alert | None:
        """The alert with this id, or ``None``."""
        rows = self._fetch(f"{_SELECT} WHERE alert_id = %s", (alert_id,))
        return _alert(rows[0][:-1]) if rows else None

    def status(self, alert_id: str) -> str | None:
        """The alert's status (``open``, ``acknowledged``, ``closed``), or ``None``."""
        rows = self._fetch("SELECT status FROM alerts WHERE alert_id = %s", (alert_id,))
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
        where, params = _where(detector, severity, subject, status, "%s")
        return int(self._fetch(f"SELECT COUNT(*) FROM alerts{where}", params)[0][0])

    def events(self, alert_id: str) -> list[AlertEvent]:
        """The alert's audit trail, oldest first (empty for an unknown id)."""
        if self._version < 2:
            return []
        rows = self._fetch(
            "SELECT id, alert_id, action, actor, note, at FROM alert_events"
            " WHERE alert_id = %s ORDER BY id",
            (alert_id,),
        )
        return [
            AlertEvent(i, a, act, who, note, at.astimezone(UTC))
            for i, a, act, who, note, at in rows
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

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _move(self, alert_id: str, move: str, by: str, note: str | None) -> AlertEvent:
        by, note = check_actor(by, note)
        conn = self._conn
        try:
            if self._version < SCHEMA_VERSION:
                self._version = migrate(conn, self.name)
            with conn.transaction():
                row = conn.execute(
                    "SELECT status FROM alerts WHERE alert_id = %s FOR UPDATE", (alert_id,)
                ).fetchone()
                if row is None:
                    raise StoreError(f"no alert {alert_id!r} in {self.name}")
                new = next_status(alert_id, move, row[0])
                conn.execute("UPDATE alerts SET status = %s WHERE alert_id = %s", (new, alert_id))
                event = conn.execute(
                    "INSERT INTO alert_events (alert_id, action, actor, note)"
                    " VALUES (%s, %s, %s, %s) RETURNING id, at",
                    (alert_id, new, by, note),
                ).fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"cannot write alert store {self.name}: {self._scrub(exc)}") from None
        assert event is not None
        return AlertEvent(event[0], alert_id, new, by, note, event[1].astimezone(UTC))

    def _fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"cannot read alert store {self.name}: {self._scrub(exc)}") from None

    def _scrub(self, exc: BaseException) -> str:
        return scrub(str(exc), self._secrets) or type(exc).__name__
