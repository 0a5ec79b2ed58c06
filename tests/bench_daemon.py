"""Benchmark of the Kafka daemon (a script, not a test).

    .venv/bin/python tests/bench_daemon.py [--broker HOST:PORT] [--scale 14] [--days 30]

Without --broker it starts a broker of its own through deploy/kafka/broker
(temporary home, free port) and stops it at the end. In one run:

1. simulates a world of at least 1,000,000 records;
2. throughput: sends all of it into one-partition topics (kafka-python
   producer, as ``fundflow replay --to-kafka``), then runs one
   ``fundflow worker --drain-and-exit`` over the backlog and divides the
   records it processed by the time from its partition assignment to the
   end of the stream;
3. latency at half that rate: a fresh namespace, the reference records
   first, a live worker, then ``--latency-records`` stream records sent at
   half the measured rate, each stamped with the wall clock at send as its
   Kafka timestamp. Every alert on the alerts topic names the record that
   raised it (header ``source``, ``topic/partition@offset``) and the wall
   clock when the worker took in the records whose processing raised it
   (header ``released_ms``); a consumer of the alerts topic notes when
   each arrives, and the send times are read back from the input topics.
   Prints p50/p99/max of event-to-alert latency (arrival minus the raising
   record's send), split into **waiting** (send to ``released_ms``: the
   broker, the fetch and the ordering stage, which holds a record until its
   feed is an allowed lateness of event time past it or the inputs are idle
   for ``idle_seconds``) and **processing** (``released_ms`` to arrival:
   the engine, the store, the producer and the consumer).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from kafka_fixtures import WorkerProcess, fundflow, make_broker, namespace  # noqa: E402


def _log_time(line: str) -> float:
    stamp = line[:23]
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _produce(address: str, ns: str, path: str, rate: float | None, timestamps: str,
             skip_reference: bool, only_reference: bool, limit: int | None, out: dict) -> None:  # fmt: skip
    """In a child process: sends the dump (or a part of it)."""
    from kafka import KafkaProducer

    from fundflow.schemas.records import Account, Entity, Loan, Product
    from fundflow.streams.producer import DumpProducer
    from fundflow.streams.settings import KafkaSettings

    REFERENCE_TYPES = (Entity, Account, Product, Loan)  # noqa: N806

    settings = KafkaSettings(bootstrap=address, namespace=ns)
    producer = KafkaProducer(
        bootstrap_servers=address, acks=1, linger_ms=2 if rate else 20, batch_size=256 * 1024
    )
    p = DumpProducer(settings, rate=rate, timestamps=timestamps, producer=producer)
    started = time.perf_counter()
    n = 0
    with open(path, "rb") as fh:
        lines = fh.readlines()
    p._t0 = time.monotonic()
    for reference_pass in (True, False):
        if (reference_pass and skip_reference) or (not reference_pass and only_reference):
            if reference_pass:
                # Not sent again, but the keys are read from them.
                for line in lines:
                    rec = p.decoder.decode(line.rstrip(b"\r\n"))
                    if type(rec) in REFERENCE_TYPES:
                        p.ref.add(rec)
            continue
        for i, line in enumerate(lines, start=1):
            p._line(line, reference_pass, path, i)
            if not reference_pass and limit is not None:
                n = sum(v for k, v in p.summary.sent.items() if k != "reference")
                if n >= limit:
                    break
        producer.flush()
    out["seconds"] = time.perf_counter() - started
    out["sent"] = sum(p.summary.sent.values())
    producer.close()


def produce(address: str, ns: str, path: Path, **kw) -> dict:
    with multiprocessing.Manager() as mgr:
        out = mgr.dict()
        proc = multiprocessing.Process(
            target=_produce,
            args=(address, ns, str(path), kw.get("rate"), kw.get("timestamps", "event"),
                  kw.get("skip_reference", False), kw.get("only_reference", False),
                  kw.get("limit"), out),
        )  # fmt: skip
        proc.start()
        proc.join()
        return dict(out)


def _throughput(broker, work: Path, world: Path) -> float:
    """Phase 1: records/s of one worker over a backlog."""
    ns = namespace()
    fundflow("topics", "create", "--broker", broker.address, "--namespace", ns, "--partitions", "1")
    sent = produce(broker.address, ns, world)
    print(f"producer: {sent['sent']:,} records in {sent['seconds']:.1f} s = "
          f"{sent['sent'] / sent['seconds']:,.0f} records/s (kafka-python, crc32c)")  # fmt: skip
    w = WorkerProcess(
        broker, ns, work / "throughput.db", work / "throughput.log", "--drain-and-exit"
    )
    rc = w.wait(timeout=3600)
    log = (work / "throughput.log").read_text()
    if rc != 0:
        raise SystemExit(f"worker failed:\n{log[-3000:]}")
    ready = next(ln for ln in log.splitlines() if "fundflow worker ready" in ln)
    assigned = next(ln for ln in log.splitlines() if "assigned" in ln and "fundflow.worker" in ln)
    drained = next(ln for ln in log.splitlines() if "drained" in ln)
    stopped = next(ln for ln in log.splitlines() if "fundflow worker stopped" in ln)
    records = int(re.search(r"stopped: (\d+) records", stopped).group(1))
    secs = _log_time(drained) - _log_time(assigned)
    rate = records / secs
    print(f"worker: reference catch-up {_log_time(ready) - _log_time(log.splitlines()[0]):.1f} s; "
          f"{records:,} stream records in {secs:.1f} s = {rate:,.0f} records/s "
          f"({1e6 / rate:.1f} us a record), one worker, one partition")  # fmt: skip

    return rate


def _send_times(address: str, sources: set[str]) -> dict[str, int]:
    """``topic/partition@offset`` -> the Kafka timestamp (the send time) of
    each record named, read back from the input topics."""
    from kafka import KafkaConsumer, TopicPartition

    wanted: dict[tuple[str, int], set[int]] = {}
    for s in sources:
        where, _, offset = s.rpartition("@")
        topic, _, part = where.rpartition("/")
        wanted.setdefault((topic, int(part)), set()).add(int(offset))
    times: dict[str, int] = {}
    consumer = KafkaConsumer(bootstrap_servers=address, enable_auto_commit=False,
                             max_poll_records=10_000)  # fmt: skip
    for (topic, part), offsets in wanted.items():
        tp = TopicPartition(topic, part)
        consumer.assign([tp])
        consumer.seek(tp, min(offsets))
        last = max(offsets)
        done = False
        while not done:
            batch = consumer.poll(timeout_ms=2000)
            if not batch:
                break
            for m in batch.get(tp, []):
                if m.offset in offsets:
                    times[f"{topic}/{part}@{m.offset}"] = m.timestamp
                if m.offset >= last:
                    done = True
                    break
    consumer.close()
    return times


def _quantiles(name: str, values: list[float]) -> None:
    values.sort()
    q = statistics.quantiles(values, n=100, method="inclusive") if len(values) > 1 else values * 99
    print(
        f"  {name:<11} p50 {q[49]:>9,.1f} ms   p99 {q[98]:>9,.1f} ms   max {values[-1]:>9,.1f} ms"
    )


def _latency_report(address: str, arrivals: list[tuple[float, str, int, int]]) -> None:
    """Event-to-alert latency, split into waiting and processing."""
    raised = [a for a in arrivals if a[1]]
    sent = _send_times(address, {a[1] for a in raised})
    total, waiting, processing, worker, delivery = [], [], [], [], []
    for arrived, source, released, produced in raised:
        at = sent.get(source)
        if at is None or released < 0:
            continue
        total.append(arrived - at)
        waiting.append(released - at)
        processing.append(arrived - released)
        worker.append(produced - released)
        delivery.append(arrived - produced)
    print(f"alert revisions: {len(arrivals)}, {len(total)} of them raised by a record sent in "
          f"this phase ({len(arrivals) - len(raised)} by a heartbeat or the end)")  # fmt: skip
    if not total:
        print("latency: no alert was raised by a record of the latency phase")
        return
    print("event-to-alert latency (the raising record's send to the alert read back):")
    _quantiles("all of it", total)
    _quantiles("waiting", waiting)
    _quantiles("processing", processing)
    print("processing, split at the alert's Kafka timestamp (when the worker's producer made it):")
    _quantiles("in worker", worker)
    _quantiles("to reader", delivery)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--broker")
    ap.add_argument("--scale", type=int, default=14)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--latency-records", type=int, default=300_000)
    ap.add_argument("--dir", help="work folder (default: a temporary one)")
    ap.add_argument(
        "--rate", type=float,
        help="skip the throughput phase; measure latency at this rate (records/s)",
    )  # fmt: skip
    ap.add_argument(
        "--worker-env", action="append", default=[], metavar="NAME=VALUE",
        help="a variable for the live worker's environment (e.g. FUNDFLOW_KAFKA_BATCH_MS=20); "
        "repeatable",
    )  # fmt: skip
    args = ap.parse_args()
    worker_env = dict(kv.split("=", 1) for kv in args.worker_env)

    work = Path(args.dir or tempfile.mkdtemp(prefix="fundflow-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    broker = None
    if args.broker:
        from kafka_fixtures import Broker

        host, port = args.broker.rsplit(":", 1)
        broker = Broker(home=work, port=int(port), env=dict(os.environ))
        own = False
    else:
        broker = make_broker(work / "kafka-home")
        broker.env["FUNDFLOW_KAFKA_HEAP_OPTS"] = "-Xms512m -Xmx1g"
        print(f"starting a broker on {broker.address} ...", file=sys.stderr)
        broker.start()
        own = True
    try:
        world = work / "world.jsonl"
        if not world.exists():
            from fundflow.simulate import write_world

            print(f"simulating scale {args.scale}, {args.days} days ...", file=sys.stderr)
            write_world(work, seed=1, scale=args.scale, days=args.days)
        with open(world, "rb") as fh:
            total = sum(1 for _ in fh)
        print(f"world: {total:,} records ({world.stat().st_size / 1e6:.0f} MB)")

        # -- 1. throughput over a backlog --------------------------------------------
        rate = 2 * args.rate if args.rate else _throughput(broker, work, world)

        # -- 2. latency at half the rate ----------------------------------------------------
        half = rate / 2
        ns2 = namespace()
        fundflow(
            "topics", "create", "--broker", broker.address, "--namespace", ns2, "--partitions", "1"
        )
        produce(broker.address, ns2, world, only_reference=True)
        live = WorkerProcess(broker, ns2, work / "latency.db", work / "latency.log",
                             "--checkpoint-seconds", "10", env=worker_env)  # fmt: skip
        live.wait_health(
            "live worker ready, its partition's engine built",
            # The engine of a partition is built (every reference record fed
            # to it: about 1.8 s for 281,066) before its first record: a
            # one-time cost at start-up, not measured here.
            lambda h: (
                h["status"] == "ready" and h["assigned_partitions"] == [0] and "0" in h["offsets"]
            ),
            timeout=600,
        )

        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=broker.address, fetch_max_wait_ms=5,
                                 enable_auto_commit=False)  # fmt: skip
        tp = TopicPartition(f"{ns2}fundflow.alerts", 0)
        consumer.assign([tp])
        consumer.seek_to_end(tp)
        consumer.position(tp)
        ctx = multiprocessing.get_context("fork")
        mgr = ctx.Manager()
        sent2 = mgr.dict()
        proc = ctx.Process(
            target=_produce,
            args=(broker.address, ns2, str(world), half, "send", True, False,
                  args.latency_records, sent2),
        )  # fmt: skip
        proc.start()
        # (arrival ms, source, released_ms, the alert's own Kafka timestamp: when produced)
        arrivals: list[tuple[float, str, int, int]] = []
        end_wait = done_at = None
        while True:
            for records in consumer.poll(timeout_ms=50).values():
                now = time.time() * 1000
                for m in records:
                    h = dict(m.headers or [])
                    arrivals.append(
                        (
                            now,
                            h.get("source", b"").decode(),
                            int(h.get("released_ms", b"-1")),
                            m.timestamp,
                        )
                    )
            if not proc.is_alive():
                end_wait = end_wait or time.monotonic()
                h = live.health()
                # Every record processed and nothing left in the ordering
                # stage: the alerts of its idle release at the end are in
                # flight, and read for two seconds more.
                if h and h["records"] >= args.latency_records and h["held"] == 0:
                    done_at = done_at or time.monotonic()
                if h and (
                    time.monotonic() - end_wait > 60 or (done_at and time.monotonic() - done_at > 2)
                ):
                    break
        proc.join()
        sent2 = dict(sent2)
        mgr.shutdown()
        h = live.health() or {}
        live.signal(signal.SIGTERM)
        live.wait(timeout=120)
        consumer.close()
        achieved = sent2.get("sent", 0) / max(sent2.get("seconds", 1e-9), 1e-9)
        print(f"latency phase: asked {half:,.0f} records/s, sent {achieved:,.0f} records/s, "
              f"{h.get('records', 0):,} records processed, {len(arrivals)} alert revisions")  # fmt: skip
        _latency_report(broker.address, arrivals)
    finally:
        if own:
            broker.stop()


if __name__ == "__main__":
    main()
