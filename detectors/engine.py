"""The engine: records in, in order; alerts out.

:class:`Engine` keeps the reference data, drops repeated transactions
(deduplicating by ``txn_id`` within an event-time horizon so memory stays
bounded), routes each record to the detectors and collects their alerts.
It is pure: no I/O, no wall clock. The same records in the same order give
the same alerts, byte for byte, whichever shell feeds them.

Accounting: every record handed to :meth:`Engine.process` is counted once as
``accepted``, ``duplicates`` or a dead letter (``too_late``: a transaction
older than the deduplication horizon behind the newest event time, which
could otherwise be counted twice). Shells add their own decoding dead
letters, so that read = accepted + duplicates + dead letters.

>>> from fundflow.schemas.records import Account, CustodyTxn
>>> eng = Engine()
>>> t = CustodyTxn(txn_id="T1", ts=0, bank_id="B", platform_id="P",
...                debit_account="A", credit_account="C", amount=100, purpose="invest")
>>> eng.process(t), eng.process(t), eng.counts
([], [], {'accepted': 1, 'duplicates': 1, 'too_late': 0})
"""

from __future__ import annotations

import pickle
from collections import deque
from typing import Any

import msgspec

from fundflow.schemas.decode import DeadLetter, encode_record
from fundflow.schemas.records import (
    Account,
    Alert,
    ClearingTxn,
    CustodyTxn,
    Entity,
    Loan,
    Product,
    Record,
)

from .base import Detector
from .config import Config, load_config
from .fund_pool import FundPool
from .maturity_mismatch import MaturityMismatch
from .reference import Reference
from .reserve_misuse import ReserveMisuse

#: The detectors an engine runs unless told otherwise, in the order their
#: alerts are emitted for one record.
DEFAULT_DETECTORS: tuple[type[Detector], ...] = (FundPool, ReserveMisuse, MaturityMismatch)
DETECTORS: dict[str, type[Detector]] = {d.name: d for d in DEFAULT_DETECTORS}

_NO_ALERTS: list[Alert] = []


class Deduplicator:
    """Remembers ``txn_id``s for ``horizon_ms`` of event time.

    Ids are kept in arrival order and forgotten once their event time falls
    behind the newest seen by more than the horizon; a transaction that old
    is refused as ``too_late`` rather than risk counting it twice.
    """

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self.watermark = -1
        self.seen: dict[tuple[str, str], int] = {}
        self.order: deque[tuple[int, tuple[str, str]]] = deque()

    def admit(self, kind: str, txn_id: str, ts: int) -> str:
        """``"new"``, ``"duplicate"`` or ``"too_late"``."""
        if ts > self.watermark:
            self.watermark = ts
            horizon = ts - self.horizon_ms
            order, seen = self.order, self.seen
            while order and order[0][0] < horizon:
                seen.pop(order.popleft()[1], None)
        elif ts < self.watermark - self.horizon_ms:
            return "too_late"
        key = (kind, txn_id)
        if key in self.seen:
            return "duplicate"
        self.seen[key] = ts
        self.order.append((ts, key))
        return "new"


class Engine:
    """Runs the detectors over one ordered stream of records.

    ``process(record)`` returns the alerts that record raised (often none);
    ``finish()`` settles what waits for time at the end of a stream and
    returns the last alerts. ``dead_letters`` holds the records the engine
    itself refused since the caller last emptied it.
    """

    def __init__(self, config: Config | None = None, detectors: list[str] | None = None) -> None:
        self.config = config or load_config()
        self.ref = Reference()
        names = list(DETECTORS) if detectors is None else detectors
        unknown = [n for n in names if n not in DETECTORS]
        if unknown:
            raise ValueError(
                f"unknown detector(s): {', '.join(unknown)}; known: {', '.join(DETECTORS)}"
            )
        self.detectors: list[Detector] = [DETECTORS[n](self.config, self.ref) for n in names]
        self.dedup = Deduplicator(self.config.engine.dedup_window_ms)
        self.counts = {"accepted": 0, "duplicates": 0, "too_late": 0}
        self.dead_letters: list[DeadLetter] = []

    def process(self, record: Record, source: str = "") -> list[Alert]:
        t = type(record)
        if t is CustodyTxn or t is ClearingTxn:
            verdict = self.dedup.admit(t.TYPE, record.txn_id, record.ts)  # type: ignore[union-attr]
            if verdict != "new":
                if verdict == "duplicate":
                    self.counts["duplicates"] += 1
                else:
                    self._refuse(record, source)
                return _NO_ALERTS
            self.counts["accepted"] += 1
            flow = self.ref.flow(record)  # type: ignore[arg-type]
            out = _NO_ALERTS
            for det in self.detectors:
                det.update(flow)
                if det.book.out:
                    if out is _NO_ALERTS:
                        out = []
                    out.extend(det.book.drain())
            return out
        self.counts["accepted"] += 1
        if t is Entity or t is Account or t is Product or t is Loan:
            self.ref.add(record)  # type: ignore[arg-type]
        return self._collect(record)

    def _collect(self, record: Any) -> list[Alert]:
        out = _NO_ALERTS
        for det in self.detectors:
            det.update(record)
            if det.book.out:
                if out is _NO_ALERTS:
                    out = []
                out.extend(det.book.drain())
        return out

    def _refuse(self, record: Record, source: str) -> None:
        self.counts["too_late"] += 1
        self.dead_letters.append(
            DeadLetter(
                reason="too_late",
                detail=f"event time is more than {self.config.engine.dedup_window_ms // 3_600_000} h "
                "behind the newest seen (the deduplication horizon)",
                raw=msgspec.json.encode(encode_record(record)).decode(),
                source=source,
            )
        )

    def advance(self, now_ms: int) -> list[Alert]:
        """Event time has reached ``now_ms`` with no record (a shell's idle
        heartbeat carrying the stream's own time)."""
        out: list[Alert] = []
        for det in self.detectors:
            det.advance(now_ms)
            out.extend(det.drain())
        return out

    def finish(self) -> list[Alert]:
        out: list[Alert] = []
        for det in self.detectors:
            det.finish()
            out.extend(det.drain())
        return out

    # -- checkpoints -----------------------------------------------------------

    def snapshot(self) -> bytes:
        return pickle.dumps(
            {
                "ref": self.ref,
                "dedup": (self.dedup.watermark, self.dedup.seen, self.dedup.order),
                "counts": dict(self.counts),
                "detectors": {d.name: d.snapshot() for d in self.detectors},
            },
            protocol=pickle.HIGHEST_PROTOCOL,
        )

    def restore(self, blob: bytes) -> Engine:
        payload = pickle.loads(blob)
        self.ref = payload["ref"]
        self.dedup.watermark, self.dedup.seen, self.dedup.order = payload["dedup"]
        self.counts = payload["counts"]
        for det in self.detectors:
            det.ref = self.ref
            det.restore(payload["detectors"][det.name])
        return self


__all__ = ["Engine", "Deduplicator", "DETECTORS", "DEFAULT_DETECTORS"]
