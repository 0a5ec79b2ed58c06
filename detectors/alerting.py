"""What every detector shares about raising alerts.

An alert's id is derived from the detector, the subject and the identity of
what it found (an episode's start, a loan id, a day), never from a counter or
the wall clock, so a replay or a redelivery yields the same id. An
:class:`AlertBook` remembers what it has already said under each id and
decides when a growing finding is worth saying again: when its severity
rises, when its amount grows by the configured percentage, or when the
stream ends with figures that moved since the last revision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from fundflow.schemas.decode import fen_to_yuan
from fundflow.schemas.records import SEVERITY_RANK, Alert

from .config import AlertConfig

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


def ratio_text(num: int, den: int, places: int = 4) -> str:
    """``num/den`` as a decimal string, exact to ``places`` (no floats).

    >>> ratio_text(2, 3), ratio_text(5, 0)
    ('0.6667', 'inf')
    """
    if den == 0:
        return "inf"
    q = Decimal(num) / Decimal(den)
    return str(q.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN))


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


Builder = Callable[[], tuple[list[str], str, dict[str, Any]]]


class AlertBook:
    """Emission bookkeeping for one detector.

    ``offer`` is called with the current figures of a finding each time they
    change; it appends an :class:`Alert` to ``out`` only when the finding is
    new or has grown enough, calling ``build`` (accounts, summary, evidence)
    only then, so the per-record cost of an unchanged finding stays small.
    """

    def __init__(self, detector: str, version: str, zone: ZoneInfo, cfg: AlertConfig) -> None:
        self.detector = detector
        self.version = version
        self.zone = zone
        self.growth_pct = cfg.reemit_growth_pct
        self.said: dict[str, _Said] = {}
        self.out: list[Alert] = []

    def offer(
        self,
        alert_id: str,
        subject_id: str,
        severity: str,
        amount: int,
        first_ts: int,
        last_ts: int,
        build: Builder,
        *,
        final: bool = False,
    ) -> bool:
        said = self.said.get(alert_id)
        if said is not None:
            rank_up = SEVERITY_RANK[severity] > SEVERITY_RANK[said.severity]
            grown = amount * 100 >= said.amount * (100 + self.growth_pct) and amount > said.amount
            moved = final and (
                amount != said.amount or last_ts != said.last_ts or severity != said.severity
            )
            if not (rank_up or grown or moved):
                return False
            # A finding never steps down a band in place: the alert states the worst seen.
            if SEVERITY_RANK[severity] < SEVERITY_RANK[said.severity]:
                severity = said.severity
            revision = said.revision + 1
        else:
            revision = 1
        accounts, summary, evidence = build()
        self.out.append(
            Alert(
                alert_id=alert_id,
                detector=self.detector,
                severity=severity,  # type: ignore[arg-type]
                subject_id=subject_id,
                accounts=tuple(accounts),
                first_ts=iso(first_ts, self.zone),
                last_ts=iso(last_ts, self.zone),
                amount=yuan(amount),
                summary=summary,
                evidence=evidence,
                detector_version=self.version,
                revision=revision,
            )
        )
        self.said[alert_id] = _Said(revision, severity, amount, last_ts)
        return True

    def drain(self) -> list[Alert]:
        out, self.out = self.out, []
        return out


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
