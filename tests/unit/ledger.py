"""Small builders for the hand-made ledgers of the detector unit tests.

Money is given in yuan (``"1234.56"``, an int or a Decimal) and stored as
integer fen, exactly; times are days and hours after :data:`T0`, local
midnight of Monday 2026-03-02 in Asia/Shanghai, the configured zone.

>>> fen("999999.99"), at(1, 10) - T0
(99999999, 122400000)
>>> iso_at(at(7, 23, 59))
'2026-03-09T23:59:00+08:00'
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from fundflow.detectors.alerting import iso
from fundflow.schemas.records import (
    Account,
    Alert,
    Balance,
    ClearingTxn,
    CustodyTxn,
    Entity,
    Loan,
    Product,
    Record,
    Related,
    ReserveReport,
)

ZONE = ZoneInfo("Asia/Shanghai")
T0 = 1772380800000  # 2026-03-02T00:00:00+08:00
DAY0 = date(2026, 3, 2)
SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

Yuan = str | int | Decimal


# -- money and time ---------------------------------------------------------


def fen(yuan: Yuan) -> int:
    """Yuan to integer fen; more than two decimals is a mistake in the test."""
    d = Decimal(str(yuan)) * 100
    if d != d.to_integral_value():
        raise ValueError(f"not a whole number of fen: {yuan!r}")
    return int(d)


def at(day: int = 0, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """Epoch ms of local ``hour:minute:second`` on day ``day`` after T0."""
    return T0 + day * DAY_MS + hour * HOUR_MS + minute * MINUTE_MS + second * SECOND_MS


def day_str(day: int) -> str:
    """The local date ``day`` days after T0, as a report's ``as_of``."""
    return (DAY0 + timedelta(days=day)).isoformat()


def iso_at(ms: int) -> str:
    """How an alert writes the instant ``ms``."""
    return iso(ms, ZONE)


def numbered(prefix: str, n: int, start: int = 1) -> list[str]:
    """``numbered("L", 3)`` is ``["L01", "L02", "L03"]``."""
    return [f"{prefix}{i:02d}" for i in range(start, start + n)]


# -- reference records --------------------------------------------------------


def entity(
    entity_id: str,
    kind: str = "company",
    *,
    licenses: Iterable[str] = (),
    related: Iterable[tuple[str, str] | tuple[str, str, str]] = (),
    name: str | None = None,
) -> Entity:
    """``related`` holds ``(entity id, relation)`` or ``(entity id, relation, share)``."""
    return Entity(
        entity_id=entity_id,
        name=name or entity_id,
        kind=kind,  # type: ignore[arg-type]
        licenses=tuple(licenses),
        related=tuple(
            Related(entity_id=e[0], relation=e[1], share=Decimal(e[2]) if len(e) > 2 else None)  # type: ignore[arg-type, misc]
            for e in related
        ),
    )


def account(
    account_id: str, owner: str, role: str, *, bank: str = "CB", platform: str | None = None
) -> Account:
    return Account(
        account_id=account_id, owner_id=owner, bank_id=bank, role=role, platform_id=platform
    )  # type: ignore[arg-type]


def product(product_id: str, term_days: int, *, platform: str = "P", rate: str = "0.08") -> Product:
    return Product(
        product_id=product_id, platform_id=platform, term_days=term_days, annual_rate=Decimal(rate)
    )


def loan(
    loan_id: str,
    term_days: int,
    principal: Yuan,
    *,
    borrower: str = "B01",
    issued_at: int = T0,
    platform: str = "P",
    rate: str = "0.10",
) -> Loan:
    return Loan(
        loan_id=loan_id,
        platform_id=platform,
        borrower_account=borrower,
        principal=fen(principal),
        term_days=term_days,
        annual_rate=Decimal(rate),
        issued_at=issued_at,
    )


# -- reports ----------------------------------------------------------------


def report(institution: str, day: int, liabilities: Yuan) -> ReserveReport:
    return ReserveReport(
        institution_id=institution, as_of=day_str(day), client_liabilities=fen(liabilities)
    )


def balance(account_id: str, as_of: int, amount: Yuan) -> Balance:
    return Balance(account_id=account_id, as_of=as_of, balance=fen(amount))


# -- transactions -------------------------------------------------------------


def custody(
    txn_id: str,
    ts: int,
    debit: str,
    credit: str,
    amount: Yuan,
    purpose: str,
    *,
    platform: str = "P",
    product: str | None = None,
    loan: str | None = None,
    currency: str = "CNY",
    bank: str = "CB",
) -> CustodyTxn:
    return CustodyTxn(
        txn_id=txn_id,
        ts=ts,
        bank_id=bank,
        platform_id=platform,
        debit_account=debit,
        credit_account=credit,
        amount=fen(amount),
        purpose=purpose,  # type: ignore[arg-type]
        currency=currency,
        product_id=product,
        loan_id=loan,
    )


def clearing(
    txn_id: str,
    ts: int,
    payer: str,
    payee: str,
    amount: Yuan,
    *,
    purpose: str | None = None,
    system: str = "CNAPS",
    initiator: str = "PI",
    payer_bank: str = "BK1",
    payee_bank: str = "BK1",
    currency: str = "CNY",
) -> ClearingTxn:
    return ClearingTxn(
        txn_id=txn_id,
        ts=ts,
        system=system,  # type: ignore[arg-type]
        initiator_id=initiator,
        payer_bank=payer_bank,
        payer_account=payer,
        payee_bank=payee_bank,
        payee_account=payee,
        amount=fen(amount),
        currency=currency,
        purpose=purpose,
    )


# -- feeding ----------------------------------------------------------------


def run(detector, records: Iterable[Record], *, finish: bool = False) -> list[Alert]:
    """Feed ``records`` in order (and end the stream when ``finish``); the
    alerts raised, oldest first."""
    for r in records:
        detector.update(r)
    if finish:
        detector.finish()
    return detector.drain()


# -- a P2P platform -----------------------------------------------------------
#
# Platform P keeps its custody master POOL (platform_custody) and its own
# account OWN (platform_own) at custody bank CB. A1 and A2 are its affiliates,
# each with a corporate account (X1, X2) that can carry money on its behalf;
# OUTSIDER is an unrelated company with account XO. Lenders Lnn and borrowers
# Bnn have custody sub-accounts of P.


def p2p_platform(pid: str = "P") -> list[Record]:
    return [
        entity("CB", "custody_bank", licenses=("custody",)),
        entity(
            pid,
            "p2p_platform",
            licenses=("p2p_registered",),
            related=[("A1", "affiliate"), ("A2", "affiliate")],
        ),
        entity("A1"),
        entity("A2"),
        entity("OUTSIDER"),
        account("POOL", pid, "platform_custody", platform=pid),
        account("OWN", pid, "platform_own", platform=pid),
        account("X1", "A1", "corporate"),
        account("X2", "A2", "corporate"),
        account("XO", "OUTSIDER", "corporate"),
    ]


def lenders(n: int, pid: str = "P", start: int = 1) -> list[Account]:
    return [account(a, f"U{a[1:]}", "lender_sub", platform=pid) for a in numbered("L", n, start)]


def borrowers(n: int, pid: str = "P", start: int = 1) -> list[Account]:
    return [account(a, f"W{a[1:]}", "borrower_sub", platform=pid) for a in numbered("B", n, start)]


# -- a payment institution ----------------------------------------------------
#
# Payment institution PI keeps client reserves in R1 and R2 at BK1 (a bank
# with the custody licence) and runs its business from OPS. Its shareholder
# HOLD has account HC. Merchant M has a settlement account MSET and a
# corporate account MCORP; client C1 has a personal account C1P. BK2 is a bank
# without the custody licence. Accounts not listed (e.g. "EXT") are unknown
# outside parties.


def payment_institution() -> list[Record]:
    return [
        entity("BK1", "bank", licenses=("custody",)),
        entity("BK2", "bank", licenses=("deposit",)),
        entity(
            "PI", "payment_institution", licenses=("payment",), related=[("HOLD", "shareholder")]
        ),
        entity("HOLD"),
        entity("M"),
        entity("C1", "person"),
        account("R1", "PI", "client_reserve", bank="BK1"),
        account("R2", "PI", "client_reserve", bank="BK1"),
        account("OPS", "PI", "operating", bank="BK1"),
        account("HC", "HOLD", "corporate", bank="BK1"),
        account("MSET", "M", "settlement", bank="BK1"),
        account("MCORP", "M", "corporate", bank="BK1"),
        account("C1P", "C1", "personal", bank="BK1"),
    ]


# -- one stream on which every core detector alerts -------------------------


def mixed_stream() -> list[Record]:
    """Reference data, then three weeks of flows on which fund_pool (a gather
    and scatter through POOL), reserve_misuse (reserves moved to the
    institution's own account, and a shortfall against a report) and
    maturity_mismatch (30-day money in a 90-day loan) each raise alerts.
    Ordered by time; transaction ids are unique."""
    recs: list[Record] = [*p2p_platform(), *lenders(24), *borrowers(4), *payment_institution()]
    recs += [
        product("P30", 30),
        product("P90", 90),
        loan("LN90", 90, "600000", borrower="B04", issued_at=at(2)),
    ]
    recs.append(balance("R1", at(0), "1000000"))
    # Day 0: 24 lenders put 50,000 each into POOL.
    for i, lender in enumerate(numbered("L", 24)):
        recs.append(
            custody(f"IN{i + 1:02d}", at(0, 9, i), lender, "POOL", "50000", "invest", product="P90")
        )
    # Reserve day 0: a client pays in, PI moves reserves to its operating account.
    recs.append(clearing("CL01", at(0, 11), "C1P", "R1", "20000", purpose="topup"))
    recs.append(
        clearing("CL02", at(0, 15), "R1", "OPS", "150000", system="internal", purpose="transfer")
    )
    recs.append(report("PI", 0, "1000000"))
    # Day 1: POOL pays 300,000 on to each of three borrowers.
    for i, b in enumerate(("B01", "B02", "B03")):
        recs.append(
            custody(f"OUT{i + 1}", at(1, 10, i), "POOL", b, "300000", "disburse", loan=f"LN{i + 1}")
        )
    # Day 2: 30-day money funds a 90-day loan directly.
    recs.append(
        custody("MM1", at(2, 10), "L01", "B04", "600000", "invest", product="P30", loan="LN90")
    )
    # Day 3: a merchant is settled (normal business) and a refund leaves for an outside party.
    recs.append(clearing("CL03", at(3, 10), "R1", "MSET", "5000", purpose="settlement"))
    recs.append(clearing("CL04", at(3, 11), "R1", "EXT", "1000", purpose="refund"))
    recs.append(report("PI", 3, "880000"))
    recs += beyond_core_records()
    recs += beyond_core_stream()
    # Day 20: a quiet day; the clock passes day 3 and the lenders' money left in POOL has idled.
    recs.append(custody("IDLE", at(20, 10), "OWN", "B01", "1", "transfer"))
    return recs


def beyond_core_records() -> list[Record]:
    """Days 4 to 6 of :func:`mixed_stream`, on subjects of their own: platform
    PD's 30-day loan LND1 paid on to developer RE's account HOUSE the next day
    (down_payment_loan), PD's private product DPRIV sold for 50,000 yuan
    against a 1,000,000 minimum ticket (private_product_split), institution
    PJ moving 120,000 yuan five times between its accounts at BK1 and BK2
    outside the clearing systems (cross_bank_clearing), and company SHADOW,
    with no licence, sending client C1's money to merchant M
    (unlicensed_business)."""
    recs: list[Record] = [
        entity("PD", "p2p_platform", licenses=("p2p_registered",)),
        entity("RE", "real_estate"),
        entity("PJ", "payment_institution", licenses=("payment",)),
        entity("SHADOW"),
        account("DL1", "DU1", "lender_sub", platform="PD"),
        account("DL2", "DU2", "lender_sub", platform="PD"),
        account("DB1", "DW1", "borrower_sub", platform="PD"),
        account("DB2", "DW2", "borrower_sub", platform="PD"),
        account("HOUSE", "RE", "corporate", bank="BK1"),
        account("PJA", "PJ", "settlement", bank="BK1"),
        account("PJB", "PJ", "settlement", bank="BK2"),
        product("DP30", 30, platform="PD"),
        Product(
            product_id="DPRIV",
            platform_id="PD",
            term_days=360,
            annual_rate=Decimal("0.08"),
            min_ticket=fen("1000000"),
            private=True,
        ),
        loan("LND1", 30, "500000", borrower="DB1", issued_at=at(4), platform="PD"),
        loan("LND2", 180, "50000", borrower="DB2", issued_at=at(4), platform="PD"),
    ]
    recs += [
        custody("DI1", at(4, 10), "DL1", "DB1", "500000", "invest", platform="PD", product="DP30", loan="LND1"),
        custody("DI2", at(4, 11), "DL2", "DB2", "50000", "invest", platform="PD", product="DPRIV", loan="LND2"),
    ]  # fmt: skip
    recs += [
        clearing(f"PJ{i}", at(4 + i // 3, 9 + i), "PJA", "PJB", "120000", system="direct",
                 initiator="PJ", payer_bank="BK1", payee_bank="BK2")
        for i in range(1, 6)
    ]  # fmt: skip
    recs.append(custody("DD1", at(5, 16), "DB1", "HOUSE", "480000", "withdraw", platform="PD"))
    recs.append(
        clearing("UL1", at(6, 16), "C1P", "MCORP", "3000", system="NUCC", initiator="SHADOW")
    )
    return recs


# -- platform Q: self-financing, a guaranteed payout, an excessive rate -------
#
# Platform Q keeps POOLQ (platform_custody), OWNQ (platform_own) and RISKQ
# (risk_reserve); its executive QX has a personal account QXP. Lenders QL1,
# QL2 and borrower QB1 have sub-accounts of Q. Product QP30 promises 30 % a
# year for 30 days; four 30-day products of platform Z promise 8 %.


def beyond_core_stream() -> list[Record]:
    """Days 5-6 on platform Q: lender money reaches Q's executive in two
    hops (self_financing); Q's risk reserve pays a lender for loan QLN that
    its borrower never repaid (guaranteed_return); QP30's rate is far above
    its peers' and above the rate of loan QLN it funds, and Q tops up its
    lenders from its own account (excessive_return). Nothing here moves the
    core detectors."""
    recs: list[Record] = [
        entity("Q", "p2p_platform", licenses=("p2p_registered",), related=[("QX", "executive")]),
        entity("QX", "person"),
        account("POOLQ", "Q", "platform_custody", platform="Q"),
        account("OWNQ", "Q", "platform_own", platform="Q"),
        account("RISKQ", "Q", "risk_reserve", platform="Q"),
        account("QXP", "QX", "personal"),
        account("QL1", "QU1", "lender_sub", platform="Q"),
        account("QL2", "QU2", "lender_sub", platform="Q"),
        account("QB1", "QW1", "borrower_sub", platform="Q"),
        product("QP30", 30, platform="Q", rate="0.30"),
        *(product(f"ZP{i}", 30, platform="Z", rate="0.08") for i in range(1, 5)),
        loan("QLN", 30, "20000", borrower="QB1", issued_at=at(5), platform="Q"),
    ]
    recs += [
        custody("Q1", at(5, 9), "QL1", "POOLQ", "50000", "transfer", platform="Q"),
        custody("Q2", at(5, 10), "POOLQ", "QXP", "50000", "transfer", platform="Q"),
        custody(
            "Q3",
            at(5, 11),
            "QL2",
            "QB1",
            "20000",
            "invest",
            platform="Q",
            product="QP30",
            loan="QLN",
        ),
        custody("Q4", at(6, 10), "RISKQ", "QL2", "12000", "repay", platform="Q", loan="QLN"),
        custody("Q5", at(6, 11), "OWNQ", "QL1", "2500", "subsidy", platform="Q"),
    ]
    return recs
