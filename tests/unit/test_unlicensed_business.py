"""unlicensed_business: restricted words in registered names (checked when
the entity record arrives) and financial flows run without the licence."""

from __future__ import annotations

import pytest
from ledger import account, at, clearing, custody, entity, iso_at, run

from fundflow.detectors import UnlicensedBusiness, load_config
from fundflow.detectors.alerting import make_alert_id
from fundflow.detectors.reference import Reference, feed_key
from fundflow.detectors.unlicensed_business import restricted_words_in

CFG = load_config().unlicensed_business
THRESHOLDS = load_config().thresholds("unlicensed_business")


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("上海鼎盛贸易有限公司", []),
        ("上海鼎盛基金管理有限公司", ["基金管理"]),  # the longest word at a place decides
        ("深圳前海股权投资基金管理有限公司", ["股权投资基金"]),
        ("北京金融街物业管理有限公司", []),  # 金融街: a place name
        ("中国扶贫基金会", []),  # 基金会: a foundation
        ("杭州p2p网贷信息有限公司", ["P2P", "网贷"]),  # Latin words in any case
        ("P2PE加密技术有限公司", []),  # ... only standing alone
        ("宁波鑫源支付科技有限公司", ["支付"]),
        ("合肥互联网保险经纪有限公司", ["互联网保险"]),
        ("金融街理财中心", ["理财"]),
    ],
)
def test_restricted_words_in_names(name, words):
    assert restricted_words_in(name, CFG) == words


# E1 pays a client's money on (its first transaction, day 0 09:00), then again.
E1_PAYS = [
    clearing("N1", at(0, 9), "EXT1", "EXT2", "100", initiator="E1"),
    clearing("N2", at(2, 15), "EXT1", "EXT2", "100", initiator="E1"),
]


def _names(alerts):
    return [a for a in alerts if a.evidence["signal"] == "restricted_name"]


def acting(*entity_ids):
    """One payment initiated by each entity: each acts, so its name is judged."""
    return [
        clearing(f"A{i}", at(0, 10, i), "EXT1", "EXT2", "1", initiator=e)
        for i, e in enumerate(entity_ids)
    ]


def test_a_restricted_name_is_dated_when_the_entity_first_acts():
    det = UnlicensedBusiness()
    # The entity record has no time: nothing is said until the entity acts.
    assert run(det, [entity("E1", name="上海鼎盛财富管理有限公司")]) == []
    (alert,) = _names(run(det, E1_PAYS, finish=True))
    assert alert.alert_id == make_alert_id(
        "unlicensed_business", "E1", "restricted_name", "上海鼎盛财富管理有限公司"
    )
    assert (alert.subject_id, alert.severity, alert.amount, alert.accounts) == (
        "E1", "medium", "0.00", ()
    )  # fmt: skip
    assert (alert.first_ts, alert.last_ts) == (
        "2026-03-02T09:00:00+08:00",
        "2026-03-02T09:00:00+08:00",
    )
    assert alert.revision == 1
    ev = alert.evidence
    assert ev["words"] == ["财富管理"] and ev["sample_txn_ids"] == ["N1"]
    assert ev["licences_needed"] == {"财富管理": ["asset_management", "fund_sales"]}
    assert ev["licences_held"] == [] and ev["thresholds"] == THRESHOLDS


def test_an_entity_record_after_its_first_transaction_gives_the_same_alert():
    name = entity("E1", name="上海鼎盛财富管理有限公司")
    before = _names(run(UnlicensedBusiness(), [name, *E1_PAYS], finish=True))
    after = _names(run(UnlicensedBusiness(), [*E1_PAYS, name], finish=True))
    between = _names(run(UnlicensedBusiness(), [E1_PAYS[0], name, E1_PAYS[1]], finish=True))
    assert before == after == between
    assert [(a.first_ts, a.evidence["sample_txn_ids"]) for a in after] == [
        ("2026-03-02T09:00:00+08:00", ["N1"])
    ]


def test_the_alert_id_does_not_depend_on_the_time():
    name = entity("E1", name="鼎盛金融")
    early = _names(run(UnlicensedBusiness(), [name, *E1_PAYS]))
    late = _names(run(UnlicensedBusiness(), [name, *E1_PAYS[1:]]))
    assert early[0].alert_id == late[0].alert_id
    assert (early[0].first_ts, late[0].first_ts) == (
        "2026-03-02T09:00:00+08:00",
        "2026-03-04T15:00:00+08:00",
    )


def test_an_entity_that_never_acts_on_its_own_feed_raises_no_name_alert():
    recs = [
        *FLOW_SETUP,
        entity("E2", name="鑫源理财有限公司"),
        account("E2C", "E2", "corporate", bank="BK1"),
        # E2 is paid, by a licensed institution on its own feed: PI acts, not E2.
        clearing("N3", at(0, 9), "C1P", "E2C", "300", initiator="PI"),
    ]
    assert run(UnlicensedBusiness(), recs, finish=True) == []


@pytest.mark.parametrize(
    ("setup", "txn", "first_ts"),
    [
        # A platform acts in its custody ledger.
        (
            [entity("X2", "p2p_platform", name="鑫源理财网络借贷平台")],
            custody("N4", at(1, 10), "XL", "XB", "900", "recharge", platform="X2"),
            "2026-03-03T10:00:00+08:00",
        ),
        # An institution acts when money moves through its client reserve,
        # whoever initiates the payment.
        (
            [entity("FAKEPI", "payment_institution", name="盛泰支付有限公司")],
            clearing("N5", at(3, 8, 30), "C1P", "FR", "300", initiator="BK1"),
            "2026-03-05T08:30:00+08:00",
        ),
    ],
)
def test_each_kind_of_feed_dates_the_name(setup, txn, first_ts):
    (alert,) = _names(run(UnlicensedBusiness(), [*FLOW_SETUP, *setup, txn]))
    assert (alert.first_ts, alert.last_ts) == (first_ts, first_ts)
    assert alert.evidence["sample_txn_ids"] == [txn.txn_id]


def test_partitioned_engines_give_the_replays_name_alerts():
    reference = [
        *FLOW_SETUP,
        entity("E1", name="鼎盛金融"),
        account("E1C", "E1", "corporate", bank="BK1"),
        entity("X2", "p2p_platform", name="鑫源理财网络借贷平台"),
    ]
    txns = [
        # On PI's feed, before E1 first acts: E1 is paid, it does not act.
        clearing("N6", at(0, 8), "C1P", "E1C", "50", initiator="PI"),
        *E1_PAYS,
        custody("N4", at(1, 10), "XL", "XB", "900", "recharge", platform="X2"),
    ]
    replayed = _names(run(UnlicensedBusiness(), [*reference, *txns], finish=True))
    assert [(a.subject_id, a.first_ts) for a in replayed] == [
        ("E1", "2026-03-02T09:00:00+08:00"),
        ("X2", "2026-03-03T10:00:00+08:00"),
    ]
    # As the daemon runs: every engine reads all reference records, and each
    # subject's feed goes to one engine (PI's apart from E1's).
    ref = Reference()
    for r in reference:
        ref.add(r)
    partition = {"PI": 0, "E1": 1, "X2": 0}
    engines = [UnlicensedBusiness(), UnlicensedBusiness()]
    for det in engines:
        run(det, reference)
    for t in txns:
        engines[partition[feed_key(ref.flow(t))]].update(t)
    got = [a for det in engines for a in _names(det.finish().drain())]
    assert sorted(got, key=lambda a: a.first_ts) == replayed


def test_holding_a_matching_licence_clears_the_name():
    recs = [
        entity("E1", name="上海鼎盛财富管理有限公司", licenses=("fund_sales",)),
        entity("E2", "payment_institution", name="鑫源支付有限公司", licenses=("payment",)),
        entity("E3", "p2p_platform", name="恒通网络借贷信息中介服务有限公司", licenses=("p2p_registered",)),
        *acting("E1", "E2", "E3"),
    ]  # fmt: skip
    assert _names(run(UnlicensedBusiness(), recs, finish=True)) == []


def test_a_licence_for_another_word_does_not_clear_it():
    recs = [entity("E1", name="鑫源支付理财有限公司", licenses=("payment",)), *acting("E1")]
    (alert,) = _names(run(UnlicensedBusiness(), recs))
    assert alert.evidence["words"] == ["理财"]


def test_banks_and_persons_are_not_judged_by_name():
    recs = [
        entity("B1", "bank", name="鼎盛金融银行股份有限公司"),
        entity("B2", "custody_bank", name="泰盛理财银行", licenses=("custody",)),
        entity("U1", "person", name="王金融"),
        *acting("B1", "B2", "U1"),
    ]
    assert _names(run(UnlicensedBusiness(), recs, finish=True)) == []


def test_the_same_record_twice_is_one_alert_and_a_new_name_a_new_one():
    det = UnlicensedBusiness()
    first = _names(
        run(det, [entity("E1", name="鼎盛金融"), *E1_PAYS, entity("E1", name="鼎盛金融")])
    )
    assert len(first) == 1
    (renamed,) = run(det, [entity("E1", name="鼎盛支付")])
    assert renamed.alert_id != first[0].alert_id and renamed.evidence["words"] == ["支付"]
    # Dated, like every name of the entity, at its first transaction.
    assert renamed.first_ts == renamed.last_ts == first[0].first_ts == "2026-03-02T09:00:00+08:00"


def test_a_name_replaced_before_the_entity_acts_is_not_judged():
    recs = [entity("E1", name="鼎盛金融"), entity("E1", name="鼎盛贸易"), *E1_PAYS]
    assert _names(run(UnlicensedBusiness(), recs, finish=True)) == []


def test_a_waiting_name_and_the_first_transactions_survive_a_checkpoint():
    det = UnlicensedBusiness()
    run(det, [entity("E1", name="鼎盛金融"), clearing("N0", at(0, 8), "EXT1", "EXT2", "1", initiator="E9")])  # fmt: skip
    restored = UnlicensedBusiness().restore(det.snapshot())
    recs = [entity("E9", name="鼎盛支付"), *E1_PAYS]
    got = [
        (a.subject_id, a.first_ts, a.evidence["sample_txn_ids"])
        for a in _names(run(restored, recs))
    ]
    assert got == [
        ("E9", "2026-03-02T08:00:00+08:00", ["N0"]),  # E9 acted before the checkpoint
        ("E1", "2026-03-02T09:00:00+08:00", ["N1"]),  # E1's name waited through it
    ]


# -- flows -----------------------------------------------------------------------

FLOW_SETUP = [
    entity("BK1", "bank", licenses=("custody",)),
    entity("NB", "bank"),
    entity("SHADOW"),
    entity("C1", "person"),
    entity("PI", "payment_institution", licenses=("payment",)),
    entity("FAKEPI", "payment_institution"),
    entity("P", "p2p_platform", licenses=("p2p_registered",)),
    entity("X", "p2p_platform"),
    account("C1P", "C1", "personal", bank="BK1"),
    account("SH", "SHADOW", "corporate", bank="BK1"),
    account("FR", "FAKEPI", "client_reserve", bank="BK1"),
    account("XL", "U1", "lender_sub", bank="BK1", platform="X"),
    account("XB", "W1", "borrower_sub", bank="BK1", platform="X"),
    account("NL", "U2", "lender_sub", bank="NB", platform="P"),
]


def test_licensed_flows_raise_nothing():
    recs = [
        *FLOW_SETUP,
        clearing("T1", at(0, 9), "C1P", "SH", "500", initiator="PI"),  # a licensed institution
        clearing("T2", at(0, 10), "SH", "C1P", "500", initiator="SHADOW"),  # its own money
        clearing("T3", at(0, 11), "C1P", "SH", "500", initiator="BK1"),  # a bank
        clearing("T4", at(0, 12), "C1P", "SH", "500", initiator="NOBODY"),  # unknown
        custody("T5", at(0, 13), "XL", "XB", "900", "recharge", platform="X"),  # no loan
    ]
    assert run(UnlicensedBusiness(), recs, finish=True) == []


def test_moving_others_money_without_a_payment_licence():
    recs = [
        *FLOW_SETUP,
        clearing("T1", at(0, 9), "C1P", "SH2", "1000", initiator="SHADOW"),
        clearing("T2", at(1, 9), "C1P", "SH2", "100", initiator="SHADOW"),
    ]
    first, second = run(UnlicensedBusiness(), recs)
    assert (
        first.alert_id
        == second.alert_id
        == make_alert_id("unlicensed_business", "SHADOW", "unlicensed_payment")
    )
    assert (second.revision, second.amount, second.severity) == (2, "1100.00", "high")
    assert (second.first_ts, second.last_ts) == (iso_at(at(0, 9)), iso_at(at(1, 9)))
    assert second.evidence["sample_txn_ids"] == ["T1", "T2"]
    assert second.evidence["licence_needed"] == "payment"
    assert second.accounts == ("C1P", "SH2")


def test_a_client_reserve_of_an_unlicensed_owner():
    recs = [*FLOW_SETUP, clearing("T1", at(0, 9), "C1P", "FR", "300", initiator="BK1")]
    (alert,) = run(UnlicensedBusiness(), recs)
    assert (alert.subject_id, alert.amount, alert.accounts) == ("FAKEPI", "300.00", ("FR",))


def test_lending_without_registration():
    recs = [
        *FLOW_SETUP,
        custody("T1", at(0, 9), "XL", "XB", "5000", "invest", platform="X", loan="LN1"),
        custody("T2", at(0, 9), "XL", "XB", "5000", "invest", platform="P", loan="LN2"),
    ]
    (alert,) = run(UnlicensedBusiness(), recs)
    assert (alert.subject_id, alert.evidence["signal"], alert.amount) == (
        "X",
        "unlicensed_lending",
        "5000.00",
    )
    assert alert.evidence["licence_needed"] == "p2p_registered"


def test_custody_sub_accounts_at_a_bank_without_the_custody_licence():
    recs = [*FLOW_SETUP, custody("T1", at(0, 9), "NL", "XB", "700", "transfer", platform="P")]
    (alert,) = run(UnlicensedBusiness(), recs)
    assert (alert.subject_id, alert.evidence["signal"], alert.accounts) == (
        "NB",
        "unlicensed_custody",
        ("NL",),
    )


def test_other_currencies_are_not_added():
    recs = [*FLOW_SETUP, clearing("T1", at(0, 9), "C1P", "SH2", "1000", initiator="SHADOW", currency="USD")]  # fmt: skip
    assert run(UnlicensedBusiness(), recs, finish=True) == []


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("restricted_words", {}, "unlicensed_business.restricted_words must be a table"),
        ("restricted_words", {"支付": []}, "unlicensed_business.restricted_words.支付 must name"),
        ("harmless_phrases", [""], "unlicensed_business.harmless_phrases must be a list"),
        ("payment_licence", "", "unlicensed_business.payment_licence must be a non-empty"),
    ],
)
def test_bad_settings_are_refused(key, value, message):
    with pytest.raises(ValueError, match=message):
        load_config(overrides={"unlicensed_business": {key: value}})
