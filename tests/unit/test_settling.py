"""Episodes settle in event time (detectors/alerting.py ``AlertBook``,
detectors/base.py ``Detector._settle``), for every detector.

Each case is an episode whose growth after its first alert stays under
``[alerts] reemit_growth_pct`` (10 %), so the alert book does not say it
again at once; a record of the same subject after the episode's end (its
window or gap, its local day, its exposure closing) settles it: the last
revision carries the complete figures, with no ``finish()`` call. Then the
end of a stream: ``finish()`` twice emits nothing the second time, and
``finish()`` with more records after it gives the final figures of one
``finish()`` at the end.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from ledger import (
    DAY_MS,
    MINUTE_MS,
    account,
    at,
    borrowers,
    clearing,
    custody,
    entity,
    iso_at,
    lenders,
    loan,
    mixed_stream,
    numbered,
    p2p_platform,
    payment_institution,
    product,
    run,
)
from typology_ledger import fan_in

from fundflow.detectors import (
    CrossBankClearing,
    DownPaymentLoan,
    Engine,
    ExcessiveReturn,
    FanIn,
    FundPool,
    GuaranteedReturn,
    MaturityMismatch,
    PrivateProductSplit,
    ReserveMisuse,
    SelfFinancing,
    UnlicensedBusiness,
    load_config,
)
from fundflow.schemas.records import Alert, Product


def figures(a: Alert) -> tuple:
    return (a.revision, a.amount, a.first_ts, a.last_ts)


def settles(det, episode: list, later: list) -> tuple[list[Alert], list[Alert]]:
    """The alerts of ``episode``, then those of ``later`` (records after its end)."""
    return run(det, episode), run(det, later)


# -- fund_pool: a window after the rule last held -----------------------------------


def test_fund_pool_gather_scatter_settles_a_window_after_it_last_held():
    episode = [*p2p_platform(), *lenders(22), *borrowers(4)]
    episode += [
        custody(f"IN{i:02d}", at(0, 9, i), lender, "POOL", "50000", "invest")
        for i, lender in enumerate(numbered("L", 20))
    ]
    episode += [
        custody(f"OUT{i}", at(1, 10, i), "POOL", f"B0{i + 1}", "250000", "disburse", loan=f"LN{i}")
        for i in range(4)
    ]
    # 5 % more, a day later (for a loan: not idle money): the rule still
    # holds, the book says nothing.
    episode.append(custody("MORE", at(2, 9), "L21", "POOL", "50000", "invest", loan="LN5"))
    # A week and a minute after MORE: a direct payment, no pool money.
    later = [custody("TICK", at(9, 9, 1), "L22", "B01", "100", "invest", loan="LN9")]
    first, last = settles(FundPool(), episode, later)
    assert [figures(a) for a in first] == [
        (1, "1000000.00", iso_at(at(0, 9)), iso_at(at(1, 10, 1)))
    ]
    [a] = last
    assert figures(a) == (2, "1050000.00", iso_at(at(0, 9)), iso_at(at(2, 9)))
    assert (a.evidence["distinct_sources"], a.evidence["inflow"]) == (21, "1050000.00")
    assert a.evidence["window_end"] == iso_at(at(2, 9))


def test_fund_pool_idle_money_settles_when_it_leaves_its_account():
    episode = [
        *p2p_platform(),
        *lenders(2),
        *borrowers(1),
        custody("I1", at(0, 9), "L01", "POOL", "100000", "invest"),
        custody("I2", at(1, 9), "L02", "POOL", "5000", "invest"),
        # A week after I1, the first tick of day 7 finds it idle: alerted.
        custody("K1", at(7, 10), "L02", "B01", "1", "invest", loan="LNK"),
        # A day later I2 is idle too: 5 % more, not said.
        custody("K2", at(8, 10), "L02", "B01", "1", "invest", loan="LNK"),
    ]
    # The money is lent at last: the episode is over. Its tick looks first.
    later = [custody("D1", at(9, 10), "POOL", "B01", "105000", "disburse", loan="LN1")]
    first, last = settles(FundPool(), episode, later)
    assert [figures(a) for a in first] == [(1, "100000.00", iso_at(at(0, 9)), iso_at(at(7, 10)))]
    [a] = last
    assert figures(a) == (2, "105000.00", iso_at(at(0, 9)), iso_at(at(9, 10)))
    assert a.evidence["sample_txn_ids"] == ["I1", "I2"]


# -- reserve_misuse: the episode gap; the next day's close -----------------------------


def test_reserve_outflow_settles_an_episode_gap_after_its_last_payment():
    episode = [
        *payment_institution(),
        clearing("O1", at(0, 15), "R1", "OPS", "150000"),
        clearing("O2", at(1, 15), "R1", "OPS", "10000"),
    ]
    # Seven days and a second after O2 (episode_gap_days = 7): a client's deposit.
    later = [clearing("C1", at(8, 15, 0) + 1000, "C1P", "R1", "100")]
    first, last = settles(ReserveMisuse(), episode, later)
    outflows = [a for a in first if a.evidence["signal"] == "reserve_outflow"]
    assert [figures(a) for a in outflows] == [
        (1, "150000.00", iso_at(at(0, 15)), iso_at(at(0, 15)))
    ]
    [a] = [a for a in last if a.evidence["signal"] == "reserve_outflow"]
    assert figures(a) == (2, "160000.00", iso_at(at(0, 15)), iso_at(at(1, 15)))
    assert a.evidence["offending_txn_ids"] == ["O1", "O2"]


# -- maturity_mismatch: the exposure closes ----------------------------------------


def test_mismatch_exposure_settles_when_no_mismatched_money_is_open():
    episode = [
        *p2p_platform(),
        *lenders(3),
        *borrowers(2),
        product("P30", 30),
        loan("LN1", 60, "600000"),
        loan("LN2", 60, "20000", borrower="B02"),
        custody("F1", at(0, 10), "L01", "B01", "600000", "invest", product="P30", loan="LN1"),
        custody("F2", at(1, 10), "L02", "B02", "20000", "invest", product="P30", loan="LN2"),
    ]
    later = [
        custody("R1", at(50, 10), "B01", "L01", "600000", "repay", loan="LN1"),
        custody("R2", at(50, 11), "B02", "L02", "20000", "repay", loan="LN2"),
    ]
    first, last = settles(MaturityMismatch(), episode, later)
    exposures = [a for a in first if a.evidence["signal"] == "mismatch_exposure"]
    assert [figures(a) for a in exposures] == [
        (1, "600000.00", iso_at(at(0, 10)), iso_at(at(0, 10)))
    ]
    [a] = [a for a in last if a.evidence["signal"] == "mismatch_exposure"]
    assert figures(a) == (2, "620000.00", iso_at(at(0, 10)), iso_at(at(1, 10)))
    assert [r["loan_id"] for r in a.evidence["loans"]] == ["LN1", "LN2"]


# -- self_financing: the local day ---------------------------------------------------


def test_self_financing_settles_when_its_day_is_over():
    episode = [
        *p2p_platform(),
        *lenders(2),
        custody("I1", at(0, 9), "L01", "POOL", "100000", "invest"),
        custody("X1", at(0, 10), "POOL", "X1", "100000", "transfer"),
        custody("I2", at(0, 11), "L02", "POOL", "5000", "invest"),
        custody("X2", at(0, 12), "POOL", "X1", "5000", "transfer"),
    ]
    later = [custody("TICK", at(1, 0), "L02", "B01", "1", "invest", loan="LNX")]
    first, last = settles(SelfFinancing(), episode, later)
    assert [figures(a) for a in first] == [(1, "100000.00", iso_at(at(0, 10)), iso_at(at(0, 10)))]
    [a] = last
    assert figures(a) == (2, "105000.00", iso_at(at(0, 10)), iso_at(at(0, 12)))
    assert a.evidence["sample_txn_ids"] == ["X1", "X2"]


# -- guaranteed_return: the episode gap ------------------------------------------------


def test_guaranteed_return_settles_an_episode_gap_after_its_last_payment():
    episode = [
        *p2p_platform(),
        *lenders(2),
        *borrowers(1),
        loan("LN1", 30, "100000"),
        custody("P1", at(0, 10), "OWN", "L01", "2000", "repay", loan="LN1"),
        custody("P2", at(1, 10), "OWN", "L02", "100", "repay", loan="LN1"),
    ]
    # Thirty days and a second after P2 (episode_gap_days = 30).
    later = [custody("TICK", at(31, 10) + 1000, "L02", "B01", "1", "invest", loan="LNX")]
    first, last = settles(GuaranteedReturn(), episode, later)
    assert [figures(a) for a in first] == [(1, "2000.00", iso_at(at(0, 10)), iso_at(at(0, 10)))]
    [a] = last
    assert figures(a) == (2, "2100.00", iso_at(at(0, 10)), iso_at(at(1, 10)))
    assert a.evidence["sample_txn_ids"] == ["P1", "P2"]


# -- excessive_return: a subsidy's window after its last payment ------------------------


def test_subsidies_settle_with_their_total_a_window_after_the_last():
    """Forty subsidies total 5,780 yuan; the last revision the growth rule
    allows states 5,410 (the 38th); the last two add 370, under 10 %."""
    amounts = ["130"] * 37 + ["600", "185", "185"]
    episode = [*p2p_platform(), *lenders(40)]
    episode += [
        custody(f"S{i + 1:02d}", at(i // 4, 9 + i % 4), "OWN", lender, amount, "subsidy")
        for i, (lender, amount) in enumerate(zip(numbered("L", 40), amounts, strict=True))
    ]
    last_subsidy = at(39 // 4, 9 + 39 % 4)
    # Thirty days and a second after the last one (subsidy_window_days = 30).
    later = [custody("TICK", last_subsidy + 30 * DAY_MS + 1000, "L01", "B01", "1", "invest")]
    first, last = settles(ExcessiveReturn(), episode, later)
    assert [a.amount for a in first][-1] == "5410.00"
    [a] = last
    assert figures(a) == (len(first) + 1, "5780.00", iso_at(at(0, 9)), iso_at(last_subsidy))
    assert (a.evidence["subsidy"], a.evidence["lender_accounts"]) == ("5780.00", 40)


# -- cross_bank_clearing: a window after the rule last held ------------------------------


def test_cross_bank_clearing_settles_a_window_after_it_last_held():
    setup = [
        entity("BK1", "bank", licenses=("custody",)),
        entity("BK2", "bank"),
        entity("PJ", "payment_institution", licenses=("payment",)),
        account("PJA", "PJ", "settlement", bank="BK1"),
        account("PJB", "PJ", "settlement", bank="BK2"),
    ]
    moves = [
        clearing(f"X{i + 1}", at(i, 9), "PJA", "PJB", "100000", system="direct", initiator="PJ")
        for i in range(6)
    ]
    moves[5] = clearing("X6", at(5, 9), "PJA", "PJB", "40000", system="direct", initiator="PJ")
    # A CNAPS payment of PJ's (not counted) a week and a second after X6.
    later = [clearing("C1", at(12, 9) + 1000, "PJA", "PJB", "1", system="CNAPS", initiator="PJ")]
    first, last = settles(CrossBankClearing(), [*setup, *moves], later)
    assert [figures(a) for a in first] == [(1, "500000.00", iso_at(at(0, 9)), iso_at(at(4, 9)))]
    [a] = last
    assert figures(a) == (2, "540000.00", iso_at(at(0, 9)), iso_at(at(5, 9)))
    assert a.evidence["transfers"] == 6


# -- unlicensed_business: the local day -----------------------------------------------


def test_unlicensed_payment_settles_when_its_day_is_over():
    episode = [
        entity("BK1", "bank", licenses=("custody",)),
        entity("SHADOW"),
        entity("M"),
        account("MA", "M", "corporate", bank="BK1"),
        account("MB", "M", "corporate", bank="BK1"),
        clearing("U1", at(0, 10), "MA", "MB", "100000", initiator="SHADOW"),
        clearing("U2", at(0, 11), "MA", "MB", "5000", initiator="SHADOW"),
    ]
    later = [clearing("U3", at(1, 10), "MA", "MB", "1", initiator="SHADOW")]
    first, last = settles(UnlicensedBusiness(), episode, later)
    payments = [a for a in first if a.evidence["signal"] == "unlicensed_payment"]
    assert [figures(a) for a in payments] == [
        (1, "100000.00", iso_at(at(0, 10)), iso_at(at(0, 10)))
    ]
    # Day 0's figures settle before U3 (which waits for day 1's end) adds to them.
    [a] = [a for a in last if a.evidence["signal"] == "unlicensed_payment"]
    assert figures(a) == (2, "105000.00", iso_at(at(0, 10)), iso_at(at(0, 11)))
    assert a.evidence["transactions"] == 2


# -- down_payment_loan: the local day ---------------------------------------------------


def test_down_payment_loan_settles_when_its_day_is_over():
    episode = [
        entity("P", "p2p_platform", licenses=("p2p_registered",)),
        entity("RE", "real_estate"),
        entity("W01", "person"),
        account("L01", "U01", "lender_sub", platform="P"),
        account("B01", "W01", "borrower_sub", platform="P"),
        account("W01P", "W01", "personal", bank="BK1"),
        account("HOUSE", "RE", "corporate", bank="BK1"),
        loan("LN1", 30, "300000", borrower="B01"),
        custody("I1", at(0, 10), "L01", "B01", "300000", "invest", loan="LN1"),
        custody("W1", at(0, 11), "B01", "W01P", "300000", "withdraw"),
        clearing("H1", at(0, 15), "W01P", "HOUSE", "250000", initiator="BK1"),
        clearing("H2", at(0, 16), "W01P", "HOUSE", "10000", initiator="BK1"),
    ]
    later = [custody("TICK", at(1, 9), "L01", "B01", "1", "fee")]
    first, last = settles(DownPaymentLoan(), episode, later)
    assert [figures(a) for a in first] == [(1, "250000.00", iso_at(at(0, 15)), iso_at(at(0, 15)))]
    [a] = last
    assert figures(a) == (2, "260000.00", iso_at(at(0, 15)), iso_at(at(0, 16)))
    assert a.evidence["trail_txn_ids"] == ["I1", "W1", "H1", "H2"]


# -- private_product_split: the local day -----------------------------------------------


def test_a_private_product_settles_with_every_investor_when_its_day_is_over():
    """201 investors and 252.66 million yuan when first alerted; 205 owners
    paid 273.75 million by the day's end, 8.3 % more."""
    owners = numbered("V", 205, start=1)
    episode = [
        *p2p_platform(),
        Product(
            product_id="PRIV",
            platform_id="P",
            term_days=360,
            annual_rate=Decimal("0.08"),
            private=True,
        ),
        *[account(f"A{o}", o, "lender_sub", platform="P") for o in owners],
    ]
    amounts = ["1260000"] * 200 + ["660000"] + ["5272500"] * 4
    episode += [
        custody(
            f"T{i + 1:03d}",
            at(0, 8) + i * MINUTE_MS,
            f"A{o}",
            "POOL",
            amount,
            "invest",
            product="PRIV",
        )  # fmt: skip
        for i, (o, amount) in enumerate(zip(owners, amounts, strict=True))
    ]
    later = [custody("TICK", at(1, 0), "L01", "B01", "1", "fee")]
    first, last = settles(PrivateProductSplit(), episode, later)
    assert [(a.revision, a.amount, a.evidence["distinct_investors"]) for a in first] == [
        (1, "252660000.00", 201)
    ]
    [a] = last
    assert figures(a) == (2, "273750000.00", iso_at(at(0, 8)), iso_at(at(0, 8) + 204 * MINUTE_MS))
    assert (a.evidence["distinct_investors"], a.evidence["invested"]) == (205, "273750000.00")
    assert "205 distinct investors" in a.summary


# -- the typologies: a window after the shape last held -----------------------------------


def test_a_typology_settles_a_window_after_its_shape_last_held():
    episode = [
        *fan_in("H", 10, "20000", start=at(0, 9)),
        clearing("FI11", at(0, 10), "FIP11", "H", "10000"),
    ]
    # 72 hours and a second after FI11: an unrelated transfer moves the stream's clock.
    later = [clearing("Z1", at(3, 10) + 1000, "ZA", "ZB", "10000")]
    # Absolute floors in yuan: a stream this short has no scale of its own.
    floors = load_config(overrides={"fan_in": {"min_payment": "10000", "min_payment_pct": 0}})
    first, last = settles(FanIn(floors), episode, later)
    assert [figures(a) for a in first] == [(1, "200000.00", iso_at(at(0, 9)), iso_at(at(0, 9, 9)))]
    [a] = last
    assert figures(a) == (2, "210000.00", iso_at(at(0, 9)), iso_at(at(0, 10)))


# -- a heartbeat --------------------------------------------------------------------


def test_a_heartbeat_settles_what_ended_before_it_and_only_that():
    det = CrossBankClearing()
    setup = [
        entity("PJ", "payment_institution", licenses=("payment",)),
        account("PJA", "PJ", "settlement", bank="BK1"),
        account("PJB", "PJ", "settlement", bank="BK2"),
    ]
    moves = [
        clearing(f"X{i + 1}", at(i, 9), "PJA", "PJB", each, system="direct", initiator="PJ")
        for i, each in enumerate(["100000"] * 5 + ["40000"])
    ]
    assert len(run(det, [*setup, *moves])) == 1
    # The window after X6 (day 5, 09:00) has not passed at its last millisecond ...
    assert det.advance(at(12, 9)).drain() == []
    # ... and has a millisecond later.
    assert [a.amount for a in det.advance(at(12, 9) + 1).drain()] == ["540000.00"]
    assert det.advance(at(13)).drain() == []


# -- the end of a stream ----------------------------------------------------------------

STREAM = mixed_stream()


def _last(alerts: list[Alert]) -> dict[str, tuple]:
    """Each alert id's last revision, its figures apart from the revision number."""
    out = {}
    for a in alerts:
        out[a.alert_id] = (a.severity, a.amount, a.first_ts, a.last_ts, a.accounts, a.evidence)
    return out


def _engine_run(records: list, cuts: tuple[int, ...] = ()) -> tuple[list[Alert], Engine]:
    eng = Engine()
    alerts: list[Alert] = []
    for i, r in enumerate(records):
        if i in cuts:
            alerts += eng.finish()
        alerts += eng.submit(r)
    return alerts + eng.finish(), eng


def test_finish_twice_emits_nothing_the_second_time():
    alerts, eng = _engine_run(STREAM)
    assert alerts
    assert eng.finish() == []
    assert eng.advance(eng.now) == []


@pytest.mark.parametrize("cut", [60, 90, 110, len(STREAM) - 1])
def test_finish_then_more_records_gives_the_final_figures_of_one_finish(cut):
    once, _ = _engine_run(STREAM)
    twice, _ = _engine_run(STREAM, (cut,))
    assert _last(twice) == _last(once)


def test_finish_keeps_what_later_records_extend():
    # A pool alerted, finished, then grown past 10 % by records after the finish.
    episode = [*p2p_platform(), *lenders(23), *borrowers(4)]
    episode += [
        custody(f"IN{i:02d}", at(0, 9, i), lender, "POOL", "50000", "invest")
        for i, lender in enumerate(numbered("L", 20))
    ]
    episode += [
        custody(f"OUT{i}", at(1, 10, i), "POOL", f"B0{i + 1}", "250000", "disburse", loan=f"LN{i}")
        for i in range(4)
    ]
    det = FundPool()
    assert [figures(a) for a in run(det, episode, finish=True)] == [
        (1, "1000000.00", iso_at(at(0, 9)), iso_at(at(1, 10, 1))),
        (2, "1000000.00", iso_at(at(0, 9)), iso_at(at(1, 10, 3))),
    ]
    more = [
        custody(f"MORE{i}", at(2, 9, i), lender, "POOL", "50000", "invest")
        for i, lender in enumerate(["L21", "L22", "L23"])
    ]
    assert [figures(a) for a in run(det, more, finish=True)] == [
        (3, "1100000.00", iso_at(at(0, 9)), iso_at(at(2, 9, 1))),
        (4, "1150000.00", iso_at(at(0, 9)), iso_at(at(2, 9, 2))),
    ]


def test_a_snapshot_keeps_the_waiting_figures():
    det = ExcessiveReturn()
    episode = [*p2p_platform(), *lenders(3)]
    episode += [
        custody("S1", at(0, 9), "OWN", "L01", "2000", "subsidy"),
        custody("S2", at(1, 9), "OWN", "L02", "100", "subsidy"),
    ]
    assert [a.amount for a in run(det, episode)] == ["2000.00"]
    blob = det.snapshot()
    later = [custody("TICK", at(31, 9) + 1000, "L03", "B01", "1", "invest")]
    settled = run(det, later)
    assert [(a.revision, a.amount) for a in settled] == [(2, "2100.00")]
    assert run(ExcessiveReturn().restore(blob), later) == settled
