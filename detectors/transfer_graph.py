"""A windowed transfer graph: the recent transfers of every account, both ways.

The typology detectors (:mod:`~fundflow.detectors.typologies`) look for
shapes in who paid whom lately. :class:`TransferGraph` keeps, per account and
direction, the transfers of the last ``retention_ms`` of event time, oldest
first, as :data:`Edge` tuples ``(ts, counterparty, amount_fen, txn_id)``.

Memory is bounded twice over:

* in time: edges older than the newest event time seen minus
  ``retention_ms`` are dropped when their account is next touched, and every
  account is swept once per ``retention_ms`` of event time, so an account
  that falls silent is forgotten;
* in size: an account keeps at most ``max_edges`` edges per direction; a
  busier account drops its oldest first (``capped`` counts how many).

A detector sets ``retention_ms`` to its window plus the engine's allowed
lateness, so every edge a finding can use (within the window before a
record no later than the allowed lateness) is still held: what it finds
depends on the records and their order, never on when the sweep ran.

>>> g = TransferGraph(retention_ms=1000, max_edges=3)
>>> g.add(10, "A", "B", 500, "T1")
>>> g.add(20, "C", "B", 700, "T2")
>>> g.incoming["B"]
deque([(10, 'A', 500, 'T1'), (20, 'C', 700, 'T2')])
>>> g.within(g.incoming, "B", 15, 20)
[(20, 'C', 700, 'T2')]
"""

from __future__ import annotations

from collections import deque
from typing import Any

#: One transfer as seen from one of its accounts:
#: ``(ts, counterparty account, amount in fen, txn_id)``.
Edge = tuple[int, str, int, str]

_NO_EDGES: deque[Edge] = deque()


class TransferGraph:
    """Recent transfers per account; see the module docstring.

    ``add`` records a transfer on the sides asked for (a detector that only
    looks at what accounts receive keeps no outgoing edges);
    ``within(table, account, start, end)`` lists an account's edges with
    ``start <= ts <= end``, oldest first.
    """

    def __init__(
        self,
        retention_ms: int,
        max_edges: int,
        *,
        incoming: bool = True,
        outgoing: bool = True,
    ) -> None:
        self.retention_ms = retention_ms
        self.max_edges = max_edges
        self.keep_incoming = incoming
        self.keep_outgoing = outgoing
        self.incoming: dict[str, deque[Edge]] = {}
        self.outgoing: dict[str, deque[Edge]] = {}
        self.watermark = -1
        self.swept_at = -1
        self.capped = 0

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def add(self, ts: int, src: str, dst: str, amount: int, txn_id: str) -> None:
        if ts > self.watermark:
            self.watermark = ts
        if self.keep_outgoing:
            self._insert(self.outgoing, src, (ts, dst, amount, txn_id))
        if self.keep_incoming:
            self._insert(self.incoming, dst, (ts, src, amount, txn_id))
        if self.watermark - self.swept_at >= self.retention_ms:
            self.sweep()

    def _insert(self, table: dict[str, deque[Edge]], account: str, edge: Edge) -> None:
        edges = table.get(account)
        if edges is None:
            edges = table[account] = deque()
        if not edges or edge[0] >= edges[-1][0]:
            edges.append(edge)
        else:
            # A late transfer: into its place by time (rare, and within the cap).
            i = len(edges)
            while i and edges[i - 1][0] > edge[0]:
                i -= 1
            edges.insert(i, edge)
        if len(edges) > self.max_edges:
            edges.popleft()
            self.capped += 1
        horizon = self.watermark - self.retention_ms
        while edges and edges[0][0] < horizon:
            edges.popleft()
        if not edges:  # a transfer older than the retention: nothing to keep
            del table[account]

    def sweep(self) -> None:
        """Drop every edge older than the retention, and accounts left empty."""
        horizon = self.watermark - self.retention_ms
        for table in (self.incoming, self.outgoing):
            for account in [a for a, edges in table.items() if edges[-1][0] < horizon]:
                del table[account]
            for edges in table.values():
                while edges[0][0] < horizon:
                    edges.popleft()
        self.swept_at = self.watermark

    @staticmethod
    def within(table: dict[str, deque[Edge]], account: str, start: int, end: int) -> list[Edge]:
        """``account``'s edges in ``table`` with ``start <= ts <= end``, oldest first."""
        return [e for e in table.get(account, _NO_EDGES) if start <= e[0] <= end]

    def size(self) -> int:
        """Edges held, both directions."""
        return sum(map(len, self.incoming.values())) + sum(map(len, self.outgoing.values()))


__all__ = ["Edge", "TransferGraph"]
