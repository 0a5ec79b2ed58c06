"""State stays bounded by its windows, not by history.

A long stream of distinct accounts and transactions, well past every window,
must leave only what the windows hold: the fund-pool window's events, the
investments still within their product's term, misuse episodes that could
still grow, and the deduplicator's horizon. Counts are pinned exactly.
"""

from __future__ import annotations

from decimal import Decimal

from fundflow.detectors import Engine, load_config
from fundflow.detectors.engine import Deduplicator
from fundflow.schemas.records import Account, ClearingTxn, CustodyTxn, Entity, Loan, Product

HOUR = 3_600_000
DAY = 24 * HOUR
START = 1_772_294_400_000  # 2026-03-01T00:00+08:00
HOURS = 60 * 24  # one invest an hour for 60 days
DAYS = 60  # one reserve outflow a day for 60 days


def _reference() -> list:
    return [
        Entity(entity_id="BANK", name="托管银行", kind="custody_bank", licenses=("custody",)),
        Entity(entity_id="P", name="平台", kind="p2p_platform", licenses=("p2p_registered",)),
        Entity(entity_id="I", name="支付机构", kind="payment_institution", licenses=("payment",)),
        Account(
            account_id="P-OWN", owner_id="P", bank_id="BANK", role="platform_own", platform_id="P"
        ),
        Account(
            account_id="B1", owner_id="U-B1", bank_id="BANK", role="borrower_sub", platform_id="P"
        ),
        Account(account_id="R1", owner_id="I", bank_id="BANK", role="client_reserve"),
        Product(product_id="PR30", platform_id="P", term_days=30, annual_rate=Decimal("0.08")),
        Loan(
            loan_id="LN1",
            platform_id="P",
            borrower_account="B1",
            principal=100_000_000,
            term_days=30,
            annual_rate=Decimal("0.10"),
            issued_at=START,
        ),
    ]


def _stream() -> list:
    """Per hour a new lender account invests 1,000 yuan in LN1 through a
    30-day product; per day (at noon) 500 yuan of reserves go to a new
    operating account of the institution, a misuse episode of its own."""
    records: list = []
    for h in range(HOURS):
        ts = START + h * HOUR
        lender = f"L{h:05d}"
        records.append(
            Account(
                account_id=lender,
                owner_id=f"U{h:05d}",
                bank_id="BANK",
                role="lender_sub",
                platform_id="P",
            )
        )
        records.append(
            CustodyTxn(
                txn_id=f"CT{h:05d}",
                ts=ts,
                bank_id="BANK",
                platform_id="P",
                debit_account=lender,
                credit_account="B1",
                amount=100_000,
                purpose="invest",
                product_id="PR30",
                loan_id="LN1",
            )
        )
        if h % 24 == 12:
            day = h // 24
            records.append(
                Account(account_id=f"OP{day:03d}", owner_id="I", bank_id="BANK", role="operating")
            )
            records.append(
                ClearingTxn(
                    txn_id=f"CL{day:03d}",
                    ts=ts,
                    system="internal",
                    initiator_id="I",
                    payer_bank="BANK",
                    payer_account="R1",
                    payee_bank="BANK",
                    payee_account=f"OP{day:03d}",
                    amount=50_000,
                    purpose="transfer",
                )
            )
    return records


def _run() -> Engine:
    eng = Engine(load_config(), detectors=["fund_pool", "reserve_misuse", "maturity_mismatch"])
    for rec in _reference() + _stream():
        eng.process(rec)
    return eng


def test_windows_hold_only_what_is_inside_them() -> None:
    eng = _run()
    fund_pool, reserve, maturity = eng.detectors
    # fund_pool: invest events of the last 7 days only (ts > last - 7 days): 168 of 1,440.
    assert len(fund_pool.platforms["P"].events) == 7 * 24
    assert fund_pool.platforms["P"].invested == 7 * 24 * 100_000
    # maturity_mismatch: investments within their 30-day term at the last flow
    # (expired when ts + 30 days <= last ts, before the last one is added): 720 of 1,440.
    st = maturity.platforms["P"]
    assert len(st.expiries) == 30 * 24
    assert st.product_amount == 30 * 24 * 100_000
    assert st.product_weighted == 30 * 24 * 100_000 * 30
    # reserve_misuse: of 60 outflow episodes, those that could still grow are
    # kept: last offence within the 7-day gap plus the 72 h lateness horizon
    # of the day-59 record (days 49 to 59), the rest forgotten.
    misuse = reserve.institutions["I"].misuse
    assert len(misuse) == 11
    assert sorted(k[1] for k in misuse) == [f"OP{d:03d}" for d in range(49, 60)]
    # Reference data is the monitored world, not history: every account is held.
    assert eng.state_size() == (2, 3 + HOURS + DAYS, 0)
    assert eng.counts == {"accepted": 8 + 2 * HOURS + 2 * DAYS, "duplicates": 0, "too_late": 0}


def test_after_the_windows_pass_the_state_empties() -> None:
    eng = _run()
    eng.advance(START + (HOURS + 31 * 24) * HOUR)
    maturity = eng.detectors[2]
    st = maturity.platforms["P"]
    assert len(st.expiries) == 0
    assert (st.product_amount, st.product_weighted) == (0, 0)
    # The episodes are forgotten at the institution's next day close.
    reserve = eng.detectors[1]
    assert len(reserve.institutions["I"].misuse) == 0


def test_forgotten_episode_starts_a_new_alert_as_it_would_have() -> None:
    """An offence after the gap is a new episode whether or not the old one
    was forgotten: the alert id names the new episode's start."""
    eng = _run()
    late = START + (HOURS + 20 * 24) * HOUR
    alerts = eng.process(
        ClearingTxn(
            txn_id="CL-again",
            ts=late,
            system="internal",
            initiator_id="I",
            payer_bank="BANK",
            payer_account="R1",
            payee_bank="BANK",
            payee_account="OP000",
            amount=50_000,
            purpose="transfer",
        )
    )
    assert [(a.detector, a.subject_id, a.revision, a.first_ts) for a in alerts] == [
        ("reserve_misuse", "I", 1, "2026-05-20T00:00:00+08:00")
    ]
    assert len(eng.detectors[1].institutions["I"].misuse) == 1


def test_deduplicator_sweeps_to_its_horizon() -> None:
    """One id a minute: a sweep when the table passes 65,536 ids keeps the
    72 h horizon (4,321 ids), then ids accumulate again until the next."""
    dedup = Deduplicator(72 * HOUR)
    for i in range(65_537):
        assert dedup.admit("custody_txn", "P", f"T{i:07d}", START + i * 60_000) == "new"
    assert len(dedup) == 72 * 60 + 1
    for i in range(65_537, 100_000):
        dedup.admit("custody_txn", "P", f"T{i:07d}", START + i * 60_000)
    assert len(dedup) == 72 * 60 + 1 + (100_000 - 65_537)
    assert sum(len(s) for s in dedup.seen.values()) == len(dedup)
