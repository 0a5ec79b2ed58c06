"""Hand-made raw transfers for the typology detectors.

Every builder returns ``clearing_txn`` records between accounts no reference
record describes (raw dump data). :func:`typology_stream` puts everyday
:func:`background` payments on days 0-3 after :data:`ledger.T0` (so the
thresholds relative to the dump have their baseline) and one instance of
each typology on days 4-6, where the contract suite slots them into the
mixed stream.
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


def background(n: int = 400, *, start: int = at(0), prefix: str = "BG") -> list[ClearingTxn]:
    """``n`` everyday payments of 20.00 to 5,006.50 yuan (spread by a fixed
    permutation) among 60 accounts, 14 minutes apart from the start of
    day 0: the dump's baseline for the thresholds relative to it."""
    out = []
    for i in range(n):
        payer, payee = i % 60, (i * 7 + 13) % 60
        if payer == payee:
            payee = (payee + 1) % 60
        fen = 2000 + (i * 7919 % 9973) * 50
        amount = f"{fen // 100}.{fen % 100:02d}"
        ts = start + i * 14 * MINUTE_MS
        out.append(
            clearing(
                f"{prefix}{i:05d}", ts, f"{prefix}A{payer:02d}", f"{prefix}A{payee:02d}", amount
            )
        )
    return out


def split(
    payer: str, payee: str, each: list[str], *, at_ts: int, prefix: str = "SP"
) -> list[ClearingTxn]:
    """``payer`` pays ``each`` to ``payee``, all booked at ``at_ts``."""
    return [clearing(f"{prefix}{i + 1}", at_ts, payer, payee, amt) for i, amt in enumerate(each)]


def habit(
    payer: str, steady: list[str], odd: str, *, start: int, prefix: str = "OP"
) -> list[ClearingTxn]:
    """``payer`` pays ``steady`` to distinct payees six hours apart, then
    ``odd`` to one more six hours after the last."""
    amounts = [*steady, odd]
    return [
        clearing(f"{prefix}{i + 1}", start + i * 6 * HOUR_MS, payer, f"{prefix}R{i + 1}", amt)
        for i, amt in enumerate(amounts)
    ]


def many_to_many(
    pairs: list[tuple[str, str]], each: str, *, start: int, prefix: str = "BP"
) -> list[ClearingTxn]:
    """One payment of ``each`` for every ``(payer, payee)`` of ``pairs``, a
    minute apart."""
    return [
        clearing(f"{prefix}{i + 1:02d}", start + i * MINUTE_MS, payer, payee, each)
        for i, (payer, payee) in enumerate(pairs)
    ]


def complete(payers: list[str], payees: list[str]) -> list[tuple[str, str]]:
    """Every payer with every payee, payer by payer."""
    return [(p, q) for p in payers for q in payees]


def layered(
    stages: list[list[tuple[str, str, str]]],
    *,
    start: int,
    step: int = HOUR_MS,
    prefix: str = "ST",
) -> list[ClearingTxn]:
    """Money passed on stage by stage: the ``(payer, payee, amount)`` of
    stage ``i`` from ``start + i * step``, a minute apart, txn ids
    ``{prefix}{stage}{n}``."""
    return [
        clearing(f"{prefix}{i + 1}{j + 1:02d}", start + i * step + j * MINUTE_MS, p, q, amt)
        for i, stage in enumerate(stages)
        for j, (p, q, amt) in enumerate(stage)
    ]


#: A stack: STS pays STA1 and STA2 50,000 each; each pays 24,000 to both
#: STB1 and STB2 (96 %), which each pay STK 47,000 (97.9 %).
STACK = [
    [("STS", "STA1", "50000"), ("STS", "STA2", "50000")],
    [(a, b, "24000") for a in ("STA1", "STA2") for b in ("STB1", "STB2")],
    [("STB1", "STK", "47000"), ("STB2", "STK", "47000")],
]


def chain(
    accounts: list[str], amounts: list[str], *, start: int, step: int = HOUR_MS, prefix: str = "PC"
) -> list[ClearingTxn]:
    """``accounts[0]`` pays ``accounts[1]`` ``amounts[0]``, which pays
    ``accounts[2]`` ``amounts[1]``, ...: one transfer per amount, ``step``
    apart, txn ids ``{prefix}{n:02d}``."""
    return [
        clearing(f"{prefix}{i + 1:02d}", start + i * step, accounts[i], accounts[i + 1], amt)
        for i, amt in enumerate(amounts)
    ]


#: A peel chain: PC0 pays PC1 100,000, which passes on 90,000 to PC2 (90 %),
#: which passes on 72,000 to PC3 (80 %), which passes on 64,800 to PC4 (90 %).
PEEL = (["PC0", "PC1", "PC2", "PC3", "PC4"], ["100000", "90000", "72000", "64800"])


def typology_stream() -> list[ClearingTxn]:
    """The :func:`background` on days 0-3, then one instance of each
        typology, in time order, on days 4-6: a fan-in into FIH, a fan-out from
        FOH, the loop CA -> CB -> CC -> CA, the hub GSH, SGS's money
        re-converging on SGT through three intermediaries, SPP's two 5-yuan
        payments to SPQ booked at once, OPP's 100 yuan after three payments
        of 1,000, BPA1-BPA3 each paying
    BPB1-BPB3, STS's money through two layers (:data:`STACK`) and PC0's
    down a peel chain (:data:`PEEL`)."""
    recs = [
        *background(),
        *habit("OPP", ["1000", "1000", "1000"], "100", start=at(4, 6)),
        *split("SPP", "SPQ", ["5", "5"], at_ts=at(6, 15)),
        *fan_in("FIH", 10, "20000", start=at(4, 9)),
        *fan_out("FOH", 10, "20000", start=at(4, 12)),
        *loop(["CA", "CB", "CC"], ["100000", "98000", "95000"], start=at(5, 9)),
        *gather_scatter("GSH", ["30000"] * 5, ["24000"] * 5, start=at(5, 14)),
        *scatter_gather("SGS", "SGT", ["30000"] * 3, ["27000"] * 3, start=at(6, 9)),
        *many_to_many(
            complete(["BPA1", "BPA2", "BPA3"], ["BPB1", "BPB2", "BPB3"]), "20000", start=at(6, 18)
        ),
        *layered(STACK, start=at(5, 18)),
        *chain(*PEEL, start=at(6, 2)),
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
