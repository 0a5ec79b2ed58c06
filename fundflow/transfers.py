"""A labelled synthetic world of raw transfers, for the typology detectors.

:func:`write_transfers` writes ``transfers.csv`` (or ``.csv.gz``): one
payment a row, in a foreign column layout a supervisor might receive from a
bank (``id, time, src_bank, src, dst_bank, dst, value, ccy, memo``; local
times without an offset, yuan with two decimals), and ``truth.json``: every
planted laundering pattern with its subject and accounts, every honest
look-alike, and the ``fundflow replay`` arguments that read the layout
(:data:`REPLAY_ARGS`). The same arguments give byte-identical files.

Per unit of ``scale``: about 3,000 people and 300 companies paying one
another every day (amounts log-uniform, 20 to 20,000 yuan), and

* planted patterns, each drawn around its detector's defaults so that some
  fall short of them (as real ones do): 4 ``fan_in`` (8-25 payers of
  9,000-49,900 yuan into one account over 12-96 hours), 4 ``fan_out`` (one
  deposit paid out to 8-25 payees likewise), 4 ``cycle`` (3-8 hops, 1-36
  hours apart, 0-3 % kept at each), 4 ``gather_scatter`` (4-15 payers, then
  70-98 % paid on to 4-15 payees within a day), 4 ``scatter_gather`` (3-10
  intermediaries forwarding 92-100 % to one target within 48 hours), 4
  ``split_payments`` (2-6 payments of 1-15 yuan from one payer to one payee
  booked at once), 4 ``off_profile`` (a standing order of one amount, 3-5
  weeks, then a payment 2-20 times larger or 5-20 times smaller), 4
  ``bipartite`` (3-7 payers each paying all of, or all but one of, 3-7
  payees 15,000-49,000 yuan within 6-36 hours), 4 ``stack`` (1-3 sources
  paying each of 2-4 accounts 400,000-1,500,000 yuan in all, passed on through 2-3
  layers of 2-4 accounts to 1-2 sinks, each account passing on 92-99 % a
  few hours later, many-to-many), 4 ``peel_chain`` (3-11 transfers from
  60,000-3,000,000 yuan, each account passing on 72-97.5 % as one payment,
  minutes, an hour or half a day a hop);
* honest look-alikes: ``merchant`` (hundreds of small takings a day),
  ``payroll`` (40-120 salaries of 4,000-9,800 yuan twice a month),
  ``wholesaler`` (6-8 retailers pay 20,000+ yuan, 30-40 % goes on to
  suppliers), ``treasury_sweep`` (a three-account sweep, a hop every 8
  days), ``friend_loan`` (a loan and its repayment), ``group_funding`` (a
  parent funds 6 subsidiaries that each pay part of it to one supplier),
  ``double_purchase`` (two everyday purchases at one shop booked at once),
  ``utility_bills`` (weekly bills varying by 5 %, then one half as large
  again), ``shared_suppliers`` (4-6 shops each ordering from one of the
  same 3-4 wholesalers once a week), ``department_spending`` (a budget
  down 2-3 divisions to 2-4 departments that spend 40-85 % of it with
  suppliers), ``budget_cascade`` (the same passed on whole, a level
  every 4-6 days), ``salaries_at_shops`` (a firm's payroll funded, 3-6
  salaries of 25,000-45,000 yuan each spent at 2-5 shops) and three
  ``supply_chain`` (5-7 firms each paying its supplier 30-60 % of what it
  got, or 75-95 % 3-4.5 days later, or to 2-3 suppliers).

Account ids are drawn from one shuffled pool, so a planted account looks
like any other.

>>> import pathlib, tempfile
>>> t = write_transfers(pathlib.Path(tempfile.mkdtemp()), seed=3, days=12)
>>> sorted({p["typology"] for p in t["patterns"]}), t["rows"] > 20000
(['bipartite', 'cycle', 'fan_in', 'fan_out', 'gather_scatter', 'off_profile', 'peel_chain', 'scatter_gather', 'split_payments', 'stack'], True)
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import random
from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fundflow.schemas.records import Alert

TYPOLOGIES = (
    "fan_in",
    "fan_out",
    "cycle",
    "gather_scatter",
    "scatter_gather",
    "split_payments",
    "off_profile",
    "bipartite",
    "stack",
    "peel_chain",
)
HEADER = ("id", "time", "src_bank", "src", "dst_bank", "dst", "value", "ccy", "memo")
#: The layout of ``transfers.csv`` in wire fields (``--map``, ``--const``).
COLUMN_MAP = (
    "txn_id=id,ts=time,payer_bank=src_bank,payer_account=src,payee_bank=dst_bank,"
    "payee_account=dst,amount=value,currency=ccy,purpose=memo,initiator_id=src_bank"
)
CONSTANTS = "system=CNAPS"
#: How ``fundflow replay`` reads the layout of ``transfers.csv``.
REPLAY_ARGS = ("--kind", "clearing_txn", "--map", COLUMN_MAP, "--const", CONSTANTS)
ZONE = ZoneInfo("Asia/Shanghai")
HOUR = 3_600_000
DAY = 24 * HOUR
YUAN = 100


def _fen(rng: random.Random, lo_yuan: int, hi_yuan: int) -> int:
    return rng.randint(lo_yuan * YUAN, hi_yuan * YUAN)


def _log_fen(rng: random.Random, lo_yuan: float, hi_yuan: float) -> int:
    return round(math.exp(rng.uniform(math.log(lo_yuan), math.log(hi_yuan))) * YUAN)


class _World:
    def __init__(self, rng: random.Random, scale: int, days: int, start_ms: int, seed: int) -> None:
        self.rng = rng
        self.days = days
        self.start = start_ms
        n_people, n_firms = 3000 * scale, 300 * scale
        ids = [f"62{n:014d}" for n in rng.sample(range(10**9, 10**10), n_people + n_firms + 4000)]
        self.pool = ids
        self.people = ids[:n_people]
        self.firms = ids[n_people : n_people + n_firms]
        self.spare = ids[n_people + n_firms :]
        self.banks = {a: f"B{rng.randint(1, 8):02d}" for a in ids}
        # Accounts for the planted patterns past the first 4,000 (about 800
        # are used per unit of scale) come from a stream of their own, so the
        # worlds of smaller scales stay as they were drawn.
        self._more = random.Random(f"transfers-{seed}-spare")
        self.rows: list[tuple[int, str, str, int, str]] = []
        self.patterns: list[dict[str, Any]] = []
        self.honest: list[dict[str, Any]] = []

    def fresh(self, n: int) -> list[str]:
        """``n`` accounts no pattern or background payment has used."""
        while len(self.spare) < n:
            a = f"62{self._more.randrange(10**9, 10**10):014d}"
            if a not in self.banks:
                self.banks[a] = f"B{self._more.randint(1, 8):02d}"
                self.spare.append(a)
        out, self.spare = self.spare[:n], self.spare[n:]
        return out

    def pay(self, ts: int, src: str, dst: str, fen: int, memo: str = "") -> None:
        if src != dst and fen > 0:
            self.rows.append((ts, src, dst, fen, memo))

    def at(self, day: float, hours: float = 0.0) -> int:
        return self.start + int(day * DAY + hours * HOUR)

    def some_day(self, margin: int = 10) -> float:
        return self.rng.uniform(1, max(2, self.days - margin))


def _background(w: _World, scale: int) -> None:
    rng = w.rng
    everyone = w.people + w.firms
    for day in range(w.days):
        for _ in range(2000 * scale):
            src, dst = rng.choice(everyone), rng.choice(everyone)
            w.pay(w.at(day, rng.uniform(7, 23)), src, dst, _log_fen(rng, 20, 20000))


def _fan(w: _World, inbound: bool) -> None:
    rng = w.rng
    hub, other = w.fresh(2)
    k = rng.randint(8, 25)
    parties = w.fresh(k)
    start, span = w.some_day(), rng.uniform(12, 96)
    total = 0
    for i, party in enumerate(parties):
        amount = _fen(rng, 9000, 9999) if rng.random() < 0.15 else _fen(rng, 12000, 49900)
        total += amount
        ts = w.at(start, span * i / max(1, k - 1))
        if inbound:
            w.pay(ts, party, hub, amount)
        else:
            w.pay(ts, hub, party, amount)
    if inbound:  # the collection account empties itself into one account
        w.pay(w.at(start, span + 2), hub, other, total)
    else:  # one deposit funds the payouts
        w.pay(w.at(start, -3), other, hub, total + _fen(rng, 0, 5000))
    kind = "fan_in" if inbound else "fan_out"
    w.patterns.append({"typology": kind, "subject": hub, "accounts": [hub, other, *parties]})


def _cycle(w: _World) -> None:
    rng = w.rng
    hops = rng.randint(3, 8)
    accounts = w.fresh(hops)
    amount = _fen(rng, 100000, 2000000)
    ts = w.at(w.some_day(), rng.uniform(8, 18))
    for i in range(hops):
        w.pay(ts, accounts[i], accounts[(i + 1) % hops], amount)
        amount = amount * (10000 - rng.randint(0, 300)) // 10000
        ts += int(rng.uniform(1, 36) * HOUR)
    w.patterns.append({"typology": "cycle", "subject": accounts[0], "accounts": accounts})


def _gather_scatter(w: _World) -> None:
    rng = w.rng
    (hub,) = w.fresh(1)
    sources = w.fresh(rng.randint(4, 15))
    sinks = w.fresh(rng.randint(4, 15))
    start = w.some_day()
    gathered = 0
    for i, s in enumerate(sources):
        amount = _fen(rng, 10000, 49000)
        gathered += amount
        w.pay(w.at(start, 24 * i / len(sources)), s, hub, amount)
    passed = gathered * rng.randint(70, 98) // 100
    each = passed // len(sinks)
    for i, s in enumerate(sinks):
        w.pay(w.at(start, 24 + 20 * i / len(sinks)), hub, s, each)
    accounts = [hub, *sources, *sinks]
    w.patterns.append({"typology": "gather_scatter", "subject": hub, "accounts": accounts})


def _scatter_gather(w: _World) -> None:
    rng = w.rng
    source, target = w.fresh(2)
    mids = w.fresh(rng.randint(3, 10))
    start = w.some_day()
    for i, m in enumerate(mids):
        amount = _fen(rng, 15000, 49000)
        sent = w.at(start, 6 * i / len(mids))
        w.pay(sent, source, m, amount)
        kept = amount * rng.randint(92, 100) // 100
        w.pay(sent + int(rng.uniform(1, 48) * HOUR), m, target, kept)
    accounts = [source, target, *mids]
    w.patterns.append({"typology": "scatter_gather", "subject": source, "accounts": accounts})


def _split(w: _World) -> None:
    rng = w.rng
    payer, payee = w.fresh(2)
    ts = w.at(w.some_day(), rng.uniform(0, 23))
    for _ in range(rng.randint(2, 6)):  # tiny payments booked at once (card testing)
        w.pay(ts, payer, payee, _fen(rng, 1, 15))
    w.patterns.append({"typology": "split_payments", "subject": payer, "accounts": [payer, payee]})


def _off_profile(w: _World) -> None:
    rng = w.rng
    payer, landlord, odd = w.fresh(3)
    rent, day = _fen(rng, 800, 6000), rng.uniform(1, 3)
    steady = rng.randint(3, 5)
    for i in range(steady):  # a standing order, the same amount each week
        w.pay(w.at(day + 7 * i, 9), payer, landlord, rent)
    # then one payment far out of that habit, to an account it never paid
    share = rng.choice((rng.randint(2, 20), -rng.randint(5, 20)))
    amount = rent * share if share > 0 else rent // -share
    w.pay(w.at(day + 7 * steady - 3, rng.uniform(8, 20)), payer, odd, amount)
    w.patterns.append({"typology": "off_profile", "subject": payer, "accounts": [payer, odd]})


def _bipartite(w: _World) -> None:
    rng = w.rng
    payers, payees = w.fresh(rng.randint(3, 7)), w.fresh(rng.randint(3, 7))
    start, span = w.some_day(), rng.uniform(6, 36)
    m = len(payees)
    for i, p in enumerate(payers):
        # every payee but perhaps one (from four payees up): each is still paid by two or more
        skip = payees[i % m] if m >= 4 and rng.random() < 0.5 else None
        for q in payees:
            if q != skip:
                w.pay(w.at(start, rng.uniform(0, span)), p, q, _fen(rng, 15000, 49000))
    w.patterns.append(
        {"typology": "bipartite", "subject": min(payers), "accounts": [*payers, *payees]}
    )


def _layering_look_alikes(w: _World) -> None:
    rng = w.rng
    for _ in range(2):  # shops buying from the same wholesalers, one order a week each
        shops, suppliers = w.fresh(rng.randint(4, 6)), w.fresh(rng.randint(3, 4))
        day = rng.uniform(1, 3)
        for week in range(4):
            for i, s in enumerate(shops):
                supplier = suppliers[(i + week) % len(suppliers)]
                w.pay(w.at(day + 7 * week + i * 0.2, 10), s, supplier, _fen(rng, 15000, 40000))
        w.honest.append(
            {"kind": "shared_suppliers", "subject": min(shops), "looks_like": "bipartite"}
        )


def _pass_on(
    w: _World, held: dict[str, int], layer: list[str], ts: int, span: float, share: tuple[int, int]
) -> dict[str, int]:
    """Each account of ``held`` (two or more) pays ``share`` (per mille,
    drawn per account) of what it holds on to the accounts of ``layer``,
    many-to-many (to all of them, or from three up to all but one, no two
    payers skipping the same), within ``span`` hours of ``ts``, in parts
    within 1.5 times of one another; what each of ``layer`` holds then."""
    rng = w.rng
    payers = list(held)
    got = dict.fromkeys(layer, 0)
    for i, a in enumerate(payers):
        skip = layer[i % len(layer)] if len(layer) >= 3 and rng.random() < 0.5 else None
        payees = [b for b in layer if b != skip]
        passed = held[a] * rng.randint(*share) // 1000
        weights = [rng.uniform(1, 1.5) for _ in payees]
        left = passed
        for j, b in enumerate(payees):
            part = left if j == len(payees) - 1 else int(passed * weights[j] / sum(weights))
            left -= part
            got[b] += part
            w.pay(ts + int(rng.uniform(0, span) * HOUR), a, b, part)
    return got


def _stack(w: _World) -> None:
    rng = w.rng
    sources = w.fresh(rng.randint(1, 3))
    layers = [w.fresh(rng.randint(2, 4)) for _ in range(rng.randint(2, 3))]
    sinks = w.fresh(rng.randint(1, 2))
    ts = w.at(w.some_day(), rng.uniform(0, 12))
    # the sources pay every account of the first layer, 400,000-1,500,000 yuan in all
    held = dict.fromkeys(layers[0], 0)
    each = _fen(rng, 400000, 1500000) // (len(sources) * len(layers[0]))
    for s in sources:
        for a in layers[0]:
            amount = each * rng.randint(80, 120) // 100
            held[a] += amount
            w.pay(ts + int(rng.uniform(0, 2) * HOUR), s, a, amount)
    # each layer passes on 92-99 % of what it got to the next, a few hours later;
    # the whole within 48 hours
    for nxt in [*layers[1:], sinks]:
        ts += int(rng.uniform(3, 10) * HOUR)
        held = _pass_on(w, held, nxt, ts, 2, (920, 990))
    accounts = [*sources, *(a for layer in layers for a in layer), *sinks]
    w.patterns.append({"typology": "stack", "subject": min(sources), "accounts": accounts})


def _chain_look_alikes(w: _World) -> None:
    rng = w.rng
    for slow in (False, True):
        # a group's budget down its divisions to departments and on to suppliers:
        # the departments spend part of it (40-85 %), or it takes 4-6 days a level
        (hq,) = w.fresh(1)
        divisions, departments = w.fresh(rng.randint(2, 3)), w.fresh(rng.randint(2, 4))
        suppliers = w.fresh(rng.randint(1, 2))
        ts = w.at(w.some_day(), 9)
        held = dict.fromkeys(divisions, 0)
        for d in divisions:
            held[d] = _fen(rng, 100000, 400000)
            w.pay(ts, hq, d, held[d])
        gap = rng.uniform(4, 6) * DAY if slow else rng.uniform(3, 8) * HOUR
        held = _pass_on(w, held, departments, ts + int(gap), 2, (950, 1000))
        spent = (950, 1000) if slow else (400, 850)
        _pass_on(w, held, suppliers, ts + int(2 * gap), 2, spent)
        kind = "budget_cascade" if slow else "department_spending"
        w.honest.append({"kind": kind, "subject": hq, "looks_like": "stack"})


def _walk(w: _World, accounts: list[str], amount: int, ts: int, gap: tuple[float, float]) -> None:
    """``amount`` from ``accounts[0]`` to the next, and on down the chain,
    each account passing on 72-97.5 % of what it got as one payment,
    ``gap`` hours (drawn per hop) after it got it."""
    rng = w.rng
    for a, b in pairwise(accounts):
        w.pay(ts, a, b, amount)
        amount = amount * rng.randint(720, 975) // 1000
        ts += int(rng.uniform(*gap) * HOUR)


def _peel_chain(w: _World) -> None:
    rng = w.rng
    accounts = w.fresh(rng.randint(3, 11) + 1)
    # amounts from 60,000 to 3,000,000 yuan; each hop minutes to half a day after the one before
    step = rng.choice((0.1, 1.0, 6.0))
    ts = w.at(w.some_day(), rng.uniform(0, 20))
    _walk(w, accounts, _log_fen(rng, 60000, 3000000), ts, (step / 2, step * 2))
    w.patterns.append({"typology": "peel_chain", "subject": accounts[0], "accounts": accounts})


def _peel_look_alikes(w: _World) -> None:
    rng = w.rng
    # salaries spent at shops: a group's treasury funds one firm's payroll, the firm pays
    # 3-6 staff 25,000-45,000 yuan each, and each spends 60-95 % of it at 2-5 shops
    treasury, firm = w.fresh(2)
    staff, shops = w.fresh(rng.randint(3, 6)), w.fresh(rng.randint(8, 12))
    day = w.some_day()
    salaries = [_fen(rng, 25000, 45000) for _ in staff]
    w.pay(w.at(day, 8), treasury, firm, sum(salaries))
    for person, salary in zip(staff, salaries, strict=True):
        w.pay(w.at(day, 9), firm, person, salary)
        bought = rng.sample(shops, rng.randint(2, 5))
        spent = salary * rng.randint(60, 95) // 100
        for shop in bought:
            w.pay(w.at(day, rng.uniform(10, 80)), person, shop, spent // len(bought))
    w.honest.append({"kind": "salaries_at_shops", "subject": treasury, "looks_like": "peel_chain"})
    # a supply chain of 5-7 firms, each paying its supplier for what it sells on: keeping its
    # margin (passing on 30-60 %), or passing on 75-95 % 3-4.5 days later, or to 2-3 suppliers
    for how in ("margin", "days", "suppliers"):
        firms = w.fresh(rng.randint(5, 7))
        day = rng.uniform(1, 3) if how == "days" else w.some_day()
        amount, ts = _fen(rng, 1000000, 3000000), w.at(day, 10)
        for a, b in pairwise(firms):
            if how == "suppliers":
                parts = [b, *w.fresh(rng.randint(1, 2))]
                for c in parts:
                    w.pay(ts + int(rng.uniform(0, 2) * HOUR), a, c, amount // len(parts))
                amount = amount // len(parts) * rng.randint(75, 95) // 100
            else:
                w.pay(ts, a, b, amount)
                amount = amount * rng.randint(*((30, 60) if how == "margin" else (75, 95))) // 100
            ts += int(rng.uniform(3.2, 4.5) * DAY if how == "days" else rng.uniform(2, 8) * HOUR)
        w.honest.append({"kind": "supply_chain", "subject": firms[0], "looks_like": "peel_chain"})


def _look_alikes(w: _World) -> None:
    rng = w.rng
    for _ in range(3):  # merchant: many small takings
        (shop,) = w.fresh(1)
        for day in range(w.days):
            for _ in range(rng.randint(150, 300)):
                w.pay(
                    w.at(day, rng.uniform(8, 22)), rng.choice(w.people), shop, _fen(rng, 20, 2000)
                )
        w.honest.append({"kind": "merchant", "subject": shop, "looks_like": "fan_in"})
    for _ in range(3):  # payroll: salaries under the floor, twice a month
        firm, bank = w.fresh(2)
        staff = w.fresh(rng.randint(40, 120))
        salaries = {p: _fen(rng, 4000, 9800) for p in staff}
        for day in range(9, w.days, 15):
            w.pay(w.at(day, 8), bank, firm, sum(salaries.values()))
            for i, p in enumerate(staff):
                w.pay(w.at(day, 9) + i * 1000, firm, p, salaries[p])
        w.honest.append({"kind": "payroll", "subject": firm, "looks_like": "fan_out"})
    for _ in range(2):  # wholesaler: big takings, a third paid on
        (firm,) = w.fresh(1)
        retailers, suppliers = w.fresh(rng.randint(6, 8)), w.fresh(rng.randint(4, 6))
        day = w.some_day()
        taken = 0
        for i, r in enumerate(retailers):
            amount = _fen(rng, 20000, 60000)
            taken += amount
            w.pay(w.at(day, 2 * i), r, firm, amount)
        paid = taken * rng.randint(30, 40) // 100
        for i, s in enumerate(suppliers):
            w.pay(w.at(day, 20 + i), firm, s, paid // len(suppliers))
        w.honest.append({"kind": "wholesaler", "subject": firm, "looks_like": "gather_scatter"})
    for _ in range(2):  # treasury sweep: a loop, a hop every 8 days
        accounts = w.fresh(3)
        amount, day = _fen(rng, 500000, 3000000), rng.uniform(1, 3)
        for i in range(3):
            w.pay(w.at(day + 8 * i, 17), accounts[i], accounts[(i + 1) % 3], amount)
        w.honest.append({"kind": "treasury_sweep", "subject": accounts[0], "looks_like": "cycle"})
    for _ in range(3):  # a loan between friends and its repayment
        lender, friend = w.fresh(2)
        amount, day = _fen(rng, 20000, 80000), w.some_day()
        w.pay(w.at(day, 10), lender, friend, amount)
        w.pay(w.at(day + 5, 10), friend, lender, amount)
        w.honest.append({"kind": "friend_loan", "subject": lender, "looks_like": "cycle"})
    for _ in range(2):  # group funding: subsidiaries pass on part of it, unevenly
        parent, supplier = w.fresh(2)
        subs = w.fresh(6)
        day = w.some_day()
        for i, s in enumerate(subs):
            amount = _fen(rng, 200000, 500000)
            w.pay(w.at(day, 9 + i), parent, s, amount)
            w.pay(w.at(day + 1, 9 + i), s, supplier, amount * rng.randint(20, 60) // 100)
        w.honest.append(
            {"kind": "group_funding", "subject": parent, "looks_like": "scatter_gather"}
        )
    for _ in range(3):  # two everyday purchases at one shop booked at once
        buyer, shop = w.fresh(2)
        ts = w.at(w.some_day(), rng.uniform(8, 22))
        for _ in range(2):
            w.pay(ts, buyer, shop, _fen(rng, 50, 800))
        w.honest.append(
            {"kind": "double_purchase", "subject": buyer, "looks_like": "split_payments"}
        )
    for _ in range(3):  # utility bills that vary a little, then a bill half as large again
        payer, utility = w.fresh(2)
        bill, day = _fen(rng, 200, 900), rng.uniform(1, 3)
        for i in range(4):
            w.pay(w.at(day + 7 * i, 10), payer, utility, bill * rng.randint(95, 105) // 100)
        w.pay(w.at(day + 28, 10), payer, utility, bill * 3 // 2)
        w.honest.append({"kind": "utility_bills", "subject": payer, "looks_like": "off_profile"})


def build(seed: int, scale: int = 1, days: int = 30) -> _World:
    if scale < 1 or days < 8:
        raise ValueError(f"scale must be >= 1 and days >= 8, got scale={scale}, days={days}")
    rng = random.Random(seed)
    start = int(datetime(2026, 3, 2, tzinfo=ZONE).timestamp() * 1000)
    w = _World(rng, scale, days, start, seed)
    _background(w, scale)
    for _ in range(scale):
        for _ in range(4):
            _fan(w, inbound=True)
            _fan(w, inbound=False)
            _cycle(w)
            _gather_scatter(w)
            _scatter_gather(w)
            _split(w)
            _off_profile(w)
        _look_alikes(w)
    # The layering typologies draw from a stream of their own, so the patterns
    # above stay as they were drawn.
    w.rng = random.Random(f"transfers-{seed}-layering")
    for _ in range(scale):
        for _ in range(4):
            _bipartite(w)
        _layering_look_alikes(w)
    # The chain typologies draw from a stream of their own in turn.
    w.rng = random.Random(f"transfers-{seed}-chains")
    for _ in range(scale):
        for _ in range(4):
            _stack(w)
        _chain_look_alikes(w)
    # The peel chains draw from a stream of their own in turn.
    w.rng = random.Random(f"transfers-{seed}-peel")
    for _ in range(scale):
        for _ in range(4):
            _peel_chain(w)
        _peel_look_alikes(w)
    return w


def _local(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZONE).strftime("%Y-%m-%d %H:%M:%S")


def _reshaped(
    w: _World, amount_scale: tuple[int, int], tick_ms: int
) -> list[tuple[int, str, str, int, str]]:
    """The world's rows with every amount times ``amount_scale`` (a
    fraction, at least one fen) and, with ``tick_ms``, every time floored to
    its tick since the start (a dump that books one time a tick)."""
    num, den = amount_scale
    rows = []
    for ts, src, dst, fen, memo in w.rows:
        if tick_ms:
            ts = w.start + (ts - w.start) // tick_ms * tick_ms
        rows.append((ts, src, dst, max(1, fen * num // den), memo))
    return sorted(rows)


def write_transfers(
    out: Path,
    *,
    seed: int = 1,
    scale: int = 1,
    days: int = 30,
    compress: bool = False,
    amount_scale: tuple[int, int] = (1, 1),
    tick_ms: int = 0,
    currency: str = "CNY",
) -> dict[str, Any]:
    """Writes ``transfers.csv`` (``.csv.gz`` with ``compress``) and
    ``truth.json`` into folder ``out``; returns the truth.

    ``amount_scale`` (numerator, denominator), ``tick_ms`` and ``currency``
    give the same world in another shape: amounts scaled, times booked one
    per tick, another currency named (see :func:`_reshaped`)."""
    if amount_scale[0] < 1 or amount_scale[1] < 1 or tick_ms < 0:
        raise ValueError(
            f"amount_scale must be positive and tick_ms >= 0, got {amount_scale}, {tick_ms}"
        )
    w = build(seed, scale, days)
    rows = _reshaped(w, amount_scale, tick_ms)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(HEADER)
    for n, (ts, src, dst, fen, memo) in enumerate(rows, start=1):
        q, r = divmod(fen, 100)
        writer.writerow(
            (
                f"TX{n:09d}",
                _local(ts),
                w.banks[src],
                src,
                w.banks[dst],
                dst,
                f"{q}.{r:02d}",
                currency,
                memo,
            )
        )
    name = "transfers.csv.gz" if compress else "transfers.csv"
    data = text.getvalue().encode("utf-8")
    (out / name).write_bytes(gzip.compress(data, mtime=0) if compress else data)
    truth = {
        "seed": seed,
        "scale": scale,
        "days": days,
        "file": name,
        "rows": len(rows),
        "accounts": len({a for r in rows for a in r[1:3]}),
        "amount_scale": list(amount_scale),
        "tick_ms": tick_ms,
        "currency": currency,
        "replay_args": list(REPLAY_ARGS),
        "patterns": w.patterns,
        "honest": w.honest,
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return truth


def score_typologies(truth: dict[str, Any], alerts: Iterable[Alert]) -> dict[str, dict[str, Any]]:
    """Per typology: planted patterns ``found`` (an alert of that detector on
    the pattern's subject) and ``missed``; ``alerted`` subjects, of which
    ``on_patterns`` belong to some planted pattern (the rest, ``false``,
    are honest accounts); ``recall`` and ``precision`` over those counts.
    """
    raised: dict[str, set[str]] = {t: set() for t in TYPOLOGIES}
    for a in alerts:
        if a.detector in raised:
            raised[a.detector].add(a.subject_id)
    dirty = {acc for p in truth["patterns"] for acc in p["accounts"]}
    out: dict[str, dict[str, Any]] = {}
    for t in TYPOLOGIES:
        subjects = [p["subject"] for p in truth["patterns"] if p["typology"] == t]
        found = sum(1 for s in subjects if s in raised[t])
        on = sum(1 for s in raised[t] if s in dirty)
        out[t] = {
            "planted": len(subjects),
            "found": found,
            "missed": len(subjects) - found,
            "alerted": len(raised[t]),
            "on_patterns": on,
            "false": len(raised[t]) - on,
            "recall": found / len(subjects) if subjects else None,
            "precision": on / len(raised[t]) if raised[t] else None,
        }
    return out


def honest_alerted(truth: dict[str, Any], alerts: Iterable[Alert]) -> list[tuple[str, str]]:
    """``(detector, subject)`` of alerts on the honest look-alikes."""
    honest = {h["subject"] for h in truth["honest"]}
    return sorted({(a.detector, a.subject_id) for a in alerts if a.subject_id in honest})


def score_nodes(
    truth: dict[str, Any], alerts: Iterable[Alert], detectors: Iterable[str]
) -> dict[str, Any]:
    """Node level: the accounts named by alerts of ``detectors`` against the
    labelled accounts (a converted sample's ``fraud_accounts``, else every
    account of a planted pattern); ``precision``, ``recall`` and ``f1``
    (``None`` where undefined)."""
    chosen = set(detectors)
    named = {acc for a in alerts if a.detector in chosen for acc in a.accounts}
    if "fraud_accounts" in truth:
        fraud = set(truth["fraud_accounts"])
    else:
        fraud = {acc for p in truth["patterns"] for acc in p["accounts"]}
    hit = len(named & fraud)
    precision = hit / len(named) if named else None
    recall = hit / len(fraud) if fraud else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall
        else None
    )
    return {
        "accounts": truth.get("accounts"),
        "fraud": len(fraud),
        "named": len(named),
        "correct": hit,
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


__all__ = [
    "write_transfers",
    "score_typologies",
    "honest_alerted",
    "score_nodes",
    "REPLAY_ARGS",
    "COLUMN_MAP",
    "CONSTANTS",
    "TYPOLOGIES",
]
