"""Money followed first in, first out, as lots: the one implementation every
detector that traces money uses (``fund_pool``, ``self_financing``,
``down_payment_loan``, ``maturity_mismatch``).

A **lot** is money that came into an account together: a tuple holding its
origin time (event time, epoch ms) and its amount (integer fen), at the
positions ``ts_at`` and ``fen_at`` a :class:`Fifo` is built with, plus
whatever the detector follows with the money (txn ids, a product, a trail).
A **table** maps an account to its lots in the order they came in: a plain
list (a deque costs 760 bytes even when it holds one lot), until the account
holds :data:`DEQUE_AT` lots, then a deque, so that money leaving an account
that holds many takes them from the front in constant time (a list moves
every lot behind the ones it takes: a custody account holding a million
lots would cost a million moves a payment). An account with no lots is not
in the table.

**FIFO rule.** Money leaving an account takes its lots in the order they came
in, the last one in part (what is left of it stays, first in the list). With
a window, a lot whose origin is more than the window before the paying
record is passed over: not taken, but not dropped either, since a record
dated earlier may still arrive and take it.

**Eviction rule.** A lot is dropped once no record could still take it: its
origin is more than the window plus the allowed lateness (the engine's
deduplication horizon, ``engine.dedup_window_ms``) behind its subject's
clock. Without a window, lots stay until they are spent. :meth:`Fifo.evict`
checks every lot (a sweep, for a detector that runs it now and then);
:meth:`Fifo.trim` only the front of each account's lots, until a lot that
must stay (for a detector that runs it at every tick: a lot behind a
younger one waits for it, and is passed over by every take meanwhile, so
trimming bounds the memory without changing what is found).

>>> fifo = Fifo(window_ms=10, lateness_ms=5)
>>> table = {}
>>> fifo.add(table, "A", (0, 300, "T1"))
>>> fifo.add(table, "A", (4, 500, "T2"))
>>> fifo.take(table, "A", 400, ts=8)
[(0, 300, 'T1'), (4, 100, 'T2')]
>>> table
{'A': [(4, 400, 'T2')]}
>>> fifo.take(table, "A", 400, ts=20)  # T2 is older than the window: passed over
[]
>>> fifo.evict(table, clock=19), table  # a record dated 14 could still take it
(1, {'A': [(4, 400, 'T2')]})
>>> fifo.evict(table, clock=20), table
(0, {})
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

Lot = tuple[Any, ...]
Table = dict[str, Any]  # account -> list[Lot], or deque[Lot] from DEQUE_AT lots

#: From this many lots an account's lots are a deque (module docstring).
DEQUE_AT = 64


class Fifo:
    """The FIFO and eviction rules (module docstring) for lots laid out with
    their origin time at ``ts_at`` and their fen at ``fen_at``.
    ``window_ms=None`` follows money for ever; ``lateness_ms`` is how late a
    record may still arrive. Holds no lots itself: detectors keep the tables
    in their state, so checkpoints hold only the lots."""

    __slots__ = ("window_ms", "keep_ms", "ts_at", "fen_at")

    def __init__(
        self,
        window_ms: int | None = None,
        lateness_ms: int = 0,
        *,
        ts_at: int = 0,
        fen_at: int = 1,
    ) -> None:
        if window_ms is not None and window_ms < 0:
            raise ValueError(f"window_ms must be >= 0 or None, got {window_ms}")
        if lateness_ms < 0:
            raise ValueError(f"lateness_ms must be >= 0, got {lateness_ms}")
        if ts_at < 0 or fen_at < 0 or ts_at == fen_at:
            raise ValueError(f"ts_at and fen_at must be two positions, got {ts_at}, {fen_at}")
        self.window_ms = window_ms
        self.keep_ms = None if window_ms is None else window_ms + lateness_ms
        self.ts_at = ts_at
        self.fen_at = fen_at

    def add(self, table: Table, account: str, lot: Lot) -> None:
        """Money came into ``account``: ``lot`` goes after its other lots."""
        held = table.get(account)
        if held is None:
            table[account] = [lot]
        else:
            held.append(lot)
            if len(held) == DEQUE_AT and type(held) is list:
                table[account] = deque(held)

    def take(self, table: Table, account: str, amount: int, ts: int) -> list[Lot]:
        """Money leaves ``account`` at event time ``ts``: up to ``amount`` fen
        of its lots, oldest first (the FIFO rule), are removed and returned
        as lots laid out as they were, each with the fen taken from it. An
        amount of 0 or less takes nothing (decoders refuse such amounts; a
        detector fed one by hand does not raise)."""
        held = table.get(account)
        if held is None or amount <= 0:
            return []
        since = None if self.window_ms is None else ts - self.window_ms
        if type(held) is deque:
            return self._take_front(table, account, held, amount, since)
        ts_at, fen_at = self.ts_at, self.fen_at
        taken: list[Lot] = []
        passed: list[Lot] = []  # out of this record's window, kept for earlier ones
        i, n = 0, len(held)
        while amount and i < n:
            lot = held[i]
            if since is not None and lot[ts_at] < since:
                passed.append(lot)
            elif lot[fen_at] <= amount:
                taken.append(lot)
                amount -= lot[fen_at]
            else:
                taken.append(self._with_fen(lot, amount))
                held[i] = self._with_fen(lot, lot[fen_at] - amount)
                break
            i += 1
        held[:i] = passed
        if not held:
            del table[account]
        return taken

    def _take_front(
        self, table: Table, account: str, held: deque[Lot], amount: int, since: int | None
    ) -> list[Lot]:
        """:meth:`take` on a deque: the same lots, taken off its front."""
        ts_at, fen_at = self.ts_at, self.fen_at
        taken: list[Lot] = []
        passed: list[Lot] = []
        while amount and held:
            lot = held[0]
            if since is not None and lot[ts_at] < since:
                passed.append(held.popleft())
            elif lot[fen_at] <= amount:
                taken.append(held.popleft())
                amount -= lot[fen_at]
            else:
                taken.append(self._with_fen(lot, amount))
                held[0] = self._with_fen(lot, lot[fen_at] - amount)
                break
        if passed:
            held.extendleft(reversed(passed))
        if not held:
            del table[account]
        return taken

    def evict(self, table: Table, clock: int | Callable[[Lot], int]) -> int:
        """Drop the lots no record can still take (the eviction rule), by
        ``clock``: the subject's event time, or a function giving it for a
        lot (one account can hold lots of several subjects). Returns how
        many lots are left in ``table``. Without a window, drops nothing."""
        keep = self.keep_ms
        if keep is None:
            return sum(len(held) for held in table.values())
        ts_at = self.ts_at
        left = 0
        for account in list(table):
            if callable(clock):
                kept = [lot for lot in table[account] if lot[ts_at] >= clock(lot) - keep]
            else:
                kept = [lot for lot in table[account] if lot[ts_at] >= clock - keep]
            if kept:
                table[account] = kept if len(kept) < DEQUE_AT else deque(kept)
                left += len(kept)
            else:
                del table[account]
        return left

    def trim(self, table: Table, clock: int) -> None:
        """Drop, from the front of each account's lots, those no record can
        still take by the subject's event time ``clock``, up to the first
        that must stay (the lots behind it wait for it: see the module
        docstring). One look per account when nothing is due."""
        keep = self.keep_ms
        if keep is None:
            return
        horizon = clock - keep
        ts_at = self.ts_at
        for account, held in list(table.items()):
            if held[0][ts_at] >= horizon:
                continue
            i, n = 1, len(held)
            while i < n and held[i][ts_at] < horizon:
                i += 1
            if i == n:
                del table[account]
            elif type(held) is deque:
                for _ in range(i):
                    held.popleft()
            else:
                del held[:i]

    def _with_fen(self, lot: Lot, fen: int) -> Lot:
        at = self.fen_at
        return (*lot[:at], fen, *lot[at + 1 :])


def restored(table: dict[str, Iterable[Iterable[Any]]]) -> Table:
    """A table from a checkpoint in the layout used before this module
    (deques of lists) or in this one: lists of tuples (deques from
    :data:`DEQUE_AT` lots)."""
    out: Table = {}
    for account, held in table.items():
        lots = [tuple(lot) for lot in held]
        out[account] = lots if len(lots) < DEQUE_AT else deque(lots)
    return out
