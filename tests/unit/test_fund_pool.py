"""fund_pool on hand-made custody ledgers: the rule of docs/detectors.md, each
threshold from just under to just over, and the alert's life (re-emission).

Every ledger is platform P of :func:`ledger.p2p_platform`: custody master
POOL, own account OWN, affiliates' accounts X1 and X2, lenders Lnn and
borrowers Bnn. Default thresholds: 20 sources, 1,000,000 yuan, 50 %
pass-through, 7 days, 5 % fees, 10,000 yuan of idle money.
"""

from __future__ import annotations

import pytest
from ledger import (
    DAY_MS,
    MINUTE_MS,
    SECOND_MS,
    account,
    at,
    borrowers,
    custody,
    entity,
    iso_at,
    lenders,
    numbered,
    p2p_platform,
    run,
)

from fundflow.detectors import FundPool, load_config
from fundflow.detectors.alerting import make_alert_id

SETUP = [*p2p_platform(), *lenders(25), *borrowers(4)]
THRESHOLDS = load_config().thresholds("fund_pool")


def invests(
    sources: list[str],
    each: str,
    *,
    start: int = at(0, 9),
    step: int = MINUTE_MS,
    into: str = "POOL",
    purpose: str = "invest",
    prefix: str = "IN",
):
    """One payment from each source into ``into``, ``step`` apart."""
    return [
        custody(f"{prefix}{i + 1:02d}", start + i * step, src, into, each, purpose)
        for i, src in enumerate(sources)
    ]


def payouts(amounts: list[str], *, start: int = at(1, 10), src: str = "POOL", prefix: str = "OUT"):
    """``src`` disburses each amount to the next borrower, a minute apart."""
    return [
        custody(
            f"{prefix}{i + 1}",
            start + i * MINUTE_MS,
            src,
            f"B{i + 1:02d}",
            amt,
            "disburse",
            loan=f"LN{i + 1}",
        )
        for i, amt in enumerate(amounts)
    ]


def pool_id(episode_ts: int) -> str:
    return make_alert_id("fund_pool", "P", "gather_scatter", episode_ts)


def pinned(alert) -> tuple:
    return (
        alert.alert_id,
        alert.detector,
        alert.subject_id,
        alert.severity,
        alert.amount,
        alert.revision,
    )


def detector(**overrides) -> FundPool:
    cfg = load_config(overrides={"fund_pool": overrides}) if overrides else None
    return FundPool(cfg)


# -- clean and violating --------------------------------------------------------


def test_custody_flows_of_an_intermediary_do_not_alert():
    # Twenty lenders fund named loans straight into the borrowers' sub-accounts,
    # pay a 1 % service fee, and the borrowers repay them straight back.
    stream = list(SETUP)
    for i, lender in enumerate(numbered("L", 20)):
        b = f"B{i % 4 + 1:02d}"
        stream.append(
            custody(f"INV{i}", at(0, 9, i), lender, b, "60000", "invest", loan=f"LN{i % 4 + 1}")
        )
        stream.append(custody(f"FEE{i}", at(0, 10, i), lender, "OWN", "600", "fee"))
    for i, lender in enumerate(numbered("L", 20)):
        b = f"B{i % 4 + 1:02d}"
        stream.append(
            custody(f"REP{i}", at(5, 9, i), b, lender, "60500", "repay", loan=f"LN{i % 4 + 1}")
        )
    det = FundPool()
    assert run(det, stream, finish=True) == []
    det.advance(at(30))
    assert det.drain() == []


def test_gather_then_scatter_alerts_once_with_its_evidence():
    stream = [*SETUP, *invests(numbered("L", 20), "50000"), *payouts(["250000"] * 4)]
    det = FundPool()
    alerts = run(det, stream)
    # The rule is met when the second payout takes the pass-through to 50 %;
    # the third and fourth add no inflow, so nothing more is said.
    assert len(alerts) == 1
    a = alerts[0]
    met = at(1, 10, 1)
    assert (a.alert_id, a.detector, a.subject_id, a.severity, a.amount, a.revision) == (
        pool_id(met),
        "fund_pool",
        "P",
        "medium",
        "1000000.00",
        1,
    )
    assert a.accounts == ("POOL",)
    assert (a.first_ts, a.last_ts) == (iso_at(at(0, 9)), iso_at(met))
    ev = a.evidence
    assert ev["signal"] == "gather_scatter"
    assert ev["pool_accounts"] == ["POOL"]
    assert (ev["distinct_sources"], ev["distinct_sinks"]) == (20, 2)
    assert (ev["inflow"], ev["outflow"], ev["pass_through_ratio"]) == (
        "1000000.00",
        "500000.00",
        "0.5000",
    )
    assert (ev["window_start"], ev["window_end"]) == (iso_at(met - 7 * DAY_MS), iso_at(met))
    # Up to 20 samples, the payouts among them.
    assert ev["sample_txn_ids"] == numbered("IN", 18) + ["OUT1", "OUT2"]
    assert ev["thresholds"] == THRESHOLDS
    assert "P" in a.summary and "1000000.00" in a.summary


def test_finish_states_the_last_window_under_the_same_id():
    stream = [*SETUP, *invests(numbered("L", 20), "50000"), *payouts(["250000"] * 4)]
    det = FundPool()
    first = run(det, stream)
    last = det.finish().drain()
    assert len(first) == 1 and len(last) == 1
    a = last[0]
    assert (a.alert_id, a.revision, a.severity, a.amount) == (
        first[0].alert_id,
        2,
        "medium",
        "1000000.00",
    )
    assert a.last_ts == iso_at(at(1, 10, 3))
    assert (
        a.evidence["outflow"],
        a.evidence["pass_through_ratio"],
        a.evidence["distinct_sinks"],
    ) == (
        "1000000.00",
        "1.0000",
        4,
    )
    # Finishing again says nothing new.
    assert det.finish().drain() == []


# -- thresholds ---------------------------------------------------------------


@pytest.mark.parametrize("distinct, expected", [(19, 0), (20, 1)])
def test_min_sources_counts_distinct_lender_accounts(distinct, expected):
    # Always 20 payments of 60,000 (1,200,000 yuan); with 19 accounts L01 pays twice.
    sources = numbered("L", distinct)
    sources += ["L01"] * (20 - distinct)
    stream = [*SETUP, *invests(sources, "60000"), *payouts(["600000", "600000"])]
    alerts = run(FundPool(), stream)
    assert len(alerts) == expected
    if expected:
        assert pinned(alerts[0]) == (
            pool_id(at(1, 10)),
            "fund_pool",
            "P",
            "medium",
            "1200000.00",
            1,
        )
        assert alerts[0].evidence["distinct_sources"] == 20


@pytest.mark.parametrize(
    "last, inflow, expected", [("49999.99", "999999.99", 0), ("50000.00", "1000000.00", 1)]
)
def test_min_inflow(last, inflow, expected):
    gathers = invests(numbered("L", 19), "50000") + invests(
        ["L20"], last, start=at(0, 10), prefix="LAST"
    )
    stream = [*SETUP, *gathers, *payouts([inflow])]
    alerts = run(FundPool(), stream)
    assert len(alerts) == expected
    if expected:
        a = alerts[0]
        assert pinned(a) == (pool_id(at(1, 10)), "fund_pool", "P", "medium", inflow, 1)
        assert (a.evidence["inflow"], a.evidence["outflow"]) == (inflow, inflow)
        assert a.evidence["pass_through_ratio"] == "1.0000"


@pytest.mark.parametrize(
    "paid, ratio, expected", [("499900.00", "0.4999", 0), ("500000.00", "0.5000", 1)]
)
def test_min_pass_through(paid, ratio, expected):
    stream = [*SETUP, *invests(numbered("L", 20), "50000"), *payouts([paid])]
    alerts = run(FundPool(), stream)
    assert len(alerts) == expected
    if expected:
        assert pinned(alerts[0]) == (
            pool_id(at(1, 10)),
            "fund_pool",
            "P",
            "medium",
            "1000000.00",
            1,
        )
        assert (alerts[0].evidence["outflow"], alerts[0].evidence["pass_through_ratio"]) == (
            paid,
            ratio,
        )


@pytest.mark.parametrize(
    "spread, expected",
    [(7 * DAY_MS - SECOND_MS, 1), (7 * DAY_MS + SECOND_MS, 0)],
    ids=["under_7d", "over_7d"],
)
def test_window_holds_sources_spread_over_seven_days(spread, expected):
    # 20 lenders, 60,000 each, the first at T0 and the last `spread` later;
    # the pool pays everything out at the moment of the last one.
    gathers = [
        custody(f"IN{i + 1:02d}", at(0) + spread * i // 19, lender, "POOL", "60000", "transfer")
        for i, lender in enumerate(numbered("L", 20))
    ]
    stream = [*SETUP, *gathers, *payouts(["1200000"], start=at(0) + spread)]
    alerts = run(FundPool(), stream)
    assert len(alerts) == expected
    if expected:
        a = alerts[0]
        assert pinned(a) == (pool_id(at(0) + spread), "fund_pool", "P", "medium", "1200000.00", 1)
        assert a.evidence["distinct_sources"] == 20
        assert (a.first_ts, a.last_ts) == (iso_at(at(0)), iso_at(at(0) + spread))


@pytest.mark.parametrize("fee, expected", [("49000.00", 0), ("49000.01", 1)])
def test_fees_within_five_percent_of_the_invested_amount_are_not_pool_money(fee, expected):
    # 980,000 yuan invested and paid on in full; a fee of 5 % (49,000) is an
    # ordinary charge, a fee above it is lender money gathered by the platform.
    stream = [*SETUP, *invests(numbered("L", 20), "49000"), *payouts(["490000", "490000"])]
    stream.append(custody("FEE", at(1, 12), "L01", "OWN", fee, "fee"))
    alerts = run(FundPool(), stream)
    assert len(alerts) == expected
    if expected:
        a = alerts[0]
        assert (a.amount, a.severity) == ("1029000.01", "medium")
        assert a.alert_id == pool_id(at(1, 12))
        assert (a.evidence["inflow"], a.evidence["outflow"], a.evidence["pass_through_ratio"]) == (
            "1029000.01",
            "980000.00",
            "0.9524",
        )
        assert a.evidence["pool_accounts"] == ["POOL", "OWN"]


# -- idle investor money ----------------------------------------------------------


@pytest.mark.parametrize("amount, expected", [("9999.99", 0), ("10000.00", 1)])
def test_idle_investor_money_threshold(amount, expected):
    stream = [*SETUP, custody("WAIT", at(0, 10), "L01", "POOL", amount, "invest", product="PR1")]
    det = FundPool()
    assert run(det, stream) == []
    det.advance(at(7, 11))
    alerts = det.drain()
    assert len(alerts) == expected
    if expected:
        a = alerts[0]
        assert (a.alert_id, a.subject_id, a.severity, a.amount, a.revision) == (
            make_alert_id("fund_pool", "P", "idle_investor_money", "POOL", at(0, 10)),
            "P",
            "low",
            "10000.00",
            1,
        )
        assert a.accounts == ("POOL",)
        assert (a.first_ts, a.last_ts) == (iso_at(at(0, 10)), iso_at(at(7, 11)))
        assert a.evidence["stranded"] == "10000.00"
        assert a.evidence["sample_txn_ids"] == ["WAIT"]


def test_idle_money_is_looked_at_only_once_it_is_older_than_the_window():
    det = FundPool()
    run(det, [*SETUP, custody("WAIT", at(0, 10), "L01", "POOL", "50000", "invest")])
    det.advance(at(7, 9))
    assert det.drain() == []
    det.advance(at(7, 11))
    assert [a.amount for a in det.drain()] == ["50000.00"]


def test_idle_money_paid_to_a_borrower_in_time_and_invest_with_a_loan_do_not_alert():
    stream = [
        *SETUP,
        custody("WAIT", at(0, 10), "L01", "POOL", "50000", "invest"),
        custody("NAMED", at(0, 11), "L02", "POOL", "50000", "invest", loan="LN7"),
        custody("PAID", at(6, 10), "POOL", "B01", "50000", "disburse", loan="LN1"),
    ]
    det = FundPool()
    assert run(det, stream) == []
    det.advance(at(30))
    assert det.finish().drain() == []


def test_idle_money_partly_paid_out_leaves_the_newest_lots_first_in_first_out():
    stream = [
        *SETUP,
        custody("W1", at(0, 10), "L01", "POOL", "30000", "invest"),
        custody("W2", at(0, 11), "L02", "POOL", "20000", "invest"),
        custody("PAID", at(1, 10), "POOL", "B01", "35000", "disburse", loan="LN1"),
    ]
    det = FundPool()
    run(det, stream)
    det.advance(at(8))
    alerts = det.drain()
    assert len(alerts) == 1
    assert alerts[0].amount == "15000.00"
    assert alerts[0].evidence["sample_txn_ids"] == ["W2"]
    assert alerts[0].alert_id == make_alert_id(
        "fund_pool", "P", "idle_investor_money", "POOL", at(0, 11)
    )


# -- following the money --------------------------------------------------------


@pytest.mark.parametrize("hops", [["X1"], ["X1", "X2"]], ids=["one_hop", "two_hops"])
def test_money_through_affiliates_accounts_is_followed_to_the_pool(hops):
    # Lenders pay an affiliate's account, which forwards the money (via a
    # second affiliate) to POOL; POOL pays the borrowers.
    stream = [*SETUP, *invests(numbered("L", 20), "50000", into=hops[0])]
    chain = [*hops, "POOL"]
    for i in range(len(hops)):
        stream.append(
            custody(f"HOP{i + 1}", at(1, 8, i), chain[i], chain[i + 1], "1000000", "transfer")
        )
    stream += payouts(["250000"] * 4)
    alerts = run(FundPool(), stream)
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.alert_id, a.severity, a.amount) == (pool_id(at(1, 10, 1)), "medium", "1000000.00")
    assert (a.evidence["distinct_sources"], a.evidence["outflow"]) == (20, "500000.00")
    # The account that gathered and the account that paid out are both named.
    assert a.evidence["pool_accounts"] == [hops[0], "POOL"]


def test_money_through_an_unrelated_account_is_not_lender_money_in_the_pool():
    stream = [*SETUP, *invests(numbered("L", 20), "50000", into="XO")]
    stream.append(custody("HOP", at(1, 8), "XO", "POOL", "1000000", "transfer"))
    stream += payouts(["250000"] * 4)
    assert run(FundPool(), stream, finish=True) == []


def test_lenders_paying_a_borrower_directly_for_a_named_loan_never_alert():
    stream = [
        *SETUP,
        *(
            custody(f"D{i:02d}", at(0, 9, i), lender, "B01", "100000", "invest", loan="LN1")
            for i, lender in enumerate(numbered("L", 25))
        ),
    ]
    det = FundPool()
    assert run(det, stream, finish=True) == []
    det.advance(at(30))
    assert det.drain() == []


def test_the_platforms_own_money_paid_out_is_not_pass_through():
    # Lender money sits in POOL; the borrowers are paid from OWN, which holds
    # no lender money.
    stream = [*SETUP, *invests(numbered("L", 20), "50000"), *payouts(["250000"] * 4, src="OWN")]
    assert run(FundPool(), stream, finish=True) == []


def test_lender_money_moved_to_the_own_account_and_paid_out_is_pass_through():
    stream = [*SETUP, *invests(numbered("L", 20), "50000")]
    stream.append(custody("MOVE", at(1, 8), "POOL", "OWN", "1000000", "transfer"))
    stream += payouts(["250000"] * 4, src="OWN")
    alerts = run(FundPool(), stream)
    assert [(a.amount, a.evidence["outflow"]) for a in alerts] == [("1000000.00", "500000.00")]


def test_an_unrelated_platforms_flows_are_not_counted_for_p():
    other = [
        entity("Q", "p2p_platform"),
        account("QPOOL", "Q", "platform_custody", platform="Q"),
        *lenders(20, pid="Q", start=51),
    ]
    stream = [*SETUP, *other]
    stream += [
        custody(f"Q{i:02d}", at(0, 9, i), lender, "QPOOL", "50000", "invest", platform="Q")
        for i, lender in enumerate(numbered("L", 20, start=51))
    ]
    stream += [
        custody("QOUT", at(1, 10), "QPOOL", "B01", "1000000", "disburse", platform="Q", loan="LQ")
    ]
    alerts = run(FundPool(), stream)
    assert [(a.subject_id, a.amount) for a in alerts] == [("Q", "1000000.00")]
    assert alerts[0].alert_id == make_alert_id("fund_pool", "Q", "gather_scatter", at(1, 10))


# -- an alert that grows --------------------------------------------------------


def _alerted_pool() -> tuple[FundPool, str]:
    det = FundPool()
    alerts = run(det, [*SETUP, *invests(numbered("L", 20), "50000"), *payouts(["250000"] * 4)])
    assert len(alerts) == 1
    return det, alerts[0].alert_id


def test_growth_under_ten_percent_is_not_said_again_and_ten_percent_is():
    det, aid = _alerted_pool()
    det.update(custody("MORE1", at(2, 9), "L21", "POOL", "50000", "invest"))
    det.update(custody("MORE2", at(2, 10), "L22", "POOL", "49999.99", "invest"))
    assert det.drain() == []  # 9.99999 % more
    det.update(custody("MORE3", at(2, 11), "L23", "POOL", "0.01", "invest"))
    alerts = det.drain()
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.alert_id, a.revision, a.severity, a.amount) == (aid, 2, "medium", "1100000.00")
    assert a.evidence["distinct_sources"] == 23
    assert a.last_ts == iso_at(at(2, 11))


def test_a_rising_severity_is_said_again_without_ten_percent_growth():
    det = detector(severity_high="1050000")
    alerts = run(det, [*SETUP, *invests(numbered("L", 20), "50000"), *payouts(["250000"] * 4)])
    assert [(a.severity, a.revision) for a in alerts] == [("medium", 1)]
    det.update(custody("MORE1", at(2, 9), "L21", "POOL", "49999.99", "invest"))
    assert det.drain() == []
    det.update(custody("MORE2", at(2, 10), "L22", "POOL", "0.01", "invest"))
    again = det.drain()
    assert [(a.alert_id, a.severity, a.revision, a.amount) for a in again] == [
        (alerts[0].alert_id, "high", 2, "1050000.00")
    ]


def test_a_new_pool_after_a_quiet_window_is_a_new_alert():
    det, aid = _alerted_pool()
    later = invests(numbered("L", 20), "50000", start=at(20, 9), prefix="NEW")
    later += payouts(["500000", "500000"], start=at(21, 10), prefix="NOUT")
    alerts = run(det, later)
    gathers = [a for a in alerts if a.evidence["signal"] == "gather_scatter"]
    # The first pool's episode ended a window after its last payout: its
    # final revision (the later payouts moved its last time) comes first.
    assert [(a.alert_id, a.revision, a.last_ts) for a in gathers] == [
        (aid, 2, iso_at(at(1, 10) + 3 * MINUTE_MS)),
        (pool_id(at(21, 10)), 1, iso_at(at(21, 10))),
    ]
    assert gathers[1].alert_id != aid
