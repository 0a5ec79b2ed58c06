"""One rule owns a record: the producer's key, the engine's feed and the
partition whose engine keeps the subject's alerts agree over a whole world.

The producer (``fundflow replay --to-kafka``) keys every record by
``Reference.key_of``; the engine orders and deduplicates a transaction by
``feed_key`` of its flow; the daemon keeps an alert only on the partition
Kafka's default partitioner gives its subject (``partition_for``). Here a
simulated world is keyed by the producer itself (a recording producer in
Kafka's place), split the way Kafka splits it into 1, 4 and 7 partitions,
each partition run by its own engine that sees every reference record, and
the alerts each engine owns put together with those of the whole-stream
worker's engine (the detectors no key co-locates, over every partition's
records): they must be the single engine's, byte for byte, final revisions
included, when every engine is finished at the stream's end
(``Engine.finish(end)``, as the draining worker finishes the partitions it
holds).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from unit.ledger import account, at, clearing, custody, entity, loan, payment_institution

from fundflow.detectors import Engine, load_config
from fundflow.detectors.engine import partitioned, whole_stream
from fundflow.detectors.reference import feed_key
from fundflow.schemas import DeadLetter, RecordDecoder
from fundflow.schemas.decode import encode_record
from fundflow.schemas.records import Account, ClearingTxn, CustodyTxn, Entity, Loan, Product
from fundflow.simulate import write_world
from fundflow.streams.producer import DumpProducer
from fundflow.streams.settings import KafkaSettings
from fundflow.streams.topics import partition_for

REFERENCE = (Entity, Account, Product, Loan)


class Recording:
    """Kafka's producer, recording what is sent to topics of ``partitions``."""

    def __init__(self, partitions: int = 1) -> None:
        self.partitions = partitions
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def send(self, topic: str, value: bytes, key: bytes | None = None, **_: object) -> None:
        self.sent.append((topic, value, key))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _keyed(path: Path, partitions: int) -> list[tuple[object, str | None]]:
    """What the producer sends for the dump at ``path`` to topics of
    ``partitions``: each record (copies included) with its key."""
    recording = Recording(partitions)
    DumpProducer(KafkaSettings(), producer=recording).send_dumps([str(path)])
    dec = RecordDecoder()
    out = [(dec.decode(value), key.decode() if key else None) for _, value, key in recording.sent]
    assert not [r for r, _ in out if type(r) is DeadLetter]
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder: Path = tmp_path_factory.mktemp("world")
    write_world(folder, seed=1, days=30, noise=0)
    return folder / "world.jsonl"


@pytest.fixture(scope="module")
def keyed(world: Path) -> list[tuple[object, str | None]]:
    return _keyed(world, 1)


def _alerts(engine: Engine, records: list, keep, end: int) -> list[bytes]:
    got = []
    for rec in records:
        got.extend(engine.submit(rec, "in"))
    got.extend(engine.finish(end))
    return [msgspec.json.encode(a) for a in got if keep(a)]


def test_the_producers_key_is_the_engines_feed(keyed: list) -> None:
    engine = Engine(load_config())
    checked = 0
    for rec, key in keyed:
        t = type(rec)
        if t in REFERENCE:
            engine.process(rec)
        elif t is CustodyTxn or t is ClearingTxn:
            assert feed_key(engine.ref.flow(rec)) == key, rec
            checked += 1
        else:
            assert engine.ref.feed_of(rec) == key, rec
    assert checked == 67_696  # every transaction of the world


def _split(
    one: list, sent: list, partitions: int, whole: bool = True
) -> tuple[list[bytes], list[bytes]]:
    """The single engine's alerts over ``one`` (each record once) and those
    the partitions' engines own over what was ``sent`` to them, each engine
    seeing every reference record and finished at the stream's end; with
    ``whole``, and those of the whole-stream worker's one engine over every
    record sent (copies included: duplicates to it)."""
    reference = [r for r, _ in one if type(r) in REFERENCE]
    events = [r for r, _ in one if type(r) not in REFERENCE]
    end = max(r.ts for r in events if type(r) in (CustodyTxn, ClearingTxn))
    one_engine = Engine(load_config())
    single = _alerts(one_engine, reference + events, lambda a: True, end)
    assert one_engine.now == end
    together = []
    names = list(load_config().engine.detectors)
    for p in range(partitions):
        mine = [
            r for r, k in sent if type(r) not in REFERENCE and partition_for(k, partitions) == p
        ]
        together += _alerts(
            Engine(load_config(), partitioned(names)),
            reference + mine,
            lambda a, p=p: partition_for(a.subject_id, partitions) == p,
            end,
        )
    if whole:
        every = [r for r, _ in sent if type(r) not in REFERENCE]
        together += _alerts(
            Engine(load_config(), whole_stream(names)), reference + every, lambda a: True, end
        )
    return sorted(single), sorted(together)


@pytest.mark.parametrize("partitions", [4, 7])
def test_partitioned_engines_give_the_single_engines_alerts(
    world: Path, keyed: list, partitions: int
) -> None:
    single, together = _split(keyed, _keyed(world, partitions), partitions)
    assert len(single) > 20
    assert together == single


def _copies_world(path: Path) -> None:
    """Payments whose findings belong to a subject other than their feed:
    PI's reserve pays into PK's (PK holds client reserves with no payment
    licence); SHADOW, unlicensed, pays client money into PI's reserve; bank
    BK1 initiates five transfers between PJ's own accounts at two banks
    outside the clearing systems; platforms PX and PY keep their custody
    accounts at BX, a bank with no custody licence; platform PD lends loan
    LN-D1 into borrower WD1's sub-account, WD1 withdraws it to a bank
    account of their own and pays developer DEV from it, a payment that
    bank BKD initiates; and lends LN-D2 to WD2, who withdraws it and pays
    most of it to a relative, WR, who pays DEV (banks BKE and BKR
    initiate those)."""
    recs = [
        *payment_institution(),
        entity("PK"),
        entity("SHADOW"),
        entity("PJ", "payment_institution", licenses=("payment",)),
        entity("BX", "bank", licenses=("deposit",)),
        entity("PX", "p2p_platform", licenses=("p2p_registered", "lending")),
        entity("PY", "p2p_platform", licenses=("p2p_registered", "lending")),
        account("RK", "PK", "client_reserve", bank="BK1"),
        account("PJA", "PJ", "settlement", bank="BK1"),
        account("PJB", "PJ", "settlement", bank="BK2"),
        account("XL1", "XU1", "lender_sub", bank="BX", platform="PX"),
        account("XB1", "XW1", "borrower_sub", bank="BX", platform="PX"),
        account("YL1", "YU1", "lender_sub", bank="BX", platform="PY"),
        account("YB1", "YW1", "borrower_sub", bank="BX", platform="PY"),
        clearing("RR1", at(1, 10), "R1", "RK", "50000", system="CNAPS", initiator="PI"),
        clearing("SH1", at(1, 11), "C1P", "R1", "3000", system="NUCC", initiator="SHADOW"),
        *[
            clearing(
                f"PJ{i}",
                at(2, 9 + i),
                "PJA",
                "PJB",
                "120000",
                system="direct",
                initiator="BK1",
                payer_bank="BK1",
                payee_bank="BK2",
            )
            for i in range(1, 6)
        ],  # fmt: skip
        custody("X1", at(3, 10), "XL1", "XB1", "80000", "transfer", platform="PX", bank="BX"),
        custody("Y1", at(3, 11), "YL1", "YB1", "90000", "transfer", platform="PY", bank="BX"),
        entity("PD", "p2p_platform", licenses=("p2p_registered", "lending")),
        entity("WD1", "person"),
        entity("DEV", "real_estate"),
        account("DL1", "UD1", "lender_sub", bank="BK1", platform="PD"),
        account("DB1", "WD1", "borrower_sub", bank="BK1", platform="PD"),
        account("WD1P", "WD1", "personal", bank="BKD"),
        account("DEVA", "DEV", "corporate", bank="BKD"),
        loan("LN-D1", 180, "400000", borrower="DB1", platform="PD", issued_at=at(4, 9)),
        custody("D1", at(4, 10), "DL1", "DB1", "400000", "invest", platform="PD", loan="LN-D1"),
        custody("D2", at(5, 9), "DB1", "WD1P", "400000", "withdraw", platform="PD"),
        clearing(
            "D3",
            at(6, 15),
            "WD1P",
            "DEVA",
            "300000",
            initiator="BKD",
            payer_bank="BKD",
            payee_bank="BKD",
        ),  # fmt: skip
        entity("WD2", "person"),
        entity("WR", "person"),
        account("DB2", "WD2", "borrower_sub", bank="BK1", platform="PD"),
        account("WD2P", "WD2", "personal", bank="BKE"),
        account("WRP", "WR", "personal", bank="BKR"),
        loan("LN-D2", 180, "500000", borrower="DB2", platform="PD", issued_at=at(7, 9)),
        custody("E1", at(7, 10), "DL1", "DB2", "500000", "invest", platform="PD", loan="LN-D2"),
        custody("E2", at(8, 9), "DB2", "WD2P", "500000", "withdraw", platform="PD"),
        clearing(
            "E3",
            at(8, 15),
            "WD2P",
            "WRP",
            "450000",
            initiator="BKE",
            payer_bank="BKE",
            payee_bank="BKR",
        ),  # fmt: skip
        clearing(
            "E4",
            at(9, 11),
            "WRP",
            "DEVA",
            "420000",
            initiator="BKR",
            payer_bank="BKR",
            payee_bank="BKD",
        ),  # fmt: skip
    ]
    path.write_bytes(b"".join(msgspec.json.encode(encode_record(r)) + b"\n" for r in recs))


@pytest.mark.parametrize("partitions", [4, 7])
def test_a_record_reaches_every_partition_whose_subjects_it_can_change(
    tmp_path: Path, partitions: int
) -> None:
    path = tmp_path / "copies.jsonl"
    _copies_world(path)
    # Each finding's subject is on another partition than the payments' feed.
    on = {
        s: partition_for(s, partitions)
        for s in ("PI", "PK", "SHADOW", "BK1", "PJ", "PX", "PY", "BX", "PD", "BKD", "BKE", "BKR")
    }
    assert on["PK"] != on["PI"] and on["SHADOW"] != on["PI"] and on["PJ"] != on["BK1"]
    assert on["BX"] not in (on["PX"], on["PY"]) and on["PD"] not in (on["BKD"], on["BKR"])
    sent = _keyed(path, partitions)
    single, together = _split(_keyed(path, 1), sent, partitions)
    findings = sorted(
        (a["detector"], a["subject_id"], a["evidence"].get("signal"))
        for a in map(msgspec.json.decode, single)
        if a["revision"] == 1
    )
    trails = sorted(
        (a["evidence"]["loan_id"], a["amount"], tuple(a["evidence"]["trail_txn_ids"]))
        for a in map(msgspec.json.decode, single)
        if a["detector"] == "down_payment_loan"
    )
    assert trails == [
        ("LN-D1", "300000.00", ("D1", "D2", "D3")),
        ("LN-D2", "420000.00", ("E1", "E2", "E3", "E4")),
    ]
    assert findings == [
        ("cross_bank_clearing", "PJ", "cross_bank_transfer"),
        ("down_payment_loan", "PD", "loan_to_real_estate"),
        ("down_payment_loan", "PD", "loan_to_real_estate"),
        ("unlicensed_business", "BX", "unlicensed_custody"),
        ("unlicensed_business", "PK", "unlicensed_payment"),
        ("unlicensed_business", "SHADOW", "unlicensed_payment"),
    ]
    assert together == single
    # Without the copies (each record once, under its feed) the partitions
    # lose those findings.
    firsts, seen = [], set()
    for rec, key in sent:
        if id(rec) not in seen and (type(rec).__name__, getattr(rec, "txn_id", key)) not in seen:
            seen.add((type(rec).__name__, getattr(rec, "txn_id", key)))
            firsts.append((rec, key))
    _, alone = _split(_keyed(path, 1), firsts, partitions)
    assert alone != single
    # Without the whole-stream worker's engine, the loans' trails are lost.
    _, partitioned_only = _split(_keyed(path, 1), sent, partitions, whole=False)
    lost = sorted(set(single) - set(partitioned_only))
    assert {msgspec.json.decode(a)["detector"] for a in lost} == {"down_payment_loan"}
    assert len(lost) == 2
