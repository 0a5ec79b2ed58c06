"""cross_bank_clearing on hand-made clearing ledgers: transfers between one
payment institution's own accounts at two banks outside CNAPS/NUCC/CUP.

Institution PJ owns PJA at BK1 and PJB at BK2 (and PJC, also at BK1).
Defaults: 5 transfers and 500,000 yuan within 7 days.
"""

from __future__ import annotations

import pytest
from ledger import DAY_MS, account, at, clearing, entity, fen, iso_at, run

from fundflow.detectors import CrossBankClearing, load_config
from fundflow.detectors.alerting import make_alert_id, yuan

SETUP = [
    entity("BK1", "bank", licenses=("custody",)),
    entity("BK2", "bank"),
    entity("PJ", "payment_institution", licenses=("payment",)),
    entity("M"),
    account("PJA", "PJ", "settlement", bank="BK1"),
    account("PJB", "PJ", "settlement", bank="BK2"),
    account("PJC", "PJ", "operating", bank="BK1"),
    account("MA", "M", "corporate", bank="BK2"),
]
THRESHOLDS = load_config().thresholds("cross_bank_clearing")


def moves(n: int, each: str, *, system: str = "direct", start: int = at(0, 9), step: int = DAY_MS,
          payer: str = "PJA", payee: str = "PJB", prefix: str = "X"):  # fmt: skip
    return [
        clearing(
            f"{prefix}{i + 1}", start + i * step, payer, payee, each, system=system, initiator="PJ"
        )  # fmt: skip
        for i in range(n)
    ]


def test_five_direct_transfers_in_a_week_are_an_alert():
    (alert,) = run(CrossBankClearing(), [*SETUP, *moves(5, "100000")])
    assert alert.alert_id == make_alert_id(
        "cross_bank_clearing", "PJ", "cross_bank_transfer", at(0, 9)
    )
    assert (alert.subject_id, alert.severity, alert.amount) == ("PJ", "medium", "500000.00")
    assert alert.accounts == ("PJA", "PJB")
    assert (alert.first_ts, alert.last_ts) == (iso_at(at(0, 9)), iso_at(at(4, 9)))
    ev = alert.evidence
    assert ev["banks"] == ["BK1", "BK2"]
    assert (ev["transfers"], ev["window_transfers"], ev["window_amount"]) == (5, 5, "500000.00")
    assert ev["sample_txn_ids"] == ["X1", "X2", "X3", "X4", "X5"]
    assert ev["thresholds"] == THRESHOLDS


def test_four_transfers_are_not_enough_however_large():
    assert run(CrossBankClearing(), [*SETUP, *moves(4, "9000000")], finish=True) == []


def test_just_under_the_amount_is_not_an_alert():
    recs = [*SETUP, *moves(4, "100000"), *moves(1, "99999.99", start=at(5), prefix="Y")]
    assert run(CrossBankClearing(), recs, finish=True) == []


def test_the_window_is_seven_days():
    # Five transfers spread over exactly 7 days: the first has left the window.
    spread = moves(5, "200000", step=7 * DAY_MS // 4)
    assert run(CrossBankClearing(), [*SETUP, *spread], finish=True) == []
    inside = moves(5, "200000", step=7 * DAY_MS // 4 - 1)
    (alert,) = run(CrossBankClearing(), [*SETUP, *inside])
    assert alert.amount == "1000000.00"


@pytest.mark.parametrize("system", ["CNAPS", "NUCC", "CUP"])
def test_transfers_through_a_clearing_system_never_count(system):
    assert (
        run(CrossBankClearing(), [*SETUP, *moves(10, "500000", system=system)], finish=True) == []
    )


def test_same_bank_other_owner_or_unknown_accounts_never_count():
    recs = [
        *SETUP,
        *moves(6, "500000", payee="PJC", prefix="S"),  # both at BK1
        *moves(6, "500000", payee="MA", prefix="M"),  # a merchant's account
        *moves(6, "500000", payee="NOWHERE", prefix="U"),  # unknown account
    ]
    assert run(CrossBankClearing(), recs, finish=True) == []


def test_an_institution_not_of_the_payment_kind_is_not_judged():
    recs = [entity("PJ", "company"), *SETUP[3:], *moves(6, "500000")]
    assert run(CrossBankClearing(), recs, finish=True) == []


def test_the_episode_grows_under_one_id_and_a_later_one_is_new():
    det = CrossBankClearing()
    first = run(det, [*SETUP, *moves(5, "100000"), *moves(1, "60000", start=at(4, 12), prefix="G")])
    assert [a.revision for a in first] == [1, 2]
    assert first[1].amount == "560000.00" and first[1].evidence["transfers"] == 6
    # Five weeks later, a second run of transfers is a second episode.
    later = run(det, moves(5, "100000", start=at(40, 9), prefix="L"))
    (alert,) = later
    assert alert.alert_id == make_alert_id(
        "cross_bank_clearing", "PJ", "cross_bank_transfer", at(40, 9)
    )
    assert alert.revision == 1 and alert.amount == "500000.00"


@pytest.mark.parametrize(
    ("each", "severity"),
    [
        ("1999999.99", "medium"),
        ("2000000", "high"),
        ("19999999.99", "high"),
        ("20000000", "critical"),
    ],
)
def test_severity_by_the_money_moved(each, severity):
    (alert,) = run(CrossBankClearing(), [*SETUP, *moves(5, each)])
    assert (alert.severity, alert.amount) == (severity, yuan(5 * fen(each)))


def test_thresholds_come_from_the_configuration():
    cfg = load_config(overrides={"cross_bank_clearing": {"min_transfers": 2, "min_amount": "1"}})
    (alert,) = run(CrossBankClearing(cfg), [*SETUP, *moves(2, "1")])
    assert alert.amount == "2.00" and alert.evidence["thresholds"]["min_transfers"] == 2


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("min_transfers", 0, "cross_bank_clearing.min_transfers must be >= 1, got 0"),
        ("window_days", 0, "cross_bank_clearing.window_days must be >= 1, got 0"),
        ("systems", ["SWIFT"], "cross_bank_clearing.systems must name clearing systems"),
        ("min_amount", "-1", "cross_bank_clearing.min_amount must be a non-negative amount"),
    ],
)
def test_bad_thresholds_are_refused(key, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config(overrides={"cross_bank_clearing": {key: value}})
