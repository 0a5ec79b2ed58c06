"""Hand-made raw transfers for the typology detectors.

Every builder returns ``clearing_txn`` records between accounts no reference
record describes (raw dump data): with the default thresholds each shape
below is one threshold step past its rule. :func:`typology_stream` puts one
of each on days 4-6 after :data:`ledger.T0`, where the contract suite slots
them into the mixed stream.
"""

from __future__ import annotations

from ledger import HOUR_MS, MINUTE_MS, at, clearing

from fundflow.schemas.records import ClearingTxn


def fan_in(
    hub: str, payers: int, each: str, *, start: int, prefix: str = "FI"
) -> list[ClearingTxn]:
    """``payers`` distinct payers each pay ``each`` into ``hub``, a minute apart."""
    return [
        clearing(f"{prefix}{i + 1:02d}", start + i * MINUTE_MS, f"{prefix}P{i + 1:02d}", hub, each)
        for i in range(payers)
    ]


def fan_out(
    hub: str, payees: int, each: str, *, start: int, prefix: str = "FO"
) -> list[ClearingTxn]:
    """``hub`` pays ``each`` to ``payees`` distinct payees, a minute apart."""
    return [
        clearing(f"{prefix}{i + 1:02d}", start + i * MINUTE_MS, hub, f"{prefix}R{i + 1:02d}", each)
        for i in range(payees)
    ]


def loop(
    accounts: list[str], amounts: list[str], *, start: int, step: int = HOUR_MS, prefix: str = "CY"
):
    """``accounts[0]`` pays ``accounts[1]``, ... and the last pays the first
    back: one transfer per amount, ``step`` apart."""
    n = len(accounts)
    return [
        clearing(f"{prefix}{i + 1}", start + i * step, accounts[i], accounts[(i + 1) % n], amt)
        for i, amt in enumerate(amounts)
    ]


def gather_scatter(
    hub: str, ins: list[str], outs: list[str], *, start: int, prefix: str = "GS"
) -> list[ClearingTxn]:
    """Payers pay ``ins`` into ``hub`` a minute apart; two hours later it pays
    ``outs`` to payees, a minute apart."""
    gathered = [
        clearing(f"{prefix}I{i + 1}", start + i * MINUTE_MS, f"{prefix}S{i + 1}", hub, amt)
        for i, amt in enumerate(ins)
    ]
    paid = [
        clearing(
            f"{prefix}O{i + 1}", start + 2 * HOUR_MS + i * MINUTE_MS, hub, f"{prefix}K{i + 1}", amt
        )
        for i, amt in enumerate(outs)
    ]
    return gathered + paid


def scatter_gather(
    source: str, target: str, sent: list[str], passed: list[str], *, start: int, prefix: str = "SG"
) -> list[ClearingTxn]:
    """``source`` pays ``sent`` to intermediaries a minute apart; three hours
    later each pays its ``passed`` amount on to ``target``."""
    out = [
        clearing(f"{prefix}A{i + 1}", start + i * MINUTE_MS, source, f"{prefix}M{i + 1}", amt)
        for i, amt in enumerate(sent)
    ]
    out += [
        clearing(
            f"{prefix}B{i + 1}",
            start + 3 * HOUR_MS + i * MINUTE_MS,
            f"{prefix}M{i + 1}",
            target,
            amt,
        )
        for i, amt in enumerate(passed)
    ]
    return out


def typology_stream() -> list[ClearingTxn]:
    """One instance of each typology, in time order, on days 4-6: a fan-in
    into FIH, a fan-out from FOH, the loop CA -> CB -> CC -> CA, the hub GSH
    and SGS's money re-converging on SGT."""
    recs = [
        *fan_in("FIH", 10, "20000", start=at(4, 9)),
        *fan_out("FOH", 10, "20000", start=at(4, 12)),
        *loop(["CA", "CB", "CC"], ["100000", "98000", "95000"], start=at(5, 9)),
        *gather_scatter("GSH", ["30000"] * 5, ["24000"] * 5, start=at(5, 14)),
        *scatter_gather("SGS", "SGT", ["30000"] * 4, ["27000"] * 4, start=at(6, 9)),
    ]
    return sorted(recs, key=lambda r: (r.ts, r.txn_id))


def with_transfers(stream: list) -> list:
    """``stream`` with :func:`typology_stream` merged in by time: each
    transfer goes before the first timed record later than it."""
    extra = typology_stream()
    out: list = []
    j = 0
    for r in stream:
        ts = getattr(r, "ts", None)
        while ts is not None and j < len(extra) and extra[j].ts <= ts:
            out.append(extra[j])
            j += 1
        out.append(r)
    return out + extra[j:]
