"""What the shells report about a run, behind one small protocol.

The core imports no metrics library (house style, points 1 and 7): the
shells (``fundflow replay``, the Kafka worker) report through a
:class:`Metrics` object; ``fundflow/prom.py`` is the one Prometheus
implementation, :class:`NullMetrics` reports nothing, and
:class:`RecordingMetrics` keeps every figure in plain dicts for tests.

Nothing here is called per record: a shell keeps the counters it already has
and hands over the differences in batches (the replay every 4096 records and
at the end). Alerts are rare, so :class:`AlertReporter` is called once per
alert emitted; it keeps the open-alert counts and derives the subject gauges
from the alerts' evidence.

Label values are bounded sets — topic, record kind, dead-letter reason,
detector, severity — and never account ids. The three subject-labelled
gauges (reserve coverage per institution, pooled amount and mismatch exposure
per platform) name at most ``subject_limit`` subjects each (default
:data:`DEFAULT_SUBJECT_LIMIT`): every label value is a separate time series
in Prometheus, held in memory and in every query that touches the metric, so
an unbounded set of subjects would let the data decide how much the
monitoring costs. Subjects past the limit are folded into one series,
:data:`OTHER` (``"_other"``): the lowest coverage ratio among them, the sum of
their amounts.

>>> rec = RecordingMetrics()
>>> rec.records_in("replay", "custody_txn", 4096)
>>> rec.dead_letters("not_json", 2)
>>> rec.records[("replay", "custody_txn")], rec.dead["not_json"]
(4096, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from fundflow.schemas.records import Alert

#: How many subjects a subject-labelled gauge names before folding the rest.
DEFAULT_SUBJECT_LIMIT = 500
#: The label value that stands for every subject past the limit.
OTHER = "_other"


class Metrics(Protocol):
    """What a shell reports. Counters take increments (``n`` since the last
    call), gauges take the current value. Every method is cheap and none may
    raise: a metrics problem must never stop the stream."""

    def records_in(self, topic: str, kind: str, n: int) -> None:
        """``n`` more records read from ``topic`` (``"replay"`` for the replay
        command's dumps), of record ``kind`` (``"invalid"`` when the line could
        not be decoded into any kind)."""

    def accepted(self, n: int) -> None:
        """``n`` more records accepted by the engine."""

    def duplicates(self, n: int) -> None:
        """``n`` more repeated transactions dropped by the engine."""

    def dead_letters(self, reason: str, n: int) -> None:
        """``n`` more records refused for ``reason`` (one of ``REASONS``)."""

    def alert(self, detector: str, severity: str, new: bool) -> None:
        """One alert emitted: a new one (revision 1) or a revision of one."""

    def open_alerts(self, detector: str, severity: str, n: int) -> None:
        """Alerts of this detector whose latest severity is ``severity``."""

    def processing_seconds(self, seconds: float) -> None:
        """One sampled record's time from decoded record to its alerts."""

    def event_time_lag_seconds(self, seconds: float) -> None:
        """Wall clock minus the newest event time processed."""

    def last_record_timestamp_seconds(self, seconds: float) -> None:
        """The newest event time processed, as Unix seconds."""

    def consumer_lag(self, topic: str, partition: int, n: int) -> None:
        """Messages behind the end of ``topic``/``partition`` (Kafka shells)."""

    def state_size(self, subjects: int, accounts: int, edges: int) -> None:
        """What the engine holds (see ``Engine.state_size``)."""

    def reserve_coverage(self, institution: str, ratio: float) -> None:
        """Reserve balance / client liabilities an institution's latest
        ``coverage_shortfall`` alert states (capped labels: use
        :class:`AlertReporter`)."""

    def pooled_amount(self, platform: str, yuan: float) -> None:
        """Lender money gathered in a platform's pool window, from its latest
        fund_pool ``gather_scatter`` alert (capped labels)."""

    def mismatch_exposure(self, platform: str, yuan: float) -> None:
        """Open mismatched exposure from a platform's latest
        ``mismatch_exposure`` alert (capped labels)."""


class NullMetrics:
    """Reports nothing: the default when no metrics are wanted."""

    def records_in(self, topic: str, kind: str, n: int) -> None:
        pass

    def accepted(self, n: int) -> None:
        pass

    def duplicates(self, n: int) -> None:
        pass

    def dead_letters(self, reason: str, n: int) -> None:
        pass

    def alert(self, detector: str, severity: str, new: bool) -> None:
        pass

    def open_alerts(self, detector: str, severity: str, n: int) -> None:
        pass

    def processing_seconds(self, seconds: float) -> None:
        pass

    def event_time_lag_seconds(self, seconds: float) -> None:
        pass

    def last_record_timestamp_seconds(self, seconds: float) -> None:
        pass

    def consumer_lag(self, topic: str, partition: int, n: int) -> None:
        pass

    def state_size(self, subjects: int, accounts: int, edges: int) -> None:
        pass

    def reserve_coverage(self, institution: str, ratio: float) -> None:
        pass

    def pooled_amount(self, platform: str, yuan: float) -> None:
        pass

    def mismatch_exposure(self, platform: str, yuan: float) -> None:
        pass


class RecordingMetrics:
    """Keeps every report in plain dicts, for tests.

    Counters add up (``records``, ``accepted_total``, ``dead``, ``raised``,
    ``updated``); gauges keep the last value. ``calls`` counts the calls per
    method, so a test can pin that nothing is reported per record.
    """

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], int] = {}
        self.accepted_total = 0
        self.duplicates_total = 0
        self.dead: dict[str, int] = {}
        self.raised: dict[tuple[str, str], int] = {}
        self.updated: dict[tuple[str, str], int] = {}
        self.open: dict[tuple[str, str], int] = {}
        self.processing: list[float] = []
        self.event_lag: float | None = None
        self.last_record_ts: float | None = None
        self.lag: dict[tuple[str, int], int] = {}
        self.state: tuple[int, int, int] | None = None
        self.coverage: dict[str, float] = {}
        self.pooled: dict[str, float] = {}
        self.exposure: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def _call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def records_in(self, topic: str, kind: str, n: int) -> None:
        self._call("records_in")
        self.records[(topic, kind)] = self.records.get((topic, kind), 0) + n

    def accepted(self, n: int) -> None:
        self._call("accepted")
        self.accepted_total += n

    def duplicates(self, n: int) -> None:
        self._call("duplicates")
        self.duplicates_total += n

    def dead_letters(self, reason: str, n: int) -> None:
        self._call("dead_letters")
        self.dead[reason] = self.dead.get(reason, 0) + n

    def alert(self, detector: str, severity: str, new: bool) -> None:
        self._call("alert")
        book = self.raised if new else self.updated
        book[(detector, severity)] = book.get((detector, severity), 0) + 1

    def open_alerts(self, detector: str, severity: str, n: int) -> None:
        self._call("open_alerts")
        self.open[(detector, severity)] = n

    def processing_seconds(self, seconds: float) -> None:
        self._call("processing_seconds")
        self.processing.append(seconds)

    def event_time_lag_seconds(self, seconds: float) -> None:
        self._call("event_time_lag_seconds")
        self.event_lag = seconds

    def last_record_timestamp_seconds(self, seconds: float) -> None:
        self._call("last_record_timestamp_seconds")
        self.last_record_ts = seconds

    def consumer_lag(self, topic: str, partition: int, n: int) -> None:
        self._call("consumer_lag")
        self.lag[(topic, partition)] = n

    def state_size(self, subjects: int, accounts: int, edges: int) -> None:
        self._call("state_size")
        self.state = (subjects, accounts, edges)

    def reserve_coverage(self, institution: str, ratio: float) -> None:
        self._call("reserve_coverage")
        self.coverage[institution] = ratio

    def pooled_amount(self, platform: str, yuan: float) -> None:
        self._call("pooled_amount")
        self.pooled[platform] = yuan

    def mismatch_exposure(self, platform: str, yuan: float) -> None:
        self._call("mismatch_exposure")
        self.exposure[platform] = yuan


class CappedGauge:
    """A subject-labelled gauge that names at most ``limit`` subjects.

    The first ``limit`` subjects seen keep their own label for good; later
    ones are folded into :data:`OTHER`, whose value is ``fold`` of their
    latest values (``min`` for a ratio, ``sum`` for an amount).

    >>> seen = {}
    >>> g = CappedGauge(seen.__setitem__, limit=1, fold=sum)
    >>> g.set("P1", 5.0); g.set("P2", 2.0); g.set("P3", 1.0); g.set("P2", 4.0)
    >>> seen
    {'P1': 5.0, '_other': 5.0}
    """

    def __init__(
        self,
        report: Callable[[str, float], None],
        limit: int,
        fold: Callable[[Iterable[float]], float],
    ) -> None:
        if limit < 0:
            raise ValueError(f"subject_limit must be >= 0, got {limit}")
        self._report = report
        self.limit = limit
        self._fold = fold
        self.named: set[str] = set()
        # Subjects past the limit and their latest values: only subjects that
        # alerted get here, so this stays as small as the alerts themselves.
        self.folded: dict[str, float] = {}

    def set(self, subject: str, value: float) -> None:
        if subject in self.named or (
            subject != OTHER and subject not in self.folded and len(self.named) < self.limit
        ):
            self.named.add(subject)
            self._report(subject, value)
        else:
            self.folded[subject] = value
            self._report(OTHER, self._fold(self.folded.values()))


class AlertReporter:
    """Turns the alerts a shell carries away into metric calls (one per alert).

    ``report(alert)`` counts the alert as new (revision 1) or updated, keeps
    the count of open alerts per detector and latest severity (an alert stays
    open for the life of the process: the engine has no event that closes
    one), and sets the subject gauges from the evidence:

    - ``reserve_misuse`` / ``coverage_shortfall``: ``coverage_ratio``;
    - ``fund_pool`` / ``gather_scatter``: ``inflow`` (yuan);
    - ``maturity_mismatch`` / ``mismatch_exposure``: ``mismatched_exposure``.

    A gauge is chosen by the alert's detector and then its signal, never by
    the signal alone: the typology ``gather_scatter``, whose subject is an
    account, shares fund_pool's signal name and must not feed the platform
    gauge. Each gauge names at most ``subject_limit`` subjects (see the
    module docstring for why).
    """

    def __init__(self, metrics: Metrics, subject_limit: int = DEFAULT_SUBJECT_LIMIT) -> None:
        self.metrics = metrics
        self.severity: dict[str, tuple[str, str]] = {}  # alert_id -> (detector, severity)
        self.open: dict[tuple[str, str], int] = {}
        self.coverage = CappedGauge(metrics.reserve_coverage, subject_limit, min)
        self.pooled = CappedGauge(metrics.pooled_amount, subject_limit, sum)
        self.exposure = CappedGauge(metrics.mismatch_exposure, subject_limit, sum)
        # (detector, signal) -> the gauge and the evidence field with its figure.
        self._gauges: dict[tuple[str, Any], tuple[CappedGauge, str]] = {
            ("reserve_misuse", "coverage_shortfall"): (self.coverage, "coverage_ratio"),
            ("fund_pool", "gather_scatter"): (self.pooled, "inflow"),
            ("maturity_mismatch", "mismatch_exposure"): (self.exposure, "mismatched_exposure"),
        }

    def report(self, alert: Alert) -> None:
        det, sev = alert.detector, alert.severity
        self.metrics.alert(det, sev, alert.revision == 1)
        before = self.severity.get(alert.alert_id)
        if before != (det, sev):
            self.severity[alert.alert_id] = (det, sev)
            if before is not None:
                self._open_add(before, -1)
            self._open_add((det, sev), 1)
        self._subject_gauges(alert)

    def _open_add(self, key: tuple[str, str], n: int) -> None:
        count = self.open.get(key, 0) + n
        self.open[key] = count
        self.metrics.open_alerts(key[0], key[1], count)

    def _subject_gauges(self, alert: Alert) -> None:
        ev: dict[str, Any] = alert.evidence
        found = self._gauges.get((alert.detector, ev.get("signal")))
        if found is None:
            return
        gauge, figure = found
        try:
            value = float(ev[figure])
        except (KeyError, TypeError, ValueError):
            # Evidence without the figure: no gauge, never a failed stream.
            return
        gauge.set(alert.subject_id, value)


__all__ = [
    "DEFAULT_SUBJECT_LIMIT",
    "OTHER",
    "Metrics",
    "NullMetrics",
    "RecordingMetrics",
    "CappedGauge",
    "AlertReporter",
]
