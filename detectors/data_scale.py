"""The scale of the dump at hand: how large its payments run, per currency.

A threshold in yuan suits one dump and misses the next (another currency,
amounts a hundred times smaller). :class:`AmountScale` keeps, per currency,
a running histogram of the payments seen, on a geometric grid of sixteen
buckets per doubling (each bucket's upper edge at most 1.0625 times its
lower), and answers "what is this dump's ``p``-th percentile payment" so a
typology can ask for payments unusually large or small *for this data*:
:meth:`AmountScale.percentile` gives the lower edge of the bucket holding
it (a bound for "below the percentile"), ``upper=True`` the upper edge (a
bound for "at least the percentile"), so neither errs on the side of
counting a payment the exact percentile would not.

Everything is integers: amounts in fen (or the currency's cent), bucket
indices, counts. Memory is bounded: at most ~1,000 buckets per currency, and
when a currency's count reaches ``HALVE_AT`` every count is halved (older
payments weigh half as much; the answer depends only on the records and
their order). Event time plays no part.

Every typology asks for its percentile at every payment, so the answer is
kept, not searched for: per currency the buckets in use in order, and per
percentile asked a *cursor*, the position of the bucket holding it and the
count of the payments below that bucket. A payment moves a cursor's count
when it falls below its bucket, and the cursor steps to the next or the
previous bucket only when the percentile's rank has left its own: a step or
none a payment, where a search would sort every bucket. The cursors are
rebuilt after a halving and after a restore (a snapshot holds the
histogram and the counts only), and give the answers a search would
(``tests/unit/test_typology_baselines.py`` checks them against one).

The typologies of one engine share one scale (``Detector.shares``): each
hands in every payment, which :meth:`AmountScale.take` adds once, for the
first, answering each the questions asked (:meth:`AmountScale.ask`) as
the scale stood before it, the figures a scale of its own would give.

>>> s = AmountScale()
>>> for fen in range(100, 100_100, 100):
...     s.add("CNY", fen)
>>> s.count("CNY"), s.percentile("CNY", 50), s.percentile("CNY", 50, upper=True)
(1000, 49152, 51200)
>>> s.percentile("CNY", 5), s.percentile("CNY", 5, upper=True)
(4864, 5120)
>>> s.percentile("USD", 50) is None
True
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

#: When a currency has counted this many payments, every count is halved.
HALVE_AT = 1 << 20


def bucket(amount: int) -> int:
    """The grid index of ``amount`` (>= 0): monotone, sixteen per doubling."""
    if amount < 32:
        return amount
    shift = amount.bit_length() - 5
    return shift * 16 + (amount >> shift)


def bucket_floor(index: int) -> int:
    """The smallest amount in bucket ``index``."""
    if index < 32:
        return index
    shift = index // 16 - 1
    return (index - shift * 16) << shift


class AmountScale:
    """Running payment sizes per currency; see the module docstring."""

    __slots__ = ("hist", "counts", "_keys", "_cursors", "_asks", "_token", "_before")

    def __init__(self) -> None:
        self.hist: dict[str, dict[int, int]] = {}
        self.counts: dict[str, int] = {}
        # currency -> its buckets in use, ascending
        self._keys: dict[str, list[int]] = {}
        # currency -> {pct: [position in _keys of the bucket holding it, payments below it]}
        self._cursors: dict[str, dict[int, list[int]]] = {}
        self._unshared()

    def _unshared(self) -> None:
        # What take() answers (ask), and the last payment it took with the
        # figures from before it: not state, so never in a snapshot.
        self._asks: list[tuple[int, bool]] = []
        self._token: object = None
        self._before: tuple[int, dict[tuple[int, bool], int | None]] = (0, {})

    def __getstate__(self) -> dict[str, Any]:
        return {"hist": self.hist, "counts": self.counts}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.hist, self.counts = state["hist"], state["counts"]
        self._keys = {cur: sorted(h) for cur, h in self.hist.items()}
        self._cursors = {}
        self._unshared()

    def ask(self, pct: int, upper: bool) -> None:
        """Have :meth:`take` answer ``percentile(currency, pct, upper=upper)``
        as it stood before each payment."""
        if (pct, upper) not in self._asks:
            self._asks.append((pct, upper))

    def take(
        self, token: object, currency: str, amount: int, min_samples: int
    ) -> tuple[int, dict[tuple[int, bool], int | None]]:
        """Add a payment of ``amount`` in ``currency`` and say what the scale
        said before it: the payments counted in ``currency`` and, from
        ``min_samples`` of them on, the answer to each question asked
        (:meth:`ask`), keyed ``(pct, upper)``. Several typologies share one
        scale (an engine's, :meth:`~fundflow.detectors.base.Detector.share`)
        and each hands in the same payment: it is added once, for the first
        ``token`` (the flow they are given, compared by identity), and the
        others get the same answers."""
        if token is self._token:
            return self._before
        n = self.counts.get(currency, 0)
        answers: dict[tuple[int, bool], int | None] = {}
        if n and n >= min_samples:
            for pct, upper in self._asks:
                answers[pct, upper] = self.percentile(currency, pct, upper=upper)
        self.add(currency, amount)
        self._token = token
        self._before = (n, answers)
        return self._before

    def add(self, currency: str, amount: int) -> None:
        h = self.hist.get(currency)
        if h is None:
            h = self.hist[currency] = {}
            self._keys[currency] = []
        b = bucket(amount)
        had = h.get(b)
        h[b] = 1 if had is None else had + 1
        n = self.counts[currency] = self.counts.get(currency, 0) + 1
        if n >= HALVE_AT:
            for k in list(h):
                h[k] //= 2
                if not h[k]:
                    del h[k]
            self.counts[currency] = sum(h.values())
            self._keys[currency] = sorted(h)
            self._cursors.pop(currency, None)
            return
        cursors = self._cursors.get(currency)
        keys = self._keys[currency]
        if had is None:
            at = bisect_left(keys, b)
            keys.insert(at, b)
            if cursors:
                for cur in cursors.values():
                    if at <= cur[0]:  # a new bucket below the cursor's: it moves up one
                        cur[0] += 1
                        cur[1] += 1
        elif cursors:
            for cur in cursors.values():
                if b < keys[cur[0]]:
                    cur[1] += 1

    def count(self, currency: str) -> int:
        """Payments counted in ``currency`` (halvings included)."""
        return self.counts.get(currency, 0)

    def percentile(self, currency: str, pct: int, *, upper: bool = False) -> int | None:
        """The lower edge of the bucket holding the ``pct``-th percentile
        payment in ``currency`` (0 <= pct <= 100), with ``upper`` the next
        bucket's lower edge; ``None`` if none seen."""
        h = self.hist.get(currency)
        if not h:
            return None
        keys = self._keys[currency]
        # the payment of this rank, counting from 0 in ascending order (the last at 100)
        rank = min(self.counts[currency] * pct // 100, self.counts[currency] - 1)
        cursors = self._cursors.get(currency)
        if cursors is None:
            cursors = self._cursors[currency] = {}
        cur = cursors.get(pct)
        if cur is None:
            cur = cursors[pct] = [0, 0]
        at, below = cur
        while below > rank:
            at -= 1
            below -= h[keys[at]]
        while below + h[keys[at]] <= rank:
            below += h[keys[at]]
            at += 1
        cur[0], cur[1] = at, below
        found = keys[at]
        return bucket_floor(found + 1) if upper else bucket_floor(found)


__all__ = ["AmountScale", "bucket", "bucket_floor", "HALVE_AT"]
