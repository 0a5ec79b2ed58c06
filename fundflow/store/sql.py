"""The SQL both backends share: every reader and every triage write, and
what a sink's batch writes beside the alerts (revisions, reopen events,
notices).

Statements are written once, with ``?`` placeholders; a backend's
:meth:`SQLStore._q` turns them into its driver's. A backend subclass
provides the connection (:meth:`SQLStore._fetch`, :meth:`SQLStore._stream`,
:meth:`SQLStore._tx`), how times are bound and read, how an alert row is
selected and decoded, and which column holds ``last_ts`` as an instant.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from fundflow.schemas.records import SEVERITIES, Alert

from .base import (
    CASE_STATUSES,
    DELIVERY_STATES,
    MOVE_ACTIONS,
    ROLES,
    SYSTEM_ACTOR,
    TOKEN_KINDS,
    AlertEvent,
    AlertFilter,
    AlertPage,
    AlertRow,
    AlertView,
    Case,
    CaseEvent,
    CasePage,
    CaseRef,
    Delivery,
    Notice,
    StoreConflict,
    StoreError,
    StoreNotFound,
    Token,
    User,
    alert_json,
    check_actor,
    check_choice,
    check_id,
    check_limit,
    check_name,
    check_order,
    check_sha256,
    check_status,
    check_text,
    check_time,
    decode_alert,
    filter_digest,
    key_types,
    latest_per_id,
    like_pattern,
    make_cursor,
    next_status,
    normalize_filter,
    notices_for,
    read_cursor,
    reopen_note,
    reopened,
    severity_rank,
    sort_key,
)

#: The schema version that holds the triage tables (both backends).
TRIAGE_VERSION = 3


class Tx(Protocol):
    """What a backend's transaction offers the shared code: the driver's
    ``execute`` / ``executemany`` taking ``?`` statements."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


def where_clause(
    detector: str | None,
    severity: str | None,
    subject: str | None,
    status: str | None,
) -> tuple[str, tuple[str, ...]]:
    """The ``iter`` / ``count`` filters: a ``WHERE`` clause (or ``""``)
    and its parameters."""
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
    return " WHERE " + " AND ".join(f"{c} = ?" for c, _ in clauses), tuple(v for _, v in clauses)


def write_batch_effects(
    tx: Tx,
    batch: Sequence[Alert],
    latest: Mapping[str, Alert],
    stored: Mapping[str, tuple[int, str, str, str]],
    now: Any,
) -> None:
    """What a sink writes in a batch's transaction once the alerts are
    upserted: every revision seen (first seen kept), reopen events for
    closed alerts that grew, and the batch's notices. ``stored`` is
    ``{alert_id: (revision, status, severity, detector)}`` as read, locked, before
    the upsert; ``now`` is the bound time of the writes."""
    tx.executemany(
        "INSERT INTO alert_revisions (alert_id, revision, body, seen_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (alert_id, revision) DO NOTHING",
        [(a.alert_id, a.revision, alert_json(a).decode(), now) for a in batch],
    )
    back = reopened(latest, stored)
    if back:
        tx.executemany(
            "UPDATE alerts SET status = 'open' WHERE alert_id = ?", [(a.alert_id,) for a in back]
        )
        tx.executemany(
            "INSERT INTO alert_events (alert_id, action, actor, note, at)"
            " VALUES (?, 'reopened', ?, ?, ?)",
            [(a.alert_id, SYSTEM_ACTOR, reopen_note(a, stored[a.alert_id][0]), now) for a in back],
        )
    notices = notices_for(latest, stored)
    if notices:
        tx.executemany(
            "INSERT INTO notices (alert_id, revision, kind, severity, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [(a.alert_id, a.revision, kind, a.severity, now) for a, kind in notices],
        )
    deltas: Counter[tuple[str, int, str]] = Counter()
    for alert_id, a in latest.items():
        if alert_id not in stored:
            deltas["open", severity_rank(a.severity), a.detector] += 1
            continue
        revision, status, severity, detector = stored[alert_id]
        if a.revision < revision:
            continue  # a late revision: the upsert wrote nothing
        new_status = "open" if status == "closed" and a.revision > revision else status
        deltas[status, severity_rank(severity), detector] -= 1
        deltas[new_status, severity_rank(a.severity), a.detector] += 1
    add_counts(tx, deltas)


def add_counts(tx: Tx, deltas: Mapping[tuple[str, int, str], int]) -> None:
    """Moves ``alert_counts`` by ``{(status, severity_rank, detector): delta}``,
    in key order (so two writers lock its rows in the same order)."""
    rows = [key + (n,) for key, n in sorted(deltas.items()) if n]
    if rows:
        tx.executemany(
            "INSERT INTO alert_counts (status, severity_rank, detector, n) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (status, severity_rank, detector)"
            " DO UPDATE SET n = alert_counts.n + excluded.n",
            rows,
        )


@dataclass(frozen=True, slots=True)
class PageQuery:
    """A page's query and how its rows become an :class:`AlertPage`:
    ``where`` (with ``?`` placeholders for ``params``) and ``order_by``
    select and order the page's alerts; ``make_cursor`` gives the cursor
    after a last alert shown."""

    where: str
    params: list[Any]
    order_by: str
    limit: int
    make_cursor: Callable[[Alert], str]

    def statement(self, columns: str) -> tuple[str, list[Any]]:
        """The SELECT of ``columns`` of the page's ``limit + 1`` rows at
        most, and its parameters."""
        return (
            f"SELECT {columns} FROM alerts{self.where} ORDER BY {self.order_by} LIMIT ?",
            [*self.params, self.limit + 1],
        )

    def page(
        self, rows: Sequence[Sequence[Any]], decode: Callable[[Sequence[Any]], list[AlertRow]]
    ) -> AlertPage:
        """The page of the statement's ``rows`` (one more than ``limit``
        means there is a next page), the shown ones decoded by ``decode``."""
        items = decode(rows[: self.limit])
        if len(rows) <= self.limit:
            return AlertPage(items, None)
        return AlertPage(items, self.make_cursor(items[-1].alert))


@dataclass(frozen=True, slots=True)
class CountsQuery:
    """The statement of severity counts: rows of (severity rank, count).
    ``only``: the severities the filter keeps (the others count 0)."""

    sql: str
    params: list[Any]
    only: tuple[str, ...] | None = None

    def counts(self, rows: Sequence[Sequence[Any]]) -> dict[str, int]:
        """Every severity of :data:`SEVERITIES`, in that order, 0 included."""
        found = {int(rank): int(n) for rank, n in rows}
        return {
            s: found.get(rank, 0) if self.only is None or s in self.only else 0
            for rank, s in enumerate(SEVERITIES)
        }


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


#: The cases an alert is in, as its page names them.
_VIEW_CASES = (
    "SELECT c.case_id, c.title, c.status FROM case_alerts ca"
    " JOIN cases c ON c.case_id = ca.case_id WHERE ca.alert_id = ? ORDER BY c.case_id"
)
_CASE_COLS = "case_id, title, status, owner, created_by, created_at, updated_at"
_DELIVERY_COLS = (
    "d.notice_id, d.hook, d.state, d.attempts, d.next_at, d.last_error, d.delivered_at,"
    " n.alert_id, n.revision, n.kind, n.severity, n.created_at, r.body"
)
_DELIVERY_FROM = (
    " FROM deliveries d JOIN notices n ON n.notice_id = d.notice_id"
    " JOIN alert_revisions r ON r.alert_id = n.alert_id AND r.revision = n.revision"
)


class SQLStore(StoreReader):
    """The readers and triage writes of :class:`~fundflow.store.base.AlertStore`,
    once for both backends. Subclasses set the class attributes and
    implement the hooks below."""

    name: str
    _version: int
    #: The backend's current schema version.
    schema_version: int
    #: The 12 Alert columns, in field order, as the backend selects them.
    alert_columns: str
    #: The column holding ``last_ts`` as an instant (sortable).
    last_ts_column: str
    #: Appended to a SELECT that reads a row about to be changed.
    for_update: str = ""
    #: A column expression, per ``alerts`` row, of the ids of its cases
    #: (read by :meth:`_decode_case_ids`), so a page is one query.
    case_ids_column: str

    # -- hooks -----------------------------------------------------------------

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _stream(self, sql: str, params: Sequence[Any]) -> Iterator[tuple[Any, ...]]:
        raise NotImplementedError

    def _tx(self) -> contextlib.AbstractContextManager[Tx]:
        """A write transaction (migrating an older store first); driver
        errors become :class:`StoreError`, other errors roll back and pass."""
        raise NotImplementedError

    def _migrate_for_reading(self) -> None:
        """Bring an older store up to date before a read that needs the
        current schema; :class:`StoreError` when that cannot be done."""
        raise NotImplementedError

    def _bind_time(self, at: datetime) -> Any:
        raise NotImplementedError

    def _read_time(self, value: Any) -> datetime:
        raise NotImplementedError

    def _decode_alert(self, row: Sequence[Any]) -> Alert:
        raise NotImplementedError

    def _decode_case_ids(self, value: Any) -> tuple[int, ...]:
        raise NotImplementedError

    # -- reading, as the CLI does ----------------------------------------------

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
        where, params = where_clause(detector, severity, subject, status)
        sql = (
            f"SELECT {self.alert_columns}, status FROM alerts{where}"
            " ORDER BY first_ts, alert_id LIMIT ?"
        )
        for row in self._stream(sql, (*params, self._no_limit() if limit is None else limit)):
            yield self._decode_alert(row[:-1]), row[-1]

    def _no_limit(self) -> Any:
        return None

    def get(self, alert_id: str) -> Alert | None:
        """The alert with this id, or ``None``."""
        if impossible_key(alert_id):
            return None
        rows = self._fetch(
            f"SELECT {self.alert_columns} FROM alerts WHERE alert_id = ?", (alert_id,)
        )
        return self._decode_alert(rows[0]) if rows else None

    def status(self, alert_id: str) -> str | None:
        """The alert's status (``open``, ``acknowledged``, ``closed``), or ``None``."""
        if impossible_key(alert_id):
            return None
        rows = self._fetch("SELECT status FROM alerts WHERE alert_id = ?", (alert_id,))
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
        where, params = where_clause(detector, severity, subject, status)
        return int(self._fetch(f"SELECT COUNT(*) FROM alerts{where}", params)[0][0])

    def events(self, alert_id: str) -> list[AlertEvent]:
        """The alert's audit trail, oldest first (empty for an unknown id)."""
        if self._version < 2 or impossible_key(alert_id):
            return []
        rows = self._fetch(
            "SELECT id, alert_id, action, actor, note, at FROM alert_events"
            " WHERE alert_id = ? ORDER BY id",
            (alert_id,),
        )
        return [
            AlertEvent(i, a, act, who, note, self._read_time(at))
            for i, a, act, who, note, at in rows
        ]

    # -- the triage queue ------------------------------------------------------

    def _current(self) -> None:
        if self._version < self.schema_version:
            self._migrate_for_reading()

    def revisions(self, alert_id: str) -> list[Alert]:
        """Every revision of the alert the store has seen, ascending."""
        if impossible_key(alert_id):
            return []
        self._current()
        rows = self._fetch(
            "SELECT body FROM alert_revisions WHERE alert_id = ? ORDER BY revision", (alert_id,)
        )
        return [decode_alert(body) for (body,) in rows]

    def _filter_sql(self, f: AlertFilter) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, values in (
            ("detector", f.detector),
            ("severity", f.severity),
            ("status", f.status),
        ):
            if values is not None:
                clauses.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
        if f.subject is not None:
            clauses.append("subject_id = ?")
            params.append(f.subject)
        if f.since is not None:
            clauses.append(f"{self.last_ts_column} >= ?")
            params.append(self._bind_time(f.since))
        if f.until is not None:
            clauses.append(f"{self.last_ts_column} < ?")
            params.append(self._bind_time(f.until))
        if f.text is not None:
            clauses.append("haystack LIKE ? ESCAPE '\\'")
            params.append(like_pattern(f.text))
        if f.assignee == "":
            clauses.append("assignee IS NULL")
        elif f.assignee is not None:
            clauses.append("assignee = ?")
            params.append(f.assignee)
        if f.case_id is not None:
            clauses.append("alert_id IN (SELECT alert_id FROM case_alerts WHERE case_id = ?)")
            params.append(f.case_id)
        return clauses, params

    def _key_column(self, key: str) -> str:
        return self.last_ts_column if key == "last_ts" else key

    def _bind_key(self, key: str, value: Any) -> Any:
        return self._bind_time(datetime.fromisoformat(value)) if key == "last_ts" else value

    def page(
        self,
        filters: AlertFilter,
        *,
        order: str = "-last_ts",
        cursor: str | None = None,
        limit: int = 50,
    ) -> AlertPage:
        """One page of the queue, by keyset (never OFFSET): see
        :meth:`fundflow.store.base.AlertStore.page`."""
        query = self._page_query(filters, order, cursor, limit)
        return query.page(self._fetch(*query.statement(self._row_columns())), self._rows)

    def page_with_counts(
        self,
        filters: AlertFilter,
        *,
        order: str = "-last_ts",
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[AlertPage, dict[str, int]]:
        """:meth:`page` and :meth:`severity_counts` of the same filters: see
        :meth:`fundflow.store.base.AlertStore.page_with_counts`. Here two
        statements; a backend may read both in one."""
        page = self.page(filters, order=order, cursor=cursor, limit=limit)
        return page, self.severity_counts(filters)

    def _page_query(
        self, filters: AlertFilter, order: str, cursor: str | None, limit: int
    ) -> PageQuery:
        """The query of one page, its arguments checked as :meth:`page`
        documents."""
        f = normalize_filter(filters)
        keys, descending = check_order(order)
        limit = check_limit(limit)
        self._current()
        digest = filter_digest(f, order)
        clauses, params = self._filter_sql(f)
        columns = [self._key_column(k) for k in keys]
        if cursor is not None:
            values = read_cursor(self._cursor_key(), digest, cursor, key_types(keys))
            marks = ", ".join("?" for _ in keys)
            clauses.append(f"({', '.join(columns)}) {'<' if descending else '>'} ({marks})")
            params.extend(self._bind_key(k, v) for k, v in zip(keys, values, strict=True))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        direction = " DESC" if descending else ""
        order_by = ", ".join(c + direction for c in columns)
        return PageQuery(
            where=where,
            params=params,
            order_by=order_by,
            limit=limit,
            make_cursor=lambda last: make_cursor(
                self._cursor_key(), digest, [sort_key(last, k) for k in keys]
            ),
        )

    def _row_columns(self) -> str:
        return f"{self.alert_columns}, status, assignee, {self.case_ids_column}"

    def _rows(self, rows: Sequence[Sequence[Any]]) -> list[AlertRow]:
        return [
            AlertRow(self._decode_alert(r[:12]), r[12], r[13], self._decode_case_ids(r[14]))
            for r in rows
        ]

    def severity_counts(self, filters: AlertFilter) -> dict[str, int]:
        """How many alerts ``filters`` selects, per severity, every severity
        listed."""
        query = self._counts_query(filters)
        return query.counts(self._fetch(query.sql, query.params))

    def _counts_query(self, filters: AlertFilter) -> CountsQuery:
        """The statement of :meth:`severity_counts`: rows of (severity
        rank, count)."""
        f = normalize_filter(filters)
        self._current()
        if f == AlertFilter(status=f.status, severity=f.severity, detector=f.detector):
            # Kept up to date by every write, so the commonest counts (the
            # whole queue, a status, a detector) need not count a million rows.
            kept_clauses: list[str] = []
            params: list[Any] = []
            for column, values in (("status", f.status), ("detector", f.detector)):
                if values is not None:
                    kept_clauses.append(f"{column} IN ({', '.join('?' for _ in values)})")
                    params.extend(values)
            where = f" WHERE {' AND '.join(kept_clauses)}" if kept_clauses else ""
            return CountsQuery(
                f"SELECT severity_rank, SUM(n) FROM alert_counts{where} GROUP BY severity_rank",
                params,
                f.severity,
            )
        clauses, params = self._filter_sql(f)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        # By rank: an index holds it.
        return CountsQuery(
            f"SELECT severity_rank, COUNT(*) FROM alerts{where} GROUP BY severity_rank", params
        )

    def row(self, alert_id: str) -> AlertRow | None:
        """The alert's queue row, or ``None``."""
        if impossible_key(alert_id):
            return None
        self._current()
        rows = self._fetch(
            f"SELECT {self._row_columns()} FROM alerts WHERE alert_id = ?", (alert_id,)
        )
        return self._rows(rows)[0] if rows else None

    def alert_view(self, alert_id: str) -> AlertView | None:
        """The alert's page: see :meth:`fundflow.store.base.AlertStore.alert_view`.
        Here four statements in :meth:`_read_together`; a backend may read
        them in one."""
        if impossible_key(alert_id):
            return None
        self._current()
        with self._read_together():
            row = self.row(alert_id)
            if row is None:
                return None
            cases = self._fetch(_VIEW_CASES, (alert_id,))
            return AlertView(
                row,
                tuple(CaseRef(int(i), t, st) for i, t, st in cases),
                tuple(self.revisions(alert_id)),
                tuple(self.events(alert_id)),
            )

    def _read_together(self) -> contextlib.AbstractContextManager[None]:
        """Reads made inside see one state of the store."""
        return contextlib.nullcontext()

    def _cursor_key(self) -> bytes:
        key = getattr(self, "_cursor_key_bytes", None)
        if key is None:
            rows = self._fetch("SELECT value FROM store_meta WHERE key = 'cursor_key'")
            if not rows:
                raise StoreError(f"alert store {self.name} has no cursor key")
            key = bytes.fromhex(rows[0][0])
            self._cursor_key_bytes = key
        return key

    # -- acting on alerts ------------------------------------------------------

    def ack(self, alert_id: str, by: str, note: str | None = None) -> AlertEvent:
        """``open`` → ``acknowledged``, recorded as by ``by``."""
        return self._move(alert_id, "ack", by, note)

    def close_alert(self, alert_id: str, by: str, note: str | None = None) -> AlertEvent:
        """``open`` or ``acknowledged`` → ``closed``, recorded as by ``by``."""
        return self._move(alert_id, "close", by, note)

    def reopen(self, alert_id: str, by: str, note: str | None = None) -> AlertEvent:
        """``closed`` → ``open``, recorded as by ``by``."""
        return self._move(alert_id, "reopen", by, note)

    def _move(self, alert_id: str, move: str, by: str, note: str | None) -> AlertEvent:
        by, note = check_actor(by, note)
        with self._tx() as tx:
            current, rank, detector = self._locked_alert(
                tx, alert_id, "status, severity_rank, detector"
            )
            new = next_status(alert_id, move, current)
            tx.execute("UPDATE alerts SET status = ? WHERE alert_id = ?", (new, alert_id))
            add_counts(tx, {(current, rank, detector): -1, (new, rank, detector): 1})
            return self._alert_event(tx, alert_id, MOVE_ACTIONS[move], by, note)

    def assign(self, alert_id: str, by: str, assignee: str | None) -> AlertEvent:
        """Set or clear the assignee; :class:`StoreConflict` when unchanged."""
        by, _ = check_actor(by, None)
        if assignee is not None:
            assignee = check_name("assignee", assignee)
        with self._tx() as tx:
            current = self._locked_alert(tx, alert_id, "assignee")
            if current == assignee:
                who = "nobody" if assignee is None else repr(assignee)
                raise StoreConflict(f"alert {alert_id!r} is already assigned to {who}")
            tx.execute("UPDATE alerts SET assignee = ? WHERE alert_id = ?", (assignee, alert_id))
            return self._alert_event(tx, alert_id, "assigned", by, assignee)

    def comment(self, alert_id: str, by: str, text: str) -> AlertEvent:
        """Append a comment to the alert's audit trail."""
        by, _ = check_actor(by, None)
        text = check_text("comment", text)
        with self._tx() as tx:
            self._locked_alert(tx, alert_id, "status")
            return self._alert_event(tx, alert_id, "commented", by, text)

    def _locked_alert(self, tx: Tx, alert_id: str, columns: str) -> Any:
        """The ``columns`` of the alert's row, locked (one value for one column)."""
        if impossible_key(alert_id):
            raise StoreNotFound(f"no alert {alert_id!r} in {self.name}")
        row = tx.execute(
            f"SELECT {columns} FROM alerts WHERE alert_id = ?{self.for_update}", (alert_id,)
        ).fetchone()
        if row is None:
            raise StoreNotFound(f"no alert {alert_id!r} in {self.name}")
        return row[0] if len(row) == 1 else tuple(row)

    def _alert_event(
        self, tx: Tx, alert_id: str, action: str, by: str, note: str | None
    ) -> AlertEvent:
        at = datetime.now(UTC)
        (event_id,) = tx.execute(
            "INSERT INTO alert_events (alert_id, action, actor, note, at)"
            " VALUES (?, ?, ?, ?, ?) RETURNING id",
            (alert_id, action, by, note, self._bind_time(at)),
        ).fetchone()
        return AlertEvent(int(event_id), alert_id, action, by, note, at)

    # -- users and tokens ------------------------------------------------------

    _USER_COLS = "name, role, password_hash, disabled, created_at"

    def _user(self, row: Sequence[Any]) -> User:
        name, role, password_hash, disabled, created_at = row
        return User(name, role, password_hash, bool(disabled), self._read_time(created_at))

    def add_user(self, name: str, role: str, password_hash: str) -> User:
        """A new enabled user; :class:`StoreConflict` when the name is taken."""
        name = check_name("name", name)
        role = check_choice("role", role, ROLES)
        password_hash = _check_hash(password_hash)
        at = datetime.now(UTC)
        with self._tx() as tx:
            row = tx.execute(
                "INSERT INTO users (name, role, password_hash, disabled, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING RETURNING name",
                (name, role, password_hash, False, self._bind_time(at)),
            ).fetchone()
            if row is None:
                raise StoreConflict(f"user {name!r} already exists in {self.name}")
        return User(name, role, password_hash, False, at)

    def get_user(self, name: str) -> User | None:
        if impossible_key(name):
            return None
        self._current()
        rows = self._fetch(f"SELECT {self._USER_COLS} FROM users WHERE name = ?", (name,))
        return self._user(rows[0]) if rows else None

    def list_users(self) -> list[User]:
        """Every user, by name."""
        self._current()
        return [
            self._user(r) for r in self._fetch(f"SELECT {self._USER_COLS} FROM users ORDER BY name")
        ]

    def _update_user(self, tx: Tx, name: str, sets: str, params: Sequence[Any]) -> None:
        cur = tx.execute(f"UPDATE users SET {sets} WHERE name = ?", (*params, name))
        if cur.rowcount == 0:
            raise StoreNotFound(f"no user {name!r} in {self.name}")

    def set_password(self, name: str, password_hash: str) -> None:
        password_hash = _check_hash(password_hash)
        with self._tx() as tx:
            self._update_user(tx, name, "password_hash = ?", (password_hash,))

    def set_role(self, name: str, role: str) -> None:
        role = check_choice("role", role, ROLES)
        with self._tx() as tx:
            self._update_user(tx, name, "role = ?", (role,))

    def disable_user(self, name: str) -> None:
        """Disable the user and revoke all their tokens."""
        with self._tx() as tx:
            self._update_user(tx, name, "disabled = ?", (True,))
            tx.execute("DELETE FROM tokens WHERE user_name = ?", (name,))

    def add_token(
        self,
        token_hash: str,
        user: str,
        kind: str,
        expires_at: datetime | None,
        csrf_hash: str | None = None,
    ) -> None:
        """Keep a token's SHA-256 digest for ``user``."""
        check_sha256("token_hash", token_hash)
        kind = check_choice("kind", kind, TOKEN_KINDS)
        if expires_at is not None:
            check_time("expires_at", expires_at)
        if csrf_hash is not None:
            check_sha256("csrf_hash", csrf_hash)
        with self._tx() as tx:
            row = tx.execute(
                f"SELECT disabled FROM users WHERE name = ?{self.for_update}", (user,)
            ).fetchone()
            if row is None:
                raise StoreNotFound(f"no user {user!r} in {self.name}")
            if row[0]:
                raise StoreConflict(f"user {user!r} is disabled")
            added = tx.execute(
                "INSERT INTO tokens (token_hash, user_name, kind, created_at, expires_at, csrf_hash)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (token_hash) DO NOTHING RETURNING kind",
                (
                    token_hash,
                    user,
                    kind,
                    self._bind_time(datetime.now(UTC)),
                    None if expires_at is None else self._bind_time(expires_at),
                    csrf_hash,
                ),
            ).fetchone()
            if added is None:
                raise StoreConflict("a token with this hash already exists")

    def get_token(self, token_hash: str) -> Token | None:
        if impossible_key(token_hash):
            return None
        self._current()
        rows = self._fetch(
            "SELECT token_hash, user_name, kind, created_at, expires_at, csrf_hash FROM tokens"
            " WHERE token_hash = ?",
            (token_hash,),
        )
        if not rows:
            return None
        digest, user, kind, created_at, expires_at, csrf = rows[0]
        return Token(
            digest,
            user,
            kind,
            self._read_time(created_at),
            None if expires_at is None else self._read_time(expires_at),
            csrf,
        )

    def revoke_token(self, token_hash: str) -> None:
        with self._tx() as tx:
            tx.execute("DELETE FROM tokens WHERE token_hash = ?", (token_hash,))

    def revoke_tokens(self, user: str) -> None:
        with self._tx() as tx:
            tx.execute("DELETE FROM tokens WHERE user_name = ?", (user,))

    # -- cases -----------------------------------------------------------------

    def _case(self, row: Sequence[Any], alert_ids: Sequence[str]) -> Case:
        case_id, title, status, owner, created_by, created_at, updated_at = row
        return Case(
            int(case_id),
            title,
            status,
            owner,
            created_by,
            self._read_time(created_at),
            self._read_time(updated_at),
            tuple(alert_ids),
        )

    def _case_in(self, tx: Tx, case_id: int) -> Case:
        row = tx.execute(
            f"SELECT {_CASE_COLS} FROM cases WHERE case_id = ?{self.for_update}", (case_id,)
        ).fetchone()
        if row is None:
            raise StoreNotFound(f"no case {case_id} in {self.name}")
        ids = tx.execute(
            "SELECT alert_id FROM case_alerts WHERE case_id = ? ORDER BY alert_id", (case_id,)
        ).fetchall()
        return self._case(row, [i for (i,) in ids])

    def _case_event(
        self,
        tx: Tx,
        case_id: int,
        action: str,
        by: str,
        note: str | None,
        alert_id: str | None,
        at: datetime,
    ) -> CaseEvent:
        (event_id,) = tx.execute(
            "INSERT INTO case_events (case_id, action, actor, note, alert_id, at)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (case_id, action, by, note, alert_id, self._bind_time(at)),
        ).fetchone()
        return CaseEvent(int(event_id), case_id, action, by, note, alert_id, at)

    def _check_alerts(self, tx: Tx, alert_ids: Sequence[str]) -> list[str]:
        if isinstance(alert_ids, str) or not all(
            isinstance(a, str) and "\x00" not in a for a in alert_ids
        ):
            raise ValueError(f"alert_ids must be a sequence of alert ids, got {alert_ids!r}")
        wanted = sorted(set(alert_ids))
        if not wanted:
            return []
        marks = ", ".join("?" for _ in wanted)
        found = {
            i
            for (i,) in tx.execute(
                f"SELECT alert_id FROM alerts WHERE alert_id IN ({marks})", wanted
            ).fetchall()
        }
        missing = [a for a in wanted if a not in found]
        if missing:
            raise StoreNotFound(f"no alert {', '.join(map(repr, missing))} in {self.name}")
        return wanted

    def _add_alerts(
        self, tx: Tx, case_id: int, alert_ids: Sequence[str], by: str, at: datetime
    ) -> None:
        for alert_id in self._check_alerts(tx, alert_ids):
            added = tx.execute(
                "INSERT INTO case_alerts (case_id, alert_id, added_by, added_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (case_id, alert_id) DO NOTHING"
                " RETURNING alert_id",
                (case_id, alert_id, by, self._bind_time(at)),
            ).fetchone()
            if added is not None:
                self._case_event(tx, case_id, "added", by, None, alert_id, at)

    def create_case(
        self,
        title: str,
        by: str,
        alert_ids: Sequence[str] = (),
        owner: str | None = None,
        note: str | None = None,
    ) -> Case:
        """A new open case holding ``alert_ids``."""
        title = check_text("title", title)
        by, note = check_actor(by, note)
        if owner is not None:
            owner = check_name("owner", owner)
        at = datetime.now(UTC)
        with self._tx() as tx:
            (case_id,) = tx.execute(
                "INSERT INTO cases (title, status, owner, created_by, created_at, updated_at)"
                " VALUES (?, 'open', ?, ?, ?, ?) RETURNING case_id",
                (title, owner, by, self._bind_time(at), self._bind_time(at)),
            ).fetchone()
            self._case_event(tx, int(case_id), "created", by, note, None, at)
            self._add_alerts(tx, int(case_id), alert_ids, by, at)
            return self._case_in(tx, int(case_id))

    def get_case(self, case_id: int) -> Case | None:
        check_id("case_id", case_id)
        self._current()
        rows = self._fetch(f"SELECT {_CASE_COLS} FROM cases WHERE case_id = ?", (case_id,))
        if not rows:
            return None
        ids = self._fetch(
            "SELECT alert_id FROM case_alerts WHERE case_id = ? ORDER BY alert_id", (case_id,)
        )
        return self._case(rows[0], [i for (i,) in ids])

    def list_cases(
        self,
        status: str | None = None,
        owner: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> CasePage:
        """Cases, newest first, by keyset on ``case_id``."""
        if status is not None:
            check_choice("status", status, CASE_STATUSES)
        if owner is not None and not isinstance(owner, str):
            raise ValueError(f"owner must be text, got {owner!r}")
        limit = check_limit(limit)
        self._current()
        digest = filter_digest(AlertFilter(status=status, assignee=owner), "cases")
        clauses: list[str] = []
        params: list[Any] = []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        if cursor is not None:
            (after,) = read_cursor(self._cursor_key(), digest, cursor, [int])
            clauses.append("case_id < ?")
            params.append(after)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._fetch(
            f"SELECT {_CASE_COLS} FROM cases{where} ORDER BY case_id DESC LIMIT ?",
            (*params, limit + 1),
        )
        shown = rows[:limit]
        members: dict[int, list[str]] = {int(r[0]): [] for r in shown}
        if shown:
            marks = ", ".join("?" for _ in shown)
            for case_id, alert_id in self._fetch(
                f"SELECT case_id, alert_id FROM case_alerts WHERE case_id IN ({marks})"
                " ORDER BY alert_id",
                [int(r[0]) for r in shown],
            ):
                members[int(case_id)].append(alert_id)
        items = [self._case(r, members[int(r[0])]) for r in shown]
        next_cursor = (
            make_cursor(self._cursor_key(), digest, [items[-1].case_id])
            if len(rows) > limit
            else None
        )
        return CasePage(items, next_cursor)

    def add_to_case(self, case_id: int, alert_ids: Sequence[str], by: str) -> Case:
        """Add alerts to a case; those already in it are skipped."""
        check_id("case_id", case_id)
        by, _ = check_actor(by, None)
        at = datetime.now(UTC)
        with self._tx() as tx:
            self._case_in(tx, case_id)
            self._add_alerts(tx, case_id, alert_ids, by, at)
            self._touch_case(tx, case_id, at)
            return self._case_in(tx, case_id)

    def remove_from_case(self, case_id: int, alert_id: str, by: str) -> Case:
        check_id("case_id", case_id)
        by, _ = check_actor(by, None)
        at = datetime.now(UTC)
        with self._tx() as tx:
            self._case_in(tx, case_id)
            cur = tx.execute(
                "DELETE FROM case_alerts WHERE case_id = ? AND alert_id = ?", (case_id, alert_id)
            )
            if cur.rowcount == 0:
                raise StoreNotFound(f"alert {alert_id!r} is not in case {case_id}")
            self._case_event(tx, case_id, "removed", by, None, alert_id, at)
            self._touch_case(tx, case_id, at)
            return self._case_in(tx, case_id)

    def set_case_status(self, case_id: int, status: str, by: str, note: str | None = None) -> Case:
        check_id("case_id", case_id)
        status = check_choice("status", status, CASE_STATUSES)
        by, note = check_actor(by, note)
        at = datetime.now(UTC)
        with self._tx() as tx:
            case = self._case_in(tx, case_id)
            if case.status == status:
                raise StoreConflict(f"case {case_id} is already {status}")
            tx.execute("UPDATE cases SET status = ? WHERE case_id = ?", (status, case_id))
            action = "closed" if status == "closed" else "reopened"
            self._case_event(tx, case_id, action, by, note, None, at)
            self._touch_case(tx, case_id, at)
            return self._case_in(tx, case_id)

    def assign_case(self, case_id: int, by: str, owner: str | None) -> Case:
        check_id("case_id", case_id)
        by, _ = check_actor(by, None)
        if owner is not None:
            owner = check_name("owner", owner)
        at = datetime.now(UTC)
        with self._tx() as tx:
            case = self._case_in(tx, case_id)
            if case.owner == owner:
                who = "nobody" if owner is None else repr(owner)
                raise StoreConflict(f"case {case_id} is already owned by {who}")
            tx.execute("UPDATE cases SET owner = ? WHERE case_id = ?", (owner, case_id))
            self._case_event(tx, case_id, "assigned", by, owner, None, at)
            self._touch_case(tx, case_id, at)
            return self._case_in(tx, case_id)

    def comment_case(self, case_id: int, by: str, text: str) -> CaseEvent:
        check_id("case_id", case_id)
        by, _ = check_actor(by, None)
        text = check_text("comment", text)
        at = datetime.now(UTC)
        with self._tx() as tx:
            self._case_in(tx, case_id)
            event = self._case_event(tx, case_id, "commented", by, text, None, at)
            self._touch_case(tx, case_id, at)
            return event

    def _touch_case(self, tx: Tx, case_id: int, at: datetime) -> None:
        tx.execute(
            "UPDATE cases SET updated_at = ? WHERE case_id = ?", (self._bind_time(at), case_id)
        )

    def case_events(self, case_id: int) -> list[CaseEvent]:
        check_id("case_id", case_id)
        self._current()
        rows = self._fetch(
            "SELECT id, case_id, action, actor, note, alert_id, at FROM case_events"
            " WHERE case_id = ? ORDER BY id",
            (case_id,),
        )
        return [
            CaseEvent(int(i), int(c), act, who, note, alert_id, self._read_time(at))
            for i, c, act, who, note, alert_id, at in rows
        ]

    # -- the webhook outbox ----------------------------------------------------

    def _delivery(self, row: Sequence[Any]) -> Delivery:
        (notice_id, hook, state, attempts, next_at, last_error, delivered_at,
         alert_id, revision, kind, severity, created_at, body) = row  # fmt: skip
        notice = Notice(
            int(notice_id), alert_id, int(revision), kind, severity, self._read_time(created_at)
        )
        return Delivery(
            int(notice_id),
            hook,
            state,
            int(attempts),
            None if next_at is None else self._read_time(next_at),
            last_error,
            None if delivered_at is None else self._read_time(delivered_at),
            notice,
            decode_alert(body),
        )

    def due_deliveries(
        self, hooks: Sequence[str], now: datetime, limit: int = 100
    ) -> list[Delivery]:
        """Creates the missing pending deliveries of ``hooks``, then returns
        the due ones, oldest first."""
        if isinstance(hooks, str):
            raise ValueError(f"hooks must be a sequence of hook names, got {hooks!r}")
        names = sorted({check_name("hook", h) for h in hooks})
        check_time("now", now)
        limit = check_limit(limit, 10_000)
        if not names:
            return []
        with self._tx() as tx:
            for hook in names:
                tx.execute(
                    "INSERT INTO deliveries (notice_id, hook, state, attempts, next_at)"
                    " SELECT n.notice_id, ?, 'pending', 0, n.created_at FROM notices n"
                    " WHERE NOT EXISTS (SELECT 1 FROM deliveries d"
                    "  WHERE d.notice_id = n.notice_id AND d.hook = ?)"
                    " ON CONFLICT (notice_id, hook) DO NOTHING",
                    (hook, hook),
                )
        marks = ", ".join("?" for _ in names)
        rows = self._fetch(
            f"SELECT {_DELIVERY_COLS}{_DELIVERY_FROM}"
            f" WHERE d.state = 'pending' AND d.hook IN ({marks}) AND d.next_at <= ?"
            " ORDER BY d.next_at, d.notice_id, d.hook LIMIT ?",
            (*names, self._bind_time(now), limit),
        )
        return [self._delivery(r) for r in rows]

    def _update_delivery(
        self, notice_id: int, hook: str, sets: str, params: Sequence[Any], state: str
    ) -> None:
        check_id("notice_id", notice_id)
        with self._tx() as tx:
            cur = tx.execute(
                f"UPDATE deliveries SET {sets} WHERE notice_id = ? AND hook = ? AND state = ?",
                (*params, notice_id, hook, state),
            )
            if cur.rowcount == 1:
                return
            row = tx.execute(
                "SELECT state FROM deliveries WHERE notice_id = ? AND hook = ?", (notice_id, hook)
            ).fetchone()
            if row is None:
                raise StoreNotFound(f"no delivery of notice {notice_id} to {hook!r}")
            raise StoreConflict(f"delivery of notice {notice_id} to {hook!r} is {row[0]}")

    def mark_delivered(self, notice_id: int, hook: str, at: datetime) -> None:
        """A pending delivery taken: ``delivered``."""
        check_time("at", at)
        self._update_delivery(
            notice_id,
            hook,
            "state = 'delivered', attempts = attempts + 1, delivered_at = ?, next_at = NULL",
            (self._bind_time(at),),
            "pending",
        )

    def mark_failed(
        self,
        notice_id: int,
        hook: str,
        error: str,
        next_at: datetime | None,
        dead: bool,
    ) -> None:
        """A pending delivery's attempt failed: pending again at ``next_at``,
        or ``dead``."""
        if not isinstance(error, str):
            raise ValueError(f"error must be text, got {error!r}")
        error = " ".join(error.split())[:1000] or "failed"
        if dead:
            next_at = None
        elif next_at is None:
            raise ValueError("next_at is needed unless the delivery is dead")
        else:
            check_time("next_at", next_at)
        self._update_delivery(
            notice_id,
            hook,
            "state = ?, attempts = attempts + 1, last_error = ?, next_at = ?",
            (
                "dead" if dead else "pending",
                error,
                None if next_at is None else self._bind_time(next_at),
            ),
            "pending",
        )

    def list_deliveries(
        self, state: str | None = None, hook: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        """Deliveries, newest notice first."""
        if state is not None:
            check_choice("state", state, DELIVERY_STATES)
        limit = check_limit(limit, 10_000)
        self._current()
        clauses: list[str] = []
        params: list[Any] = []
        if state is not None:
            clauses.append("d.state = ?")
            params.append(state)
        if hook is not None:
            clauses.append("d.hook = ?")
            params.append(hook)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._fetch(
            f"SELECT {_DELIVERY_COLS}{_DELIVERY_FROM}{where}"
            " ORDER BY d.notice_id DESC, d.hook LIMIT ?",
            (*params, limit),
        )
        return [self._delivery(r) for r in rows]

    def retry_delivery(self, notice_id: int, hook: str, by: str) -> None:
        """``dead`` → ``pending``, due now, attempts counted afresh; who
        asked is kept in ``retried_by``."""
        by, _ = check_actor(by, None)
        now = self._bind_time(datetime.now(UTC))
        self._update_delivery(
            notice_id,
            hook,
            "state = 'pending', attempts = 0, next_at = ?, retried_by = ?, retried_at = ?",
            (now, by, now),
            "dead",
        )


def impossible_key(key: object) -> bool:
    """A key no row can have (not text, or holding NUL, which PostgreSQL
    text refuses): looked up, it is simply not there."""
    return not isinstance(key, str) or "\x00" in key


def _check_hash(password_hash: object) -> str:
    if not isinstance(password_hash, str) or not password_hash.startswith("$"):
        raise ValueError("password_hash must be a PHC-format hash ($argon2id$...), not a password")
    return password_hash


def stored_state(rows: Sequence[Sequence[Any]]) -> dict[str, tuple[int, str, str, str]]:
    """``{alert_id: (revision, status, severity, detector)}`` from rows of
    ``alert_id`` and those four."""
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


__all__ = [
    "TRIAGE_VERSION",
    "SQLStore",
    "StoreReader",
    "Tx",
    "latest_per_id",
    "stored_state",
    "where_clause",
    "write_batch_effects",
]
