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

    __slots__ = ("hist", "counts")

    def __init__(self) -> None:
        self.hist: dict[str, dict[int, int]] = {}
        self.counts: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"hist": self.hist, "counts": self.counts}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.hist, self.counts = state["hist"], state["counts"]

    def add(self, currency: str, amount: int) -> None:
        h = self.hist.setdefault(currency, {})
        b = bucket(amount)
        h[b] = h.get(b, 0) + 1
        n = self.counts[currency] = self.counts.get(currency, 0) + 1
        if n >= HALVE_AT:
            for k in list(h):
                h[k] //= 2
                if not h[k]:
                    del h[k]
            self.counts[currency] = sum(h.values())

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
        rank = self.counts[currency] * pct // 100
        seen = 0
        found = max(h)
        for b in sorted(h):
            seen += h[b]
            if seen > rank:
                found = b
                break
        return bucket_floor(found + 1) if upper else bucket_floor(found)


__all__ = ["AmountScale", "bucket", "bucket_floor", "HALVE_AT"]
