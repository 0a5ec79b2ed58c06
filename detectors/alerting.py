"""What every detector shares about raising alerts.

An alert's id is derived from the detector, the subject and the identity of
what it found (an episode's start, a loan id, a day), never from a counter or
the wall clock, so a replay or a redelivery yields the same id. An
:class:`AlertBook` remembers what it has already said under each id and
decides when a growing finding is worth saying again: when its severity
rises, when its amount grows by the configured percentage, or, once the
finding's episode has ended, when its figures moved since the last revision
(settling, see :class:`AlertBook`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from fundflow import _core
from fundflow.schemas.decode import fen_to_yuan
from fundflow.schemas.records import SEVERITY_RANK, Alert

from .settings import Int, section, setting


@section("alerts")
@dataclass(frozen=True, slots=True)
class AlertConfig:
    """``[alerts]``: when a finding is stated again, and how many txn ids it lists."""

    reemit_growth_pct: int = setting(Int(0, 1000))
    sample_txns: int = setting(Int(0, 1000))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def make_alert_id(detector: str, subject_id: str, *identity: object) -> str:
    """A stable id: 24 hex digits of SHA-256 over the parts.

    >>> make_alert_id("fund_pool", "P1", "gather_scatter", 1772330400000)
    '85862938143505662c5f0f93'
    """
    text = "\x1f".join([detector, subject_id, *map(str, identity)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def iso(ms: int, zone: ZoneInfo) -> str:
    """Epoch ms as ISO-8601 in ``zone`` (seconds, or milliseconds when set).

    >>> iso(1772330400000, ZoneInfo("Asia/Shanghai"))
    '2026-03-01T10:00:00+08:00'
    """
    dt = (_EPOCH + timedelta(milliseconds=ms)).astimezone(zone)
    return dt.isoformat(timespec="milliseconds" if ms % 1000 else "seconds")


def local_offset_ms(ms: int, zone: ZoneInfo) -> int:
    """The zone's UTC offset at instant ``ms``, in milliseconds."""
    off = (_EPOCH + timedelta(milliseconds=ms)).astimezone(zone).utcoffset()
    return 0 if off is None else (off.days * 86400 + off.seconds) * 1000


def local_day(ms: int, zone: ZoneInfo) -> str:
    """The local calendar date of instant ``ms`` as ``YYYY-MM-DD``."""
    return (_EPOCH + timedelta(milliseconds=ms)).astimezone(zone).date().isoformat()


def day_end_ms(day: str, zone: ZoneInfo) -> int:
    """The instant local day ``day`` ends (the next local midnight)."""
    d = datetime.fromisoformat(day).replace(tzinfo=zone) + timedelta(days=1)
    d = datetime(d.year, d.month, d.day, tzinfo=zone)
    delta = d - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000


def local_day_end(ms: int, zone: ZoneInfo) -> int:
    """The instant the local day of instant ``ms`` ends (the next local midnight).

    >>> local_day_end(1772330400000, ZoneInfo("Asia/Shanghai")) - 1772330400000
    50400000
    """
    return day_end_ms(local_day(ms, zone), zone)


def ratio_text(num: int, den: int, places: int = 4) -> str:
    """``num/den`` as a decimal string, exact to ``places`` (no floats).

    >>> ratio_text(2, 3), ratio_text(5, 0)
    ('0.6667', 'inf')
    """
    if den == 0:
        return "inf"
    q = Decimal(num) / Decimal(den)
    return str(q.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN))


def ordinal(n: int) -> str:
    """``n`` as an English ordinal, for a percentile in a summary.

    >>> [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 92, 99)]
    ['1st', '2nd', '3rd', '4th', '11th', '12th', '13th', '21st', '92nd', '99th']
    """
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def yuan(fen: int) -> str:
    return fen_to_yuan(fen)


class _Said:
    """What was last emitted under one id."""

    __slots__ = ("revision", "severity", "amount", "last_ts")

    def __init__(self, revision: int, severity: str, amount: int, last_ts: int) -> None:
        self.revision = revision
        self.severity = severity
        self.amount = amount
        self.last_ts = last_ts

    def __getstate__(self) -> tuple[int, str, int, int]:
        return (self.revision, self.severity, self.amount, self.last_ts)

    def __setstate__(self, state: tuple[int, str, int, int]) -> None:
        self.revision, self.severity, self.amount, self.last_ts = state


Built = tuple[list[str], str, dict[str, Any]]
Builder = Callable[[], Built]

#: An episode with no end in event time: settled only by :meth:`AlertBook.settle_open`.
NO_END = -1


class Stated:
    """A builder that returns what another builder built: what a snapshot
    keeps of a waiting offer (plain data, so it goes into a snapshot)."""

    __slots__ = ("built",)

    def __init__(self, built: Built) -> None:
        self.built = built

    def __call__(self) -> Built:
        return self.built

    def __getstate__(self) -> Built:
        return self.built

    def __setstate__(self, built: Built) -> None:
        self.built = built


def _make_alert(
    detector: str,
    version: str,
    zone: ZoneInfo,
    thresholds: dict[str, Any] | None,
    alert_id: str,
    subject_id: str,
    severity: str,
    amount: int,
    first_ts: int,
    last_ts: int,
    revision: int,
    build: Builder,
) -> Alert:
    """The alert an :class:`AlertBook` states: ``build`` gives its accounts,
    summary and evidence, and the evidence ends with the thresholds."""
    accounts, summary, evidence = build()
    if thresholds is not None:
        evidence["thresholds"] = dict(thresholds)
    return Alert(
        alert_id=alert_id,
        detector=detector,
        severity=severity,  # type: ignore[arg-type]
        subject_id=subject_id,
        accounts=tuple(accounts),
        first_ts=iso(first_ts, zone),
        last_ts=iso(last_ts, zone),
        amount=yuan(amount),
        summary=summary,
        evidence=evidence,
        detector_version=version,
        revision=revision,
    )


class AlertBook(_core.AlertBook):
    """Emission bookkeeping for one detector, and the settling of episodes:
    the compiled core's book (``core/src/book.rs``), which this class gives
    the alerts it states.

    ``offer(alert_id, subject_id, severity, amount, first_ts, last_ts,
    build, *, final=False, ends=NO_END)`` is called with the current figures
    of a finding each time they change; it appends an :class:`Alert` to
    ``out`` only when the finding is new, its severity rises (a finding
    never steps down a band in place: the alert states the worst seen) or
    its amount grows by ``reemit_growth_pct`` per cent, calling ``build``
    (accounts, summary, evidence) only then, so the per-record cost of an
    unchanged finding stays small; ``True`` when it did. The book ends
    every alert's evidence with the thresholds in force (``thresholds``),
    so no detector writes them.

    Settling. An offer the book declines while its figures moved is kept,
    waiting, as the finding's latest figures, with ``ends``: the last event
    time at which the finding's episode can still change (its window or
    gap after the last time the rule held, the end of its local day), or
    :data:`NO_END` for an episode that ends at a record (``close(subject_id,
    alert_id)``) or with the stream. When the subject's clock passes
    ``ends`` (``settle(subject_id, now)``, called by the detector as its
    subject's records arrive; ``settle_due(now)`` for every subject at
    once, subject by subject in id order) the waiting offer is made once
    more with ``final=True``: the alert's last revision then carries the
    episode's complete figures. ``settle_open()`` settles every waiting
    offer (the end of a stream), subject by subject in id order, each
    subject's in the order offered. An offer that is emitted, or whose
    figures equal the last revision's, leaves nothing waiting.

    ``build`` of a declined offer is called later (when it settles, or when
    a snapshot is taken), so it must give what it would have given at the
    offer: it may read only state that changes together with a new offer of
    the same finding (or capture what it reads). It must not call the book.
    """

    def __new__(
        cls,
        detector: str,
        version: str,
        zone: ZoneInfo,
        cfg: AlertConfig,
        thresholds: dict[str, Any] | None = None,
    ) -> AlertBook:
        make = partial(_make_alert, detector, version, zone, thresholds)
        return super().__new__(cls, cfg.reemit_growth_pct, SEVERITY_RANK, make)

    def __init__(
        self,
        detector: str,
        version: str,
        zone: ZoneInfo,
        cfg: AlertConfig,
        thresholds: dict[str, Any] | None = None,
    ) -> None:
        self.detector = detector
        self.version = version
        self.zone = zone
        #: Every threshold in force, as written in the configuration: each
        #: alert's evidence ends with them (``thresholds``).
        self.thresholds = thresholds

    @property
    def said(self) -> dict[str, _Said]:
        """What was last stated under each id, in the order first stated."""
        return {aid: _Said(*figures) for aid, *figures in self.said_items()}

    @said.setter
    def said(self, said: dict[str, _Said]) -> None:
        self.load_said(
            [(aid, s.revision, s.severity, s.amount, s.last_ts) for aid, s in said.items()]
        )

    def waiting_state(self) -> dict[str, dict[str, list[Any]]]:
        """The waiting offers as plain data (each builder called now), for a
        snapshot; :meth:`load_waiting` takes it back."""
        return {
            subject: {
                aid: [severity, amount, first_ts, last_ts, Stated(build()), ends]
                for aid, severity, amount, first_ts, last_ts, build, ends in entries
            }
            for subject, entries in self.waiting_items()
        }


def band(value: int, bands: tuple[tuple[int, str], ...], floor: str) -> str:
    """The severity of ``value`` given ``(threshold, severity)`` pairs in
    rising order; ``floor`` below the first.

    >>> band(7, ((5, "high"), (10, "critical")), "medium")
    'high'
    """
    sev = floor
    for threshold, name in bands:
        if value >= threshold:
            sev = name
    return sev
