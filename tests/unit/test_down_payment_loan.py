"""down_payment_loan: loan money followed from the borrower's account to a
real-estate entity's account, and loans that declare a down-payment purpose.

Platform P lends for loan LN1 (30 days, 300,000 yuan) from lender L01 into
borrower sub-account B01 of borrower W01, whose own bank account is W01P.
Developer RE has account HOUSE. Defaults: 30 days, 3 hops, 50,000 yuan.
"""

from __future__ import annotations

import pytest
from ledger import DAY_MS, account, at, clearing, custody, entity, iso_at, loan, run

from fundflow.detectors import DownPaymentLoan, load_config
from fundflow.detectors.alerting import make_alert_id
from fundflow.schemas.records import Loan

SETUP = [
    entity("P", "p2p_platform", licenses=("p2p_registered",)),
    entity("RE", "real_estate"),
    entity("W01", "person"),
    entity("SHOP"),
    account("L01", "U01", "lender_sub", platform="P"),
    account("B01", "W01", "borrower_sub", platform="P"),
    account("W01P", "W01", "personal", bank="BK1"),
    account("W01Q", "W01", "personal", bank="BK2"),
    account("HOUSE", "RE", "corporate", bank="BK1"),
    account("SHOPA", "SHOP", "corporate", bank="BK1"),
    account("OWN", "P", "platform_own", platform="P"),
    loan("LN1", 30, "300000", borrower="B01"),
]
LEND = custody("I1", at(0, 10), "L01", "B01", "300000", "invest", loan="LN1")
THRESHOLDS = load_config().thresholds("down_payment_loan")


def test_loan_money_paid_on_to_a_developer_is_an_alert():
    recs = [
        *SETUP,
        LEND,
        custody("W1", at(1, 9), "B01", "W01P", "300000", "withdraw"),
        clearing("H1", at(3, 15), "W01P", "HOUSE", "250000", initiator="BK1"),
    ]
    (alert,) = run(DownPaymentLoan(), recs)
    assert alert.alert_id == make_alert_id("down_payment_loan", "P", "loan_to_real_estate", "LN1")
    assert (alert.subject_id, alert.severity, alert.amount) == ("P", "medium", "250000.00")
    assert alert.accounts == ("HOUSE",)
    assert (alert.first_ts, alert.last_ts) == (iso_at(at(3, 15)), iso_at(at(3, 15)))
    ev = alert.evidence
    assert ev["trail_txn_ids"] == ["I1", "W1", "H1"]
    assert (ev["days_after_lending"], ev["borrower_account"], ev["principal"]) == (
        3,
        "B01",
        "300000.00",
    )
    assert ev["account_owners"] == ["RE"] and ev["thresholds"] == THRESHOLDS


def test_loan_money_paid_straight_to_the_developer():
    recs = [*SETUP, custody("D1", at(0, 10), "OWN", "HOUSE", "300000", "disburse", loan="LN1")]
    (alert,) = run(DownPaymentLoan(), recs)
    assert (alert.amount, alert.evidence["trail_txn_ids"]) == ("300000.00", ["D1"])


def test_the_minimum_amount_per_loan():
    under = [*SETUP, LEND, custody("H1", at(1), "B01", "HOUSE", "49999.99", "withdraw")]
    assert run(DownPaymentLoan(), under, finish=True) == []
    # One more fen later on the same loan crosses it.
    (alert,) = run(
        DownPaymentLoan(), [*under, custody("H2", at(2), "B01", "HOUSE", "0.01", "withdraw")]
    )
    assert (alert.amount, alert.evidence["trail_txn_ids"]) == ("50000.00", ["I1", "H1", "H2"])


def test_the_window_after_lending():
    inside = custody("H1", at(0, 10) + 30 * DAY_MS, "B01", "HOUSE", "100000", "withdraw")
    (alert,) = run(DownPaymentLoan(), [*SETUP, LEND, inside])
    assert alert.evidence["days_after_lending"] == 30
    late = custody("H1", at(0, 10) + 30 * DAY_MS + 1, "B01", "HOUSE", "100000", "withdraw")
    assert run(DownPaymentLoan(), [*SETUP, LEND, late], finish=True) == []


def test_the_hop_limit():
    three = [
        custody("W1", at(1), "B01", "W01P", "300000", "withdraw"),
        clearing("W2", at(1, 1), "W01P", "W01Q", "300000", initiator="BK1"),
        clearing("W3", at(1, 2), "W01Q", "SHOPA", "300000", initiator="BK1"),
    ]
    (alert,) = run(DownPaymentLoan(), [*SETUP, LEND, *three[:2], clearing("H1", at(2), "W01Q", "HOUSE", "300000", initiator="BK1")])  # fmt: skip
    assert alert.evidence["trail_txn_ids"] == ["I1", "W1", "W2", "H1"]
    four = [
        *SETUP,
        LEND,
        *three,
        clearing("H1", at(2), "SHOPA", "HOUSE", "300000", initiator="BK1"),
    ]
    assert run(DownPaymentLoan(), four, finish=True) == []


def test_a_borrower_who_repays_then_buys_with_own_money_is_not_flagged():
    recs = [
        *SETUP,
        LEND,
        custody("F1", at(0, 11), "B01", "OWN", "3000", "fee", loan="LN1"),
        custody("W1", at(0, 12), "B01", "W01P", "297000", "withdraw"),
        clearing("S1", at(2), "W01P", "SHOPA", "97000", initiator="BK1"),  # spent elsewhere
        custody("R0", at(30, 9), "W01P", "B01", "302500", "recharge"),
        custody("R1", at(30, 10), "B01", "L01", "302500", "repay", loan="LN1"),
        clearing("SAL", at(31), "EMPLOYER", "W01P", "800000", initiator="BK1"),
        clearing("H1", at(40), "W01P", "HOUSE", "600000", initiator="BK1"),
    ]
    assert run(DownPaymentLoan(), recs, finish=True) == []


def test_a_declared_down_payment_loan_is_an_alert_when_lent():
    declared = Loan(
        loan_id="LN9", platform_id="P", borrower_account="B01", principal=10_000_00,
        term_days=90, annual_rate=loan("X", 1, "1").annual_rate, issued_at=at(0),
        purpose="real_estate_down_payment",
    )  # fmt: skip
    det = DownPaymentLoan()
    assert run(det, [*SETUP, declared]) == []
    (alert,) = run(det, [custody("I9", at(0, 10), "L01", "B01", "10000", "invest", loan="LN9")])
    assert alert.alert_id == make_alert_id("down_payment_loan", "P", "declared_purpose", "LN9")
    assert (alert.amount, alert.evidence["loan_purpose"], alert.accounts) == (
        "10000.00",
        "real_estate_down_payment",
        ("B01",),
    )


@pytest.mark.parametrize(("amount", "severity"), [("999999.99", "medium"), ("1000000", "high")])
def test_severity(amount, severity):
    recs = [
        *SETUP,
        custody("I1", at(0, 10), "L01", "B01", "2000000", "invest", loan="LN1"),
        custody("H1", at(1), "B01", "HOUSE", amount, "withdraw"),
    ]
    (alert,) = run(DownPaymentLoan(), recs)
    assert alert.severity == severity


@pytest.mark.parametrize("late", [False, True], ids=["in_order", "two_days_late"])
def test_a_payment_two_days_late_gives_the_alert_it_gives_in_order(late):
    # B01 pays on day 31, passing the day-0 loan money over (out of that
    # payment's window); H1, dated day 29, arrives 48 h late when late,
    # inside the 72 h allowed lateness, and still takes it.
    paid = custody("S1", at(31, 10), "B01", "SHOPA", "0.01", "withdraw")
    h1 = custody("H1", at(29, 10), "B01", "HOUSE", "100000", "withdraw")
    order = [paid, h1] if late else [h1, paid]
    (alert,) = run(DownPaymentLoan(), [*SETUP, LEND, *order], finish=True)
    assert (alert.detector, alert.subject_id, alert.alert_id, alert.amount) == (
        "down_payment_loan",
        "P",
        make_alert_id("down_payment_loan", "P", "loan_to_real_estate", "LN1"),
        "100000.00",
    )
    assert alert.evidence["trail_txn_ids"] == ["I1", "H1"]


def test_old_lots_are_swept_from_memory():
    det = DownPaymentLoan()
    run(det, [*SETUP, LEND])
    assert det.lot_count == 1
    det.advance(at(0, 10) + 33 * DAY_MS + 1)
    assert det.lot_count == 0 and det.lots == {}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("max_hops", 0, "down_payment_loan.max_hops must be >= 1, got 0"),
        ("window_days", 0, "down_payment_loan.window_days must be >= 1, got 0"),
        ("real_estate_kinds", [], "down_payment_loan.real_estate_kinds must name"),
        ("min_amount", "1.001", "down_payment_loan.min_amount must be a non-negative amount"),
    ],
)
def test_bad_thresholds_are_refused(key, value, message):
    with pytest.raises(ValueError, match=message):
        load_config(overrides={"down_payment_loan": {key: value}})


# -- on Kafka --------------------------------------------------------------------------


def test_it_runs_on_the_whole_stream_and_asks_for_no_copies():
    """A trail passes through any account, so the detector reads the whole
    stream (the whole-stream worker on topics of several partitions) and
    names no partition for a copy: a relative's payment to the developer is
    followed as the borrower's own is."""
    assert DownPaymentLoan.whole_stream and not DownPaymentLoan.one_feed
    recs = [
        *SETUP,
        entity("W02", "person"),
        account("W02P", "W02", "personal", bank="BK2"),
        LEND,
        custody("W1", at(1, 9), "B01", "W01P", "300000", "withdraw"),
        clearing("R1", at(2, 9), "W01P", "W02P", "280000", initiator="BK1"),
        clearing("H1", at(3, 15), "W02P", "HOUSE", "250000", initiator="BK2"),
    ]
    det = DownPaymentLoan()
    (alert,) = run(det, recs)
    assert (alert.subject_id, alert.amount, alert.accounts) == ("P", "250000.00", ("HOUSE",))
    assert alert.evidence["trail_txn_ids"] == ["I1", "W1", "R1", "H1"]
    assert [det.subjects_of(det.ref.flow(r)) for r in recs[-3:]] == [(), (), ()]


def test_a_checkpoint_of_an_older_version_drops_its_borrowers_index():
    import pickle

    det = DownPaymentLoan()
    for rec in SETUP:
        det.update(rec)
    state = dict(det.ref.__dict__)
    state["_borrows"], state["_borrows_waiting"] = {"W01": ("P",)}, {}
    old = type(det.ref).__new__(type(det.ref))
    old.__setstate__(state)
    assert not hasattr(old, "_borrows") and not hasattr(old, "_borrows_waiting")
    assert list(pickle.loads(pickle.dumps(old)).loans) == list(det.ref.loans) == ["LN1"]
