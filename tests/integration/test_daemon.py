"""Integration: the Kafka daemon against a real broker.

One broker for the module (deploy/kafka/broker in a temporary home on a free
port), one namespace per test. A small simulated world (seed 1, 10 days,
about 39,000 records) is replayed in-process by ``fundflow replay`` for the
expected alerts, sent into Kafka by ``fundflow replay --to-kafka``, and
consumed by ``fundflow worker`` subprocesses. Waits are on conditions (the
worker's health endpoint, exit codes), each with a timeout.

Runs in CI and when FUNDFLOW_TEST_BROKER is set; skipped otherwise.
"""

from __future__ import annotations

import ast
import json
import re
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka_fixtures import (
    ENABLED,
    Broker,
    WorkerProcess,
    alert_diff,
    cut_world,
    free_port,
    fundflow,
    input_ends,
    namespace,
    processed_to,
    read_topic,
    store_alerts,
    topic_alerts,
    wait_for,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not ENABLED,
        reason="starts a real Kafka broker: set FUNDFLOW_TEST_BROKER=1 to run it (CI always runs it)",
    ),
    pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]

DAYS = 10
# The restart test: what is sent before the first time is checkpointed, what
# follows up to the second is processed but not checkpointed when the worker
# is killed.
CHECKPOINTED_UNTIL = "2026-03-05T00:00:00+08:00"
KILLED_AT = "2026-03-06T00:00:00+08:00"
# A worker whose start stalls runs again after 45 s (kafka_fixtures.START),
# three attempts in all: the first wait of the restart test allows for them.
START_AND_FIRST_PART = 240


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The world file and what `fundflow replay` makes of it."""
    from fundflow.simulate import write_world

    d = tmp_path_factory.mktemp("world")
    write_world(d, seed=1, days=DAYS)
    path = d / "world.jsonl"
    fundflow(
        "replay", str(path), "--db", str(d / "replay.db"), "--alerts-out", str(d / "alerts.jsonl"),
        "--deadletter-out", str(d / "dead.jsonl"), cwd=d,
    )  # fmt: skip
    dead = Counter(
        json.loads(line)["reason"] for line in (d / "dead.jsonl").read_text().splitlines()
    )
    expected = store_alerts(d / "replay.db")
    assert len(expected) >= 5, "the world should raise alerts of every detector"
    return {"path": path, "dir": d, "expected": expected, "dead": dead}


def _scrape_when(port: int, ready: Any) -> dict[tuple[str, tuple], float] | None:
    """The worker's /metrics as {(name, sorted labels): value} once ``ready``
    holds of it; build_info is keyed by its mode label only."""
    import urllib.request  # noqa: PLC0415

    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    out: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            if sample.name == "fundflow_build_info":
                labels = {"mode": labels["mode"]}
            out[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return out if ready(out) else None


def _topics(broker: Broker, ns: str, partitions: int) -> None:
    out = fundflow("topics", "create", "--broker", broker.address, "--namespace", ns,
                   "--partitions", str(partitions)).stdout  # fmt: skip
    assert out.count("created") == 8, out
    again = fundflow("topics", "create", "--broker", broker.address, "--namespace", ns).stdout
    assert again.count("exists") == 8, again  # idempotent


def _send(broker: Broker, ns: str, *paths: Path) -> str:
    return fundflow(
        "replay", "--to-kafka", broker.address, "--namespace", ns, *map(str, paths)
    ).stderr


def _drain(broker: Broker, ns: str, db: Path, log: Path, *extra: str) -> WorkerProcess:
    w = WorkerProcess(broker, ns, db, log, "--drain-and-exit", *extra)
    rc = w.wait(timeout=240)
    assert rc == 0, w.output()
    return w


def test_parity_with_replay(broker: Broker, world: dict[str, Any], tmp_path: Path) -> None:
    """One worker on one partition gives `fundflow replay`'s alerts, figure
    for figure, in its store and on the alerts topic; refused records end in
    the dead-letter topic with the replay's reasons."""
    ns = namespace()
    _topics(broker, ns, 1)
    summary = _send(broker, ns, world["path"])
    assert "sent" in summary and "reference 15,714," in summary, summary
    w = _drain(broker, ns, tmp_path / "w.db", tmp_path / "worker.log")
    assert "fundflow worker ready" in w.output()

    got = store_alerts(tmp_path / "w.db")
    assert got == world["expected"], alert_diff(got, world["expected"])

    on_topic = topic_alerts(broker, f"{ns}fundflow.alerts")
    assert set(on_topic) == set(got)
    for alert_id, a in on_topic.items():
        assert (a["revision"], a["amount"], a["severity"], a["last_ts"]) == (
            got[alert_id][-1], got[alert_id][7], got[alert_id][2], got[alert_id][6],
        )  # fmt: skip

    letters = [json.loads(m.value) for m in read_topic(broker, f"{ns}fundflow.deadletter")]
    assert Counter(d["reason"] for d in letters) == world["dead"]
    assert all(set(d) == {"reason", "detail", "raw", "source"} for d in letters)


def test_parity_with_replay_into_postgresql(
    broker: Broker, world: dict[str, Any], tmp_path: Path, postgres_server
) -> None:
    """The same parity with the worker writing to a real PostgreSQL store:
    every alert read back from it equals the one `fundflow replay` stored in
    SQLite, field for field."""
    import psycopg  # noqa: PLC0415

    from fundflow.store import open_store  # noqa: PLC0415

    dbname = "parity_" + namespace().strip(".").replace("-", "_")
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    url = postgres_server.url(dbname)
    ns = namespace()
    _topics(broker, ns, 1)
    _send(broker, ns, world["path"])
    # WorkerProcess names a SQLite file first; a repeated option's last value wins.
    w = WorkerProcess(
        broker, ns, tmp_path / "unused.db", tmp_path / "w.log", "--drain-and-exit", "--db", url
    )
    assert w.wait(timeout=240) == 0, w.output()
    want = open_store(str(world["dir"] / "replay.db")).list()
    got = open_store(url).list()
    assert len(got) == len(world["expected"])
    assert [a.alert_id for a in got] == [a.alert_id for a in want]
    assert got == want


def test_restart_after_sigkill(broker: Broker, world: dict[str, Any], tmp_path: Path) -> None:
    """SIGKILL with records processed after the last checkpoint; a new
    worker resumes from the checkpoint, processes those records again and
    the rest: no alert missing, none duplicated, same figures.

    The stream is sent in three parts so that the kill lands where it must
    however long the worker takes to start: the first part is checkpointed
    whole (a checkpoint every as many records as it holds, and no timed
    one); the second, smaller, is processed with no checkpoint after it;
    the kill follows; the third comes before the restart."""
    ns = namespace()
    _topics(broker, ns, 1)
    first_part, unsaved_part, rest = cut_world(
        world["path"], tmp_path, CHECKPOINTED_UNTIL, KILLED_AT
    )
    _send(broker, ns, first_part)
    checkpointed = input_ends(broker, ns)
    every = sum(checkpointed.values())  # the input records of the first part
    cp = ("--checkpoint-records", str(every), "--checkpoint-seconds", "3600")
    db = tmp_path / "w.db"
    first = WorkerProcess(broker, ns, db, tmp_path / "first.log", *cp)
    try:
        h = first.wait_health(
            "the first part processed and checkpointed",
            lambda h: (
                h["assigned_partitions"] == [0]
                and processed_to(h, checkpointed)
                and h["checkpoints"] >= 1
                and not h["uncheckpointed_records"]
                and not h["draining"]
            ),
            timeout=START_AND_FIRST_PART,
        )
        assert h["checkpoints"] == 1, h

        _send(broker, ns, unsaved_part)
        ends = input_ends(broker, ns)
        unsaved = sum(ends.values()) - every
        assert 0 < unsaved < every, "the second part must end before the next checkpoint"
        h = first.wait_health(
            "the second part processed",
            lambda h: processed_to(h, ends) and h["uncheckpointed_records"] >= unsaved,
        )
        assert (h["checkpoints"], h["uncheckpointed_records"]) == (1, unsaved), h
        first.signal(signal.SIGKILL)
        assert first.wait(timeout=30) == -signal.SIGKILL, first.output()
    finally:
        first.kill()
    before = store_alerts(db)
    assert before, "the first two parts should already raise alerts"

    _send(broker, ns, rest)
    _drain(broker, ns, db, tmp_path / "second.log", *cp)
    resumed = re.search(
        r"partition 0 assigned \(checkpoint generation (\d+), offsets (\{[^}]*\})\)",
        (tmp_path / "second.log").read_text(),
    )
    assert resumed is not None, "the second worker should resume from a checkpoint"
    assert (int(resumed[1]), ast.literal_eval(resumed[2])) == (1, checkpointed)

    got = store_alerts(db)
    assert got == world["expected"], alert_diff(got, world["expected"])
    assert topic_alerts(broker, f"{ns}fundflow.alerts").keys() == world["expected"].keys()


class _CreatesFile:
    """Unpickled, it opens ``path`` for writing (so the file appears)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def test_a_forged_checkpoint_is_refused_and_the_partition_rebuilt(
    broker: Broker, world: dict[str, Any], tmp_path: Path
) -> None:
    """A checkpoint written to the checkpoints topic by someone without the
    workers' key (its state a pickle that would create a file) replaces the
    partition's own, after a worker has processed and committed every
    record. The next worker refuses it with one log line, unpickles
    nothing, rebuilds the partition from its topics' start and ends with
    every alert of `fundflow replay`."""
    import pickle  # noqa: PLC0415

    from kafka import KafkaProducer  # noqa: PLC0415

    from fundflow.streams.checkpoint import Checkpoint, encode_checkpoint  # noqa: PLC0415

    ns = namespace()
    _topics(broker, ns, 1)
    _send(broker, ns, world["path"])
    _drain(broker, ns, tmp_path / "first.db", tmp_path / "first.log")
    ends = input_ends(broker, ns)
    marker = tmp_path / "unpickled"
    forged = Checkpoint(
        partition=0, generation=99, offsets={s: ends[s] for s in ends}, ref_offsets={},
        state=pickle.dumps(_CreatesFile(marker)), finished=True,
    )  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=broker.address)
    try:
        for key, value in encode_checkpoint(forged, b"a key that is not the workers'"):
            producer.send(f"{ns}fundflow.checkpoints", key=key.encode(), value=value, partition=0)
        producer.flush(timeout=30)
    finally:
        producer.close()

    db = tmp_path / "second.db"
    _drain(broker, ns, db, tmp_path / "second.log")
    log = (tmp_path / "second.log").read_text()
    refused = [line for line in log.splitlines() if "checkpoint refused" in line]
    assert len(refused) == 1, log
    assert refused[0].endswith(
        " ERROR fundflow.worker: partition 0: checkpoint refused: its HMAC does not match "
        "(another key, or altered); rebuilding partition 0 from the start of its topics"
    ), refused
    assert "Traceback" not in log
    assert "partition 0 assigned (no checkpoint)" in log
    assert not marker.exists(), "the forged state was unpickled"
    got = store_alerts(db)
    assert got == world["expected"], alert_diff(got, world["expected"])


def test_scale_out_two_workers(broker: Broker, world: dict[str, Any], tmp_path: Path) -> None:
    """One worker draining 4-partition topics, with the whole-stream worker
    beside it (the detector no key co-locates, ``down_payment_loan``, on
    every partition), gives `fundflow replay`'s alerts, figure for figure
    (the final revisions of every partition are stated as of the stream's
    end); two workers splitting the partitions 2 + 2, each draining its
    own, give together the same."""
    single_ns, ns = namespace(), namespace()
    for n in (single_ns, ns):
        _topics(broker, n, 4)
        _send(broker, n, world["path"])
    _drain(broker, single_ns, tmp_path / "single.db", tmp_path / "single.log")
    whole = _drain(broker, single_ns, tmp_path / "whole.db", tmp_path / "whole.log",
                   "--whole-stream")  # fmt: skip
    assert "whole-stream worker: down_payment_loan, on every partition of topics of 4" in (
        whole.output()
    )
    single = store_alerts(tmp_path / "single.db")
    trails = store_alerts(tmp_path / "whole.db")
    assert {row[1] for row in trails.values()} == {"down_payment_loan"}, trails
    assert single.keys().isdisjoint(trails.keys())
    single.update(trails)
    assert single == world["expected"], alert_diff(single, world["expected"])

    a = WorkerProcess(broker, ns, tmp_path / "a.db", tmp_path / "a.log")
    b = None
    try:
        a.wait_health("worker a owns 4 partitions", lambda h: len(h["assigned_partitions"]) == 4)
        b = WorkerProcess(broker, ns, tmp_path / "b.db", tmp_path / "b.log")

        def split() -> bool:
            ha, hb = a.health(), b.health()
            return (
                ha is not None
                and hb is not None
                and len(ha["assigned_partitions"]) == 2
                and sorted(ha["assigned_partitions"] + hb["assigned_partitions"]) == [0, 1, 2, 3]
            )

        wait_for("the partitions split 2 + 2", split, timeout=120)
        # Worker a may have read the whole backlog before b joined: b then
        # takes its partitions over from a's checkpoints (their engines'
        # counts restored) instead of reading records. Either way b holds
        # its partitions' state before the drain.
        b.wait_health(
            "worker b holds its partitions' state",
            lambda h: h["records"] > 0 or h["engine_counts"]["accepted"] > 0,
        )
        for w in (a, b):
            w.signal(signal.SIGUSR1)  # drain: finish what is there, then exit
        assert a.wait() == 0, a.output()
        assert b.wait() == 0, b.output()
    finally:
        a.kill()
        if b is not None:
            b.kill()
    union = store_alerts(tmp_path / "a.db", tmp_path / "b.db", tmp_path / "whole.db")
    assert union == single, alert_diff(union, single)


def test_the_whole_stream_worker_says_so_in_its_build_info(broker: Broker, tmp_path: Path) -> None:
    """The whole-stream worker reads every record the partitioned workers
    read: its metrics carry build mode ``whole_stream``, by which the
    overview dashboard's sums over workers leave its input counts out
    (``test_grafana.py::test_sums_over_workers_leave_the_whole_stream_worker_out``)."""
    ns = namespace()
    _topics(broker, ns, 2)
    port = free_port()
    w = WorkerProcess(broker, ns, tmp_path / "w.db", tmp_path / "w.log", "--whole-stream",
                      "--metrics-port", str(port))  # fmt: skip
    try:
        w.wait_health(
            "the whole-stream worker holds every partition",
            lambda h: h["status"] == "ready" and h["holds_every_partition"],
        )
        samples = wait_for(
            "its metrics",
            lambda: _scrape_when(
                port, lambda m: ("fundflow_build_info", (("mode", "whole_stream"),)) in m
            ),
            timeout=30,
        )
        assert [k for k in samples if k[0] == "fundflow_build_info"] == [
            ("fundflow_build_info", (("mode", "whole_stream"),))
        ]
        w.signal(signal.SIGTERM)
        assert w.wait(timeout=60) == 0, w.output()
    finally:
        w.kill()


def test_poison_input_goes_to_the_dead_letter_topic(
    broker: Broker, tmp_path: Path, kafka_python
) -> None:
    """Malformed records on every input topic become dead letters with their
    reason and source; the valid records after them are processed; SIGTERM
    stops the worker cleanly."""
    ns = namespace()
    _topics(broker, ns, 1)
    producer = kafka_python.KafkaProducer(bootstrap_servers=broker.address, acks="all")
    t = f"{ns}fundflow."
    txn = {
        "txn_id": "T1", "ts": "2026-03-01T10:00:00+08:00", "bank_id": "B01",
        "platform_id": "P1", "debit_account": "A1", "credit_account": "A2",
        "amount": "10.00", "purpose": "invest",
    }  # fmt: skip
    clearing = {
        "txn_id": "C1", "ts": "2026-03-01T10:00:01+08:00", "system": "NUCC",
        "initiator_id": "I1", "payer_bank": "B01", "payer_account": "A1",
        "payee_bank": "B02", "payee_account": "A3", "amount": "5.00",
    }  # fmt: skip
    sends = [
        (t + "reference", b'{"type":"entity","entity_id":"P1"}'),  # missing_field
        (
            t + "reference",
            json.dumps(
                {
                    "type": "account",
                    "account_id": "A1",
                    "owner_id": "P1",
                    "bank_id": "B01",
                    "role": "lender_sub",
                }
            ).encode(),
        ),  # fmt: skip
        (t + "custody", b"{not json"),  # not_json
        (t + "custody", json.dumps({**txn, "amount": "-1"}).encode()),  # bad_amount
        (t + "custody", json.dumps(txn).encode()),  # valid
        (t + "clearing", json.dumps({**clearing, "system": "SWIFT"}).encode()),  # bad_enum
        (t + "clearing", json.dumps(clearing).encode()),  # valid
        (t + "reports", b'{"type":"wire_txn"}'),  # unknown_type
        (
            t + "reports",
            b'{"type":"balance","account_id":"A1","as_of":0,"balance":"1.005"}',
        ),  # bad_amount
        (
            t + "reports",
            b'{"type":"balance","account_id":"A1","as_of":0,"balance":"1.00"}',
        ),  # valid
    ]
    for topic, value in sends:
        producer.send(topic, value=value, key=b"P1")
    producer.flush()
    producer.close()

    metrics_port = free_port()
    w = WorkerProcess(
        broker, ns, tmp_path / "w.db", tmp_path / "w.log", "--metrics-port", str(metrics_port)
    )
    try:
        # (At least once: a rebalance right after the start may have the
        # records processed twice, hence offsets rather than counts.) The
        # valid records wait in the ordering stage until the inputs are idle.
        h = w.wait_health(
            "every record handled",
            lambda h: (
                h["offsets"].get("0") == {"custody": 3, "clearing": 2, "reports": 3}
                and h["held"] == 0
            ),
        )
        assert h["engine_counts"]["accepted"] == 3  # the valid record after each poison
        assert h["reference_records"] == 1
        # The worker's metrics, once its next report is out (every second).
        samples = wait_for(
            "the worker's metrics report",
            lambda: _scrape_when(
                metrics_port, lambda m: m.get(("fundflow_accepted_total", ())) == 3
            ),
            timeout=30,
        )
        for (topic, kind), n in {
            ("custody", "invalid"): 2, ("custody", "custody_txn"): 1,
            ("clearing", "invalid"): 1, ("clearing", "clearing_txn"): 1,
            ("reports", "invalid"): 2, ("reports", "balance"): 1,
        }.items():  # fmt: skip
            assert (
                samples[("fundflow_records_in_total", (("kind", kind), ("topic", t + topic)))] == n
            )
        for reason, n in {
            "not_json": 1,
            "bad_amount": 2,
            "bad_enum": 1,
            "unknown_type": 1,
            "missing_field": 1,
        }.items():
            assert samples[("fundflow_dead_letters_total", (("reason", reason),))] == n
        for topic in ("custody", "clearing", "reports"):
            assert (
                samples[("fundflow_consumer_lag", (("partition", "0"), ("topic", t + topic)))] == 0
            )
        assert samples[("fundflow_build_info", (("mode", "worker"),))] == 1
        w.signal(signal.SIGTERM)
        assert w.wait(timeout=60) == 0, w.output()
    finally:
        w.kill()
    assert "fundflow worker stopped" in w.output()

    letters = [(m.key.decode(), json.loads(m.value)) for m in read_topic(broker, t + "deadletter")]
    got = sorted({(key, d["reason"], d["source"]) for key, d in letters})
    assert got == sorted([
        (t + "reference", "missing_field", t + "reference/0@0"),
        (t + "custody", "not_json", t + "custody/0@0"),
        (t + "custody", "bad_amount", t + "custody/0@1"),
        (t + "clearing", "bad_enum", t + "clearing/0@0"),
        (t + "reports", "unknown_type", t + "reports/0@0"),
        (t + "reports", "bad_amount", t + "reports/0@1"),
    ])  # fmt: skip
    assert all(d["raw"] and d["detail"] for _, d in letters)
