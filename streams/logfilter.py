"""A log filter that lets one line of a kind through per interval.

While the broker is away the Kafka client logs a failed connection many
times a second; one line every ``interval`` seconds per message template
says the same, with a count of what was held back.

>>> import logging
>>> f = RepeatFilter(("aiokafka",), interval=10.0, clock=iter([0.0, 1.0, 2.0, 11.0]).__next__)
>>> rec = lambda: logging.LogRecord(
...     "aiokafka.conn", logging.ERROR, "", 0, "Unable connect to %r", ("n1",), None)
>>> [f.filter(rec()) for _ in range(4)]
[True, False, False, True]
>>> f.filter(logging.LogRecord("fundflow.worker", logging.INFO, "", 0, "x", (), None))
True
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RepeatFilter(logging.Filter):
    """Applies to loggers under ``prefixes``; every other record passes."""

    def __init__(
        self,
        prefixes: tuple[str, ...],
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = prefixes
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.interval = interval
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if not any(name == p or name.startswith(p + ".") for p in self.prefixes):
            return True
        key = (name, str(record.msg))
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.interval:.0f} s)"
        return True
