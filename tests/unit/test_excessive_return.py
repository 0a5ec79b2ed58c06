"""excessive_return on hand-made ledgers: a promised rate against its peers
(median + k x MAD, the margin, the minimum of peers, term buckets), against
the loans it funds, and subsidies paid from the platform's own money.

Platform P of :func:`ledger.p2p_platform` (own account OWN, custody master
POOL), lenders L01-L02, borrower B01. Peers: five 30-day products of
platform Z at 7 %, 7.5 %, 8 %, 8 % and 8.5 %: median 8 %, MAD 0.5 %, so the
limit is 8 % + max(5 x 0.5 %, 3 %) = 11 %.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from ledger import (
    DAY_MS,
    at,
    borrowers,
    custody,
    iso_at,
    lenders,
    loan,
    p2p_platform,
    product,
    run,
)

from fundflow.detectors import ExcessiveReturn, load_config
from fundflow.detectors.alerting import make_alert_id
from fundflow.detectors.excessive_return import median

PEERS = [
    product(f"ZP{i}", 30, platform="Z", rate=r)
    for i, r in enumerate(("0.07", "0.075", "0.08", "0.08", "0.085"), start=1)
]
SETUP = [*p2p_platform(), *lenders(2), *borrowers(1), *PEERS]
THRESHOLDS = load_config().thresholds("excessive_return")


def detector(**overrides) -> ExcessiveReturn:
    cfg = load_config(overrides={"excessive_return": overrides}) if overrides else None
    return ExcessiveReturn(cfg)


def invest(txn: str, ts: int, product_id: str, amount: str = "10000", loan_id=None):
    return custody(txn, ts, "L01", "B01", amount, "invest", product=product_id, loan=loan_id)


def aid(signal: str, key: object) -> str:
    return make_alert_id("excessive_return", "P", signal, key)


@pytest.mark.parametrize(("rate", "alerted"), [("0.11", False), ("0.1101", True)])
def test_a_rate_above_median_plus_margin_alerts(rate, alerted):
    stream = [*SETUP, product("HI", 30, rate=rate), invest("I1", at(1, 9), "HI")]
    alerts = run(ExcessiveReturn(), stream, finish=True)
    assert len(alerts) == int(alerted)
    if not alerted:
        return
    (a,) = alerts
    assert (a.alert_id, a.subject_id, a.severity, a.amount) == (
        aid("rate_above_peers", "HI"),
        "P",
        "medium",
        "10000.00",
    )
    assert a.evidence == {
        "signal": "rate_above_peers",
        "product_id": "HI",
        "term_days": 30,
        "annual_rate": "0.1101",
        "term_bucket": "1-30 days",
        "peer_count": 5,
        "peer_median": "0.0800",
        "peer_mad": "0.0050",
        "limit": "0.1100",
        "peer_sample": ["ZP1", "ZP2", "ZP3", "ZP4", "ZP5"],
        "judged_at_txn_id": "I1",
        "invested_since": "10000.00",
        "first_seen": iso_at(at(1, 9)),
        "last_seen": iso_at(at(1, 9)),
        "sample_txn_ids": ["I1"],
        "thresholds": THRESHOLDS,
    }
    assert a.summary == (
        "Platform P promises 0.1101 a year on product HI (30 days), above the limit 0.1100 set "
        "by the median 0.0800 of 5 peer products (1-30 days); 10000.00 yuan invested in it."
    )


@pytest.mark.parametrize(("rate", "alerted"), [("0.105", False), ("0.1051", True)])
def test_the_mad_multiple_rules_when_it_is_wider_than_the_margin(rate, alerted):
    det = detector(min_margin_pct="0")  # limit 8 % + 5 x 0.5 % = 10.5 %
    stream = [*SETUP, product("HI", 30, rate=rate), invest("I1", at(1, 9), "HI")]
    assert len(run(det, stream, finish=True)) == int(alerted)


def test_too_few_peers_waits_for_more_and_judges_at_a_later_investment():
    stream = [
        *p2p_platform(),
        *lenders(2),
        *borrowers(1),
        *PEERS[:4],
        product("HI", 30, rate="0.20"),
        invest("I1", at(1, 9), "HI"),
    ]
    det = ExcessiveReturn()
    assert run(det, stream) == []
    alerts = run(det, [PEERS[4], invest("I2", at(2, 9), "HI", "5000")], finish=True)
    assert [(a.amount, a.evidence["judged_at_txn_id"]) for a in alerts] == [("5000.00", "I2")]


def test_a_product_judged_clean_stays_clean_and_a_flagged_one_grows():
    det = ExcessiveReturn()
    clean = [*SETUP, product("OK", 30, rate="0.09"), invest("I1", at(1, 9), "OK")]
    assert run(det, clean) == []
    # Later products with higher rates move the median; OK was judged already.
    later = [product(f"Y{i}", 30, platform="Y", rate="0.02") for i in range(9)]
    assert run(det, [*later, invest("I2", at(2, 9), "OK")]) == []
    flagged = [product("HI", 30, rate="0.30"), invest("I3", at(3, 9), "HI", "10000")]
    grown = [invest("I4", at(3, 10), "HI", "500"), invest("I5", at(3, 11), "HI", "1000")]
    alerts = run(det, [*flagged, *grown], finish=True)
    assert [(a.alert_id, a.amount, a.revision) for a in alerts] == [
        (aid("rate_above_peers", "HI"), "10000.00", 1),
        (aid("rate_above_peers", "HI"), "11500.00", 2),
    ]


def test_peers_are_products_of_the_same_term_bucket():
    stream = [*SETUP, product("LONG", 90, rate="0.20"), invest("I1", at(1, 9), "LONG")]
    assert run(ExcessiveReturn(), stream, finish=True) == []
    wider = detector(term_buckets_days=[90])
    (a,) = run(wider, stream, finish=True)
    assert a.evidence["term_bucket"] == "1-90 days"


def test_median_of_an_even_number_of_rates_is_the_mean_of_the_middle_two():
    assert median([Fraction(1), Fraction(4), Fraction(2), Fraction(3)]) == Fraction(5, 2)


@pytest.mark.parametrize(("loan_rate", "alerted"), [("0.10", False), ("0.0999", True)])
def test_a_product_paying_more_than_the_loan_it_funds(loan_rate, alerted):
    stream = [
        *SETUP,
        product("MID", 30, rate="0.10"),
        loan("LN1", 30, "30000", issued_at=at(1, 8), rate=loan_rate),
        invest("I1", at(1, 9), "MID", "30000", loan_id="LN1"),
    ]
    alerts = run(ExcessiveReturn(), stream, finish=True)
    assert len(alerts) == int(alerted)
    if alerted:
        (a,) = alerts
        assert (a.alert_id, a.severity, a.amount) == (
            aid("rate_above_loans", "MID"),
            "high",
            "30000.00",
        )
        assert a.evidence["loans"] == [{"loan_id": "LN1", "annual_rate": "0.0999"}]


def test_subsidies_from_own_money_alert_from_the_threshold():
    under = [
        *SETUP,
        custody("S1", at(1, 10), "OWN", "L01", "1000", "subsidy"),
        custody("S2", at(2, 10), "OWN", "L02", "999.99", "interest"),
        # Not counted: interest naming a loan, and a subsidy from the custody master.
        custody("S3", at(3, 10), "OWN", "L01", "500", "interest", loan="LN1"),
        custody("S4", at(3, 11), "POOL", "L01", "500", "subsidy"),
    ]
    assert run(ExcessiveReturn(), under, finish=True) == []
    over = [*under, custody("S5", at(4, 10), "OWN", "L02", "0.01", "subsidy")]
    (a,) = run(ExcessiveReturn(), over, finish=True)
    assert (a.alert_id, a.severity, a.amount, a.accounts) == (
        aid("own_money_subsidy", at(1, 10)),
        "medium",
        "2000.00",
        ("OWN",),
    )
    assert a.evidence["sample_txn_ids"] == ["S1", "S2", "S5"]
    assert a.evidence["lender_accounts"] == 2


def test_the_subsidy_window_forgets_old_payments():
    stream = [
        *SETUP,
        custody("S1", at(1, 10), "OWN", "L01", "1500", "subsidy"),
        custody("S2", at(1, 10) + 30 * DAY_MS, "OWN", "L01", "1500", "subsidy"),
    ]
    assert run(ExcessiveReturn(), stream, finish=True) == []
    inside = [*stream[:-1], custody("S2", at(1, 9) + 30 * DAY_MS, "OWN", "L01", "1500", "subsidy")]
    (a,) = run(ExcessiveReturn(), inside, finish=True)
    assert a.amount == "3000.00"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("term_buckets_days", [90, 30]),
        ("min_peers", 0),
        ("mad_multiplier", "-1"),
        ("min_margin_pct", "101"),
        ("subsidy_window_days", 0),
    ],
)
def test_bad_thresholds_are_refused(name, value):
    with pytest.raises(ValueError, match=f"excessive_return.{name}"):
        load_config(overrides={"excessive_return": {name: value}})
