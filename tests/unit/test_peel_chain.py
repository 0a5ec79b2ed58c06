"""The peel-chain typology (detectors/peel_chain.py) on hand-made raw
transfers: money walked through a chain of accounts, each passing on its one
receipt less a cut as one payment, every threshold from just under to just
over.

With absolute floors (:data:`ABSOLUTE`: payments from 10,000 yuan, the
relative floor off) at the defaults otherwise: 4 to 12 transfers, each
account passing on 70-99 % of what it received, 72 hours; 3 transfers when
each is from the dump's 99th percentile (once 200 payments are seen).
"""

from __future__ import annotations

import random

import msgspec
import pytest
from ledger import DAY_MS, HOUR_MS, MINUTE_MS, at, clearing, iso_at, run
from typology_ledger import PEEL, background, chain

from fundflow.detectors import Engine, PeelChain, load_config
from fundflow.detectors.alerting import make_alert_id

FLOORS = {"peel_chain": {"min_payment": "10000", "min_payment_pct": 0}}
ABSOLUTE = load_config(overrides=FLOORS)
T = at(0, 9)  # the chain's first transfer


def cfg(**peel) -> object:
    return load_config(overrides={"peel_chain": {**FLOORS["peel_chain"], **peel}})


def alerts(recs, config=ABSOLUTE):
    return run(PeelChain(config), recs, finish=True)


def peel(*amounts: str, step: int = HOUR_MS, start: int = T):
    """:data:`PEEL`'s accounts with ``amounts`` (PEEL's own by default)."""
    accounts, own = PEEL
    return chain(accounts[: len(amounts or own) + 1], list(amounts or own), start=start, step=step)


def walk(hops: int, *, step: int = HOUR_MS):
    """A chain of ``hops`` transfers from W00, each passing on 90 % of the one before."""
    amounts, fen = [], 10_000_000
    for _ in range(hops):
        amounts.append(f"{fen // 100}.{fen % 100:02d}")
        fen = fen * 9 // 10
    return chain([f"W{i:02d}" for i in range(hops + 1)], amounts, start=T, step=step, prefix="W")


def shape(got):
    """Each alert as (subject, revision, hop count, the hops' txn ids)."""
    return [
        (a.subject_id, a.revision, a.evidence["hop_count"], a.evidence["sample_txn_ids"])
        for a in got
    ]


def test_a_peel_chain_alerts_with_checkable_evidence():
    [a] = alerts(peel())
    assert (a.alert_id, a.subject_id, a.severity, a.amount, a.revision) == (
        make_alert_id("peel_chain", "PC0", T + 3 * HOUR_MS),
        "PC0",
        "low",
        "100000.00",
        1,
    )
    assert (a.first_ts, a.last_ts) == (iso_at(T), iso_at(T + 3 * HOUR_MS))
    assert a.accounts == ("PC0", "PC1", "PC2", "PC3", "PC4")
    ev = a.evidence
    assert ev["hops"][1] == {
        "txn_id": "PC02",
        "ts": "2026-03-02T10:00:00+08:00",
        "from": "PC1",
        "to": "PC2",
        "amount": "90000.00",
    }
    assert [h["amount"] for h in ev["hops"]] == ["100000.00", "90000.00", "72000.00", "64800.00"]
    assert ev["relays"] == [
        {
            "account": "PC1",
            "received": "100000.00",
            "passed_on": "90000.00",
            "share": "0.9000",
            "kept": "10000.00",
            "held_hours": "1.00",
            "payee": "PC2",
        },
        {
            "account": "PC2",
            "received": "90000.00",
            "passed_on": "72000.00",
            "share": "0.8000",
            "kept": "18000.00",
            "held_hours": "1.00",
            "payee": "PC3",
        },
        {
            "account": "PC3",
            "received": "72000.00",
            "passed_on": "64800.00",
            "share": "0.9000",
            "kept": "7200.00",
            "held_hours": "1.00",
            "payee": "PC4",
        },
    ]
    assert (ev["origin"], ev["end"], ev["hop_count"], ev["span_hours"]) == ("PC0", "PC4", 4, "3.00")
    assert (ev["sent"], ev["arrived"], ev["peeled"]) == ("100000.00", "64800.00", "35200.00")
    assert (ev["lowest_share"], ev["lowest_share_account"]) == ("0.8000", "PC2")
    # of two equal shares, the first in the chain
    assert (ev["highest_share"], ev["highest_share_account"]) == ("0.9000", "PC1")
    assert ev["sample_txn_ids"] == ["PC01", "PC02", "PC03", "PC04"]
    th = ev["thresholds"]
    assert (th["min_hops"], th["max_hops"], th["min_passed_pct"], th["max_passed_pct"]) == (
        4,
        12,
        70,
        99,
    )
    assert (th["window_hours"], th["max_search_steps"], th["min_payment"]) == (72, 5000, "10000")
    assert ev["baseline"] == {
        "currency": "CNY",
        "counted_from": "10000.00",
        "absolute_floor": "10000.00",
    }
    assert a.summary == (
        "100000.00 yuan left account PC0 and 64800.00 yuan reached account PC4 through 3 "
        "account(s) in 4 transfers within 3.00 hours, each passing on 70-99 % of its one receipt "
        "as one payment (lowest 0.8000, account PC2), in transfers of at least 10000.00 yuan."
    )


def test_clean_everyday_payments_do_not_alert():
    assert run(PeelChain(), background(), finish=True) == []
    assert alerts(background()) == []


def test_three_transfers_are_too_few_four_are_a_chain():
    assert alerts(walk(3)) == []
    assert shape(alerts(walk(4))) == [("W00", 1, 4, ["W01", "W02", "W03", "W04"])]


def test_a_chain_of_twelve_transfers_is_one_alert_grown_from_its_fourth():
    got = alerts(walk(12))
    ids = [f"W{i:02d}" for i in range(1, 13)]
    assert shape(got) == [("W00", 1, 4, ids[:4]), ("W00", 2, 12, ids)]
    assert {a.alert_id for a in got} == {make_alert_id("peel_chain", "W00", T + 3 * HOUR_MS)}
    assert (got[1].amount, got[1].last_ts) == ("100000.00", iso_at(T + 11 * HOUR_MS))


def test_a_thirteenth_transfer_goes_beyond_the_trace_and_adds_nothing():
    got = alerts(walk(13))
    ids = [f"W{i:02d}" for i in range(1, 13)]
    assert shape(got) == [("W00", 1, 4, ids[:4]), ("W00", 2, 12, ids)]
    # a longer trace takes it in
    assert shape(alerts(walk(13), cfg(max_hops=13)))[-1][2] == 13


@pytest.mark.parametrize(
    ("passed", "n"),
    [
        ("63000", 1),  # PC2 passes on 70 % of 90,000
        ("62999.99", 0),  # 69.99999 %
        ("62100", 0),  # 69 %
        ("89100", 1),  # 99 %
        ("89100.01", 0),  # 99.00001 %
        ("90000", 0),  # 100 %: passed on whole
    ],
    ids=["70%", "under-70%", "69%", "99%", "over-99%", "100%"],
)
def test_each_side_of_the_pass_on_band(passed, n):
    # PC3 passes on 90 % of what it got
    after = f"{int(float(passed) * 0.9)}"
    assert len(alerts(peel("100000", "90000", passed, after))) == n


def test_the_band_is_a_setting():
    assert alerts(peel(), cfg(min_passed_pct=81)) == []  # PC2 passes on 80 %
    assert alerts(peel(), cfg(max_passed_pct=89)) == []  # PC1 and PC3 pass on 90 %
    assert len(alerts(peel(), cfg(min_passed_pct=80, max_passed_pct=90))) == 1


def test_first_to_last_transfer_within_the_window():
    # 24 hours a hop: the last exactly 72 h after the first is in (the
    # window's start is inclusive), 1 ms more is out.
    spread = peel(step=24 * HOUR_MS)
    assert spread[-1].ts - spread[0].ts == 72 * HOUR_MS
    assert [a.amount for a in alerts(spread)] == ["100000.00"]
    just_out = [msgspec.structs.replace(spread[0], ts=T - 1), *spread[1:]]
    assert alerts(just_out) == []
    assert alerts(spread, cfg(window_hours=71)) == []


def test_an_account_with_a_second_counted_receipt_is_no_relay():
    other = clearing("X1", T + 90 * MINUTE_MS, "X", "PC2", "20000")
    assert alerts(sorted([*peel(), other], key=lambda r: r.ts)) == []
    # after it paid on, but within the window: still its second receipt
    later = clearing("X2", T + 150 * MINUTE_MS, "X", "PC1", "20000")
    assert alerts(sorted([*peel(), later], key=lambda r: r.ts)) == []


def test_receipts_before_the_window_or_below_the_floor_do_not_count():
    before = clearing("X1", T + 3 * HOUR_MS - 72 * HOUR_MS - 1, "X", "PC2", "20000")
    small = clearing("X2", T + 90 * MINUTE_MS, "X", "PC2", "9999.99")
    assert len(alerts(sorted([before, *peel(), small], key=lambda r: r.ts))) == 1
    # 1 ms later it is inside the window: PC2's second receipt, no relay.
    inside = msgspec.structs.replace(before, ts=before.ts + 1)
    assert alerts(sorted([inside, *peel(), small], key=lambda r: r.ts)) == []


def test_an_account_paying_two_accounts_or_in_two_payments_is_no_relay():
    # PC1 passes on 80 % to PC2 as the chain would, and 15,000 to Y besides
    side = clearing("Y1", T + 90 * MINUTE_MS, "PC1", "Y", "15000")
    assert (
        alerts(sorted([*peel("100000", "80000", "72000", "64800"), side], key=lambda r: r.ts)) == []
    )
    # the same 15,000 to PC2 as a second payment
    again = msgspec.structs.replace(side, payee_account="PC2")
    assert (
        alerts(sorted([*peel("100000", "80000", "72000", "64800"), again], key=lambda r: r.ts))
        == []
    )
    # below the floor, it is not a payment that counts
    small = msgspec.structs.replace(side, amount=999_999)
    assert (
        len(alerts(sorted([*peel("100000", "80000", "72000", "64800"), small], key=lambda r: r.ts)))
        == 1
    )


def test_payments_before_the_receipt_or_below_the_floor_do_not_count():
    before = clearing("Y1", T - HOUR_MS, "PC2", "Y", "50000")  # not the chain's money
    small = clearing("Y2", T + 150 * MINUTE_MS, "PC2", "Y", "9999.99")
    [a] = alerts(sorted([before, *peel(), small], key=lambda r: r.ts))
    assert a.evidence["hop_count"] == 4


def test_a_transfer_below_the_floor_breaks_the_chain():
    assert alerts(peel("100000", "90000", "72000", "9999.99")) == []
    assert len(alerts(peel("100000", "90000", "72000", "64800"), cfg(min_payment="64800"))) == 1
    assert alerts(peel("100000", "90000", "72000", "64800"), cfg(min_payment="64800.01")) == []


def test_money_back_at_its_origin_is_a_loop_not_a_chain():
    loop = chain(["PC0", "PC1", "PC2", "PC3", "PC0"], list(PEEL[1]), start=T)
    assert alerts(loop) == []
    # a fifth account instead: a chain
    assert len(alerts(chain([*PEEL[0][:4], "PC9"], list(PEEL[1]), start=T))) == 1


def test_paid_on_before_it_was_received_is_not_passed_on():
    # PC3 pays PC4 first, then PC2 pays PC3, ...
    backwards = [msgspec.structs.replace(r, ts=T + (3 - i) * HOUR_MS) for i, r in enumerate(peel())]
    assert alerts(sorted(backwards, key=lambda r: r.ts)) == []
    out_of_step = [*peel()[:2], msgspec.structs.replace(peel()[2], ts=T + 30 * MINUTE_MS)]
    assert alerts(sorted([*out_of_step, peel()[3]], key=lambda r: r.ts)) == []


def test_the_first_and_last_accounts_may_pay_and_receive_as_they_like():
    busy = [
        clearing("O1", T - HOUR_MS, "X", "PC0", "500000"),
        clearing("O2", T + 30 * MINUTE_MS, "PC0", "Y", "200000"),
        clearing("O3", T + 4 * HOUR_MS, "PC4", "Y", "64800"),
        clearing("O4", T + 4 * HOUR_MS, "PC4", "Z", "64800"),
    ]
    got = alerts(sorted([*busy, *peel()], key=lambda r: r.ts))
    assert shape(got) == [("PC0", 1, 4, ["PC01", "PC02", "PC03", "PC04"])]


def test_a_chain_longer_than_the_window_is_seen_as_its_stretches():
    # 20 hours a hop: transfers 1-4 within 72 h, then 2-5 (the first is out)
    got = alerts(walk(5, step=20 * HOUR_MS))
    assert shape(got) == [
        ("W00", 1, 4, ["W01", "W02", "W03", "W04"]),
        ("W01", 1, 4, ["W02", "W03", "W04", "W05"]),
    ]


def test_a_dump_booking_one_time_a_day_gives_the_whole_chain_once():
    # Every transfer booked at one time, in the stream last hop first.
    day = [msgspec.structs.replace(r, ts=at(2)) for r in reversed(walk(6))]
    got = alerts(day)
    assert shape(got) == [("W00", 1, 6, ["W01", "W02", "W03", "W04", "W05", "W06"])]
    assert alerts([*day, clearing("NEXT", at(3), "X", "Y", "1")]) == got
    # first transfer first: the same
    assert alerts(day[::-1]) == got


def test_a_loop_booked_at_one_time_gives_the_chains_an_hourly_one_gives():
    hourly = chain(
        ["A", "B", "C", "D", "E", "A"], ["100000", "90000", "81000", "72900", "65610"], start=T
    )
    want = [
        ("A", 1, 4, ["PC01", "PC02", "PC03", "PC04"]),
        ("B", 1, 4, ["PC02", "PC03", "PC04", "PC05"]),
    ]
    assert shape(alerts(hourly)) == want
    day = [msgspec.structs.replace(r, ts=at(2)) for r in hourly]
    assert sorted(shape(alerts(day))) == want


def test_a_late_transfer_within_the_lateness_gives_the_same_alert():
    def through_the_engine(recs):
        eng = Engine(ABSOLUTE, detectors=["peel_chain"])
        return [a for r in recs for a in eng.submit(r)] + eng.finish()

    recs = [*background(), *peel(start=at(4, 9))]
    want = through_the_engine(recs)
    # seen from its third transfer (the dump's top 1 %), grown by its fourth
    assert shape(want) == [
        ("PC0", 1, 3, ["PC01", "PC02", "PC03"]),
        ("PC0", 2, 4, ["PC01", "PC02", "PC03", "PC04"]),
    ]
    late = [*recs[:-3], recs[-2], recs[-3], recs[-1]]  # PC02 after PC03
    shuffled, tail = recs[:-40], recs[-40:]
    random.Random(7).shuffle(tail)
    shuffled += tail  # the last 36 everyday payments and the chain, within 12 hours
    for order in (late, shuffled):
        assert order != recs
        assert through_the_engine(order) == want


def test_the_search_budget_bounds_it():
    # From PC3: each of 3 relays' receipt (1) and what its check reads (2): 9 transfers.
    [a] = alerts(peel(), cfg(max_search_steps=9))
    assert a.alert_id == alerts(peel())[0].alert_id
    assert alerts(peel(), cfg(max_search_steps=8)) == []
    # PC0's own receipt is a tenth to examine (it passes on 20 % of it: the chain's first)
    funded = [clearing("X1", T - HOUR_MS, "X", "PC0", "500000"), *peel()]
    assert shape(alerts(funded, cfg(max_search_steps=10)))[0][0] == "PC0"
    assert alerts(funded, cfg(max_search_steps=9)) == []


def test_against_the_dump_a_payment_counts_from_its_90th_percentile():
    bg = background()
    *_, a = run(PeelChain(), [*bg, *peel(start=at(4, 9))], finish=True)
    assert a.evidence["hop_count"] == 4
    assert a.evidence["baseline"] == {
        "currency": "CNY",
        "counted_from": "4587.52",
        "percentile": 90,
        "payments_seen": 403,
    }
    # Before 200 payments are seen nothing counts.
    assert run(PeelChain(), [*bg[:150], *peel(start=at(4, 9))], finish=True) == []


def short(*amounts: str, config=None, samples: int = 400):
    """``samples`` everyday payments, then a chain S0 -> S1 -> ... of
    ``amounts`` an hour apart, through the defaults (or ``config``)."""
    accounts = [f"S{i}" for i in range(len(amounts) + 1)]
    recs = [*background(samples), *chain(accounts, list(amounts), start=at(4, 9), prefix="S")]
    return run(PeelChain(config), recs, finish=True)


def test_three_transfers_from_the_dumps_top_percent_are_a_chain():
    # background(): the 99th percentile 5,079.04 yuan, the 90th 4,587.52
    [a] = short("6000", "5600", "5079.04")
    ev = a.evidence
    assert (a.subject_id, ev["hop_count"], ev["sample_txn_ids"]) == ("S0", 3, ["S01", "S02", "S03"])
    assert ev["short_chain"] == {"shorter_than": 4, "percentile": 99, "counted_from": "5079.04"}
    assert ev["baseline"] == {
        "currency": "CNY",
        "counted_from": "4587.52",
        "percentile": 90,
        "payments_seen": 402,
    }
    assert (ev["thresholds"]["min_short_hops"], ev["thresholds"]["short_payment_pct"]) == (3, 99)
    assert a.summary == (
        "6000.00 yuan left account S0 and 5079.04 yuan reached account S3 through 2 account(s) "
        "in 3 transfers within 2.00 hours, each passing on 70-99 % of its one receipt as one "
        "payment (lowest 0.9070, account S2), in transfers of at least 5079.04 yuan (the dump's "
        "99th percentile: fewer than 4 transfers)."
    )
    # one fen under the percentile: too few transfers for payments this size
    assert short("6000", "5600", "5079.03") == []
    # a fourth transfer makes it a chain at the 90th percentile, with no short-chain figure
    [a] = short("6000", "5600", "5079.03", "4700")
    assert (a.evidence["hop_count"], "short_chain" in a.evidence) == (4, False)
    assert a.summary.endswith("in transfers of at least 4587.52 yuan.")


def test_three_transfers_under_the_top_percent_are_too_few():
    assert short("5500", "5200", "4900") == []  # 4,900 yuan: over the 90th, under the 99th
    assert [a.evidence["hop_count"] for a in short("5500", "5200", "4900", "4700")] == [4]


def test_the_short_chain_is_a_setting():
    def peel_cfg(**settings):
        return load_config(overrides={"peel_chain": settings})

    big = ("6000", "5600", "5100")
    assert len(short(*big)) == 1
    assert short(*big, config=peel_cfg(short_payment_pct=0)) == []
    assert short(*big, config=peel_cfg(min_short_hops=4)) == []
    # two transfers: off by default, on from min_short_hops 2
    assert short("6000", "5600") == []
    [a] = short("6000", "5600", config=peel_cfg(min_short_hops=2))
    assert (a.evidence["hop_count"], a.evidence["short_chain"]["shorter_than"]) == (2, 4)
    # The 99th percentile is the dump's, with absolute floors too (10,000 yuan here): before
    # 200 payments are seen no short chain counts, the absolute floor alone counting payments.
    large = ("60000", "56000", "51000")
    assert [a.evidence["hop_count"] for a in short(*large, config=ABSOLUTE)] == [3]
    assert short(*large, config=ABSOLUTE, samples=150) == []
    assert short(*big, samples=150) == []


def test_a_chain_in_another_currency_is_judged_in_its_own():
    usd = [msgspec.structs.replace(r, currency="USD") for r in peel()]
    [a] = alerts(usd)
    assert (a.amount, a.evidence["baseline"]["currency"], a.summary.split()[1]) == (
        "100000.00",
        "USD",
        "USD",
    )
    # one hop in USD, the rest in yuan: no chain in either
    mixed = [*peel()[:2], msgspec.structs.replace(peel()[2], currency="USD"), peel()[3]]
    assert alerts(mixed) == []


def test_salaries_spent_at_shops_do_not_alert():
    # The firm gets its payroll (one receipt) and pays three salaries; each
    # employee spends 80 % of it at four shops.
    recs = [clearing("PAY", T, "TREASURY", "FIRM", "90000")]
    for i in range(3):
        recs.append(clearing(f"SAL{i}", T + HOUR_MS, "FIRM", f"EMP{i}", "30000"))
        recs += [
            clearing(f"BUY{i}{j}", T + (2 + j) * HOUR_MS, f"EMP{i}", f"SHOP{j}", "6000")
            for j in range(4)
        ]
    assert alerts(sorted(recs, key=lambda r: r.ts)) == []
    # the same money paid on whole to one account each time: a chain
    one = chain(
        ["TREASURY", "FIRM", "EMP0", "SHOP0", "SHOP9"],
        ["90000", "80000", "70000", "60000"],
        start=T,
    )
    assert len(alerts(one)) == 1


def test_a_supply_chain_keeping_margins_or_taking_days_does_not_alert():
    firms = ["F0", "F1", "F2", "F3", "F4", "F5"]
    margins = chain(firms, ["1000000", "500000", "250000", "125000", "62500"], start=T)
    assert alerts(margins) == []  # each passes on 50 %
    slow = chain(
        firms, ["1000000", "900000", "810000", "729000", "656100"], start=T, step=4 * DAY_MS
    )
    assert alerts(slow) == []
    # the same amounts within hours: a chain, seen first from its fourth transfer
    fast = alerts(chain(firms, ["1000000", "900000", "810000", "729000", "656100"], start=T))
    assert [(a.subject_id, a.revision, a.evidence["hop_count"]) for a in fast] == [
        ("F0", 1, 4),
        ("F0", 2, 5),
    ]


def test_bad_settings_are_refused_by_name():
    refused = [
        (
            {"min_hops": 5, "max_hops": 4},
            "peel_chain.min_hops must be <= peel_chain.max_hops, got 5 > 4",
        ),
        ({"min_hops": 1}, "peel_chain.min_hops must be >= 2, got 1"),
        ({"max_hops": 25}, "peel_chain.max_hops must be <= 24, got 25"),
        (
            {"min_passed_pct": 95, "max_passed_pct": 90},
            "peel_chain.min_passed_pct must be <= peel_chain.max_passed_pct",
        ),
        ({"max_passed_pct": 101}, "peel_chain.max_passed_pct must be <= 100, got 101"),
        ({"min_passed_pct": 0}, "peel_chain.min_passed_pct must be >= 1, got 0"),
        ({"max_search_steps": 0}, "peel_chain.max_search_steps must be >= 1, got 0"),
        ({"window_hours": 0}, "peel_chain.window_hours must be >= 1, got 0"),
        ({"min_payment": "-1"}, "peel_chain.min_payment must be a non-negative amount"),
        ({"min_payment_pct": 100}, "peel_chain.min_payment_pct must be <= 99, got 100"),
        (
            {"min_short_hops": 5},
            "peel_chain.min_short_hops must be <= peel_chain.min_hops, got 5 > 4",
        ),
        ({"min_short_hops": 1}, "peel_chain.min_short_hops must be >= 2, got 1"),
        ({"short_payment_pct": 100}, "peel_chain.short_payment_pct must be <= 99, got 100"),
    ]
    for settings, message in refused:
        with pytest.raises(ValueError, match=message):
            load_config(overrides={"peel_chain": settings})
