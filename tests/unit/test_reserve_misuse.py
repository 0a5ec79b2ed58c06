"""reserve_misuse on hand-made ledgers of payment institution PI
(:func:`ledger.payment_institution`): coverage against reported liabilities
(tolerance 0.5 %, bands at 1 %, 5 %, 20 %), when a report is compared, how
balances are built, and which outflows from a reserve account are misuse.
"""

from __future__ import annotations

import pytest
from ledger import (
    account,
    at,
    balance,
    clearing,
    custody,
    day_str,
    iso_at,
    payment_institution,
    report,
    run,
)

from fundflow.detectors import Engine, ReserveMisuse, load_config
from fundflow.detectors.alerting import make_alert_id

SETUP = payment_institution()
THRESHOLDS = load_config().thresholds("reserve_misuse")


def shortfall_id(day: int) -> str:
    return make_alert_id("reserve_misuse", "PI", "coverage_shortfall", day_str(day))


def close_day(det: ReserveMisuse, day: int) -> list:
    """Let event time run past the end of local day ``day``."""
    det.advance(at(day, 23))
    det.advance(at(day + 1, 0, 30))
    return det.drain()


# -- coverage -----------------------------------------------------------------


def test_full_coverage_and_ordinary_business_do_not_alert():
    stream = [
        *SETUP,
        balance("R1", at(0), "1000000"),
        clearing("IN1", at(0, 9), "C1P", "R1", "30000", purpose="topup"),
        clearing("OUT1", at(0, 10), "R1", "MSET", "20000", purpose="settlement"),
        clearing("OUT2", at(0, 11), "R1", "EXT", "5000", purpose="refund"),
        clearing("MV", at(0, 12), "R1", "R2", "100000", system="internal", purpose="transfer"),
        report("PI", 0, "1005000"),
        clearing("IN2", at(1, 9), "C1P", "R2", "1000", purpose="topup"),
    ]
    det = ReserveMisuse()
    assert run(det, stream) == []
    assert close_day(det, 1) == []
    assert det.finish().drain() == []


@pytest.mark.parametrize(
    "held, expected", [("995000.00", 0), ("994900.00", 1)], ids=["0.5%", "0.51%"]
)
def test_coverage_tolerance(held, expected):
    det = ReserveMisuse()
    run(det, [*SETUP, balance("R1", at(0), held), report("PI", 0, "1000000")])
    alerts = close_day(det, 0)
    assert len(alerts) == expected
    if expected:
        a = alerts[0]
        assert (a.alert_id, a.detector, a.subject_id, a.severity, a.amount, a.revision) == (
            shortfall_id(0),
            "reserve_misuse",
            "PI",
            "low",
            "5100.00",
            1,
        )
        assert a.accounts == ("R1", "R2")
        assert (a.first_ts, a.last_ts) == (iso_at(at(1)), iso_at(at(1)))
        ev = a.evidence
        assert ev["signal"] == "coverage_shortfall"
        assert (ev["as_of"], ev["since"]) == ("2026-03-02", "2026-03-02")
        assert (
            ev["reserve_balance"],
            ev["client_liabilities"],
            ev["shortfall"],
            ev["coverage_ratio"],
        ) == (
            "994900.00",
            "1000000.00",
            "5100.00",
            "0.9949",
        )
        assert ev["reserve_accounts"] == ["R1", "R2"]
        assert ev["thresholds"] == THRESHOLDS


@pytest.mark.parametrize(
    "short, severity",
    [
        ("9900", "low"),
        ("10000", "medium"),
        ("49900", "medium"),
        ("50000", "high"),
        ("199900", "high"),
        ("200000", "critical"),
    ],
)
def test_shortfall_severity_bands(short, severity):
    held = 1_000_000 - int(short)
    det = ReserveMisuse()
    run(det, [*SETUP, balance("R1", at(0), held), report("PI", 0, "1000000")])
    alerts = close_day(det, 0)
    assert [(a.alert_id, a.severity, a.amount) for a in alerts] == [
        (shortfall_id(0), severity, f"{short}.00")
    ]


def test_a_report_before_its_day_closes_counts_the_days_later_payments_in():
    det = ReserveMisuse()
    run(
        det,
        [
            *SETUP,
            balance("R1", at(0), "900000"),
            clearing("IN1", at(0, 9), "C1P", "R1", "50000", purpose="topup"),
        ],
    )
    det.update(report("PI", 0, "1000000"))  # 950,000 held so far: would be 5 % short
    det.update(clearing("IN2", at(0, 15), "C1P", "R1", "100000", purpose="topup"))
    assert det.drain() == []
    assert close_day(det, 0) == []


def test_a_report_before_its_day_closes_is_compared_only_after_the_day_ends():
    det = ReserveMisuse()
    run(
        det,
        [
            *SETUP,
            balance("R1", at(0), "1000000"),
            clearing("IN1", at(0, 8), "C1P", "R1", "1", purpose="topup"),
        ],
    )
    det.update(report("PI", 0, "1000001"))  # covered now
    det.update(clearing("RF", at(0, 15), "R1", "EXT", "60000", purpose="refund"))
    det.advance(at(0, 23, 59))
    assert det.drain() == []
    alerts = close_day(det, 0)
    assert [(a.alert_id, a.severity, a.amount) for a in alerts] == [
        (shortfall_id(0), "high", "60000.00")
    ]
    assert alerts[0].evidence["reserve_balance"] == "940001.00"


def test_a_report_after_its_day_closed_is_compared_with_that_days_closing_total():
    det = ReserveMisuse()
    stream = [
        *SETUP,
        balance("R1", at(0), "1000000"),
        clearing("RF", at(0, 15), "R1", "EXT", "60000", purpose="refund"),
        clearing(
            "IN", at(1, 10), "C1P", "R1", "100000", purpose="topup"
        ),  # closes day 0 at 940,000
    ]
    assert run(det, stream) == []
    alerts = run(det, [report("PI", 0, "1000000")])
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.alert_id, a.severity, a.amount, a.last_ts) == (
        shortfall_id(0),
        "high",
        "60000.00",
        iso_at(at(1)),
    )
    assert (a.evidence["reserve_balance"], a.evidence["as_of"]) == ("940000.00", "2026-03-02")
    # Today's 1,040,000 covers a report for today.
    det.update(report("PI", 1, "1040000"))
    assert close_day(det, 1) == []


def test_a_report_older_than_the_kept_closing_totals_is_not_compared():
    det = ReserveMisuse()
    run(det, [*SETUP, balance("R1", at(0), "1")])
    det.advance(at(0, 1))
    det.advance(at(10, 1))  # days 0..9 closed; totals kept for 7 + 1 days
    assert run(det, [report("PI", 1, "1000000")]) == []
    assert det.unmatched_reports == 1
    alerts = run(det, [report("PI", 2, "1000000")])
    assert [a.evidence["as_of"] for a in alerts] == [day_str(2)]


def test_finish_compares_reports_whose_day_has_not_closed():
    det = ReserveMisuse()
    stream = [
        *SETUP,
        balance("R1", at(0), "900000"),
        clearing("RF", at(0, 10), "R1", "EXT", "10000", purpose="refund"),
        report("PI", 0, "1000000"),
    ]
    assert run(det, stream) == []
    alerts = det.finish().drain()
    assert [(a.alert_id, a.severity, a.amount) for a in alerts] == [
        (shortfall_id(0), "high", "110000.00")
    ]
    assert alerts[0].last_ts == iso_at(at(1))
    assert det.finish().drain() == []


def test_finish_compares_reports_of_a_stream_of_balances_and_reports_only():
    det = ReserveMisuse()
    stream = [
        *SETUP,
        balance("R1", at(0), "800000"),
        balance("R2", at(0), "100000"),
        report("PI", 0, "1000000"),
    ]
    alerts = run(det, stream, finish=True)
    assert [(a.alert_id, a.severity, a.amount) for a in alerts] == [
        (shortfall_id(0), "high", "100000.00")
    ]


def test_a_report_before_the_institutions_first_event_is_compared_with_its_opening():
    # Flows that do not touch PI's reserves do not move PI's clock; its first
    # own record (day 1) settles the report for day 0 against the balances it
    # had before that record.
    det = ReserveMisuse()
    run(
        det,
        [
            *SETUP,
            clearing("X", at(0, 9), "C1P", "MSET", "10", purpose="pay"),
            report("PI", 0, "1000"),
        ],
    )
    alerts = run(det, [clearing("Y", at(1, 9), "C1P", "R1", "10", purpose="topup")])
    assert [(a.alert_id, a.severity, a.amount) for a in alerts] == [
        (shortfall_id(0), "critical", "1000.00")
    ]
    assert alerts[0].evidence["coverage_ratio"] == "0.0000"


def test_a_continuing_shortfall_keeps_its_id_and_a_recovery_ends_it():
    det = ReserveMisuse()
    run(det, [*SETUP, balance("R1", at(0), "990000"), report("PI", 0, "1000000")])
    first = close_day(det, 0)
    run(det, [report("PI", 1, "1100000")])  # 10 % short on day 1
    second = close_day(det, 1)
    assert [(a.alert_id, a.severity, a.revision, a.amount) for a in first + second] == [
        (shortfall_id(0), "medium", 1, "10000.00"),
        (shortfall_id(0), "high", 2, "110000.00"),
    ]
    assert second[0].first_ts == iso_at(at(1))
    assert second[0].last_ts == iso_at(at(2))
    run(det, [report("PI", 2, "990000")])  # covered: the episode ends
    assert close_day(det, 2) == []
    run(det, [report("PI", 3, "1000000")])
    third = close_day(det, 3)
    assert [(a.alert_id, a.revision) for a in third] == [(shortfall_id(3), 1)]


# -- how balances are built ---------------------------------------------------


def test_balances_count_each_txn_id_once_custody_and_clearing_alike():
    eng = Engine()
    refund = clearing("RF1", at(0, 10), "R1", "EXT", "30000", purpose="refund")
    stream = [
        *SETUP,
        balance("R1", at(0), "1000000"),
        refund,
        refund,  # redelivered
        custody("CU1", at(0, 11), "C1P", "R2", "10000", "recharge", platform="PI", bank="BK1"),
        report("PI", 0, "1000000"),
        clearing("NEXT", at(1, 9), "C1P", "R1", "1", purpose="topup"),  # PI's clock passes day 0
    ]
    alerts = [a for r in stream for a in eng.process(r)]
    assert eng.counts == {"accepted": len(stream) - 1, "duplicates": 1, "too_late": 0}
    assert [(a.detector, a.alert_id, a.severity, a.amount) for a in alerts] == [
        ("reserve_misuse", shortfall_id(0), "medium", "20000.00")
    ]
    assert alerts[0].evidence["reserve_balance"] == "980000.00"


def test_a_balance_snapshot_arriving_after_later_txns_keeps_only_the_txns_after_it():
    stream = [
        *SETUP,
        balance("R1", at(0), "1000000"),
        clearing("RF", at(0, 10), "R1", "EXT", "50000", purpose="refund"),
        clearing("IN", at(0, 12), "C1P", "R1", "20000", purpose="topup"),
        balance("R1", at(0, 11), "900000"),  # the bank's 11:00 figure, late
        balance("R1", at(0, 5), "1"),  # older than what is settled: ignored
        report("PI", 0, "1000000"),
    ]
    det = ReserveMisuse()
    run(det, stream)
    alerts = close_day(det, 0)
    assert [(a.severity, a.amount) for a in alerts] == [("high", "80000.00")]
    assert alerts[0].evidence["reserve_balance"] == "920000.00"


def test_txns_before_the_opening_balance_are_inside_it():
    stream = [
        *SETUP,
        clearing("OLD", at(-1, 20), "C1P", "R1", "500000", purpose="topup"),
        balance("R1", at(0), "1000000"),
        clearing("LATE", at(-1, 22), "C1P", "R1", "500000", purpose="topup"),
        report("PI", 0, "1010000"),
    ]
    det = ReserveMisuse()
    run(det, stream)
    alerts = close_day(det, 0)
    assert [(a.severity, a.amount, a.evidence["reserve_balance"]) for a in alerts] == [
        ("low", "10000.00", "1000000.00")
    ]


def test_other_currencies_are_not_added_to_the_balance():
    stream = [
        *SETUP,
        balance("R1", at(0), "1000000"),
        clearing("USD", at(0, 10), "C1P", "R1", "500000", purpose="topup", currency="USD"),
        report("PI", 0, "1100000"),
    ]
    det = ReserveMisuse()
    run(det, stream)
    assert [a.amount for a in close_day(det, 0)] == ["100000.00"]


# -- outflows -----------------------------------------------------------------


@pytest.mark.parametrize(
    "payee, purpose, owner",
    [
        ("OPS", "transfer", "PI"),  # its own operating account
        ("OPS", "refund", "PI"),  # a normal purpose does not make its own account an outside party
        ("HC", "settlement", "HOLD"),  # a related entity (its shareholder)
        ("EXT", "transfer", None),  # an unknown party, not paid for normal business
        ("EXT", None, None),
    ],
)
def test_outflows_that_are_misuse(payee, purpose, owner):
    stream = [
        *SETUP,
        balance("R1", at(0), "1000000"),
        clearing("MV", at(0, 10), "R1", payee, "200000", purpose=purpose),
    ]
    alerts = run(ReserveMisuse(), stream)
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.alert_id, a.subject_id, a.severity, a.amount, a.revision) == (
        make_alert_id("reserve_misuse", "PI", "reserve_outflow", payee, at(0, 10)),
        "PI",
        "medium",
        "200000.00",
        1,
    )
    assert a.accounts == ("R1", payee)
    assert (a.first_ts, a.last_ts) == (iso_at(at(0, 10)), iso_at(at(0, 10)))
    ev = a.evidence
    assert (ev["signal"], ev["counterparty_account"], ev["counterparty_owner"]) == (
        "reserve_outflow",
        payee,
        owner,
    )
    assert (ev["reserve_accounts"], ev["reserve_balance"], ev["amount"]) == (
        ["R1", "R2"],
        "800000.00",
        "200000.00",
    )
    assert ev["offending_txn_ids"] == ["MV"]


@pytest.mark.parametrize(
    "payee, purpose",
    [
        ("EXT", "refund"),
        ("EXT", "payout"),
        ("EXT", "withdraw"),
        ("EXT", "settlement"),
        ("MSET", "transfer"),  # a merchant's settlement account
        ("MCORP", None),  # a merchant's corporate account
        ("C1P", "withdraw"),  # a client
        ("R2", "transfer"),  # between its own reserve accounts
    ],
)
def test_outflows_that_are_business(payee, purpose):
    stream = [
        *SETUP,
        balance("R1", at(0), "1000000"),
        clearing("MV", at(0, 10), "R1", payee, "200000", purpose=purpose),
    ]
    det = ReserveMisuse()
    assert run(det, stream, finish=True) == []


@pytest.mark.parametrize(
    "amount, severity",
    [
        ("99999.99", "low"),
        ("100000.00", "medium"),
        ("999999.99", "medium"),
        ("1000000.00", "high"),
        ("10000000.00", "critical"),
    ],
)
def test_outflow_severity_by_amount(amount, severity):
    stream = [
        *SETUP,
        balance("R1", at(0), "20000000"),
        clearing("MV", at(0, 10), "R1", "OPS", amount),
    ]
    assert [(a.severity, a.amount) for a in run(ReserveMisuse(), stream)] == [(severity, amount)]


def test_repeated_outflows_grow_one_episode_until_a_quiet_week():
    det = ReserveMisuse()
    run(det, [*SETUP, balance("R1", at(0), "1000000")])
    first = run(det, [clearing("M1", at(0, 10), "R1", "OPS", "60000")])
    more = run(det, [clearing("M2", at(3, 10), "R1", "OPS", "50000")])
    aid = make_alert_id("reserve_misuse", "PI", "reserve_outflow", "OPS", at(0, 10))
    assert [(a.alert_id, a.revision, a.severity, a.amount) for a in first + more] == [
        (aid, 1, "low", "60000.00"),
        (aid, 2, "medium", "110000.00"),
    ]
    assert more[0].evidence["offending_txn_ids"] == ["M1", "M2"]
    assert (more[0].first_ts, more[0].last_ts) == (iso_at(at(0, 10)), iso_at(at(3, 10)))
    later = run(det, [clearing("M3", at(10, 11), "R1", "OPS", "1000")])
    assert [(a.alert_id, a.revision, a.amount) for a in later] == [
        (make_alert_id("reserve_misuse", "PI", "reserve_outflow", "OPS", at(10, 11)), 1, "1000.00")
    ]


# -- where reserves are kept, and interest ------------------------------------


def test_a_reserve_account_at_a_bank_without_the_custody_licence():
    stream = [
        *SETUP,
        account("R3", "PI", "client_reserve", bank="BK2"),
        account("R4", "PI", "client_reserve", bank="UNKNOWNBANK"),
        balance("R3", at(0), "5000"),
        clearing("IN", at(0, 9), "C1P", "R1", "10", purpose="topup"),
    ]
    det = ReserveMisuse()
    # PI's first own record (the balance of R3) starts its clock, and the
    # licences of its reserve banks are checked then.
    alerts = run(det, stream)
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.alert_id, a.subject_id, a.severity, a.amount) == (
        make_alert_id("reserve_misuse", "PI", "reserve_at_unlicensed_bank", "R3", "BK2"),
        "PI",
        "high",
        "5000.00",
    )
    assert a.accounts == ("R3",)
    assert (a.evidence["bank_id"], a.evidence["bank_licenses"], a.evidence["reserve_account"]) == (
        "BK2",
        ["deposit"],
        "R3",
    )
    det.advance(at(3))
    assert det.finish().drain() == []


@pytest.mark.parametrize(
    "txn",
    [
        clearing("INT", at(0, 10), "BK1INT", "R1", "1234.56", purpose="interest"),
        custody("INT", at(0, 10), "BK1INT", "R1", "1234.56", "interest", platform="PI", bank="BK1"),
    ],
    ids=["clearing", "custody"],
)
def test_interest_credited_to_a_reserve_account(txn):
    alerts = run(ReserveMisuse(), [*SETUP, balance("R1", at(0), "1000000"), txn])
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.alert_id, a.severity, a.amount) == (
        make_alert_id("reserve_misuse", "PI", "reserve_interest", "R1", at(0, 10)),
        "low",
        "1234.56",
    )
    assert a.accounts == ("R1",)
    assert (
        a.evidence["signal"],
        a.evidence["offending_txn_ids"],
        a.evidence["counterparty_owner"],
    ) == (
        "reserve_interest",
        ["INT"],
        None,
    )


def test_a_report_from_an_institution_with_no_known_reserve_account_is_not_a_shortfall():
    # A missing reference is an unknown party, not proof of a shortfall.
    det = ReserveMisuse()
    stream = [
        *SETUP,
        report("PX", 0, "1000000"),
        clearing("IN1", at(0, 9), "C1P", "R1", "30000", purpose="topup"),
    ]
    assert run(det, stream) == []
    assert close_day(det, 0) == []
    assert det.finish().drain() == []
    assert det.unmatched_reports == 1


def test_the_unlicensed_bank_alert_states_the_balance_of_that_account():
    # PI's first record touches another reserve account; R3's licence is
    # judged at R3's own first record, so the alert carries R3's balance.
    stream = [
        *SETUP,
        account("R3", "PI", "client_reserve", bank="BK2"),
        clearing("IN", at(0, 9), "C1P", "R1", "10", purpose="topup"),
        balance("R3", at(0, 10), "7500"),
    ]
    alerts = run(ReserveMisuse(), stream)
    assert [(a.evidence["reserve_account"], a.amount, a.first_ts) for a in alerts] == [
        ("R3", "7500.00", iso_at(at(0, 10)))
    ]
