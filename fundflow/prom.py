"""The Prometheus adapter: the one module that imports ``prometheus_client``.

:class:`PrometheusMetrics` implements the :class:`~fundflow.detectors.metrics.Metrics`
protocol. Every collector is built here, in :meth:`PrometheusMetrics.__init__`,
in a registry of its own (never the library's global one, so two instances —
tests, a replay inside a worker — do not collide), with the unit in the name.
The label sets that are known in advance (detector × severity, dead-letter
reason) are created at zero, so that a rule's ``increase()`` sees the first
critical alert or the first dead letter as a rise from 0 rather than a
series that appears out of nowhere. :meth:`PrometheusMetrics.serve` exposes
``/metrics`` over HTTP, on the loopback interface unless told otherwise.

>>> m = PrometheusMetrics(mode="test")
>>> m.records_in("replay", "custody_txn", 3)
>>> b'fundflow_records_in_total{kind="custody_txn",topic="replay"} 3.0' in m.exposition()
True
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    start_http_server,
)

from fundflow.detectors.engine import DETECTORS
from fundflow.schemas.decode import REASONS
from fundflow.schemas.records import SEVERITIES

# Seconds from a decoded record to its alerts (engine.process). Most records
# take microseconds (the median is ~10-20 µs, more as state outgrows the CPU
# caches); a record that crosses a clock tick settles the past for every
# subject (day closes, idle money) and can take milliseconds up to about a
# second on a large world. The buckets span that range at roughly 2.5x steps,
# finest where the bulk of records fall; the library's default buckets start
# at 5 ms and would put nearly every record in the first one.
PROCESSING_BUCKETS = (
    0.000005,
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.01,
    0.05,
    0.25,
    1.0,
    5.0,
)


def _version() -> str:
    try:
        return version("fundflow")
    except PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "unknown"


class MetricsServer:
    """A running ``/metrics`` endpoint; :meth:`close` stops it."""

    def __init__(self, httpd: Any, thread: Any) -> None:
        self._httpd = httpd
        self._thread = thread
        self.addr, self.port = httpd.server_address[:2]

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{self.port}/metrics"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class PrometheusMetrics:
    """The Metrics protocol on Prometheus collectors; ``mode`` (``replay``,
    ``worker``, ``whole_stream``) goes into ``fundflow_build_info``."""

    def __init__(self, *, mode: str = "replay", registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

        self._build = Info("fundflow_build", "fundflow version and shell.", registry=r)
        self._build.info(
            {"version": _version(), "mode": mode, "python_version": platform.python_version()}
        )

        # -- records ---------------------------------------------------------
        self._records_in = Counter(
            "fundflow_records_in_total",
            "Records read, by source topic ('replay' for dump files) and record kind "
            "('invalid' when undecodable).",
            ["topic", "kind"],
            registry=r,
        )
        self._accepted = Counter(
            "fundflow_accepted_total", "Records accepted by the engine.", registry=r
        )
        self._duplicates = Counter(
            "fundflow_duplicates_total",
            "Repeated transactions (same txn_id) dropped by the engine.",
            registry=r,
        )
        self._dead_letters = Counter(
            "fundflow_dead_letters_total",
            "Records refused, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in REASONS:
            self._dead_letters.labels(reason)

        # -- alerts ----------------------------------------------------------
        self._raised = Counter(
            "fundflow_alerts_raised_total",
            "New alerts emitted (revision 1), by detector and severity.",
            ["detector", "severity"],
            registry=r,
        )
        self._updated = Counter(
            "fundflow_alerts_updated_total",
            "Further revisions of alerts emitted (grown or more severe), by detector and "
            "the revision's severity.",
            ["detector", "severity"],
            registry=r,
        )
        self._open = Gauge(
            "fundflow_open_alerts",
            "Alerts seen by this process, by detector and latest severity.",
            ["detector", "severity"],
            registry=r,
        )
        for det in DETECTORS:
            for sev in SEVERITIES:
                self._raised.labels(det, sev)
                self._updated.labels(det, sev)
                self._open.labels(det, sev)

        # -- time ------------------------------------------------------------
        self._processing = Histogram(
            "fundflow_processing_seconds",
            "Time from a decoded record to its alerts, for one sampled record in 4096.",
            buckets=PROCESSING_BUCKETS,
            registry=r,
        )
        self._event_lag = Gauge(
            "fundflow_event_time_lag_seconds",
            "Wall clock minus the newest event time processed.",
            registry=r,
        )
        self._last_record = Gauge(
            "fundflow_last_record_timestamp_seconds",
            "The newest event time processed, as Unix time.",
            registry=r,
        )
        self._consumer_lag = Gauge(
            "fundflow_consumer_lag",
            "Messages between the committed offset and the end of a partition.",
            ["topic", "partition"],
            registry=r,
        )

        # -- state -----------------------------------------------------------
        self._subjects = Gauge(
            "fundflow_state_subjects",
            "Subjects (platforms, institutions) with detector state.",
            registry=r,
        )
        self._accounts = Gauge(
            "fundflow_state_accounts", "Accounts in the reference data.", registry=r
        )
        self._edges = Gauge(
            "fundflow_state_edges",
            "Related-entity links in the account graph.",
            registry=r,
        )

        # -- subjects (label values capped by AlertReporter) ----------------
        self._coverage = Gauge(
            "fundflow_reserve_coverage_ratio",
            "Reserve balance over client liabilities from the institution's latest "
            "coverage_shortfall alert (institutions past the cap: '_other', the lowest).",
            ["institution"],
            registry=r,
        )
        self._pooled = Gauge(
            "fundflow_pooled_amount_yuan",
            "Lender money gathered in the pool window from the platform's latest "
            "fund_pool gather_scatter alert (platforms past the cap: '_other', summed).",
            ["platform"],
            registry=r,
        )
        self._exposure = Gauge(
            "fundflow_mismatch_exposure_yuan",
            "Open mismatched exposure from the platform's latest mismatch_exposure alert "
            "(platforms past the cap: '_other', summed).",
            ["platform"],
            registry=r,
        )

    # -- the protocol ---------------------------------------------------------

    def records_in(self, topic: str, kind: str, n: int) -> None:
        self._records_in.labels(topic, kind).inc(n)

    def accepted(self, n: int) -> None:
        self._accepted.inc(n)

    def duplicates(self, n: int) -> None:
        self._duplicates.inc(n)

    def dead_letters(self, reason: str, n: int) -> None:
        self._dead_letters.labels(reason).inc(n)

    def alert(self, detector: str, severity: str, new: bool) -> None:
        (self._raised if new else self._updated).labels(detector, severity).inc()

    def open_alerts(self, detector: str, severity: str, n: int) -> None:
        self._open.labels(detector, severity).set(n)

    def processing_seconds(self, seconds: float) -> None:
        self._processing.observe(seconds)

    def event_time_lag_seconds(self, seconds: float) -> None:
        self._event_lag.set(seconds)

    def last_record_timestamp_seconds(self, seconds: float) -> None:
        self._last_record.set(seconds)

    def consumer_lag(self, topic: str, partition: int, n: int) -> None:
        self._consumer_lag.labels(topic, str(partition)).set(n)

    def state_size(self, subjects: int, accounts: int, edges: int) -> None:
        self._subjects.set(subjects)
        self._accounts.set(accounts)
        self._edges.set(edges)

    def reserve_coverage(self, institution: str, ratio: float) -> None:
        self._coverage.labels(institution).set(ratio)

    def pooled_amount(self, platform: str, yuan: float) -> None:
        self._pooled.labels(platform).set(yuan)

    def mismatch_exposure(self, platform: str, yuan: float) -> None:
        self._exposure.labels(platform).set(yuan)

    # -- exposition -----------------------------------------------------------

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (what a scrape gets)."""
        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1") -> MetricsServer:
        """Serves ``/metrics`` on ``addr:port`` from a daemon thread until
        :meth:`MetricsServer.close`. ``port`` 0 picks a free port (read it from
        the result). Loopback by default: the figures name subjects under
        supervision, so exposing them further is an operator's decision.
        Raises ``OSError`` when the port cannot be bound."""
        httpd, thread = start_http_server(port, addr=addr, registry=self.registry)
        return MetricsServer(httpd, thread)


__all__ = ["PROCESSING_BUCKETS", "MetricsServer", "PrometheusMetrics"]
