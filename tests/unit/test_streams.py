"""The pure parts of the Kafka shell: topic names, keys, checkpoint
encoding, the event-time merge and the settings loader. No broker."""

from __future__ import annotations

import random

import pytest
from ledger import (
    ZONE,
    account,
    at,
    balance,
    clearing,
    custody,
    entity,
    payment_institution,
    report,
)

from fundflow.detectors import Engine, load_config
from fundflow.detectors.ordering import sort_key
from fundflow.detectors.reference import Reference
from fundflow.streams import engines
from fundflow.streams.checkpoint import (
    CHUNK_BYTES,
    Checkpoint,
    CheckpointError,
    decode_checkpoint,
    encode_checkpoint,
)
from fundflow.streams.merge import PartitionMerge
from fundflow.streams.settings import KafkaSettings, load_kafka_settings
from fundflow.streams.topics import TOPIC_OF_KIND, TopicNames, check_namespace

KEY = b"a checkpoint key for the tests"

# -- topic names ------------------------------------------------------------------


def test_topic_names_take_the_namespace() -> None:
    n = TopicNames("t1.")
    assert n.all() == [
        "t1.fundflow.reference",
        "t1.fundflow.custody",
        "t1.fundflow.clearing",
        "t1.fundflow.reports",
        "t1.fundflow.alerts",
        "t1.fundflow.deadletter",
        "t1.fundflow.checkpoints",
        "t1.fundflow.checkpoints-whole",
    ]
    assert n.group == "t1.fundflow.worker"
    # The whole-stream worker: its own group and checkpoint table, the rest shared.
    w = TopicNames("t1.", whole=True)
    assert (w.group, w.checkpoints, w.all(), w.inputs()) == (
        "t1.fundflow.worker-whole",
        "t1.fundflow.checkpoints-whole",
        n.all(),
        n.inputs(),
    )
    # Each needs only its own checkpoint table: a deployment made before the
    # whole-stream worker starts without the other.
    assert "t1.fundflow.checkpoints-whole" not in n.needed()
    assert "t1.fundflow.checkpoints" not in w.needed()
    assert len(n.needed()) == len(w.needed()) == 7
    assert n.inputs() == {
        "t1.fundflow.custody": "custody",
        "t1.fundflow.clearing": "clearing",
        "t1.fundflow.reports": "reports",
    }
    assert TopicNames().custody == "fundflow.custody"


@pytest.mark.parametrize("bad", ["has space", "slash/", "é", "x" * 101])
def test_bad_namespace_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        check_namespace(bad)


def test_every_kind_has_a_topic() -> None:
    assert set(TOPIC_OF_KIND) == {
        "entity", "account", "product", "loan",
        "custody_txn", "clearing_txn", "reserve_report", "balance",
    }  # fmt: skip
    assert {TOPIC_OF_KIND[k] for k in ("reserve_report", "balance")} == {"reports"}


# -- keys -----------------------------------------------------------------------------


KEY_REFERENCE = Reference()
for _acc in (
    account("R1", "I001", "client_reserve"),
    account("OP1", "I001", "operating"),
    account("L1", "P1", "lender_sub"),
):
    KEY_REFERENCE.add(_acc)


@pytest.mark.parametrize(
    ("record", "key"),
    [
        (entity("E1"), "E1"),
        (account("A1", "P1", "lender_sub"), "A1"),
        (custody("T1", 0, "R1", "L1", "1.00", "invest", platform="P1"), "P1"),
        # a reserve account on either side: its owner, whoever initiated
        (clearing("C1", 0, "R1", "X", "1.00", initiator="BANK"), "I001"),
        (clearing("C1", 0, "X", "R1", "1.00", initiator="BANK"), "I001"),
        # no reserve account (an operating one does not count): the initiator
        (clearing("C1", 0, "OP1", "X", "1.00", initiator="BANK"), "BANK"),
        (report("I001", 0, "0"), "I001"),
        (balance("R1", 0, "0"), "I001"),  # the owner
        (balance("UNKNOWN", 0, "0"), "UNKNOWN"),
    ],
)
def test_key_of(record: object, key: str) -> None:
    assert KEY_REFERENCE.key_of(record) == key  # type: ignore[arg-type]


# -- checkpoints ------------------------------------------------------------------------


def _cp(size: int, generation: int = 1, seed: int = 1) -> Checkpoint:
    state = random.Random(seed).randbytes(size)  # incompressible
    return Checkpoint(
        partition=2, generation=generation, offsets={"custody": 10, "clearing": 3},
        ref_offsets={0: 99}, state=state, finished=generation % 2 == 0,
    )  # fmt: skip


@pytest.mark.parametrize("size", [0, 1, CHUNK_BYTES - 100, CHUNK_BYTES * 3 + 5])
def test_checkpoint_round_trip(size: int) -> None:
    cp = _cp(size)
    rows = encode_checkpoint(cp, KEY)
    assert all(len(v) <= CHUNK_BYTES + 8 for _, v in rows[:-1])
    assert rows[-1][0] == "2"  # the head goes last
    assert len(rows) == max(1, -(-len(rows[0][1]) // CHUNK_BYTES)) + 1 or size > CHUNK_BYTES
    assert decode_checkpoint(2, dict(rows), KEY) == cp
    assert decode_checkpoint(3, dict(rows), KEY) is None


def test_a_save_cut_short_leaves_the_previous_checkpoint_whole() -> None:
    old = _cp(CHUNK_BYTES * 2, generation=1, seed=1)
    new = _cp(CHUNK_BYTES * 2, generation=2, seed=2)
    table = dict(encode_checkpoint(old, KEY))
    rows = encode_checkpoint(new, KEY)
    for key, value in rows[:-2]:  # died before the last chunk and the head
        table[key] = value
    assert decode_checkpoint(2, table, KEY) == old
    table.update(rows)
    assert decode_checkpoint(2, table, KEY) == new
    # The next generation writes the first slot again.
    newer = _cp(100, generation=3, seed=3)
    table.update(encode_checkpoint(newer, KEY))
    assert decode_checkpoint(2, table, KEY) == newer


def test_a_missing_chunk_is_an_error() -> None:
    rows = dict(encode_checkpoint(_cp(CHUNK_BYTES * 2), KEY))
    del rows["2/1/1"]
    with pytest.raises(CheckpointError, match="chunk 1"):
        decode_checkpoint(2, rows, KEY)


# -- the merge ---------------------------------------------------------------------------


def test_merge_releases_in_event_time_order_while_it_is_sure() -> None:
    m = PartitionMerge()
    for short, key in [
        ("custody", 1),
        ("custody", 4),
        ("clearing", 2),
        ("clearing", 6),
        ("reports", 3),
    ]:
        m.push(short, key, key * 10, f"{short}{key}")
    # 1, 2, 3 go; then reports is empty and not caught up: 4 must wait.
    assert [p for _, _, p, _ in m.pop_ready(set())] == ["custody1", "clearing2", "reports3"]
    assert [p for _, _, p, _ in m.pop_ready({"reports"})] == ["custody4"]
    assert len(m) == 1
    assert list(m.pop_ready({"reports"})) == []  # custody empty, not caught up
    assert [off for _, off, _, _ in m.pop_ready({"reports", "custody"})] == [60]


def test_merge_keeps_each_topic_in_offset_order() -> None:
    m = PartitionMerge()
    for off, key in enumerate([5, 3, 9]):  # out of event-time order within one topic
        m.push("custody", key, off)
    assert [off for _, off, _, _ in m.pop_ready({"clearing", "reports"})] == [0, 1, 2]


def test_merge_keeps_a_topic_read_ahead_from_making_another_too_late() -> None:
    """A feed takes records of two topics (a payment institution's clearing
    and its reports). Fed as fetched, ten days of reports read ahead move the
    feed's mark past the clearing records, and the engine's ordering stage
    refuses those more than its allowed lateness (72 h) behind; through the
    merge, in event-time order, every record is taken."""
    reports = [report("PI", d, "1000000") for d in range(10)]
    clearings = [
        clearing(f"CL{d}", at(d, 11), "C1P", "R1", "20000", purpose="topup") for d in range(10)
    ]

    def engine() -> Engine:
        ref = Reference(names=False)
        eng = engines.new_engine(load_config(), ref)
        for rec in payment_institution():
            ref.add(rec)
            engines.feed_reference(eng, rec)
        return eng

    ahead = engine()
    for rec in reports + clearings:
        ahead.submit(rec)
    ahead.release()
    assert ahead.counts == {"accepted": 14, "duplicates": 0, "too_late": 6}

    m = PartitionMerge()
    for off, rec in enumerate(reports):
        m.push("reports", sort_key(rec, ZONE)[0], off, rec)
    # Clearing is empty and not caught up: the reports wait for it.
    assert list(m.pop_ready({"custody"})) == []
    for off, rec in enumerate(clearings):
        m.push("clearing", rec.ts, off, rec)
    merged = engine()
    for _, _, rec, _ in m.pop_ready({"custody", "clearing", "reports"}):
        merged.submit(rec)
    merged.release()
    assert merged.counts == {"accepted": 20, "duplicates": 0, "too_late": 0}


# -- settings -----------------------------------------------------------------------------


def test_settings_defaults_file_then_environment(tmp_path) -> None:
    path = tmp_path / "fundflow.toml"
    path.write_text(
        '[fund_pool]\nmin_sources = 5\n\n[kafka]\nbootstrap = "k1:9092,k2:9092"\n'
        'partitions = 8\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "SCRAM-SHA-512"\n'
        'sasl_username = "fundflow"\n'
    )
    s = load_kafka_settings(path, env={"FUNDFLOW_KAFKA_SASL_PASSWORD": "s3cret",
                                       "FUNDFLOW_KAFKA_PARTITIONS": "12",
                                       "FUNDFLOW_KAFKA_HOME": "/ignored"})  # fmt: skip
    assert (s.partitions, s.sasl_username, s.sasl_password) == (12, "fundflow", "s3cret")
    opts = s.client_options()
    assert opts["bootstrap_servers"] == ["k1:9092", "k2:9092"]
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert opts["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(s)
    assert s.replace(namespace="ns.", partitions=None).namespace == "ns."
    assert load_kafka_settings(None, env={}) == KafkaSettings()
    env = {"FUNDFLOW_KAFKA_START_TIMEOUT_SECONDS": "45"}
    assert load_kafka_settings(None, env=env).start_timeout_seconds == 45.0
    assert KafkaSettings().idle_seconds == 5.0
    env = {"FUNDFLOW_KAFKA_IDLE_SECONDS": "0.5"}
    assert load_kafka_settings(None, env=env).idle_seconds == 0.5
    assert KafkaSettings().producer_batch_bytes == 524_288
    env = {"FUNDFLOW_KAFKA_PRODUCER_BATCH_BYTES": "16384"}
    assert load_kafka_settings(None, env=env).producer_batch_bytes == 16_384
    assert KafkaSettings().fetch_bytes == 8 << 20
    env = {"FUNDFLOW_KAFKA_FETCH_BYTES": "1048576"}
    assert load_kafka_settings(None, env=env).fetch_bytes == 1 << 20


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ("[kafka]\nbrokers = 'x'\n", {}, "unknown setting kafka.brokers"),
        ("[kafka]\npartitions = 'four'\n", {}, "kafka.partitions must be int"),
        ("", {"FUNDFLOW_KAFKA_PARTITIONS": "0"}, "kafka.partitions must be in 1..10000"),
        ("[kafka]\nsecurity_protocol = 'SASL_SSL'\n", {}, "needs sasl_mechanism"),
        ("[kafka]\nnamespace = 'a b'\n", {}, "namespace"),
        ("", {"FUNDFLOW_KAFKA_START_TIMEOUT_SECONDS": "0"}, "start_timeout_seconds must be > 0"),
        ("", {"FUNDFLOW_KAFKA_IDLE_SECONDS": "0"}, "idle_seconds must be > 0"),
        ("", {"FUNDFLOW_KAFKA_PRODUCER_BATCH_BYTES": "16383"}, "producer_batch_bytes must be in"),
        ("[kafka]\nproducer_batch_bytes = 1000001\n", {}, "producer_batch_bytes must be in"),
        ("", {"FUNDFLOW_KAFKA_FETCH_BYTES": "1048575"}, "fetch_bytes must be in"),
        ("[kafka]\nfetch_bytes = 67108865\n", {}, "fetch_bytes must be in"),
        ("[kafka\n", {}, "not valid TOML"),
    ],
)
def test_bad_settings_name_the_value(tmp_path, toml: str, env: dict, message: str) -> None:
    path = tmp_path / "f.toml"
    path.write_text(toml)
    with pytest.raises(ValueError, match=message):
        load_kafka_settings(path, env=env)


def test_repeat_filter_lets_one_line_of_a_kind_through_per_interval() -> None:
    import logging

    from fundflow.streams.logfilter import RepeatFilter

    times = iter([0.0, 3.0, 9.9, 10.0, 10.5])
    f = RepeatFilter(("aiokafka",), interval=10.0, clock=lambda: next(times))

    def rec(name: str = "aiokafka.conn") -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, "", 0, "Unable connect to %r", ("n",), None)

    kept = [f.filter(r) for r in (rec(), rec(), rec())]
    assert kept == [True, False, False]
    last = rec()
    assert f.filter(last) is True  # 10 s after the first one
    assert last.msg == "Unable connect to %r (2 more like this in the last 10 s)"
    assert f.filter(rec("fundflow.worker")) is True  # other loggers pass untouched
    assert f.filter(rec()) is False
    with pytest.raises(ValueError, match="interval"):
        RepeatFilter(("x",), interval=0)


def test_the_worker_app_fetches_what_the_settings_say(tmp_path) -> None:
    """The Faust app hands aiokafka ``consumer_max_fetch_size`` as
    ``max_partition_fetch_bytes``: the worker's fetch size is the setting."""
    import asyncio

    import faust

    from fundflow.streams.worker import Worker, _build_app

    loop = asyncio.new_event_loop()
    try:
        for fetch in (KafkaSettings().fetch_bytes, 3 << 20):
            w = Worker(KafkaSettings(fetch_bytes=fetch), load_config(None))
            app = _build_app(faust, w, str(tmp_path / str(fetch)), loop)
            assert app.conf.consumer_max_fetch_size == fetch
            assert app.conf.broker_max_poll_records == w.settings.batch_size
    finally:
        loop.close()
