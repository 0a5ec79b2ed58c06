"""private_product_split: a private product sold to more than 200 distinct
investors, or below its minimum ticket.

Platform P's private product PRIV (360 days, minimum ticket 1,000,000
yuan); PUB is an ordinary product. Lender sub-accounts Lnnn belong to
investors Unnn (two accounts of U001: L001 and L001B).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from ledger import DAY_MS, MINUTE_MS, account, at, custody, entity, fen, iso_at, product, run

from fundflow.detectors import PrivateProductSplit, load_config
from fundflow.detectors.alerting import make_alert_id
from fundflow.schemas.records import Product

PRIV = Product(
    product_id="PRIV", platform_id="P", term_days=360, annual_rate=Decimal("0.07"),
    min_ticket=fen("1000000"), private=True,
)  # fmt: skip
SETUP = [
    entity("P", "p2p_platform", licenses=("p2p_registered",)),
    PRIV,
    product("PUB", 360),
    *(account(f"L{i:03d}", f"U{i:03d}", "lender_sub", platform="P") for i in range(1, 203)),
    account("L001B", "U001", "lender_sub", platform="P"),
]
THRESHOLDS = load_config().thresholds("private_product_split")


def tickets(n: int, each: str = "1000000", product_id: str = "PRIV", start: int = 1):
    return [
        custody(
            f"T{i:03d}",
            at(0, 9) + i * MINUTE_MS,
            f"L{i:03d}",
            "B01",
            each,
            "invest",
            product=product_id,
            loan="LN1",
        )  # fmt: skip
        for i in range(start, start + n)
    ]


def test_two_hundred_investors_at_the_minimum_are_fine():
    assert run(PrivateProductSplit(), [*SETUP, *tickets(200)], finish=True) == []


def test_the_two_hundred_and_first_investor_is_an_alert():
    (alert,) = run(PrivateProductSplit(), [*SETUP, *tickets(201)])
    assert alert.alert_id == make_alert_id(
        "private_product_split", "P", "too_many_investors", "PRIV", at(0, 9) + MINUTE_MS
    )
    assert (alert.subject_id, alert.severity, alert.amount) == ("P", "high", "201000000.00")
    assert alert.last_ts == iso_at(at(0, 9) + 201 * MINUTE_MS)
    ev = alert.evidence
    assert (ev["distinct_investors"], ev["product_id"]) == (201, "PRIV")
    assert ev["sample_txn_ids"] == [f"T{i:03d}" for i in range(1, 21)]
    assert ev["thresholds"] == THRESHOLDS


def test_one_investor_with_two_accounts_counts_once():
    second = custody("TB", at(1), "L001B", "B01", "1000000", "invest", product="PRIV")
    assert run(PrivateProductSplit(), [*SETUP, *tickets(200), second], finish=True) == []


def test_an_ordinary_product_has_no_limit():
    assert run(PrivateProductSplit(), [*SETUP, *tickets(202, "1", "PUB")], finish=True) == []


def test_below_the_minimum_ticket():
    recs = [*SETUP, *tickets(1, "999999.99"), *tickets(1, "500000", start=2)]
    first, second = run(PrivateProductSplit(), recs)
    assert (
        first.alert_id
        == second.alert_id
        == make_alert_id(
            "private_product_split", "P", "below_min_ticket", "PRIV", at(0, 9) + MINUTE_MS
        )
    )
    assert (second.severity, second.amount, second.revision) == ("medium", "1499999.99", 2)
    ev = second.evidence
    assert (ev["investments"], ev["min_ticket"], ev["investors"]) == (
        2,
        "1000000.00",
        ["U001", "U002"],
    )
    assert ev["sample_txn_ids"] == ["T001", "T002"]


def test_a_top_up_that_reaches_the_minimum_is_fine_afterwards():
    recs = [
        *SETUP,
        *tickets(1, "600000"),
        custody("TOP", at(1), "L001", "B01", "400000", "invest", product="PRIV"),
        custody("MORE", at(2), "L001", "B01", "1", "invest", product="PRIV"),
    ]
    (alert,) = run(PrivateProductSplit(), recs, finish=True)
    assert (alert.amount, alert.evidence["sample_txn_ids"]) == ("600000.00", ["T001"])


def test_investors_are_forgotten_after_the_term():
    det = PrivateProductSplit()
    run(det, [*SETUP, *tickets(150)])
    assert len(det.platforms["P"]["PRIV"].investors) == 150
    run(
        det,
        [custody("Z", at(0, 9) + 150 * MINUTE_MS + 360 * DAY_MS + 1, "X", "Y", "1", "transfer")],
    )
    assert det.platforms["P"] == {}
    # A new offering counts from zero.
    assert run(det, tickets(60, start=150)) == []


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError, match="private_product_split.max_investors must be >= 1, got 0"):
        load_config(overrides={"private_product_split": {"max_investors": 0}})
