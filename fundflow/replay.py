"""The replay shell: dumps in, engine in-process, alerts and dead letters out.

:func:`replay` reads JSONL, JSONL.gz and CSV dumps (or standard input) in the
order given, feeds every record to one :class:`~fundflow.detectors.Engine`,
and carries the results away: alerts to an :class:`~fundflow.store.AlertSink`
and a JSONL stream, refused records to a dead-letter JSONL file with their
reason. It returns a :class:`Summary` whose figures always satisfy
``read == accepted + duplicates + sum(dead_letters.values())``.

Output files are written beside their final name and moved into place only
when the replay completes, so a file that exists is a complete one.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

import msgspec

from fundflow.detectors import Config, Engine
from fundflow.detectors.metrics import DEFAULT_SUBJECT_LIMIT, AlertReporter, Metrics, NullMetrics
from fundflow.schemas import DeadLetter, RecordDecoder
from fundflow.schemas.records import (
    Account,
    Alert,
    Balance,
    ClearingTxn,
    CustodyTxn,
    Entity,
    Loan,
    Product,
    ReserveReport,
)

from .store import AlertSink


class ReplayError(Exception):
    """A problem with the replay's inputs or outputs (one line, for the user)."""


@dataclass
class Summary:
    read: int = 0
    accepted: int = 0
    duplicates: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # detector -> alert_id -> severity
    revisions: int = 0
    seconds: float = 0.0

    def by_detector(self) -> dict[str, int]:
        return {d: len(ids) for d, ids in sorted(self.alerts.items())}

    def by_severity(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for det, ids in sorted(self.alerts.items()):
            counts: dict[str, int] = {}
            for sev in ids.values():
                counts[sev] = counts.get(sev, 0) + 1
            out[det] = dict(sorted(counts.items()))
        return out

    def rate(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "dead_letters": dict(sorted(self.dead_letters.items())),
            "alerts": self.by_detector(),
            "alerts_by_severity": self.by_severity(),
            "alert_revisions": self.revisions,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.rate()),
        }

    def balanced(self) -> bool:
        return self.read == self.accepted + self.duplicates + sum(self.dead_letters.values())

    def render(self) -> str:
        lines = [
            f"records read   {self.read:>12,}",
            f"  accepted     {self.accepted:>12,}",
            f"  duplicates   {self.duplicates:>12,}",
            f"  dead letters {sum(self.dead_letters.values()):>12,}"
            + (
                "  (" + ", ".join(f"{r} {n:,}" for r, n in sorted(self.dead_letters.items())) + ")"
                if self.dead_letters
                else ""
            ),
        ]
        total = sum(self.by_detector().values())
        lines.append(f"alerts         {total:>12,}  ({self.revisions:,} revisions emitted)")
        for det, sev in self.by_severity().items():
            parts = ", ".join(
                f"{s} {n}" for s, n in sorted(sev.items(), key=lambda kv: _SEV_ORDER[kv[0]])
            )
            lines.append(f"  {det:<20} {sum(sev.values()):>5}  ({parts})")
        lines.append(f"{self.rate():,.0f} records/s over {self.seconds:.2f} s")
        return "\n".join(lines)


_SEV_ORDER = {"low": 0, "medium": 1, "high": 2, "critical": 3}


# -- inputs ---------------------------------------------------------------------


def _open_binary(path: str) -> tuple[BinaryIO, BinaryIO | None]:
    """The decoded byte stream and the raw file under it (for progress)."""
    if path == "-":
        return sys.stdin.buffer, None
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    if path.endswith(".gz"):
        return gzip.GzipFile(fileobj=raw), raw  # type: ignore[return-value]
    return raw, raw


def _is_csv(path: str) -> bool:
    name = path[:-3] if path.endswith(".gz") else path
    return name.lower().endswith(".csv")


def iter_records(
    paths: list[str], decoder: RecordDecoder, kind: str | None = None
) -> Iterator[tuple[Any, BinaryIO | None]]:
    """Yields (record or DeadLetter, raw file) for every line of every dump;
    blank lines are not records and are skipped."""
    for path in paths:
        stream, raw = _open_binary(path)
        name = "stdin" if path == "-" else path
        try:
            if _is_csv(path):
                text = io.TextIOWrapper(
                    stream, encoding="utf-8-sig", errors="surrogateescape", newline=""
                )
                reader = csv.DictReader(text)
                for n, row in enumerate(reader, start=2):
                    yield decoder.from_row(row, kind, f"{name}:{n}"), raw
            else:
                dec = decoder.decode
                for n, line in enumerate(stream, start=1):
                    if not line.strip():
                        continue
                    rec = dec(line, kind)
                    if type(rec) is DeadLetter:
                        rec = msgspec.structs.replace(rec, source=f"{name}:{n}")
                    yield rec, raw
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise ReplayError(f"cannot read {name}: {e}") from None
        finally:
            if path != "-":
                stream.close()
                if raw is not None and raw is not stream:
                    raw.close()


def check_inputs(paths: list[str]) -> None:
    for path in paths:
        if path == "-":
            continue
        p = Path(path)
        if not p.exists():
            raise ReplayError(f"no such file: {path}")
        if p.is_dir():
            raise ReplayError(f"is a directory, not a dump: {path}")
        if not os.access(p, os.R_OK):
            raise ReplayError(f"cannot read {path}: permission denied")


# -- outputs --------------------------------------------------------------------


class AtomicFile:
    """A binary file written under a temporary name in the target's folder
    and moved into place by :meth:`commit`; :meth:`discard` removes it."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        folder = self.path.parent
        if not folder.is_dir():
            raise ReplayError(f"cannot write {path}: no such directory {folder}")
        try:
            fd, self.tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".part", dir=folder
            )
        except OSError as e:
            raise ReplayError(f"cannot write {path}: {e.strerror}") from None
        self.file: IO[bytes] = os.fdopen(fd, "wb", buffering=1 << 20)

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def commit(self) -> None:
        self.file.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)


class _Progress:
    """A one-line progress report on stderr, refreshed a few times a second."""

    def __init__(self, total_bytes: int, enabled: bool) -> None:
        self.total = total_bytes
        self.enabled = enabled
        self.started = time.perf_counter()
        self.last = 0.0
        self.done_bytes = 0

    def update(self, n: int, raw: BinaryIO | None) -> None:
        now = time.perf_counter()
        if now - self.last < 0.25:
            return
        self.last = now
        rate = n / max(now - self.started, 1e-9)
        pct = ""
        if raw is not None and self.total:
            try:
                pct = f" {min(100.0, 100.0 * (self.done_bytes + raw.tell()) / self.total):5.1f}%"
            except (OSError, ValueError):
                pct = ""
        sys.stderr.write(f"\r{n:>12,} records{pct}  {rate:,.0f}/s ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()


#: The replay hands its counters to the metrics once per this many records,
#: and times one record in each such batch for ``fundflow_processing_seconds``.
METRICS_BATCH = 4096
#: ``topic`` label of the records a replay reads (they come from files).
REPLAY_TOPIC = "replay"
#: ``kind`` label of lines that could not be decoded into any record kind.
INVALID_KIND = "invalid"
_RECORD_TYPES = (Entity, Account, Product, Loan, ReserveReport, Balance, CustodyTxn, ClearingTxn)


def replay(
    paths: list[str],
    *,
    config: Config,
    kind: str | None = None,
    sink: AlertSink | None = None,
    alerts_out: IO[bytes] | AtomicFile | None = None,
    deadletter_out: IO[bytes] | AtomicFile | None = None,
    progress: bool = False,
    finish: bool = True,
    metrics: Metrics | None = None,
    subject_limit: int = DEFAULT_SUBJECT_LIMIT,
) -> Summary:
    """Runs the engine over ``paths`` in order and returns the figures.

    With ``metrics``, reports to it as it goes: the counters in batches of
    :data:`METRICS_BATCH` records and once more at the end (so after the
    return the metrics equal the summary), one call per alert emitted, and
    the engine's state size at most once a second and at the end.
    """
    engine = Engine(config)
    decoder = RecordDecoder(config.engine.zone)
    summary = Summary()
    encode = msgspec.json.encode
    total_bytes = sum(os.path.getsize(p) for p in paths if p != "-" and os.path.isfile(p))
    bar = _Progress(total_bytes, progress)
    dead = summary.dead_letters
    started = time.perf_counter()
    live = metrics is not None
    report = _Reporter(engine, metrics if metrics is not None else NullMetrics(), dead)
    reporter = AlertReporter(report.metrics, subject_limit) if live else None

    def carry(alerts: list[Alert]) -> None:
        summary.revisions += len(alerts)
        for a in alerts:
            summary.alerts.setdefault(a.detector, {})[a.alert_id] = a.severity
            if alerts_out is not None:
                alerts_out.write(encode(a) + b"\n")
            if reporter is not None:
                reporter.report(a)
        if sink is not None:
            sink.upsert(alerts)

    def refuse(letter: DeadLetter) -> None:
        dead[letter.reason] = dead.get(letter.reason, 0) + 1
        if deadletter_out is not None:
            deadletter_out.write(encode(letter) + b"\n")

    def refuse_all(letters: list[DeadLetter]) -> None:
        for letter in letters:
            refuse(letter)
        letters.clear()

    n = 0
    process = engine.process
    clock = time.perf_counter
    kinds = report.kinds
    n_custody = n_clearing = 0
    # The next record number at which a batch ends. A comparison, not n & mask:
    # ints compare without allocating, and every instruction here is paid
    # once per record.
    batch_end = METRICS_BATCH
    last_raw: BinaryIO | None = None
    for rec, raw in iter_records(paths, decoder, kind):
        n += 1
        t = type(rec)
        if t is DeadLetter:
            refuse(rec)
            continue
        if live:
            # The one count metrics add per record (records_in by kind); the
            # two transaction kinds, most of any stream, by identity: hashing a
            # record class costs more than the comparisons.
            if t is CustodyTxn:
                n_custody += 1
            elif t is ClearingTxn:
                n_clearing += 1
            else:
                kinds[t] += 1
        if n < batch_end:
            alerts = process(rec)
            if alerts:
                carry(alerts)
            if engine.dead_letters:
                refuse_all(engine.dead_letters)
            continue
        # The first decodable record at or past a batch's end: time it,
        # settle it, then hand the counters over and refresh the progress.
        batch_end = n + METRICS_BATCH
        t0 = clock()
        alerts = process(rec)
        sample = clock() - t0
        if alerts:
            carry(alerts)
        if engine.dead_letters:
            refuse_all(engine.dead_letters)
        if live:
            report.metrics.processing_seconds(sample)
            report.flush(n, n_custody, n_clearing, state=False)
        if progress:
            if raw is not last_raw and last_raw is not None:
                bar.done_bytes += _size(last_raw)
            last_raw = raw
            bar.update(n, raw)
    if finish:
        carry(engine.finish())
    bar.close()
    if live:
        report.flush(n, n_custody, n_clearing, state=True)
    summary.read = n
    summary.accepted = engine.counts["accepted"]
    summary.duplicates = engine.counts["duplicates"]
    summary.seconds = time.perf_counter() - started
    if sink is not None:
        sink.flush()
    return summary


class _Reporter:
    """The replay's side of the metrics: what was already reported, so each
    flush hands over only the differences. ``kinds`` (records decoded, per
    record type, the transaction kinds apart) is the one count the replay loop
    keeps for it, and only while metrics are on."""

    def __init__(self, engine: Engine, metrics: Metrics, dead: dict[str, int]) -> None:
        self.engine = engine
        self.metrics = metrics
        self.dead = dead
        self.kinds: dict[type, int] = dict.fromkeys(_RECORD_TYPES, 0)
        self._sent_kinds: dict[type, int] = dict.fromkeys(_RECORD_TYPES, 0)
        self._sent_invalid = 0
        self._sent_dead: dict[str, int] = {}
        self._sent_accepted = 0
        self._sent_duplicates = 0
        self._state_at = -1.0

    def flush(self, read: int, custody: int, clearing: int, *, state: bool) -> None:
        """Reports what changed since the last flush; ``read``, ``custody`` and
        ``clearing`` are the records read and the transactions of each kind
        decoded so far. The state size is counted when ``state`` is set or a
        second has passed since it last was."""
        m = self.metrics
        self.kinds[CustodyTxn] = custody
        self.kinds[ClearingTxn] = clearing
        decoded = 0
        for t, count in self.kinds.items():
            decoded += count
            delta = count - self._sent_kinds[t]
            if delta:
                m.records_in(REPLAY_TOPIC, t.TYPE, delta)
                self._sent_kinds[t] = count
        invalid = read - decoded
        if invalid != self._sent_invalid:
            m.records_in(REPLAY_TOPIC, INVALID_KIND, invalid - self._sent_invalid)
            self._sent_invalid = invalid
        counts = self.engine.counts
        if counts["accepted"] != self._sent_accepted:
            m.accepted(counts["accepted"] - self._sent_accepted)
            self._sent_accepted = counts["accepted"]
        if counts["duplicates"] != self._sent_duplicates:
            m.duplicates(counts["duplicates"] - self._sent_duplicates)
            self._sent_duplicates = counts["duplicates"]
        for reason, count in self.dead.items():
            delta = count - self._sent_dead.get(reason, 0)
            if delta:
                m.dead_letters(reason, delta)
                self._sent_dead[reason] = count
        newest = self.engine.now
        if newest >= 0:
            m.last_record_timestamp_seconds(newest / 1000)
            m.event_time_lag_seconds(time.time() - newest / 1000)
        now = time.perf_counter()
        if state or now - self._state_at >= 1.0:
            self._state_at = now
            m.state_size(*self.engine.state_size())


def _size(raw: BinaryIO) -> int:
    try:
        return os.fstat(raw.fileno()).st_size
    except (OSError, ValueError, io.UnsupportedOperation):
        return 0
