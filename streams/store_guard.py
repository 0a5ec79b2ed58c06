"""The alert store as the worker uses it: an outage holds back checkpoints,
not the worker.

:class:`StoreGuard` wraps the sink. A write that fails keeps the alerts and
retries the store with an exponential backoff; the checkpointing
(:mod:`~fundflow.streams.checkpointing`) asks it to :meth:`StoreGuard.flush`
before every checkpoint and writes none while it reports ``False``, so a
checkpoint never covers an alert the store lacks. Records are still
processed and alerts still go to the alerts topic meanwhile.
:class:`StoreBackpressure` is the agents' side: past ``store_buffer_limit``
kept alerts an agent waits for the store before it takes another batch.

The guard is an object of its own (the worker holds it as ``store``): it
has its own state and its own tests (``tests/unit/test_store_guard.py``)
and needs nothing of the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from fundflow.schemas.records import Alert
from fundflow.store import StoreError

log = logging.getLogger("fundflow.worker")


class StoreGuard:
    """The alert store as the worker uses it: a write that fails does not
    stop the worker.

    A :class:`~fundflow.store.StoreError` from the sink marks the store down
    and schedules a retry after ``first`` seconds, doubling up to ``cap``. The
    alerts are kept: the sink keeps a batch it could not commit (every
    buffered sink does, see :class:`~fundflow.store.BufferedSink`), and the
    alerts that come while the store is down wait in :attr:`backlog` (they
    are not handed to the sink, which would try to commit at each call).
    :meth:`flush` is the one way back: it writes everything or reports
    ``False``; the worker checkpoints only after it returned ``True``.

    A sink not open yet (a :class:`~fundflow.store.DeferredSink` whose first
    opening found the server unreachable: ``opened`` false) starts the guard
    down, as after a failed write: the retries open it, with the same
    backoff, and the first :meth:`flush` that returns ``True`` has opened it
    and written every alert kept."""

    def __init__(
        self,
        sink: Any,
        first: float,
        cap: float,
        limit: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.first = first
        self.cap = cap
        self.limit = limit
        self.clock = clock
        self.backlog: list[Alert] = []
        self.delay = 0.0  # the last retry delay; 0 while the store is up
        self.retry_at: float | None = None  # set while the store is down
        self.failures = 0
        if getattr(sink, "opened", True) is False:
            self._failed(sink.error, "at start")

    @property
    def down(self) -> bool:
        return self.retry_at is not None

    @property
    def pending(self) -> int:
        """Alerts not yet committed to the store."""
        return len(self.backlog) + getattr(self.sink, "pending", 0)

    @property
    def full(self) -> bool:
        """The store is down and ``limit`` alerts wait for it."""
        return self.down and self.pending >= self.limit

    def upsert(self, alerts: list[Alert]) -> None:
        if self.down:
            self.backlog.extend(alerts)
            return
        try:
            self.sink.upsert(alerts)
        except StoreError as e:
            self._failed(e)

    def flush(self) -> bool:
        """Writes every alert kept; ``False`` when the store is down (the
        retry not due yet, or failed again)."""
        if self.retry_at is not None and self.clock() < self.retry_at:
            return False
        try:
            if self.backlog:
                backlog, self.backlog = self.backlog, []
                self.sink.upsert(backlog)  # what a failure leaves stays in the sink
            self.sink.flush()
        except StoreError as e:
            self._failed(e)
            return False
        if self.retry_at is not None:
            log.warning("alert store back after %d failed attempts; every kept alert written",
                        self.failures)  # fmt: skip
        self.retry_at = None
        self.delay = 0.0
        self.failures = 0
        return True

    def _failed(self, e: Exception, when: str = "") -> None:
        self.failures += 1
        self.delay = self.first if self.delay <= 0 else min(self.delay * 2, self.cap)
        self.retry_at = self.clock() + self.delay
        log.warning(
            "alert store unavailable%s (%s): %d alerts kept, no checkpoint until they are "
            "written; retry in %g s",
            f" {when}" if when else "", e, self.pending, self.delay,
        )  # fmt: skip

    def close(self) -> int:
        """A last attempt to write what is kept (due or not), then the sink
        is closed; returns how many alerts could not be written."""
        self.retry_at = None
        self.flush()
        left = self.pending
        with contextlib.suppress(StoreError):  # reported by the flush above
            self.sink.close()
        return left

    def status(self) -> str:
        """``ok``, or ``unavailable (retry in N s)``."""
        if self.retry_at is None:
            return "ok"
        return f"unavailable (retry in {max(0, math.ceil(self.retry_at - self.clock()))} s)"


class StoreBackpressure:
    """Worker mixin: the agents wait while the store is down and full."""

    store: StoreGuard | None

    async def wait_for_store(self) -> None:
        """Holds an agent while the alert store is down and already keeps
        ``store_buffer_limit`` alerts (the periodic tick retries it)."""
        if self.store is None or not self.store.full:
            return
        log.warning(
            "%d alerts wait for the alert store: input paused until it is back",
            self.store.pending,
        )
        while self.store.full:
            await asyncio.sleep(0.1)
