"""What ``fundflow replay --to-kafka`` reads (streams/producer.py), with a
recording producer in place of Kafka's: gzip told by content, whatever the
name, on files and on standard input."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import sys
from pathlib import Path

import msgspec
import pytest

from fundflow.replay import iter_records
from fundflow.schemas.decode import ColumnMap, DeadLetter, RecordDecoder
from fundflow.streams.producer import DumpProducer
from fundflow.streams.settings import KafkaSettings

ENTITY = b'{"type":"entity","entity_id":"P1","kind":"platform","name":"x"}\n'
CUSTODY = (
    b'{"type":"custody_txn","txn_id":"T1","ts":"2026-03-01T10:00:00+08:00","bank_id":"B",'
    b'"platform_id":"P1","debit_account":"L1","credit_account":"B1","amount":"100.00",'
    b'"purpose":"invest"}\n'
)


class Recording:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic: str, value: bytes, key: bytes | None = None, **_: object) -> None:
        self.sent.append((topic, value))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _send(*paths: str) -> list[tuple[str, bytes]]:
    recording = Recording()
    DumpProducer(KafkaSettings(), producer=recording).send_dumps(list(paths))
    return recording.sent


EXPECTED = [("fundflow.reference", ENTITY.rstrip()), ("fundflow.custody", CUSTODY.rstrip())]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("d.jsonl", gzip.compress(ENTITY + CUSTODY)),
        ("d.jsonl.gz", ENTITY + CUSTODY),
        ("d.jsonl.gz", gzip.compress(ENTITY + CUSTODY)),
    ],
    ids=["gzip named .jsonl", "plain named .gz", "gzip named .gz"],
)
def test_a_dump_is_read_by_its_content(tmp_path: Path, name: str, data: bytes) -> None:
    (tmp_path / name).write_bytes(data)
    assert _send(str(tmp_path / name)) == EXPECTED


def test_gzip_on_stdin_is_read_as_gzip(monkeypatch: pytest.MonkeyPatch) -> None:
    stdin = io.TextIOWrapper(io.BytesIO(gzip.compress(ENTITY + CUSTODY)))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert _send("-") == EXPECTED


def test_another_compression_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_bytes(bz2.compress(ENTITY + CUSTODY))
    with pytest.raises(OSError, match=r"^.*d\.jsonl is bzip2-compressed, and only gzip is read$"):
        _send(str(tmp_path / "d.jsonl"))


PLATFORM = b'{"type":"entity","entity_id":"P1","kind":"p2p_platform","name":"x"}\n'
ACCOUNT = (
    b'{"type":"account","account_id":"L1","owner_id":"U1","bank_id":"B","role":"lender_sub"}\n'
)


def _keyed(file_order: bool, path: str) -> list[tuple[str, bytes | None]]:
    keys: list[tuple[str, bytes | None]] = []

    class Keys(Recording):
        def send(self, topic: str, value: bytes, key: bytes | None = None, **_: object) -> None:
            keys.append((topic, key))

    producer = DumpProducer(KafkaSettings(), producer=Keys(), file_order=file_order)
    summary = producer.send_dumps([path])
    assert summary.sent == {"reference": 2, "custody": 2}
    return keys


def test_by_default_the_reference_records_go_first(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_bytes(PLATFORM + CUSTODY + ACCOUNT + CUSTODY.replace(b"T1", b"T2"))
    assert _keyed(False, str(tmp_path / "d.jsonl")) == [
        ("fundflow.reference", b"P1"),
        ("fundflow.reference", b"L1"),
        ("fundflow.custody", b"P1"),
        ("fundflow.custody", b"P1"),
    ]


def test_in_file_order_each_record_goes_where_it_stands(tmp_path: Path) -> None:
    """As a live system publishes: the account after the first payment
    that names it, each record keyed by what was sent before it."""
    (tmp_path / "d.jsonl").write_bytes(PLATFORM + CUSTODY + ACCOUNT + CUSTODY.replace(b"T1", b"T2"))
    assert _keyed(True, str(tmp_path / "d.jsonl")) == [
        ("fundflow.reference", b"P1"),
        ("fundflow.custody", b"P1"),
        ("fundflow.reference", b"L1"),
        ("fundflow.custody", b"P1"),
    ]


FOREIGN = (
    "id,time,src_bank,src,dst_bank,dst,value,ccy,memo\n"
    "X1,2026-03-01 10:00:00,B1,A1,B2,A2,1500.00,CNY,rent\n"
    "X2,2026-03-01 10:05:00,B1,A1,B2,A2,not money,CNY,bad\n"
    "X3,2026-03-01 10:07:00,B2,A2,B2,A2,9.00,USD,self\n"
    "X4,2026-03-01 10:09:00,B2,A2,B3,A3,12.50,USD,\n"
)
LAYOUT = ColumnMap.parse(
    "clearing_txn",
    "txn_id=id,ts=time,payer_bank=src_bank,payer_account=src,payee_bank=dst_bank,"
    "payee_account=dst,amount=value,currency=ccy,initiator_id=src_bank",
    "system=CNAPS",
)


def test_a_csv_dump_in_a_foreign_layout_is_sent_as_the_wire_lines_replay_reads(
    tmp_path: Path,
) -> None:
    """Each row as the wire JSON line that says the same: decoded, it is
    the record `fundflow replay --map` reads from the row; a row with no
    money in its amount is the replay's dead letter, on the dead-letter
    topic; a payment to itself is a line the worker refuses as the
    replay does."""
    (tmp_path / "t.csv").write_text(FOREIGN)
    recording = Recording()
    producer = DumpProducer(
        KafkaSettings(), producer=recording, kind="clearing_txn", columns=LAYOUT
    )
    summary = producer.send_dumps([str(tmp_path / "t.csv")])
    assert summary.sent == {"clearing": 3}
    assert summary.dead_letters == {"bad_amount": 1}
    topics = [t for t, _ in recording.sent]
    assert topics == [
        "fundflow.clearing",
        "fundflow.deadletter",
        "fundflow.clearing",
        "fundflow.clearing",
    ]
    decoder = RecordDecoder()
    decoder.columns = LAYOUT
    replayed = [rec for rec, _ in iter_records([str(tmp_path / "t.csv")], decoder, "clearing_txn")]
    sent = [
        RecordDecoder().decode(v)
        if t == "fundflow.clearing"
        else msgspec.json.decode(v, type=DeadLetter)
        for t, v in recording.sent
    ]
    assert [type(r).__name__ for r in replayed] == [
        "ClearingTxn",
        "DeadLetter",
        "DeadLetter",
        "ClearingTxn",
    ]
    assert sent[0] == replayed[0] and sent[3] == replayed[3]
    assert sent[1] == replayed[1]  # the same reason, detail, raw row and source
    assert sent[1].source == f"{tmp_path / 't.csv'}:3"
    assert (sent[2].reason, sent[2].detail) == (replayed[2].reason, replayed[2].detail)
    assert json.loads(recording.sent[0][1]) == {
        "type": "clearing_txn",
        "txn_id": "X1",
        "ts": "2026-03-01 10:00:00",
        "system": "CNAPS",
        "initiator_id": "B1",
        "payer_bank": "B1",
        "payer_account": "A1",
        "payee_bank": "B2",
        "payee_account": "A2",
        "amount": "1500.00",
        "currency": "CNY",
        "purpose": None,
    }
