"""The alert store's interface: errors, value types, the protocols every
backend implements, and the rules they share.

Nothing here touches a database. :mod:`fundflow.store.sql` holds the SQL the
backends share; :mod:`fundflow.store.sqlite` and
:mod:`fundflow.store.postgres` hold what differs (connections, schema,
migrations, the upsert statement, types).

The triage model (what ``fundflow serve`` reads and writes):

* an alert has a **status** (``open`` → ``acknowledged`` → ``closed``,
  ``open`` → ``closed``, ``closed`` → ``open`` by :meth:`AlertStore.reopen`),
  an optional **assignee**, and belongs to any number of **cases**; every
  change is an :class:`AlertEvent` of its audit trail, carrying who did it.
* every revision the store has seen is kept (:meth:`AlertStore.revisions`).
* the queue is read a page at a time (:meth:`AlertStore.page`) with keyset
  cursors: opaque, signed with a key kept in the store, bound to the filter
  and order they were made for.
* **users** (name, role, argon2 hash made by the caller), **tokens** (the
  SHA-256 hash of an API bearer token or a page session; the store never
  sees the token itself, nor a password).
* **notices**: the webhook outbox. The sink writes, in the transaction that
  upserts the alert, one notice when an alert is first stored (``new``) and
  one each time a stored alert's severity rises (``severity_rise``).
  **Deliveries** track each notice for each hook name.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import msgspec

from fundflow.schemas.records import SEVERITIES, SEVERITY_RANK, Alert

STATUSES: tuple[str, ...] = ("open", "acknowledged", "closed")
ROLES: tuple[str, ...] = ("viewer", "analyst", "admin")
TOKEN_KINDS: tuple[str, ...] = ("api", "session")
CASE_STATUSES: tuple[str, ...] = ("open", "closed")
NOTICE_KINDS: tuple[str, ...] = ("new", "severity_rise")
DELIVERY_STATES: tuple[str, ...] = ("pending", "delivered", "dead")
#: ``page()`` orders; a leading ``-`` is descending.
ORDERS: tuple[str, ...] = (
    "-last_ts", "last_ts", "-severity", "severity", "-amount", "amount", "detector", "subject",
)  # fmt: skip
PAGE_LIMIT_MAX = 500
#: Longest free text kept (notes, comments, titles): 10,000 characters.
TEXT_MAX = 10_000

# Actor of the events the store records by itself (a closed alert reopened).
SYSTEM_ACTOR = "fundflow"


# --- errors -------------------------------------------------------------------


class StoreError(Exception):
    """The store cannot be opened, read or written, or a thing in it cannot
    change that way; ``str()`` is one line."""


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


class StoreNotFound(StoreError):
    """A thing the call names is not in the store: an alert, a case, a
    user, a delivery (HTTP 404). The message names it."""


class StoreConflict(StoreError):
    """The call is not allowed in the thing's current state: acknowledging
    a closed alert, reopening an open one, adding a user whose name is
    taken, retrying a delivery that is not dead (HTTP 409)."""


class BadCursor(ValueError):
    """A ``cursor`` that this store did not hand out for this filter and
    order: malformed, tampered with, or made for another query (HTTP 400)."""


# --- value types --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One line of an alert's audit trail.

    ``action`` is ``acknowledged``, ``closed``, ``reopened`` (by a user, or
    by ``fundflow`` when a closed alert grows), ``assigned`` (``note`` is the
    new assignee, ``None`` when unassigned) or ``commented`` (``note`` is the
    comment); ``actor`` is who did it; ``at`` is an aware UTC datetime.
    ``id`` rises with every event of a store.
    """

    id: int
    alert_id: str
    action: str
    actor: str
    note: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """What :meth:`AlertStore.page` and :meth:`AlertStore.severity_counts`
    select; every field ``None`` means any, and the fields combine with AND.

    ``detector``, ``severity`` and ``status`` take one value or a tuple of
    them (any of). ``subject`` is an exact subject id. ``since`` / ``until``
    (aware datetimes) bound ``last_ts``: ``since <= last_ts < until``.
    ``text`` matches, case-insensitively and literally (``%`` and ``_`` are
    plain characters), a substring of the summary, subject id, alert id or
    an account. ``assignee`` is the assignee's name; ``""`` selects
    unassigned alerts. ``case_id`` selects the alerts of one case.
    """

    detector: str | tuple[str, ...] | None = None
    severity: str | tuple[str, ...] | None = None
    status: str | tuple[str, ...] | None = None
    subject: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    assignee: str | None = None
    case_id: int | None = None


class AlertRow(msgspec.Struct, frozen=True):
    """An alert as the triage queue shows it: the highest revision stored,
    its status, its assignee and the ids of the cases it is in (ascending).
    A struct rather than a dataclass: a page builds 50 of them, and a
    frozen dataclass costs ten times as much to make."""

    alert: Alert
    status: str
    assignee: str | None
    case_ids: tuple[int, ...]


class CaseRef(msgspec.Struct, frozen=True):
    """A case as an alert's page names it: its id, title and status."""

    case_id: int
    title: str
    status: str


class AlertView(msgspec.Struct, frozen=True):
    """What an alert's page shows (:meth:`AlertStore.alert_view`): its queue
    row, the cases it is in (ascending id), every revision (ascending) and
    its audit trail (oldest first), read together."""

    row: AlertRow
    cases: tuple[CaseRef, ...]
    revisions: tuple[Alert, ...]
    events: tuple[AlertEvent, ...]


@dataclass(frozen=True, slots=True)
class AlertPage:
    """One page of :meth:`AlertStore.page`; ``next_cursor`` is ``None`` on
    the last page."""

    items: list[AlertRow]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class User:
    """Someone who may sign in. ``password_hash`` is what the caller made
    (argon2); ``created_at`` is aware UTC."""

    name: str
    role: str
    password_hash: str
    disabled: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Token:
    """An API bearer token or a page session, known by its SHA-256 hex
    digest. ``expires_at`` ``None`` never expires; ``csrf_hash`` is the
    SHA-256 hex digest of a session's CSRF token. The store returns a token
    whatever its expiry: the caller compares ``expires_at`` with its clock."""

    token_hash: str
    user: str
    kind: str
    created_at: datetime
    expires_at: datetime | None
    csrf_hash: str | None


@dataclass(frozen=True, slots=True)
class Case:
    """A group of alerts worked together. ``status`` is ``open`` or
    ``closed``; ``alert_ids`` ascending."""

    case_id: int
    title: str
    status: str
    owner: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    alert_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CaseEvent:
    """One line of a case's audit trail. ``action``: ``created``,
    ``added`` / ``removed`` (``alert_id`` says which), ``closed``,
    ``reopened``, ``assigned`` (``note`` is the new owner), ``commented``
    (``note`` is the comment)."""

    id: int
    case_id: int
    action: str
    actor: str
    note: str | None
    alert_id: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class CasePage:
    """One page of :meth:`AlertStore.list_cases`, newest case first."""

    items: list[Case]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Notice:
    """An outbox entry: ``kind`` ``new`` (the alert first stored) or
    ``severity_rise`` (a stored alert's severity rose), at ``revision``
    with ``severity``."""

    notice_id: int
    alert_id: str
    revision: int
    kind: str
    severity: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notice for one hook. ``state``: ``pending`` (due at
    ``next_at``), ``delivered`` (at ``delivered_at``) or ``dead`` (given
    up; :meth:`AlertStore.retry_delivery` makes it pending again).
    ``alert`` is the alert as of the notice's revision, so every attempt
    sends the same body (:func:`alert_json`)."""

    notice_id: int
    hook: str
    state: str
    attempts: int
    next_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None
    notice: Notice
    alert: Alert


# --- the protocols ------------------------------------------------------------


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

    ``iter`` / ``list`` / ``count`` filters are exact matches and ``None``
    means any; their results are ordered by ``(first_ts, alert_id)``.
    ``name`` is what messages call the store (a path, or a URL with its
    password masked).

    Every writing method validates its arguments first (``ValueError``
    naming the bad one), raises :class:`StoreNotFound` for an unknown alert,
    case, user or delivery and :class:`StoreConflict` for a change the
    current state does not allow, and commits before it returns. ``by`` is
    the signed-in user's name, recorded in the audit trail. A store of an
    older schema is migrated before its first write, and before the first
    read of anything the older schema lacks.
    """

    name: str

    # -- reading, as the CLI does ------------------------------------------------

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

    def events(self, alert_id: str) -> list[AlertEvent]:
        """The alert's audit trail, oldest first (empty for an unknown id)."""
        ...

    # -- the triage queue ----------------------------------------------------------

    def revisions(self, alert_id: str) -> list[Alert]:
        """Every revision of the alert the store has seen, ascending (empty
        for an unknown id). A revision seen twice is kept as first seen."""
        ...

    def page(
        self,
        filters: AlertFilter,
        *,
        order: str = "-last_ts",
        cursor: str | None = None,
        limit: int = 50,
    ) -> AlertPage:
        """One page of the alerts ``filters`` selects, in ``order`` (one of
        :data:`ORDERS`; ties broken by alert id, and for ``severity`` by
        ``last_ts`` first). ``cursor`` is the previous page's
        ``next_cursor``. ``limit`` 1..500. ``ValueError`` for a bad filter,
        order or limit; :class:`BadCursor` for a cursor not made by this
        store for this filter and order."""
        ...

    def severity_counts(self, filters: AlertFilter) -> dict[str, int]:
        """How many alerts ``filters`` selects, per severity: every severity
        of :data:`~fundflow.schemas.records.SEVERITIES`, in that order, 0
        included."""
        ...

    def page_with_counts(
        self,
        filters: AlertFilter,
        *,
        order: str = "-last_ts",
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[AlertPage, dict[str, int]]:
        """``page(filters, ...)`` and ``severity_counts(filters)``, what the
        queue shows together; the same errors. PostgreSQL reads both in one
        statement (one round trip, one snapshot)."""
        ...

    def row(self, alert_id: str) -> AlertRow | None:
        """The alert's queue row, or ``None``."""
        ...

    def alert_view(self, alert_id: str) -> AlertView | None:
        """The alert's row, cases, revisions and trail (``None`` for an
        unknown id), as of one moment: PostgreSQL reads them in one
        statement, SQLite in one read transaction."""
        ...

    # -- acting on alerts ------------------------------------------------------

    def ack(self, alert_id: str, by: str, note: str | None = None) -> AlertEvent:
        """``open`` → ``acknowledged``."""
        ...

    def close_alert(self, alert_id: str, by: str, note: str | None = None) -> AlertEvent:
        """``open`` or ``acknowledged`` → ``closed``."""
        ...

    def reopen(self, alert_id: str, by: str, note: str | None = None) -> AlertEvent:
        """``closed`` → ``open`` (event ``reopened`` by ``by``)."""
        ...

    def assign(self, alert_id: str, by: str, assignee: str | None) -> AlertEvent:
        """Set (or, with ``None``, clear) the assignee, any status.
        :class:`StoreConflict` when it already is that."""
        ...

    def comment(self, alert_id: str, by: str, text: str) -> AlertEvent:
        """Append a comment (non-empty text) to the audit trail."""
        ...

    # -- users and tokens ------------------------------------------------------

    def add_user(self, name: str, role: str, password_hash: str) -> User:
        """A new enabled user; :class:`StoreConflict` when the name is taken."""
        ...

    def get_user(self, name: str) -> User | None: ...

    def list_users(self) -> list[User]:
        """Every user, by name."""
        ...

    def set_password(self, name: str, password_hash: str) -> None: ...

    def set_role(self, name: str, role: str) -> None: ...

    def disable_user(self, name: str) -> None:
        """Disable the user and revoke all their tokens."""
        ...

    def add_token(
        self,
        token_hash: str,
        user: str,
        kind: str,
        expires_at: datetime | None,
        csrf_hash: str | None = None,
    ) -> None:
        """Keep a token's SHA-256 hex digest (64 lowercase hex characters,
        else ``ValueError``) for ``user`` (:class:`StoreNotFound` if
        unknown); ``kind`` ``api`` or ``session``."""
        ...

    def get_token(self, token_hash: str) -> Token | None: ...

    def revoke_token(self, token_hash: str) -> None:
        """Forget the token (nothing happens for an unknown one)."""
        ...

    def revoke_tokens(self, user: str) -> None:
        """Forget every token of ``user``."""
        ...

    # -- cases -------------------------------------------------------------------

    def create_case(
        self,
        title: str,
        by: str,
        alert_ids: Sequence[str] = (),
        owner: str | None = None,
        note: str | None = None,
    ) -> Case:
        """A new open case holding ``alert_ids`` (each must exist)."""
        ...

    def get_case(self, case_id: int) -> Case | None: ...

    def list_cases(
        self,
        status: str | None = None,
        owner: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> CasePage:
        """Cases, newest first, a page at a time (``limit`` 1..500)."""
        ...

    def add_to_case(self, case_id: int, alert_ids: Sequence[str], by: str) -> Case:
        """Add alerts to a case (those already in it are skipped); returns
        the case as it now is."""
        ...

    def remove_from_case(self, case_id: int, alert_id: str, by: str) -> Case:
        """:class:`StoreNotFound` when the alert is not in the case."""
        ...

    def set_case_status(self, case_id: int, status: str, by: str, note: str | None = None) -> Case:
        """``open`` → ``closed`` or back; :class:`StoreConflict` when it
        already has that status."""
        ...

    def assign_case(self, case_id: int, by: str, owner: str | None) -> Case: ...

    def comment_case(self, case_id: int, by: str, text: str) -> CaseEvent: ...

    def case_events(self, case_id: int) -> list[CaseEvent]:
        """The case's audit trail, oldest first (empty for an unknown id)."""
        ...

    # -- the webhook outbox ----------------------------------------------------

    def due_deliveries(
        self, hooks: Sequence[str], now: datetime, limit: int = 100
    ) -> list[Delivery]:
        """First creates a pending delivery, due at once, for every notice
        and hook that has none; then returns at most ``limit`` pending
        deliveries of ``hooks`` with ``next_at <= now``, oldest first."""
        ...

    def mark_delivered(self, notice_id: int, hook: str, at: datetime) -> None:
        """The hook took the notice: ``delivered``, one more attempt."""
        ...

    def mark_failed(
        self,
        notice_id: int,
        hook: str,
        error: str,
        next_at: datetime | None,
        dead: bool,
    ) -> None:
        """An attempt failed: one more attempt, ``last_error`` kept; pending
        again at ``next_at``, or ``dead`` when ``dead`` is true."""
        ...

    def list_deliveries(
        self, state: str | None = None, hook: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        """Deliveries, newest notice first."""
        ...

    def retry_delivery(self, notice_id: int, hook: str, by: str) -> None:
        """``dead`` → ``pending``, due now; :class:`StoreConflict` when the
        delivery is not dead."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> AlertStore: ...

    def __exit__(self, *exc_info: object) -> None: ...


# --- shared helpers -----------------------------------------------------------


def encode_json(value: Any) -> str:
    """Sorted keys: the same alert always gives the same bytes, so re-upserts
    compare equal and the stored rows are reproducible."""
    return msgspec.json.encode(value, order="deterministic").decode()


def sorted_keys(value: Any) -> Any:
    """Decoded JSON with every object's keys in :func:`encode_json`'s order
    (by code point), nested objects and arrays included: what a backend
    whose JSON type keeps its own key order (PostgreSQL's jsonb) gives
    back, so an alert reads back with the same bytes from every store."""
    if type(value) is dict:
        # Scalars (most evidence values) are taken as they are, without a
        # call: an alert page decodes 50 evidence objects.
        out = {}
        for k in sorted(value):
            v = value[k]
            out[k] = sorted_keys(v) if type(v) in _NESTED else v
        return out
    if type(value) is list:
        return [sorted_keys(v) if type(v) in _NESTED else v for v in value]
    return value


_NESTED = (dict, list)


def alert_json(alert: Alert) -> bytes:
    """The alert's canonical JSON (keys sorted): what the store keeps per
    revision and what a notice's body is built from."""
    return msgspec.json.encode(alert, order="deterministic")


def decode_alert(body: str | bytes) -> Alert:
    return msgspec.json.decode(body, type=Alert)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def utc_text(at: datetime) -> str:
    """An instant as fixed-width UTC text (microseconds), so text order is
    time order."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def alert_instant(alert: Alert, field: str) -> datetime:
    """``first_ts`` / ``last_ts`` as an aware datetime; :class:`StoreError`
    when it is not ISO-8601 with an offset."""
    text = getattr(alert, field)
    try:
        at = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise StoreError(
            f"alert {alert.alert_id}: {field} {text!r} is not an ISO-8601 time"
        ) from None
    if at.tzinfo is None:
        raise StoreError(f"alert {alert.alert_id}: {field} {text!r} has no UTC offset")
    return at


_AMOUNT = re.compile(r"-?[0-9]{1,18}\.[0-9]{2}")


def amount_fen(alert: Alert) -> int:
    """The alert's amount in fen; :class:`StoreError` when it is not yuan
    with two decimals."""
    if not isinstance(alert.amount, str) or not _AMOUNT.fullmatch(alert.amount):
        raise StoreError(
            f"alert {alert.alert_id}: amount {alert.amount!r} is not yuan with 2 decimals"
        )
    try:
        return int(Decimal(alert.amount) * 100)
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise StoreError(f"alert {alert.alert_id}: amount {alert.amount!r} unreadable") from None


def severity_rank(severity: str) -> int:
    return SEVERITY_RANK.get(severity, -1)


def haystack(alert: Alert) -> str:
    """What ``AlertFilter.text`` searches: summary, subject, id and
    accounts, one per line, lower-cased (by Python, whatever the database's
    locale)."""
    return "\n".join((alert.summary, alert.subject_id, alert.alert_id, *alert.accounts)).lower()


def like_pattern(text: str) -> str:
    """A ``LIKE ... ESCAPE '\\'`` pattern matching ``text`` literally, as a
    lower-cased substring."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# --- lifecycle rules, shared by every backend ---------------------------------

# (move, current status) -> new status; anything else is refused.
_MOVES: dict[tuple[str, str], str] = {
    ("ack", "open"): "acknowledged",
    ("close", "open"): "closed",
    ("close", "acknowledged"): "closed",
    ("reopen", "closed"): "open",
}
_VERBS = {"ack": "acknowledge", "close": "close", "reopen": "reopen"}
#: The event action of each move.
MOVE_ACTIONS = {"ack": "acknowledged", "close": "closed", "reopen": "reopened"}


def next_status(alert_id: str, move: str, current: str) -> str:
    """The status ``move`` (``ack`` / ``close`` / ``reopen``) leads to from
    ``current``, or :class:`StoreConflict` naming why it cannot happen."""
    new = _MOVES.get((move, current))
    if new is None:
        already = " already" if _target(move) == current else ""
        raise StoreConflict(f"cannot {_VERBS[move]} alert {alert_id!r}: it is{already} {current}")
    return new


def _target(move: str) -> str | None:
    return next((new for (m, _), new in _MOVES.items() if m == move), None)


def check_actor(by: str, note: str | None) -> tuple[str, str | None]:
    """``by`` and ``note`` cleaned for the audit trail (``note`` ``""`` is
    ``None``); ``ValueError`` when ``by`` names nobody."""
    if not isinstance(by, str) or not by.strip():
        raise ValueError(f"by must name who acts, got {by!r}")
    if note is not None and not isinstance(note, str):
        raise ValueError(f"note must be text, got {note!r}")
    if note is not None and len(note) > TEXT_MAX:
        raise ValueError(f"note is longer than {TEXT_MAX} characters")
    if "\x00" in by or (note is not None and "\x00" in note):
        raise ValueError("by and note must not contain NUL characters")
    return by.strip(), (note.strip() or None) if note is not None else None


def check_text(what: str, text: object) -> str:
    """Non-empty free text (a comment, a title) of at most
    :data:`TEXT_MAX` characters, stripped."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{what} must be non-empty text, got {text!r}")
    if len(text) > TEXT_MAX:
        raise ValueError(f"{what} is longer than {TEXT_MAX} characters")
    if "\x00" in text:
        raise ValueError(f"{what} must not contain NUL characters")
    return text.strip()


def check_name(what: str, name: object) -> str:
    """A user name (or assignee, owner, hook): non-empty text of at most
    200 characters with no control characters, stripped."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} must be a non-empty name, got {name!r}")
    if len(name) > 200 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"{what} must be at most 200 printable characters, got {name!r}")
    return name.strip()


def check_choice(what: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def check_status(status: str | None) -> None:
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def check_sha256(what: str, digest: object) -> str:
    if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
        raise ValueError(f"{what} must be a SHA-256 hex digest (64 lowercase hex characters)")
    return digest


def check_limit(limit: object, high: int = PAGE_LIMIT_MAX) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= high:
        raise ValueError(f"limit must be an integer from 1 to {high}, got {limit!r}")
    return limit


def check_time(what: str, at: object) -> datetime:
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise ValueError(f"{what} must be an aware datetime, got {at!r}")
    return at


def check_id(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


# --- filters ------------------------------------------------------------------


def _choices(what: str, value: object, known: Sequence[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    values = (value,) if isinstance(value, str) else value
    if not isinstance(values, tuple) or not values:
        raise ValueError(f"{what} must be a string or a non-empty tuple of strings, got {value!r}")
    for v in values:
        if not isinstance(v, str) or not v or "\x00" in v:
            raise ValueError(f"{what} must name something, got {v!r}")
        if known is not None and v not in known:
            raise ValueError(f"{what} must be one of {', '.join(known)}, got {v!r}")
    return tuple(sorted(set(values)))


def normalize_filter(filters: AlertFilter) -> AlertFilter:
    """``filters`` checked (``ValueError`` naming the bad field) and put in
    one canonical form: one-value choices as sorted tuples of distinct
    values, free text stripped."""
    if not isinstance(filters, AlertFilter):
        raise ValueError(f"filters must be an AlertFilter, got {filters!r}")
    f = filters
    for what, value in (("subject", f.subject), ("assignee", f.assignee)):
        if value is not None and (not isinstance(value, str) or "\x00" in value):
            raise ValueError(f"{what} must be text with no NUL, got {value!r}")
    for what, at in (("since", f.since), ("until", f.until)):
        if at is not None:
            check_time(what, at)
    text = f.text
    if text is not None:
        if not isinstance(text, str):
            raise ValueError(f"text must be text, got {text!r}")
        if len(text) > 200 or "\x00" in text:
            raise ValueError("text must be at most 200 characters, with no NUL")
        text = text.strip() or None
    if f.case_id is not None:
        check_id("case_id", f.case_id)
    return AlertFilter(
        detector=_choices("detector", f.detector, None),
        severity=_choices("severity", f.severity, SEVERITIES),
        status=_choices("status", f.status, STATUSES),
        subject=f.subject,
        since=f.since,
        until=f.until,
        text=text,
        assignee=f.assignee,
        case_id=f.case_id,
    )


def filter_digest(filters: AlertFilter, order: str) -> str:
    """A short digest of a normalised filter and order, which a cursor
    carries so it is refused for any other query."""
    parts = {
        field.name: (utc_text(v) if isinstance(v, datetime) else v)
        for field in fields(filters)
        if (v := getattr(filters, field.name)) is not None
    }
    body = encode_json({"order": order, "filters": parts}).encode()
    return hashlib.sha256(body).hexdigest()[:16]


# --- keyset order and cursors -------------------------------------------------

#: Per order: the sort keys (beyond the first, they break ties), all in the
#: same direction so one row-value comparison finds the next page.
ORDER_KEYS: dict[str, tuple[str, ...]] = {
    "last_ts": ("last_ts", "alert_id"),
    "severity": ("severity_rank", "last_ts", "alert_id"),
    "amount": ("amount_fen", "alert_id"),
    "detector": ("detector", "alert_id"),
    "subject": ("subject_id", "alert_id"),
}


def check_order(order: object) -> tuple[tuple[str, ...], bool]:
    """The sort keys of ``order`` and whether it is descending;
    ``ValueError`` for an order not in :data:`ORDERS`."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    assert isinstance(order, str)
    return ORDER_KEYS[order.lstrip("-")], order.startswith("-")


def sort_key(alert: Alert, key: str) -> str | int:
    """The value of one sort key for an alert, as a cursor holds it."""
    if key == "last_ts":
        return utc_text(alert_instant(alert, "last_ts"))
    if key == "severity_rank":
        return severity_rank(alert.severity)
    if key == "amount_fen":
        return amount_fen(alert)
    return str(getattr(alert, key))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def make_cursor(key: bytes, digest: str, values: Sequence[str | int]) -> str:
    """An opaque, url-safe cursor: the last row's sort-key ``values`` and
    the query ``digest``, signed with the store's ``key`` (HMAC-SHA256)."""
    payload = encode_json([digest, list(values)]).encode()
    sig = hmac.new(key, payload, hashlib.sha256).digest()[:16]
    return f"{_b64(payload)}.{_b64(sig)}"


def read_cursor(key: bytes, digest: str, cursor: object, types: Sequence[type]) -> list[Any]:
    """The sort-key values a cursor made by :func:`make_cursor` holds;
    :class:`BadCursor` when it is malformed, its signature does not match,
    it was made for another query, or its values are not of ``types``."""
    if not isinstance(cursor, str) or len(cursor) > 2000:
        raise BadCursor("malformed cursor")
    body, _, sig = cursor.partition(".")
    if not body or not sig:
        raise BadCursor("malformed cursor")
    try:
        payload, signature = _unb64(body), _unb64(sig)
    except (binascii.Error, ValueError):
        raise BadCursor("malformed cursor") from None
    expected = hmac.new(key, payload, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(signature, expected):
        raise BadCursor("cursor signature does not match: not made by this store")
    try:
        made_for, values = msgspec.json.decode(payload)
    except (msgspec.DecodeError, TypeError, ValueError):
        raise BadCursor("malformed cursor") from None
    if made_for != digest:
        raise BadCursor("cursor was made for another filter or order")
    if (
        not isinstance(values, list)
        or len(values) != len(types)
        or not all(type(v) is t for v, t in zip(values, types, strict=True))
    ):
        raise BadCursor("malformed cursor")
    return values


def key_types(keys: Sequence[str]) -> list[type]:
    return [int if k in ("severity_rank", "amount_fen") else str for k in keys]


# --- what a batch does beyond the upsert --------------------------------------


def latest_per_id(batch: Sequence[Alert]) -> dict[str, Alert]:
    """The alert each id ends up as after upserting ``batch`` in order: the
    highest revision, the last of equals."""
    latest: dict[str, Alert] = {}
    for a in batch:
        kept = latest.get(a.alert_id)
        if kept is None or a.revision >= kept.revision:
            latest[a.alert_id] = a
    return latest


def reopened(latest: Mapping[str, Alert], stored: Mapping[str, tuple[Any, ...]]) -> list[Alert]:
    """Of ``latest`` (see :func:`latest_per_id`), the alerts stored
    (``{id: (revision, status, ...)}``) as closed at a lower revision."""
    return [
        a
        for alert_id, (revision, status, *_) in stored.items()
        if status == "closed" and (a := latest[alert_id]).revision > revision
    ]


def reopen_note(alert: Alert, old_revision: int) -> str:
    return (
        f"revision {alert.revision} replaced revision {old_revision} after closing: "
        f"severity {alert.severity}, amount {alert.amount}"
    )


def notices_for(
    latest: Mapping[str, Alert], stored: Mapping[str, tuple[Any, ...]]
) -> list[tuple[Alert, str]]:
    """The notices a batch gives, ``(alert, kind)`` in id order: ``new``
    for an id not stored before, ``severity_rise`` for a stored
    ``(revision, status, severity)`` that a higher revision of higher
    severity replaces. Revisions within one batch count as one change, to
    the latest."""
    found: list[tuple[Alert, str]] = []
    for alert_id in sorted(latest):
        a = latest[alert_id]
        if alert_id not in stored:
            found.append((a, "new"))
            continue
        revision, _, severity, *_ = stored[alert_id]
        if a.revision > revision and severity_rank(a.severity) > severity_rank(severity):
            found.append((a, "severity_rise"))
    return found


# --- sinks --------------------------------------------------------------------


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

    def _commit(self, n: int) -> None:
        raise NotImplementedError


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
