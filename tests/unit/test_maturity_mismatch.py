"""maturity_mismatch on hand-made ledgers of platform P: direct links
(500,000 yuan, or 10 % of a book of at least 1,000,000), repayments, FIFO
lineage through controlled accounts, term splitting and roll-over, and the
book's term ratio (2.0) looked at on clock ticks.
"""

from __future__ import annotations

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

from fundflow.detectors import MaturityMismatch, load_config
from fundflow.detectors.alerting import make_alert_id

PRODUCTS = [
    product("P30", 30),
    product("P60", 60),
    product("P90", 90),
    product("P180", 180),
    product("P360", 360),
]
SETUP = [*p2p_platform(), *lenders(10), *borrowers(4), *PRODUCTS]
THRESHOLDS = load_config().thresholds("maturity_mismatch")


def aid(signal: str, *identity: object) -> str:
    return make_alert_id("maturity_mismatch", "P", signal, *identity)


def direct(
    txn_id: str,
    ts: int,
    amount: str,
    product_id: str,
    loan_id: str,
    *,
    lender: str = "L01",
    borrower: str = "B01",
):
    """An investment naming both the product and the loan it funds."""
    return custody(txn_id, ts, lender, borrower, amount, "invest", product=product_id, loan=loan_id)


# -- direct links -------------------------------------------------------------


def test_matched_terms_do_not_alert():
    stream = [
        *SETUP,
        loan("LN60", 60, "3000000"),
        direct("D1", at(0, 10), "1000000", "P60", "LN60"),
        direct("D2", at(0, 11), "2000000", "P90", "LN60", lender="L02"),
        custody("REP", at(50, 10), "B01", "L01", "3000000", "repay", loan="LN60"),
    ]
    det = MaturityMismatch()
    assert run(det, stream, finish=True) == []


@pytest.mark.parametrize("amount, expected", [("500000.00", 0), ("500000.01", 1)])
def test_direct_link_exposure_threshold(amount, expected):
    stream = [*SETUP, loan("LN60", 60, "600000"), direct("D1", at(0, 10), amount, "P30", "LN60")]
    alerts = run(MaturityMismatch(), stream)
    assert len(alerts) == expected
    if expected:
        a = alerts[0]
        assert (a.alert_id, a.detector, a.subject_id, a.severity, a.amount, a.revision) == (
            aid("mismatch_exposure", at(0, 10)),
            "maturity_mismatch",
            "P",
            "medium",
            "500000.01",
            1,
        )
        assert a.accounts == ("B01",)
        assert (a.first_ts, a.last_ts) == (iso_at(at(0, 10)), iso_at(at(0, 10)))
        ev = a.evidence
        assert (ev["signal"], ev["mismatched_exposure"], ev["open_book"], ev["exposure_share"]) == (
            "mismatch_exposure",
            "500000.01",
            "500000.01",
            "1.0000",
        )
        assert ev["loans"] == [
            {
                "loan_id": "LN60",
                "loan_term_days": 60,
                "products": [{"product_id": "P30", "term_days": 30}],
                "open_mismatched": "500000.01",
                "open_funded": "500000.01",
            }
        ]
        assert ev["sample_txn_ids"] == ["D1"]
        assert ev["thresholds"] == THRESHOLDS


@pytest.mark.parametrize(
    "short, matched, expected",
    [
        ("100000.00", "900000.00", 0),  # exactly 10 % of a 1,000,000 book
        ("100000.01", "899999.99", 1),  # just over 10 %
        ("100000.01", "899999.98", 0),  # over 10 %, but the book is under min_book
    ],
)
def test_share_of_the_book_once_the_book_reaches_min_book(short, matched, expected):
    stream = [
        *SETUP,
        loan("LN60", 60, "1000000"),
        direct("D1", at(0, 10), short, "P30", "LN60"),
        direct("D2", at(0, 11), matched, "P90", "LN60", lender="L02"),
    ]
    alerts = run(MaturityMismatch(), stream)
    assert len(alerts) == expected
    if expected:
        a = alerts[0]
        assert (a.alert_id, a.severity, a.amount) == (
            aid("mismatch_exposure", at(0, 11)),
            "medium",
            "100000.01",
        )
        assert (a.evidence["open_book"], a.evidence["exposure_share"]) == ("1000000.00", "0.1000")


def test_a_small_book_entirely_mismatched_under_the_amount_does_not_alert():
    stream = [*SETUP, loan("LN60", 60, "400000"), direct("D1", at(0, 10), "400000", "P30", "LN60")]
    assert run(MaturityMismatch(), stream, finish=True) == []


def test_exposure_severity_by_amount():
    stream = [
        *SETUP,
        loan("LN60", 60, "60000000"),
        direct("D1", at(0, 10), "4999999.99", "P30", "LN60"),
        direct("D2", at(0, 11), "0.01", "P30", "LN60"),
        direct("D3", at(0, 12), "45000000", "P30", "LN60"),
    ]
    alerts = run(MaturityMismatch(), stream)
    assert [(a.severity, a.amount, a.revision) for a in alerts] == [
        ("medium", "4999999.99", 1),
        ("high", "5000000.00", 2),
        ("critical", "50000000.00", 3),
    ]
    assert len({a.alert_id for a in alerts}) == 1


def test_a_disbursement_naming_product_and_loan_is_a_direct_link_too():
    stream = [
        *SETUP,
        loan("LN90", 90, "800000"),
        custody("DIS", at(0, 10), "POOL", "B01", "800000", "disburse", product="P60", loan="LN90"),
    ]
    assert [a.amount for a in run(MaturityMismatch(), stream)] == ["800000.00"]


def test_unknown_product_or_loan_is_not_a_mismatch():
    stream = [
        *SETUP,
        loan("LN60", 60, "2000000"),
        direct("D1", at(0, 10), "900000", "NOPRODUCT", "LN60"),
        direct("D2", at(0, 11), "900000", "P30", "NOLOAN"),
    ]
    assert run(MaturityMismatch(), stream, finish=True) == []


# -- repayment ----------------------------------------------------------------


def test_repayment_closes_the_exposure_pro_rata():
    det = MaturityMismatch()
    first = run(
        det,
        [
            *SETUP,
            loan("LN60", 60, "1000000"),
            loan("LN61", 60, "250000", borrower="B02"),
            direct("D1", at(0, 10), "600000", "P30", "LN60"),
            direct("D2", at(0, 11), "400000", "P90", "LN60", lender="L02"),
        ],
    )
    assert [(a.alert_id, a.amount) for a in first] == [
        (aid("mismatch_exposure", at(0, 10)), "600000.00")
    ]
    # Half the loan is repaid: 60 % of the open half, 300,000, stays mismatched.
    # That is under both limits, but mismatched money is still open, so the
    # episode (and its alert id) goes on.
    assert run(det, [custody("R1", at(20, 10), "B01", "L01", "500000", "repay", loan="LN60")]) == []
    # Back over the limit at 550,000: less than the alert already states, no new revision.
    assert run(det, [direct("D3", at(21, 10), "250000", "P30", "LN61", borrower="B02")]) == []
    third = run(
        det,
        [
            loan("LN62", 60, "200000", borrower="B02"),
            direct("D4", at(22, 10), "200000", "P30", "LN62", borrower="B02"),
        ],
    )
    assert len(third) == 1
    a = third[0]
    assert (a.alert_id, a.revision, a.amount) == (
        aid("mismatch_exposure", at(0, 10)),
        2,
        "750000.00",
    )
    assert (a.evidence["mismatched_exposure"], a.evidence["open_book"]) == (
        "750000.00",
        "950000.00",
    )
    assert [
        (r["loan_id"], r["open_mismatched"], r["open_funded"]) for r in a.evidence["loans"]
    ] == [
        ("LN60", "300000.00", "500000.00"),
        ("LN61", "250000.00", "250000.00"),
        ("LN62", "200000.00", "200000.00"),
    ]
    assert a.accounts == ("B01", "B02")


def test_repayment_of_an_unknown_loan_is_ignored():
    stream = [*SETUP, custody("R1", at(0, 10), "B01", "L01", "500000", "repay", loan="NOLOAN")]
    assert run(MaturityMismatch(), stream, finish=True) == []


# -- lineage ------------------------------------------------------------------


@pytest.mark.parametrize(
    "order, expected",
    [(("P30", "P90"), ["600000.00"]), (("P90", "P30"), [])],
    ids=["short_money_first", "long_money_first"],
)
def test_lineage_pairs_investments_and_disbursements_first_in_first_out(order, expected):
    # 600,000 of 30-day money and 300,000 of 90-day money wait in POOL; a
    # 60-day loan of 700,000 takes the oldest money first.
    amounts = {"P30": "600000", "P90": "300000"}
    stream = [*SETUP, loan("LN60", 60, "700000")]
    for i, p in enumerate(order):
        stream.append(
            custody(
                f"I{i + 1}", at(0, 9 + i), f"L0{i + 1}", "POOL", amounts[p], "invest", product=p
            )
        )
    stream.append(custody("DIS", at(1, 10), "POOL", "B01", "700000", "disburse", loan="LN60"))
    alerts = run(MaturityMismatch(), stream)
    assert [a.amount for a in alerts] == expected
    if expected:
        a = alerts[0]
        assert a.alert_id == aid("mismatch_exposure", at(1, 10))
        assert a.evidence["open_book"] == "700000.00"
        assert a.evidence["loans"][0]["products"] == [{"product_id": "P30", "term_days": 30}]
        assert a.evidence["sample_txn_ids"] == ["DIS"]


@pytest.mark.parametrize("via", ["OWN", "X1"], ids=["own_account", "affiliate_account"])
def test_lineage_follows_a_hop_between_controlled_accounts(via):
    stream = [
        *SETUP,
        loan("LN60", 60, "600000"),
        custody("I1", at(0, 9), "L01", "POOL", "600000", "invest", product="P30"),
        custody("HOP", at(0, 12), "POOL", via, "600000", "transfer"),
        custody("DIS", at(1, 10), via, "B01", "600000", "disburse", loan="LN60"),
    ]
    alerts = run(MaturityMismatch(), stream)
    assert [(a.alert_id, a.amount) for a in alerts] == [
        (aid("mismatch_exposure", at(1, 10)), "600000.00")
    ]


def test_lineage_lots_leave_with_any_outflow_first_in_first_out():
    # 600,000 of 30-day money came first, then 600,000 of 90-day money; a
    # repayment paid out of POOL takes the oldest money with it, so the
    # 60-day loan is funded by the 90-day money and is not a mismatch.
    stream = [
        *SETUP,
        loan("LN1", 60, "600000"),
        loan("LN60", 60, "600000"),
        custody("I1", at(0, 9), "L01", "POOL", "600000", "invest", product="P30"),
        custody("I2", at(0, 10), "L02", "POOL", "600000", "invest", product="P90"),
        custody("RP", at(0, 11), "POOL", "L03", "600000", "repay", loan="LN1"),
        custody("DIS", at(1, 10), "POOL", "B01", "600000", "disburse", loan="LN60"),
    ]
    assert run(MaturityMismatch(), stream, finish=True) == []


def test_lineage_stops_where_money_leaves_the_platforms_accounts():
    stream = [
        *SETUP,
        loan("LN60", 60, "600000"),
        custody("I1", at(0, 9), "L01", "POOL", "600000", "invest", product="P30"),
        custody("OUT", at(0, 12), "POOL", "XO", "600000", "transfer"),
        custody("DIS", at(1, 10), "XO", "B01", "600000", "disburse", loan="LN60"),
    ]
    assert run(MaturityMismatch(), stream, finish=True) == []


def test_the_platforms_own_money_carries_no_product():
    stream = [
        *SETUP,
        loan("LN60", 60, "600000"),
        custody("I1", at(0, 9), "L01", "POOL", "600000", "invest", product="P30"),
        custody("DIS", at(1, 10), "OWN", "B01", "600000", "disburse", loan="LN60"),
    ]
    assert run(MaturityMismatch(), stream, finish=True) == []


# -- term splitting -------------------------------------------------------------


def test_a_loan_funded_by_two_shorter_products_is_split():
    stream = [
        *SETUP,
        loan("LN120", 120, "200000"),
        direct("S1", at(0, 10), "100000", "P30", "LN120"),
        direct("S2", at(0, 11), "100000", "P90", "LN120", lender="L02"),
    ]
    alerts = run(MaturityMismatch(), stream)
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.alert_id, a.subject_id, a.severity, a.amount, a.revision) == (
        aid("term_split", "LN120"),
        "P",
        "medium",
        "200000.00",
        1,
    )
    assert a.accounts == ("B01",)
    assert (a.first_ts, a.last_ts) == (iso_at(at(0, 10)), iso_at(at(0, 11)))
    ev = a.evidence
    assert (
        ev["signal"],
        ev["loan_id"],
        ev["loan_term_days"],
        ev["loan_principal"],
        ev["rolled_over"],
    ) == (
        "term_split",
        "LN120",
        120,
        "200000.00",
        False,
    )
    assert ev["products"] == [
        {"product_id": "P30", "term_days": 30, "amount": "100000.00"},
        {"product_id": "P90", "term_days": 90, "amount": "100000.00"},
    ]
    assert ev["sample_txn_ids"] == ["S2"]


def test_one_shorter_product_and_one_longer_is_not_a_split():
    stream = [
        *SETUP,
        loan("LN120", 120, "200000"),
        direct("S1", at(0, 10), "100000", "P30", "LN120"),
        direct("S2", at(0, 11), "100000", "P180", "LN120", lender="L02"),
    ]
    assert run(MaturityMismatch(), stream, finish=True) == []


@pytest.mark.parametrize(
    "again, expected", [(at(29, 23), 0), (at(30, 10), 1)], ids=["within_term", "after_term"]
)
def test_the_same_product_rolled_over_after_its_term(again, expected):
    stream = [
        *SETUP,
        loan("LN120", 120, "200000"),
        direct("S1", at(0, 10), "100000", "P30", "LN120"),
        direct("S2", again, "100000", "P30", "LN120", lender="L02"),
    ]
    alerts = run(MaturityMismatch(), stream)
    assert len(alerts) == expected
    if expected:
        a = alerts[0]
        assert (a.alert_id, a.amount, a.severity) == (
            aid("term_split", "LN120"),
            "200000.00",
            "medium",
        )
        assert (a.first_ts, a.last_ts) == (iso_at(at(0, 10)), iso_at(at(30, 10)))
        assert a.evidence["rolled_over"] is True
        assert a.evidence["products"] == [
            {"product_id": "P30", "term_days": 30, "amount": "200000.00"}
        ]


def test_a_split_found_through_lineage():
    stream = [
        *SETUP,
        loan("LN120", 120, "200000"),
        custody("I1", at(0, 9), "L01", "POOL", "100000", "invest", product="P30"),
        custody("I2", at(0, 10), "L02", "POOL", "100000", "invest", product="P60"),
        custody("DIS", at(1, 10), "POOL", "B01", "200000", "disburse", loan="LN120"),
    ]
    alerts = run(MaturityMismatch(), stream)
    assert [(a.alert_id, a.amount) for a in alerts] == [(aid("term_split", "LN120"), "200000.00")]
    assert [p["product_id"] for p in alerts[0].evidence["products"]] == ["P30", "P60"]


# -- the book's term ratio ------------------------------------------------------


def _ratio_book(
    loan_term: int, *, loans: str = "1000000", money: str = "1000000", product_id: str = "P180"
):
    return [
        *SETUP,
        loan("LNR", loan_term, loans, issued_at=at(0)),
        custody("I1", at(0, 1), "L01", "POOL", money, "invest", product=product_id),
    ]


@pytest.mark.parametrize(
    "loan_term, expected", [(360, 0), (361, 1)], ids=["ratio_2.0", "ratio_2.006"]
)
def test_term_ratio_threshold_on_a_clock_tick(loan_term, expected):
    det = MaturityMismatch()
    assert run(det, _ratio_book(loan_term)) == []  # no tick yet
    det.advance(at(0, 3))
    alerts = det.drain()
    assert len(alerts) == expected
    if expected:
        a = alerts[0]
        assert (a.alert_id, a.subject_id, a.severity, a.amount, a.revision) == (
            aid("term_ratio", at(0, 3)),
            "P",
            "medium",
            "1000000.00",
            1,
        )
        assert a.accounts == ()
        assert (a.first_ts, a.last_ts) == (iso_at(at(0, 3)), iso_at(at(0, 3)))
        ev = a.evidence
        assert (
            ev["signal"],
            ev["term_ratio"],
            ev["loan_mean_term_days"],
            ev["product_mean_term_days"],
        ) == (
            "term_ratio",
            "2.01",
            "361.0",
            "180.0",
        )
        assert (ev["outstanding_loans"], ev["investor_money"]) == ("1000000.00", "1000000.00")
    det.advance(at(0, 5))
    assert det.drain() == []


@pytest.mark.parametrize("loans, money", [("999999.99", "1000000"), ("1000000", "999999.99")])
def test_term_ratio_needs_both_sides_at_min_book(loans, money):
    det = MaturityMismatch()
    run(det, _ratio_book(1800, loans=loans, money=money))
    det.advance(at(0, 3))
    assert det.finish().drain() == []


@pytest.mark.parametrize(
    "loan_term, severity", [(539, "medium"), (540, "high"), (899, "high"), (900, "critical")]
)
def test_term_ratio_severity(loan_term, severity):
    det = MaturityMismatch()
    run(det, _ratio_book(loan_term))
    det.advance(at(0, 3))
    assert [a.severity for a in det.drain()] == [severity]


def test_product_money_arriving_after_the_loans_is_looked_at_on_the_next_tick():
    det = MaturityMismatch()
    run(det, [*SETUP, loan("LNR", 400, "1000000", issued_at=at(0))])
    det.advance(at(0, 1))
    det.advance(at(0, 2))  # the loan is on the book; no investor money yet
    assert det.drain() == []
    run(det, [custody("I1", at(0, 5), "L01", "POOL", "1000000", "invest", product="P180")])
    det.advance(at(0, 7))
    alerts = det.drain()
    assert [(a.alert_id, a.evidence["term_ratio"]) for a in alerts] == [
        (aid("term_ratio", at(0, 7)), "2.22")
    ]


def test_a_repayment_that_raises_the_ratio_is_looked_at_on_the_next_tick():
    det = MaturityMismatch()
    stream = [
        *SETUP,
        loan("LNA", 400, "1000000", issued_at=at(0)),
        loan("LNB", 180, "1000000", issued_at=at(0), borrower="B02"),
        custody("I1", at(0, 1), "L01", "POOL", "2000000", "invest", product="P180"),
    ]
    run(det, stream)
    det.advance(at(0, 3))
    assert det.drain() == []  # 290 days of loans against 180 of money: 1.61
    # The short loan is repaid: 400 days of loans against 180: 2.22.
    run(det, [custody("RP", at(2, 10), "B02", "L01", "1000000", "repay", loan="LNB")])
    det.advance(at(5, 10))
    alerts = det.drain()
    assert [(a.alert_id, a.amount, a.evidence["term_ratio"]) for a in alerts] == [
        (aid("term_ratio", at(5, 10)), "1000000.00", "2.22")
    ]


def test_product_money_expiring_after_its_term_drops_out_of_the_ratio():
    det = MaturityMismatch()
    stream = [
        *SETUP,
        loan("LN300", 300, "2000000", issued_at=at(0)),
        custody("I1", at(0, 1), "L01", "POOL", "1000000", "invest", product="P30"),
        custody("I2", at(0, 1, 30), "L02", "POOL", "2000000", "invest", product="P180"),
    ]
    run(det, stream)
    det.advance(at(0, 3))
    first = det.drain()
    assert [
        (a.alert_id, a.evidence["term_ratio"], a.evidence["investor_money"]) for a in first
    ] == [(aid("term_ratio", at(0, 3)), "2.31", "3000000.00")]
    assert first[0].evidence["product_mean_term_days"] == "130.0"
    # The 30-day money has run its term by day 30: 300 / 180 days, no longer a mismatch.
    det.advance(at(0, 1) + 30 * DAY_MS + 60_000)
    assert det.drain() == []
    # A new long loan makes the book mismatched again. The episode had not
    # ended (the ratio stayed above 1), so the same alert grows (revision 2);
    # the expired money is not counted.
    det.update(loan("LN720", 720, "1000000", issued_at=at(31), borrower="B02"))
    det.advance(at(31, 1))
    second = det.drain()
    assert len(second) == 1
    a = second[0]
    assert (a.alert_id, a.revision, a.amount) == (aid("term_ratio", at(0, 3)), 2, "3000000.00")
    assert (
        a.evidence["term_ratio"],
        a.evidence["loan_mean_term_days"],
        a.evidence["product_mean_term_days"],
        a.evidence["investor_money"],
    ) == ("2.44", "440.0", "180.0", "2000000.00")
