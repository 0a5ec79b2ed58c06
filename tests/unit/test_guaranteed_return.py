"""guaranteed_return on hand-made custody ledgers: the platform's own or
risk-reserve money paying lenders beyond what the borrower repaid.

Platform P of :func:`ledger.p2p_platform` with a risk reserve RISK; lenders
L01-L03, borrowers B01 (owner W01, who also has a personal account WP01) and
B02; 30-day loans LN1 (B01) and LN2 (B02), issued on day 0.
"""

from __future__ import annotations

import pytest
from ledger import (
    DAY_MS,
    account,
    at,
    borrowers,
    custody,
    iso_at,
    lenders,
    loan,
    p2p_platform,
    run,
)

from fundflow.detectors import GuaranteedReturn, load_config
from fundflow.detectors.alerting import make_alert_id

SETUP = [
    *p2p_platform(),
    account("RISK", "P", "risk_reserve", platform="P"),
    account("WP01", "W01", "personal"),
    *lenders(3),
    *borrowers(2),
    loan("LN1", 30, "10000", borrower="B01", issued_at=at(0, 8)),
    loan("LN2", 30, "20000", borrower="B02", issued_at=at(0, 8)),
]
THRESHOLDS = load_config().thresholds("guaranteed_return")


def episode_id(ts: int) -> str:
    return make_alert_id("guaranteed_return", "P", "platform_paid_lenders", ts)


def detector(**overrides) -> GuaranteedReturn:
    cfg = load_config(overrides={"guaranteed_return": overrides}) if overrides else None
    return GuaranteedReturn(cfg)


def test_repayments_passed_on_and_subsidies_do_not_alert():
    stream = [
        *SETUP,
        # B02 repays its lender directly; B01 repays into the risk reserve, which passes it on.
        custody("R2", at(30, 9), "B02", "L02", "20100", "repay", loan="LN2"),
        custody("R1", at(30, 10), "B01", "RISK", "10050", "repay", loan="LN1"),
        custody("P1", at(30, 11), "RISK", "L01", "5025", "repay", loan="LN1"),
        custody("P2", at(30, 11, 1), "RISK", "L03", "5025", "repay", loan="LN1"),
        # A subsidy or interest naming no loan is excessive_return's to judge.
        custody("S1", at(30, 12), "OWN", "L01", "50", "interest"),
        # The custody master paying lenders is not the platform's own money.
        custody("C1", at(30, 13), "POOL", "L01", "3000", "payout", loan="LN2"),
    ]
    assert run(GuaranteedReturn(), stream, finish=True) == []


def test_the_risk_reserve_paying_for_an_unrepaid_loan_alerts_with_its_evidence():
    stream = [
        *SETUP,
        custody("G1", at(30, 11), "RISK", "L01", "6000", "repay", loan="LN2"),
        custody("G2", at(30, 12), "OWN", "L02", "4050", "payout", loan="LN2"),
    ]
    alerts = run(GuaranteedReturn(), stream, finish=True)
    assert [(a.alert_id, a.subject_id, a.severity, a.amount, a.revision) for a in alerts] == [
        (episode_id(at(30, 11)), "P", "medium", "6000.00", 1),
        (episode_id(at(30, 11)), "P", "medium", "10050.00", 2),
    ]
    a = alerts[-1]
    assert a.accounts == ("OWN", "RISK")
    assert (a.first_ts, a.last_ts) == (iso_at(at(30, 11)), iso_at(at(30, 12)))
    assert a.evidence == {
        "signal": "platform_paid_lenders",
        "payer_accounts": ["OWN", "RISK"],
        "uncovered": "10050.00",
        "loans": [
            {
                "loan_id": "LN2",
                "borrower_account": "B02",
                "borrower_paid_in": "0.00",
                "paid_to_lenders": "10050.00",
                "uncovered": "10050.00",
            }
        ],
        "loan_count": 1,
        "first_seen": iso_at(at(30, 11)),
        "last_seen": iso_at(at(30, 12)),
        "sample_txn_ids": ["G1", "G2"],
        "thresholds": THRESHOLDS,
    }
    assert a.summary == (
        "Platform P paid lenders 10050.00 yuan from its own or risk-reserve account(s) OWN, RISK "
        "beyond what the borrowers of 1 loan(s) had repaid."
    )


@pytest.mark.parametrize(("paid", "alerted"), [("9999.99", None), ("10000", "1000.00")])
def test_the_uncovered_amount_threshold(paid, alerted):
    # W01 repays 9,000 from its own personal account: the borrower's money too.
    stream = [
        *SETUP,
        custody("R1", at(30, 9), "WP01", "RISK", "9000", "repay", loan="LN1"),
        custody("P1", at(30, 10), "RISK", "L01", paid, "repay", loan="LN1"),
    ]
    alerts = run(GuaranteedReturn(), stream, finish=True)
    assert [a.amount for a in alerts] == ([] if alerted is None else [alerted])


def test_paying_first_and_collecting_later_is_a_guarantee():
    stream = [
        *SETUP,
        custody("P1", at(30, 10), "RISK", "L01", "10050", "repay", loan="LN1"),
        custody("R1", at(35, 9), "B01", "RISK", "10050", "repay", loan="LN1"),
        # Now the borrower's money is in: passing it on again is covered.
        custody("P2", at(35, 10), "RISK", "L02", "5000", "repay", loan="LN1"),
    ]
    alerts = run(GuaranteedReturn(), stream, finish=True)
    assert [(a.alert_id, a.amount) for a in alerts] == [(episode_id(at(30, 10)), "10050.00")]


def test_a_payout_naming_no_loan_is_uncovered():
    stream = [*SETUP, custody("N1", at(3, 10), "OWN", "L01", "5000", "payout")]
    (a,) = run(GuaranteedReturn(), stream, finish=True)
    assert (a.amount, a.evidence["loans"][0]["loan_id"]) == ("5000.00", None)


@pytest.mark.parametrize(("gap_days", "episodes"), [(30, 1), (31, 2)])
def test_episodes_are_split_by_the_gap(gap_days, episodes):
    stream = [
        *SETUP,
        custody("E1", at(1, 10), "RISK", "L01", "2000", "payout", loan="LN1"),
        custody("E2", at(1, 10) + gap_days * DAY_MS, "RISK", "L02", "2000", "payout", loan="LN2"),
    ]
    alerts = run(GuaranteedReturn(), stream, finish=True)
    assert len({a.alert_id for a in alerts}) == episodes


def test_loans_are_forgotten_after_maturity_and_grace():
    det = detector(loan_grace_days=10)
    run(det, [*SETUP, custody("R1", at(30, 9), "B01", "RISK", "10050", "repay", loan="LN1")])
    assert list(det.platforms["P"].loans) == ["LN1"]
    # LN1 matured on day 30 at 08:00 and was last repaid at 09:00: 10 days later
    # (not at the very instant) its record goes.
    run(det, [custody("X0", at(40, 9), "B02", "RISK", "1", "repay", loan="LN2")])
    assert list(det.platforms["P"].loans) == ["LN1", "LN2"]
    run(det, [custody("X1", at(40, 10), "B02", "RISK", "1", "repay", loan="LN2")])
    assert list(det.platforms["P"].loans) == ["LN2"]


@pytest.mark.parametrize(
    ("name", "value"),
    [("min_amount", "0.001"), ("loan_grace_days", -1), ("episode_gap_days", 0)],
)
def test_bad_thresholds_are_refused(name, value):
    with pytest.raises(ValueError, match=f"guaranteed_return.{name}"):
        load_config(overrides={"guaranteed_return": {name: value}})
