"""How state is laid out to stay small: an engine's reference keeps no
entity names (and keeps everything the detectors read), down_payment_loan
holds an account's lots in a plain list (as do fund_pool, self_financing
and maturity_mismatch, each lot a tuple: detectors/lots.py), and all still
checkpoint and restore, checkpoints written with the older layout included.
"""

from __future__ import annotations

import pickle
from collections import deque

import pytest
from ledger import at, clearing, custody, entity, lenders, loan, p2p_platform, product

from fundflow.detectors import (
    DownPaymentLoan,
    Engine,
    FundPool,
    MaturityMismatch,
    SelfFinancing,
)
from fundflow.detectors.reference import Reference
from fundflow.schemas.records import Entity, Related

SHOP = Entity(
    entity_id="SHOP",
    name="鼎盛财富管理有限公司",
    kind="company",
    licenses=("payment",),
    related=(Related(entity_id="P", relation="affiliate"),),
)


def test_an_engines_reference_keeps_no_names_and_all_the_detectors_read():
    eng = Engine()
    paid = clearing("S1", at(0, 9), "EXT1", "EXT2", "1", initiator="SHOP")  # SHOP acts
    alerts = [a for r in [*p2p_platform(), SHOP, paid] for a in eng.process(r)]
    kept = eng.ref.entities["SHOP"]
    assert (kept.entity_id, kept.name, kept.kind, kept.licenses, kept.related) == (
        "SHOP",
        "",
        "company",
        ("payment",),
        (Related(entity_id="P", relation="affiliate"),),
    )
    assert eng.ref.related("SHOP") == {"P"}
    assert eng.ref.has_license("SHOP", "payment") is True
    # The name was read as the record arrived and kept until SHOP acted:
    # unlicensed_business still sees it.
    assert [(a.detector, a.evidence["name"]) for a in alerts] == [
        ("unlicensed_business", "鼎盛财富管理有限公司")
    ]


def test_a_plain_reference_keeps_names():
    ref = Reference()
    ref.add(SHOP)
    assert ref.entities["SHOP"] == SHOP
    compact = Reference(names=False)
    compact.add(entity("E1", "person"))
    assert compact.entities["E1"].name == ""


def test_a_reference_checkpoint_keeps_its_kind():
    ref = Reference(names=False)
    ref.add(SHOP)
    back = pickle.loads(pickle.dumps(ref))
    back.add(entity("E2", "company"))
    assert (back.names, back.entities["SHOP"].name, back.entities["E2"].name) == (False, "", "")


# -- down_payment_loan lots -------------------------------------------------------

LENT = [
    *p2p_platform(),
    loan("LN1", 30, "100000"),
    custody("L1", at(0, 10), "L01", "B01", "60000", "invest", loan="LN1"),
    custody("L2", at(0, 11), "L02", "B01", "40000", "invest", loan="LN1"),
]


def test_lots_are_a_list_taken_first_in_first_out():
    det = DownPaymentLoan()
    for r in LENT:
        det.update(r)
    assert type(det.lots["B01"]) is list
    assert [(lot[3], lot[5]) for lot in det.lots["B01"]] == [
        (6_000_000, ("L1",)),
        (4_000_000, ("L2",)),
    ]
    det.update(custody("W1", at(1, 10), "B01", "XO", "70000", "withdraw"))
    assert [(lot[3], lot[5]) for lot in det.lots["B01"]] == [(3_000_000, ("L2",))]
    assert [(lot[3], lot[4], lot[5]) for lot in det.lots["XO"]] == [
        (6_000_000, 1, ("L1", "W1")),
        (1_000_000, 1, ("L2", "W1")),
    ]
    assert det.lot_count == 3


def test_a_checkpoint_with_deques_restores_as_lists():
    det = DownPaymentLoan()
    for r in LENT:
        det.update(r)
    det.lots = {account: deque(held) for account, held in det.lots.items()}
    blob = det.snapshot()
    back = DownPaymentLoan().restore(blob)
    assert type(back.lots["B01"]) is list
    back.update(custody("W1", at(1, 10), "B01", "XO", "70000", "withdraw"))
    assert [lot[3] for lot in back.lots["B01"]] == [3_000_000]


# -- the platforms' lots ---------------------------------------------------------

INVESTED = [
    *p2p_platform(),
    *lenders(2),
    product("PR30", 30),
    custody("V1", at(0, 10), "L01", "POOL", "600", "invest", product="PR30"),
    custody("V2", at(0, 11), "L02", "POOL", "400", "invest", product="PR30"),
]
SPENT = custody("V3", at(1, 10), "POOL", "OWN", "700", "transfer")


@pytest.mark.parametrize("kind", [FundPool, SelfFinancing, MaturityMismatch])
def test_a_checkpoint_with_deques_of_lists_restores_as_lists_of_tuples(kind):
    det = kind()
    for r in INVESTED:
        det.update(r)
    st = det.platforms["P"]
    held = st.lots["POOL"]
    assert type(held) is list and [type(lot) for lot in held] == [tuple, tuple]
    st.lots = {account: deque(list(lot) for lot in lots) for account, lots in st.lots.items()}
    back = kind().restore(det.snapshot())
    assert back.platforms["P"].lots == {"POOL": held}
    fresh = kind()
    for r in INVESTED:
        fresh.update(r)
    back.update(SPENT)
    fresh.update(SPENT)
    assert back.platforms["P"].lots == fresh.platforms["P"].lots
    assert [lot[1] for lot in back.platforms["P"].lots["POOL"]] == [30_000]
