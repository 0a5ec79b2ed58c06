"""The PostgreSQL alert store: :class:`PostgresSink` and :class:`PostgresStore`.

The same contract as the SQLite store (see :mod:`fundflow.store`): keyed by
``alert_id``, highest revision kept, idempotent, buffered in batches of
``batch_size`` (one transaction each, written with ``executemany``), status
left alone by upserts except that a closed alert which grows is reopened,
and the same lifecycle, audit trail and triage tables; the readers and the
triage writes are :class:`fundflow.store.sql.SQLStore`'s. Opened through
:func:`fundflow.store.open_sink` / :func:`~fundflow.store.open_store` with a
``postgresql://`` or ``postgres://`` URL, passed to libpq as it is: TLS
(``sslmode``, ``sslrootcert``, ...), ``PGPASSWORD``, ``PGPASSFILE`` and the
other ``PG*`` variables work as libpq documents them.

Schema (the tables live in the connection's ``search_path``):

* ``fundflow_schema_version(version, applied_at)``: one row per migration
  applied. :data:`MIGRATIONS` is the ordered list of steps; a sink applies
  the missing ones in one transaction under a transaction-scoped advisory
  lock, so workers starting together do not race. Version numbers mean the
  same as SQLite's (1: alerts, 2: audit trail, 3: triage).
* ``alerts``: the Alert fields (``accounts`` / ``evidence`` JSONB,
  ``first_ts`` / ``last_ts`` timestamptz plus their original text in
  ``first_ts_text`` / ``last_ts_text`` so an alert reads back *equal*,
  ``amount`` numeric(20,2)), ``revision``, ``status``, ``created_at``, and
  ``updated_at`` (moves when the content changes, like SQLite's
  ``updated_seq``; status changes are in the audit trail).
* ``alert_events(id, alert_id, action, actor, note, at)``.
* version 3: ``alerts`` gains ``assignee`` and the sort and search columns
  ``severity_rank``, ``amount_fen`` and ``haystack`` (trigram-indexed when
  the ``pg_trgm`` extension can be created); the tables ``alert_revisions``,
  ``users``, ``tokens``, ``cases``, ``case_alerts``, ``case_events``,
  ``notices``, ``deliveries``, ``alert_counts`` (alerts per status,
  severity and detector, kept by every write) and ``store_meta``. The indexes that keep the
  queue fast are listed in ``fundflow/store/README.md`` with their figures.

Every :class:`psycopg.Error` becomes a one-line
:class:`~fundflow.store.StoreError` in which the URL's password and
``PGPASSWORD`` are replaced by ``***``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from fundflow.redact import read_secret_file
from fundflow.schemas.records import Alert

from .base import (
    AlertEvent,
    AlertFilter,
    AlertPage,
    AlertView,
    BufferedSink,
    CaseRef,
    StoreError,
    StoreUnavailableError,
    alert_instant,
    alert_json,
    amount_fen,
    decode_alert,
    encode_json,
    haystack,
    latest_per_id,
    severity_rank,
    sorted_keys,
)
from .sql import SQLStore, impossible_key, stored_state, write_batch_effects
from .urls import mask_url, scrub, url_secrets

Step = str | Callable[[psycopg.Connection[Any]], None]

# pg_advisory_xact_lock key for migrations: "fundflow" in ASCII.
MIGRATION_LOCK = 0x66756E64666C6F77

# Migration N (1-based) brings version N-1 to N; each runs exactly once, in
# order, in the transaction that records it. Never edit a released step:
# append a new one. Identifiers are "C"-collated so ordering and uniqueness
# are by code point, as in SQLite and Python, whatever the database locale.
MIGRATIONS: tuple[tuple[Step, ...], ...] = (
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
    (
        """ALTER TABLE alerts
            ADD COLUMN assignee      text COLLATE "C",
            ADD COLUMN severity_rank smallint NOT NULL DEFAULT -1,
            ADD COLUMN amount_fen    bigint NOT NULL DEFAULT 0,
            ADD COLUMN haystack      text COLLATE "C" NOT NULL DEFAULT ''""",
        "ALTER TABLE alert_events DROP CONSTRAINT alert_events_action_check",
        """ALTER TABLE alert_events ADD CONSTRAINT alert_events_action_check CHECK (action IN
            ('acknowledged', 'closed', 'reopened', 'assigned', 'commented'))""",
        """CREATE TABLE alert_revisions (
            alert_id text COLLATE "C" NOT NULL,
            revision integer NOT NULL,
            body     text NOT NULL,
            seen_at  timestamptz NOT NULL,
            PRIMARY KEY (alert_id, revision)
        )""",
        """CREATE TABLE users (
            name          text COLLATE "C" PRIMARY KEY,
            role          text NOT NULL CHECK (role IN ('viewer', 'analyst', 'admin')),
            password_hash text NOT NULL,
            disabled      boolean NOT NULL DEFAULT false,
            created_at    timestamptz NOT NULL
        )""",
        """CREATE TABLE tokens (
            token_hash text COLLATE "C" PRIMARY KEY,
            user_name  text COLLATE "C" NOT NULL REFERENCES users (name),
            kind       text NOT NULL CHECK (kind IN ('api', 'session')),
            created_at timestamptz NOT NULL,
            expires_at timestamptz,
            csrf_hash  text
        )""",
        "CREATE INDEX tokens_user ON tokens (user_name)",
        """CREATE TABLE cases (
            case_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            title      text NOT NULL,
            status     text NOT NULL CHECK (status IN ('open', 'closed')),
            owner      text COLLATE "C",
            created_by text NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        )""",
        """CREATE TABLE case_alerts (
            case_id  bigint NOT NULL REFERENCES cases (case_id),
            alert_id text COLLATE "C" NOT NULL REFERENCES alerts (alert_id),
            added_by text NOT NULL,
            added_at timestamptz NOT NULL,
            PRIMARY KEY (case_id, alert_id)
        )""",
        "CREATE INDEX case_alerts_alert ON case_alerts (alert_id, case_id)",
        """CREATE TABLE case_events (
            id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            case_id  bigint NOT NULL REFERENCES cases (case_id),
            action   text NOT NULL,
            actor    text NOT NULL,
            note     text,
            alert_id text COLLATE "C",
            at       timestamptz NOT NULL
        )""",
        "CREATE INDEX case_events_case ON case_events (case_id, id)",
        """CREATE TABLE notices (
            notice_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            alert_id   text COLLATE "C" NOT NULL,
            revision   integer NOT NULL,
            kind       text NOT NULL CHECK (kind IN ('new', 'severity_rise')),
            severity   text NOT NULL,
            created_at timestamptz NOT NULL
        )""",
        """CREATE TABLE deliveries (
            notice_id    bigint NOT NULL REFERENCES notices (notice_id),
            hook         text COLLATE "C" NOT NULL,
            state        text NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
            attempts     integer NOT NULL,
            next_at      timestamptz,
            last_error   text,
            delivered_at timestamptz,
            retried_by   text,
            retried_at   timestamptz,
            PRIMARY KEY (notice_id, hook)
        )""",
        "CREATE INDEX deliveries_due ON deliveries (next_at, notice_id) WHERE state = 'pending'",
        "CREATE TABLE store_meta (key text PRIMARY KEY, value text NOT NULL)",
        lambda conn: _cursor_key(conn),
        lambda conn: _backfill(conn),
        """CREATE TABLE alert_counts (
            status        text NOT NULL,
            severity_rank smallint NOT NULL,
            detector      text COLLATE "C" NOT NULL,
            n             bigint NOT NULL,
            PRIMARY KEY (status, severity_rank, detector)
        )""",
        "INSERT INTO alert_counts (status, severity_rank, detector, n)"
        " SELECT status, severity_rank, detector, COUNT(*) FROM alerts"
        " GROUP BY status, severity_rank, detector",
        # The queue's orders and filters, each index ending in the keyset's
        # keys so a page is one index range scan (fundflow/store/README.md).
        "DROP INDEX alerts_detector_severity",
        "DROP INDEX alerts_subject",
        "DROP INDEX alerts_status",
        "DROP INDEX alerts_last_ts",
        "CREATE INDEX alerts_last ON alerts (last_ts, alert_id)",
        "CREATE INDEX alerts_status_last ON alerts (status, last_ts, alert_id)",
        "CREATE INDEX alerts_detector_severity_last"
        " ON alerts (detector, severity, last_ts, alert_id)",
        "CREATE INDEX alerts_severity_last ON alerts (severity_rank, last_ts, alert_id)",
        "CREATE INDEX alerts_amount ON alerts (amount_fen, alert_id)",
        "CREATE INDEX alerts_detector_id ON alerts (detector, alert_id)",
        "CREATE INDEX alerts_subject_id ON alerts (subject_id, alert_id)",
        "CREATE INDEX alerts_assignee_last ON alerts (assignee, last_ts, alert_id)",
        lambda conn: _trigram_index(conn),
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# Written columns, in the order of _row(): the Alert fields, their original
# times as text, and the sort and search columns derived from them.
_COLUMNS = (
    "alert_id", "detector", "severity", "subject_id", "accounts", "first_ts", "last_ts",
    "amount", "summary", "evidence", "detector_version", "revision",
    "first_ts_text", "last_ts_text", "severity_rank", "amount_fen", "haystack",
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

# Read back in Alert field order; text forms so that the decoding is the
# SQLite store's.
_ALERT_COLUMNS = (
    "alert_id, detector, severity, subject_id, accounts::text, first_ts_text,"
    " last_ts_text, amount::text, summary, evidence::text, detector_version, revision"
)

#: Columns of a queue row (the alert's, status, assignee, case ids).
_ROW_WIDTH = 15
#: What an alert's page adds to its row, in one statement: the revisions'
#: bodies, the trail's columns and the cases' (id, title, status), each an
#: array in its order (one index scan each).
_VIEW_JOINS = (
    " LEFT JOIN LATERAL (SELECT array_agg(r.body ORDER BY r.revision) FROM alert_revisions r"
    " WHERE r.alert_id = alerts.alert_id) AS rv (bodies) ON true"
    " LEFT JOIN LATERAL (SELECT array_agg(e.id ORDER BY e.id), array_agg(e.action ORDER BY e.id),"
    " array_agg(e.actor ORDER BY e.id), array_agg(e.note ORDER BY e.id),"
    " array_agg(e.at ORDER BY e.id) FROM alert_events e WHERE e.alert_id = alerts.alert_id)"
    " AS ev (ids, actions, actors, notes, ats) ON true"
    " LEFT JOIN LATERAL (SELECT array_agg(c.case_id ORDER BY c.case_id),"
    " array_agg(c.title ORDER BY c.case_id), array_agg(c.status ORDER BY c.case_id)"
    " FROM case_alerts ca JOIN cases c ON c.case_id = ca.case_id"
    " WHERE ca.alert_id = alerts.alert_id) AS cs (ids, titles, statuses) ON true"
)
_VIEW_COLUMNS = (
    "rv.bodies, ev.ids, ev.actions, ev.actors, ev.notes, ev.ats, cs.ids, cs.titles, cs.statuses"
)

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
                if callable(statement):
                    statement(conn)
                else:
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
        batch = self._buffer[:n]
        latest = latest_per_id(batch)
        # Sorted: every writer locks and inserts rows in the same order, so
        # two sinks with overlapping batches wait for each other, not deadlock.
        ids = sorted(latest)
        rows = [_row(latest[i]) for i in ids]
        if self._conn.closed:
            self._conn = self._open()
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                self._write(ids, rows, batch, latest)
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

    def _write(
        self,
        ids: list[str],
        rows: list[tuple[Any, ...]],
        batch: Sequence[Alert],
        latest: dict[str, Alert],
    ) -> None:
        assert self._conn is not None
        with self._conn.transaction(), self._conn.cursor() as cur:
            # Locking the existing rows first means nobody closes one of them
            # between our reading its status and our upserting it.
            cur.execute(
                "SELECT alert_id, revision, status, severity, detector FROM alerts"
                " WHERE alert_id = ANY(%s) ORDER BY alert_id FOR UPDATE",
                (ids,),
            )
            stored = stored_state(cur.fetchall())
            cur.executemany(_UPSERT, rows)
            write_batch_effects(_Tx(self._conn), batch, latest, stored, datetime.now(UTC))


def _row(a: Alert) -> tuple[Any, ...]:
    # numeric(20,2) would round or pad another amount, and it would not read back equal.
    fen = amount_fen(a)
    return (
        a.alert_id, a.detector, a.severity, a.subject_id, encode_json(a.accounts),
        alert_instant(a, "first_ts"), alert_instant(a, "last_ts"), Decimal(a.amount), a.summary,
        encode_json(a.evidence), a.detector_version, a.revision, a.first_ts, a.last_ts,
        severity_rank(a.severity), fen, haystack(a),
    )  # fmt: skip


_ACCOUNTS = msgspec.json.Decoder(tuple[str, ...])
_EVIDENCE = msgspec.json.Decoder(dict)


def _alert(row: Sequence[Any]) -> Alert:
    """An alert from the columns of :data:`_ALERT_COLUMNS`, in their order.
    jsonb keeps keys in its own order (shortest first); the evidence's are
    sorted as the SQLite store keeps them, so exports of both stores are
    byte-identical."""
    (alert_id, detector, severity, subject_id, accounts, first_ts, last_ts, amount,
     summary, evidence, detector_version, revision) = row  # fmt: skip
    return Alert(
        alert_id=alert_id, detector=detector, severity=severity, subject_id=subject_id,
        accounts=_ACCOUNTS.decode(accounts), first_ts=first_ts, last_ts=last_ts, amount=amount,
        summary=summary, evidence=sorted_keys(_EVIDENCE.decode(evidence)),
        detector_version=detector_version, revision=revision,
    )  # fmt: skip


def _cursor_key(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO store_meta (key, value) VALUES ('cursor_key', %s)", (secrets.token_hex(32),)
    )


def _backfill(conn: psycopg.Connection[Any]) -> None:
    """Migration 3's data step: the search text of every alert (lower-cased
    by Python, as the sink does), its rank and fen, and its stored revision
    as the first one seen."""
    conn.execute(
        "UPDATE alerts SET amount_fen = (amount * 100)::bigint, severity_rank = CASE severity"
        " WHEN 'low' THEN 0 WHEN 'medium' THEN 1 WHEN 'high' THEN 2 WHEN 'critical' THEN 3"
        " ELSE -1 END"
    )
    with conn.cursor(name="fundflow_backfill") as read, conn.cursor() as write:
        read.itersize = 2000
        read.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts")
        while chunk := read.fetchmany(2000):
            alerts = [_alert(r) for r in chunk]
            write.executemany(
                "UPDATE alerts SET haystack = %s WHERE alert_id = %s",
                [(haystack(a), a.alert_id) for a in alerts],
            )
            write.executemany(
                "INSERT INTO alert_revisions (alert_id, revision, body, seen_at)"
                " VALUES (%s, %s, %s, now())",
                [(a.alert_id, a.revision, alert_json(a).decode()) for a in alerts],
            )


def _trigram_index(conn: psycopg.Connection[Any]) -> None:
    """A trigram index for the queue's text filter, when the ``pg_trgm``
    extension is there or can be created (a trusted extension: the
    database owner may); without it the filter still works, by scanning."""
    try:
        with conn.transaction():  # a savepoint: its failure leaves the migration going
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            conn.execute("CREATE INDEX alerts_haystack ON alerts USING gin (haystack gin_trgm_ops)")
    except psycopg.Error:
        pass


@functools.lru_cache(maxsize=512)
def _q(sql: str) -> str:
    """A shared statement (``?`` placeholders) for psycopg (``%s``)."""
    return sql.replace("?", "%s")


class _Tx:
    """The shared code's statements on one psycopg connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(_q(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_q(sql), rows)


class PostgresStore(SQLStore):
    """An :class:`~fundflow.store.base.AlertStore` on a PostgreSQL database.

    Opening it never creates anything: a database without
    ``fundflow_schema_version`` is not a store (:class:`StoreError`). Reads
    need only SELECT; writes, and the triage reads of a store of an older
    schema, migrate it first. ``iter`` streams through a server-side
    cursor, so exports of any size run in constant memory. Ordered by
    ``(first_ts, alert_id)``, ``first_ts`` as an instant.

    One connection, in autocommit. One store may serve several threads: its
    calls take turns on that connection (a lock), except ``iter`` /
    ``iter_with_status``, whose stream belongs to the thread reading it;
    for calls in parallel, open a store per thread.
    """

    alert_columns = _ALERT_COLUMNS
    last_ts_column = "last_ts"
    case_ids_column = (
        "ARRAY(SELECT ca.case_id FROM case_alerts ca WHERE ca.alert_id = alerts.alert_id"
        " ORDER BY ca.case_id)"
    )
    for_update = " FOR UPDATE"
    schema_version = SCHEMA_VERSION

    def __init__(self, url: str) -> None:
        self.name = mask_url(url)
        self._secrets = url_secrets(url)
        self._conn = connect(url, self.name)
        self._lock = threading.RLock()
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

    def close(self) -> None:
        """Release the store (not an alert: see :meth:`close_alert`)."""
        self._conn.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- hooks of SQLStore -------------------------------------------------------

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._fetch_unlocked(sql, params)

    def _fetch_unlocked(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(_q(sql), params).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"cannot read alert store {self.name}: {self._scrub(exc)}") from None

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        try:
            with self._conn.transaction(), self._conn.cursor(name=next(_cursor_names)) as cur:
                cur.itersize = 1000
                cur.execute(_q(sql), params)
                yield from cur
        except psycopg.Error as exc:
            raise StoreError(f"cannot read alert store {self.name}: {self._scrub(exc)}") from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[_Tx]:
        with self._lock, self._tx_unlocked() as tx:
            yield tx

    @contextlib.contextmanager
    def _tx_unlocked(self) -> Iterator[_Tx]:
        try:
            if self._version < SCHEMA_VERSION:
                self._version = migrate(self._conn, self.name)
            with self._conn.transaction():
                yield _Tx(self._conn)
        except psycopg.Error as exc:
            raise StoreError(f"cannot write alert store {self.name}: {self._scrub(exc)}") from None

    def _migrate_for_reading(self) -> None:
        with self._lock:
            self._migrate_for_reading_unlocked()

    def _migrate_for_reading_unlocked(self) -> None:
        try:
            self._version = migrate(self._conn, self.name)
        except psycopg.Error as exc:
            raise StoreError(
                f"alert store {self.name} has schema version {self._version} and cannot be"
                f" brought to version {SCHEMA_VERSION} for triage: {self._scrub(exc)}"
            ) from None

    def page_with_counts(
        self,
        filters: AlertFilter,
        *,
        order: str = "-last_ts",
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[AlertPage, dict[str, int]]:
        """The page and its counts in one statement: the page's rows, then
        (UNION ALL) one row whose alert columns are NULL and whose last
        column holds the counts as (rank, count) pairs. The page keeps its
        order (one branch of the union, read by one process); the counts
        row is known by its NULL id wherever it comes."""
        query = self._page_query(filters, order, cursor, limit)
        counted = self._counts_query(filters)
        paged, page_params = query.statement(f"{self._row_columns()}, NULL::bigint[]")
        rows = self._fetch(
            f"({paged}) UNION ALL SELECT {', '.join(['NULL'] * _ROW_WIDTH)},"
            " ARRAY(SELECT ARRAY[c.r::bigint, c.n::bigint]"
            f" FROM ({counted.sql}) AS c (r, n))",
            [*page_params, *counted.params],
        )
        counts = counted.counts(next(r[-1] for r in rows if r[0] is None))
        rows = [r for r in rows if r[0] is not None]
        return query.page(rows, self._rows), counts

    def alert_view(self, alert_id: str) -> AlertView | None:
        """The alert's page in one statement: its row and, by lateral
        joins, its revisions, trail and cases as arrays."""
        if impossible_key(alert_id):
            return None
        self._current()
        rows = self._fetch(
            f"SELECT {self._row_columns()}, {_VIEW_COLUMNS} FROM alerts{_VIEW_JOINS}"
            " WHERE alerts.alert_id = ?",
            (alert_id,),
        )
        if not rows:
            return None
        r = rows[0]
        (row,) = self._rows([r[:_ROW_WIDTH]])
        bodies, ids, actions, actors, notes, ats, case_ids, titles, statuses = r[_ROW_WIDTH:]
        events = zip(ids or (), actions or (), actors or (), notes or (), ats or (), strict=True)
        cases = zip(case_ids or (), titles or (), statuses or (), strict=True)
        return AlertView(
            row,
            tuple(CaseRef(int(i), t, st) for i, t, st in cases),
            tuple(decode_alert(b) for b in bodies or ()),
            tuple(
                AlertEvent(int(i), alert_id, act, who, note, self._read_time(at))
                for i, act, who, note, at in events
            ),
        )

    def _bind_time(self, at: datetime) -> Any:
        return at

    def _read_time(self, value: Any) -> datetime:
        return value.astimezone(UTC)  # type: ignore[no-any-return]

    def _decode_alert(self, row: Sequence[Any]) -> Alert:
        return _alert(row)

    def _decode_case_ids(self, value: Any) -> tuple[int, ...]:
        return tuple(value)  # a bigint[]: the driver gives ints

    def _scrub(self, exc: BaseException) -> str:
        return scrub(str(exc), self._secrets) or type(exc).__name__
