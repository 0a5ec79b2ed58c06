"""The alert store: where alerts land, where the CLI reads them back, and
what the triage service works on.

Writers implement :class:`AlertSink` (``upsert`` / ``flush`` / ``close``, and
``with`` closes); readers implement :class:`AlertStore`. :func:`open_sink`
and :func:`open_store` choose the backend from ``db``: a ``postgresql://``
or ``postgres://`` URL is PostgreSQL (:mod:`fundflow.store.postgres`,
psycopg 3), anything else is a SQLite file (:mod:`fundflow.store.sqlite`,
stdlib ``sqlite3``). Readers never create a store. The interface, its value
types and the rules every backend shares are in :mod:`fundflow.store.base`;
the SQL both backends share in :mod:`fundflow.store.sql`.

Contract of every sink (docs/wire-format.md, "Alerts"):

* keyed by ``alert_id``; of all the revisions of one alert the store keeps the
  **highest** ``revision``. A lower revision arriving late (a redelivery) is
  ignored; an equal one replaces the row (same detector run, same content).
  Every revision seen is also kept, as first seen (``store.revisions(id)``).
* idempotent: upserting the same alerts again leaves the same rows, including
  the bookkeeping columns (SQLite ``created_seq`` / ``updated_seq``,
  PostgreSQL ``created_at`` / ``updated_at``, and ``status``), and writes no
  notice.
* an upsert leaves ``status`` and ``assignee`` alone, with one exception: a
  **closed** alert that arrives with a higher revision (it grew after
  someone closed it, so its figures changed) goes back to ``open``, with an
  audit event ``reopened`` by ``fundflow``. An acknowledged alert stays
  acknowledged.
* the webhook outbox: in the batch's transaction, a notice ``new`` for an
  alert first stored and ``severity_rise`` for a stored alert whose higher
  revision has a higher severity.
* buffered: upserts are committed every ``batch_size`` alerts, and on
  ``flush()`` / ``close()``. Until then other readers do not see them.
* JSON columns (``accounts``, ``evidence``) are written with sorted keys, so
  an alert read back is *equal* to the one upserted but its ``evidence``
  dict iterates in key order.
* failures (unwritable path, disk full, not a store, no server, an alert
  whose time or amount would not read back) raise :class:`StoreError` with
  a one-line message that never shows a password.

Lifecycle, the same in every store: ``open`` → ``acknowledged`` →
``closed``, ``open`` → ``closed``, and ``closed`` → ``open`` (``reopen``).
``store.ack(id, by, note)``, ``store.close_alert(id, by, note)`` and
``store.reopen(id, by, note)`` move an alert along and append an
:class:`AlertEvent` to its audit trail (``store.events(id)``); an unknown id
raises :class:`StoreNotFound`, any other move :class:`StoreConflict` (both
:class:`StoreError`). (The method is ``close_alert`` because ``close()``
releases the store, as on every sink and file.)

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
...     [r.alert.alert_id for r in store.page(AlertFilter(status="closed")).items]
'acknowledged'
('closed', 'closed')
['A1']
"""

from __future__ import annotations

import os
from typing import Any

from .base import (
    CASE_STATUSES,
    DELIVERY_STATES,
    NOTICE_KINDS,
    ORDERS,
    PAGE_LIMIT_MAX,
    ROLES,
    STATUSES,
    SYSTEM_ACTOR,
    TOKEN_KINDS,
    AlertEvent,
    AlertFilter,
    AlertPage,
    AlertRow,
    AlertSink,
    AlertStore,
    AlertView,
    BadCursor,
    BufferedSink,
    Case,
    CaseEvent,
    CasePage,
    CaseRef,
    DeferredSink,
    Delivery,
    Notice,
    StoreConflict,
    StoreError,
    StoreNotFound,
    StoreNotFoundError,
    StoreUnavailableError,
    Token,
    User,
    alert_json,
    check_actor,
    check_status,
    latest_per_id,
    next_status,
    reopen_note,
    reopened,
)
from .sql import StoreReader
from .sqlite import SCHEMA_VERSION, SQLiteSink, SQLiteStore
from .urls import check_not_other_url, is_postgres_url, mask_url, scrub, url_secrets

__all__ = [
    "CASE_STATUSES",
    "DELIVERY_STATES",
    "NOTICE_KINDS",
    "ORDERS",
    "PAGE_LIMIT_MAX",
    "ROLES",
    "SCHEMA_VERSION",
    "STATUSES",
    "SYSTEM_ACTOR",
    "TOKEN_KINDS",
    "AlertEvent",
    "AlertFilter",
    "AlertPage",
    "AlertRow",
    "AlertView",
    "CaseRef",
    "AlertSink",
    "AlertStore",
    "BadCursor",
    "BufferedSink",
    "Case",
    "CaseEvent",
    "CasePage",
    "DeferredSink",
    "Delivery",
    "Notice",
    "SQLiteSink",
    "SQLiteStore",
    "StoreConflict",
    "StoreError",
    "StoreNotFound",
    "StoreNotFoundError",
    "StoreReader",
    "StoreUnavailableError",
    "Token",
    "User",
    "alert_json",
    "check_actor",
    "check_status",
    "is_postgres_url",
    "latest_per_id",
    "mask_url",
    "next_status",
    "open_sink",
    "open_store",
    "reopen_note",
    "reopened",
    "scrub",
    "url_secrets",
]


def _postgres() -> Any:
    try:
        from fundflow.store import postgres
    except ImportError as exc:
        if getattr(exc, "name", None) in ("psycopg", "psycopg_binary", "psycopg_c"):
            raise StoreError(
                "a postgresql:// alert store needs psycopg: pip install 'psycopg[binary]>=3.1'"
            ) from None
        raise
    return postgres


def open_sink(db: str | os.PathLike[str], batch_size: int = 500) -> AlertSink:
    """A sink for ``db``: :class:`~fundflow.store.postgres.PostgresSink` for a
    ``postgresql://`` / ``postgres://`` URL (TLS, ``PGPASSWORD`` and
    ``PGPASSFILE`` as libpq reads them), else :class:`SQLiteSink` on that file
    (created if missing). The schema is created or migrated. Raises
    :class:`StoreError` (one line, password masked) when it cannot be opened:
    :class:`StoreUnavailableError` when the server cannot be reached yet.
    """
    if is_postgres_url(db):
        return _postgres().PostgresSink(str(db), batch_size=batch_size)  # type: ignore[no-any-return]
    check_not_other_url(db)
    return SQLiteSink(db, batch_size=batch_size)


def open_store(db: str | os.PathLike[str]) -> AlertStore:
    """Open an existing alert store for reading and triage (see ``open_sink``
    for how ``db`` is read). Nothing is created.

    Raises :class:`StoreNotFoundError` (a ``FileNotFoundError``) when a SQLite
    path does not exist, :class:`StoreError` when ``db`` is not a readable
    store (or the server cannot be reached).
    """
    if is_postgres_url(db):
        return _postgres().PostgresStore(str(db))  # type: ignore[no-any-return]
    check_not_other_url(db)
    return SQLiteStore(db)
