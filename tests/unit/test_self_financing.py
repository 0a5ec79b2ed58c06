"""self_financing on hand-made custody ledgers: lender money reaching the
platform's related parties (hops, window, amount), a related borrower, the
look-through of ownership, and an honest executive paid from fee money.

Platform P of :func:`ledger.p2p_platform` (custody master POOL, own account
OWN, affiliates A1/A2 with accounts X1/X2, outsider XO), re-listed with an
executive E (personal account EP). A1 holds 0.8 of Z1 (account ZA); E
controls W02, the owner of borrower sub-account B02.
"""

from __future__ import annotations

import pytest
from ledger import (
    DAY_MS,
    MINUTE_MS,
    account,
    at,
    borrowers,
    custody,
    entity,
    iso_at,
    lenders,
    loan,
    p2p_platform,
    run,
)

from fundflow.detectors import SelfFinancing, load_config
from fundflow.detectors.alerting import make_alert_id

SETUP = [
    *p2p_platform(),
    entity(
        "P",
        "p2p_platform",
        licenses=("p2p_registered",),
        related=[("A1", "affiliate"), ("A2", "affiliate"), ("E", "executive")],
    ),
    entity("E", "person"),
    entity("A1", related=[("Z1", "subsidiary", "0.8")]),
    entity("W02", "person", related=[("E", "controller")]),
    account("EP", "E", "personal"),
    account("ZA", "Z1", "corporate"),
    *lenders(3),
    *borrowers(2),
    loan("LN1", 30, "50000", borrower="B01", issued_at=at(0, 8)),
    loan("LNX", 30, "15000", borrower="B02", issued_at=at(0, 8)),
]
THRESHOLDS = load_config().thresholds("self_financing")


def detector(**overrides) -> SelfFinancing:
    cfg = load_config(overrides={"self_financing": overrides}) if overrides else None
    return SelfFinancing(cfg)


def pinned(a) -> tuple:
    return (a.alert_id, a.subject_id, a.severity, a.amount, a.accounts, a.revision)


def account_id(account: str) -> str:
    return make_alert_id("self_financing", "P", "related_account", account)


def test_an_intermediary_and_an_executive_paid_from_fees_do_not_alert():
    stream = [
        *SETUP,
        custody("I1", at(0, 9), "L01", "B01", "50000", "invest", loan="LN1"),
        custody("F1", at(0, 10), "B01", "OWN", "500", "fee", loan="LN1"),
        # The executive's salary comes from fee money, not lenders' money.
        custody("S1", at(0, 11), "OWN", "EP", "500", "transfer"),
        # Lender money through the custody master to an unrelated borrower.
        custody("I2", at(1, 9), "L02", "POOL", "20000", "transfer"),
        custody("D2", at(1, 10), "POOL", "B01", "20000", "disburse", loan="LN1"),
        custody("R1", at(30, 9), "B01", "L01", "50400", "repay", loan="LN1"),
    ]
    assert run(SelfFinancing(), stream, finish=True) == []


def test_lender_money_paid_to_an_affiliate_alerts_with_its_evidence():
    stream = [*SETUP, custody("T1", at(0, 9), "L01", "X1", "30000", "transfer")]
    (a,) = run(SelfFinancing(), stream, finish=True)
    assert pinned(a) == (account_id("X1"), "P", "medium", "30000.00", ("X1",), 1)
    assert (a.first_ts, a.last_ts) == (iso_at(at(0, 9)), iso_at(at(0, 9)))
    assert a.evidence == {
        "signal": "related_account",
        "related_party": "A1",
        "related_account": "X1",
        "ownership_chain": ["A1 is affiliate of P"],
        "amount": "30000.00",
        "money_path": ["L01", "X1"],
        "money_path_txn_ids": ["T1"],
        "hops": 1,
        "sample_txn_ids": ["T1"],
        "first_seen": iso_at(at(0, 9)),
        "last_seen": iso_at(at(0, 9)),
        "thresholds": THRESHOLDS,
    }
    assert a.summary == (
        "30000.00 yuan of lenders' money on platform P reached account X1 of its related party "
        "A1 (A1 is affiliate of P) in 1 transfer(s)."
    )


def test_three_hops_alert_and_four_do_not():
    path = ["L01", "OWN", "XO", "EP"]
    three = [
        custody(f"H{i + 1}", at(0, 9) + i * MINUTE_MS, a, b, "20000", "transfer")
        for i, (a, b) in enumerate(zip(path, path[1:], strict=False))
    ]
    (a,) = run(SelfFinancing(), [*SETUP, *three], finish=True)
    assert a.evidence["money_path"] == ["L01", "OWN", "XO", "EP"]
    assert a.evidence["money_path_txn_ids"] == ["H1", "H2", "H3"]
    assert a.accounts == ("EP", "OWN", "XO")
    # The same money through a second outsider takes four transfers to reach EP.
    four = [
        *SETUP,
        account("XQ", "OUTSIDER2", "corporate"),
        custody("H1", at(0, 9), "L01", "OWN", "20000", "transfer"),
        custody("H2", at(0, 10), "OWN", "XO", "20000", "transfer"),
        custody("H3", at(0, 11), "XO", "XQ", "20000", "transfer"),
        custody("H4", at(0, 12), "XQ", "EP", "20000", "transfer"),
    ]
    assert run(SelfFinancing(), four, finish=True) == []
    (b,) = run(detector(max_hops=4), four, finish=True)
    assert (b.amount, b.evidence["hops"]) == ("20000.00", 4)


@pytest.mark.parametrize(("late_by", "alerts"), [(-MINUTE_MS, 1), (MINUTE_MS, 0)])
def test_the_window_bounds_how_long_money_is_followed(late_by, alerts):
    window = 30 * DAY_MS
    stream = [
        *SETUP,
        custody("W1", at(0, 9), "L01", "OWN", "20000", "transfer"),
        custody("W2", at(0, 9) + window + late_by, "OWN", "EP", "20000", "transfer"),
    ]
    assert len(run(SelfFinancing(), stream, finish=True)) == alerts


def test_a_transaction_two_days_late_still_finds_the_money_it_follows():
    # The platform's clock passes day 31, then a transfer dated day 29 arrives
    # (inside the 72 h dedup horizon): the day-0 lot is still in its window.
    stream = [
        *SETUP,
        custody("D1", at(0, 9), "L01", "OWN", "20000", "transfer"),
        custody("D2", at(31, 9), "XO", "B01", "1", "transfer"),
        custody("D3", at(29, 9), "OWN", "EP", "20000", "transfer"),
    ]
    (a,) = run(SelfFinancing(), stream, finish=True)
    assert (a.alert_id, a.amount, a.evidence["money_path_txn_ids"]) == (
        account_id("EP"),
        "20000.00",
        ["D1", "D3"],
    )


LATE_OUT_LEG = [
    custody("D1", at(0, 9), "L01", "OWN", "20000", "transfer"),
    custody("D3", at(29, 9), "OWN", "EP", "20000", "transfer"),
]


# D2 moves the platform's clock to day 31: paid by another account, or by
# OWN itself (D2 then passes the day-0 lot over, out of its window).
@pytest.mark.parametrize(
    "clock_mover",
    [
        custody("D2", at(31, 9), "XO", "B01", "1", "transfer"),
        custody("D2", at(31, 9), "OWN", "XO", "1", "transfer"),
    ],
    ids=["other_account", "same_account"],
)
@pytest.mark.parametrize("late", [False, True], ids=["in_order", "two_days_late"])
def test_an_out_leg_two_days_late_gives_the_alert_it_gives_in_order(clock_mover, late):
    # D3 (day 29) arrives after D2 (day 31) when late: 48 h behind, inside the
    # 72 h allowed lateness, while the day-0 lot is still in D3's window.
    d1, d3 = LATE_OUT_LEG
    order = [d1, clock_mover, d3] if late else [d1, d3, clock_mover]
    (a,) = run(SelfFinancing(), [*SETUP, *order], finish=True)
    assert (a.detector, a.subject_id, a.alert_id, a.amount) == (
        "self_financing",
        "P",
        account_id("EP"),
        "20000.00",
    )
    assert a.evidence["money_path_txn_ids"] == ["D1", "D3"]


def test_the_amount_threshold_counts_the_total_reaching_one_account():
    under = [
        *SETUP,
        custody("M1", at(0, 9), "L01", "X2", "5000", "transfer"),
        custody("M2", at(0, 10), "L02", "X2", "4999.99", "invest"),
    ]
    assert run(SelfFinancing(), under, finish=True) == []
    at_threshold = [*under, custody("M3", at(0, 11), "L03", "X2", "0.01", "transfer")]
    (a,) = run(SelfFinancing(), at_threshold, finish=True)
    assert (a.alert_id, a.amount, a.evidence["sample_txn_ids"]) == (
        account_id("X2"),
        "10000.00",
        ["M1", "M2", "M3"],
    )
    # A fee paid by a lender is not lender money lent on.
    fee = [*SETUP, custody("F1", at(0, 9), "L01", "X2", "20000", "fee")]
    assert run(SelfFinancing(), fee, finish=True) == []


def test_custody_money_and_look_through_to_a_controlled_company():
    # POOL holds lenders' money; ZA belongs to Z1, 80 % owned by affiliate A1.
    stream = [*SETUP, custody("C1", at(2, 9), "POOL", "ZA", "1200000", "transfer")]
    (a,) = run(SelfFinancing(), stream, finish=True)
    assert pinned(a) == (account_id("ZA"), "P", "high", "1200000.00", ("ZA",), 1)
    assert a.evidence["ownership_chain"] == [
        "A1 is affiliate of P",
        "A1 holds 0.8000 of Z1",
        "A1 controls Z1: effective share 0.8000",
    ]
    assert a.evidence["money_path"] == ["POOL", "ZA"]


def test_a_loan_to_a_related_borrower_alerts():
    stream = [*SETUP, custody("I9", at(1, 9), "L01", "B02", "15000", "invest", loan="LNX")]
    (a,) = run(SelfFinancing(), stream, finish=True)
    assert pinned(a) == (
        make_alert_id("self_financing", "P", "related_borrower", "LNX"),
        "P",
        "medium",
        "15000.00",
        ("B02",),
        1,
    )
    assert a.evidence["loan_id"] == "LNX"
    assert a.evidence["ownership_chain"] == ["E is executive of P", "E controls W02"]
    assert a.summary == (
        "Platform P lent 15000.00 yuan of lenders' money on loan LNX to W02, its related "
        "party (E is executive of P)."
    )


def test_a_changed_entity_record_ends_the_relation():
    cut = entity("A1")  # A1 no longer lists Z1 as its subsidiary
    stream = [*SETUP, cut, custody("C1", at(2, 9), "POOL", "ZA", "20000", "transfer")]
    assert run(SelfFinancing(), stream, finish=True) == []


def test_growth_is_emitted_again_under_the_same_id_and_lots_are_evicted():
    stream = [
        *SETUP,
        custody("G1", at(0, 9), "L01", "X1", "20000", "transfer"),
        custody("G2", at(0, 10), "L02", "X1", "1000", "transfer"),  # +5 %: not said again
        custody("G3", at(0, 11), "L03", "X1", "2000", "transfer"),  # 23,000: +15 %
        custody("K1", at(0, 12), "L01", "OWN", "7000", "transfer"),
    ]
    det = SelfFinancing()
    alerts = run(det, stream)
    assert [(a.alert_id, a.amount, a.revision) for a in alerts] == [
        (account_id("X1"), "20000.00", 1),
        (account_id("X1"), "23000.00", 2),
    ]
    assert list(det.platforms["P"].lots) == ["OWN"]
    run(det, [custody("K2", at(40), "XO", "B01", "1", "transfer")])
    assert det.platforms["P"].lots == {}


SHELL = [
    *SETUP,
    entity("EC", related=[("E", "controller")]),  # a company the executive controls
    account("ECA", "EC", "corporate"),
    account("WB1", "W01", "corporate"),  # the borrower's own bank account
    account("OC", "OTHER", "corporate"),  # an unrelated company
]


def shell_borrower(last_to: str = "ECA", amount: str = "50000", late_by: int = 0) -> list:
    return [
        custody("S1", at(0, 9), "L01", "B01", amount, "invest", loan="LN1"),
        custody("S2", at(0, 10), "B01", "WB1", amount, "withdraw"),
        custody("S3", at(0, 11) + late_by, "WB1", last_to, amount, "transfer"),
    ]


def test_a_shell_borrower_paying_the_executives_company_alerts():
    (a,) = run(SelfFinancing(), [*SHELL, *shell_borrower()], finish=True)
    assert pinned(a) == (account_id("ECA"), "P", "medium", "50000.00", ("ECA", "B01", "WB1"), 1)
    assert a.evidence["money_path"] == ["L01", "B01", "WB1", "ECA"]
    assert a.evidence["money_path_txn_ids"] == ["S1", "S2", "S3"]
    assert a.evidence["hops"] == 3
    assert a.evidence["ownership_chain"] == ["E is executive of P", "E controls EC"]


def test_a_shell_borrower_paying_an_unrelated_company_does_not_alert():
    assert run(SelfFinancing(), [*SHELL, *shell_borrower("OC")], finish=True) == []


def test_a_shell_borrower_four_transfers_away_does_not_alert():
    four = [
        *SHELL,
        custody("S1", at(0, 9), "L01", "B01", "50000", "invest", loan="LN1"),
        custody("S2", at(0, 10), "B01", "WB1", "50000", "withdraw"),
        custody("S3", at(0, 11), "WB1", "OC", "50000", "transfer"),
        custody("S4", at(0, 12), "OC", "ECA", "50000", "transfer"),
    ]
    assert run(SelfFinancing(), four, finish=True) == []


@pytest.mark.parametrize(("amount", "alerts"), [("9999.99", 0), ("10000", 1)])
def test_a_shell_borrower_under_and_at_the_amount_threshold(amount, alerts):
    stream = [*SHELL, *shell_borrower(amount=amount)]
    assert len(run(SelfFinancing(), stream, finish=True)) == alerts


@pytest.mark.parametrize(("late_by", "alerts"), [(-MINUTE_MS, 1), (MINUTE_MS, 0)])
def test_a_shell_borrower_inside_and_outside_the_window(late_by, alerts):
    # S3 at the window's end from S1 (30 days, less the two hours S1 to S3).
    stream = [*SHELL, *shell_borrower(late_by=30 * DAY_MS - 2 * 3600_000 + late_by)]
    assert len(run(SelfFinancing(), stream, finish=True)) == alerts


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("control_share_pct", 100),
        ("look_through_depth", 0),
        ("max_hops", 0),
        ("window_days", 0),
        ("min_amount", "-1"),
    ],
)
def test_bad_thresholds_are_refused(name, value):
    with pytest.raises(ValueError, match=f"self_financing.{name}"):
        load_config(overrides={"self_financing": {name: value}})
