"""The event-time merge of one partition's three input topics.

Its job, which the engine's ordering stage does not do: on a backlog it
interleaves the three inputs in event time, so that no input fetched ahead
moves a feed's mark (a feed takes clearing and reports of one institution)
more than the allowed lateness past another input's records, which the
stage would then refuse as ``too_late``. The stage orders within that bound
only; the merge keeps the inputs within it, so a worker reading a backlog
gives the replay's alerts.

Custody, clearing and reports partition *p* feed one engine. Kafka keeps the
order within each topic-partition but not across topics, and the engine's
results depend on the order it sees records in (its clock, its
deduplication horizon, when a day's reserves are closed). So records wait
here and leave in event-time order: the earliest head of the three queues
goes first, but only while every *empty* queue's topic-partition is caught
up with the broker (nothing more to fetch). On a backlog this reproduces the
order of the dump the topics were filled from, so the worker gives the
replay's alerts; on a live stream, where inputs are caught up, a record
waits for nothing and the order is the order of arrival.

Records that could not be decoded (dead letters) have no event time and go
first: they touch no state.

The whole-stream worker's one engine reads every partition: its merge has
an input per topic and partition (``custody/0``, ``clearing/0``, ...,
:func:`whole_inputs`), under the same rule.

>>> m = PartitionMerge()
>>> for short, key in (("custody", 5), ("custody", 9), ("clearing", 7)):
...     m.push(short, key, key)
>>> [e[1] for e in m.pop_ready(caught_up={"reports"})]
[5, 7]
>>> [e[1] for e in m.pop_ready(caught_up={"reports", "clearing"})]
[9]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from .topics import INPUT_RANK

SHORTS = tuple(sorted(INPUT_RANK, key=INPUT_RANK.__getitem__))


def whole_inputs(partitions: int) -> tuple[str, ...]:
    """The inputs of the whole-stream worker's merge, in the order that
    breaks a tie of event times: topic (as for one partition), then
    partition.

    >>> whole_inputs(2)
    ('custody/0', 'custody/1', 'clearing/0', 'clearing/1', 'reports/0', 'reports/1')
    """
    return tuple(f"{s}/{p}" for s in SHORTS for p in range(partitions))


class PartitionMerge:
    """A FIFO queue of ``(sort_key, offset, payload, timestamp)`` per input
    (the three topics of one partition, or :func:`whole_inputs`)."""

    __slots__ = ("order", "queues")

    def __init__(self, inputs: tuple[str, ...] = SHORTS) -> None:
        self.order = inputs
        self.queues: dict[str, deque[tuple[int, int, Any, int]]] = {s: deque() for s in inputs}

    def push(
        self, short: str, sort_key: int, offset: int, payload: Any = None, ts: int = -1
    ) -> None:
        self.queues[short].append((sort_key, offset, payload, ts))

    def __len__(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def pop_ready(
        self, caught_up: set[str] | frozenset[str]
    ) -> Iterator[tuple[str, int, Any, int]]:
        """Yields ``(short, offset, payload, timestamp)`` in merge order while
        the order is certain; stops at the first record that must wait."""
        queues = self.queues
        live = [(s, queues[s]) for s in self.order]
        while True:
            best = None
            best_key = None
            for short, q in live:
                if q:
                    key = q[0][0]
                    if best_key is None or key < best_key:
                        best, best_key = short, key
                elif short not in caught_up:
                    return
            if best is None:
                return
            key, offset, payload, ts = queues[best].popleft()
            yield best, offset, payload, ts

    def clear(self) -> None:
        for q in self.queues.values():
            q.clear()
