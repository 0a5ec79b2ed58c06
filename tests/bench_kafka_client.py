"""Benchmark of the Kafka clients alone (a script, not a test): how fast one
consumer reads records off the broker on this machine before any engine
runs, the ceiling a worker's client sets on its throughput.

    .venv/bin/python tests/bench_kafka_client.py [--broker HOST:PORT] [--records 1000000]

Without --broker it starts a broker of its own through deploy/kafka/broker
(temporary home, free port) and stops it at the end. In one run:

1. simulates a world (``fundflow simulate --scale 14 --noise 0``) and sends its
   first ``--records`` transaction lines, as they are, to a topic of one
   partition (kafka-python, as ``fundflow replay --to-kafka``);
2. reads them back, each reader from offset 0 to the last, one after the
   other on the same topic, and prints records/s and µs a record, timed
   from its first fetched batch to its last record (connecting and the
   first fetch's wait are not counted):

   * aiokafka (the worker's client, under Faust), ``getmany`` batches of
     ``--batch`` records with the worker's fetch settings (Faust's
     ``consumer_max_fetch_size``, 1 MiB a partition, and
     ``fetch_max_wait_ms`` 1500), touching each value; then the same with
     each value decoded by orjson (the bare decode of ``fundflow bench``)
     and decoded into a typed record (``RecordDecoder``, the worker's
     decode);
   * aiokafka with 8 MiB fetches;
   * kafka-python (the producer's client), ``poll`` batches;
   * confluent-kafka (librdkafka), when it can be imported: it is not a
     dependency of the project, so it is measured only in a venv where it
     was installed for the purpose (``pip install confluent-kafka``).

The broker, the reader and nothing else share the machine while a reader
runs; the figures of one run are comparable with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from kafka_fixtures import fundflow, make_broker  # noqa: E402

TOPIC = "bench.client"


def _lines(work: Path, records: int) -> list[bytes]:
    """The first ``records`` transaction lines of a simulated world."""
    world = work / "world"
    fundflow(
        "simulate", "--out", str(world), "--seed", "1", "--scale", "14", "--noise", "0", timeout=600
    )
    out: list[bytes] = []
    with open(world / "world.jsonl", "rb") as fh:
        for line in fh:
            if b'"custody_txn"' in line or b'"clearing_txn"' in line:
                out.append(line.rstrip(b"\n"))
                if len(out) == records:
                    break
    return out


def _send(address: str, lines: list[bytes]) -> float:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=address)
    admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=address, acks=1, linger_ms=20, batch_size=512 * 1024)
    started = time.perf_counter()
    for line in lines:
        producer.send(TOPIC, line, partition=0)
    producer.flush()
    producer.close()
    return time.perf_counter() - started


def _aiokafka(address: str, n: int, batch: int, fetch_bytes: int, each: Callable[[bytes], Any]) -> float:  # fmt: skip
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def read() -> float:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=address,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=fetch_bytes,
            fetch_max_bytes=max(fetch_bytes, 50 * 1024 * 1024),
            fetch_max_wait_ms=1500,
        )
        await consumer.start()
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        seen = 0
        started = None
        try:
            while seen < n:
                got = await consumer.getmany(tp, timeout_ms=2000, max_records=batch)
                if started is None and got:
                    started = time.perf_counter()
                for m in got.get(tp, ()):
                    each(m.value)
                    seen += 1
        finally:
            await consumer.stop()
        return time.perf_counter() - started

    return asyncio.run(read())


def _kafka_python(address: str, n: int, batch: int) -> float:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=address,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch,
        max_partition_fetch_bytes=1024 * 1024,
    )
    tp = TopicPartition(TOPIC, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    seen = 0
    started = None
    while seen < n:
        got = consumer.poll(timeout_ms=2000)
        if started is None and got:
            started = time.perf_counter()
        for m in got.get(tp, ()):
            len(m.value)
            seen += 1
    took = time.perf_counter() - started
    consumer.close()
    return took


def _confluent(address: str, n: int, batch: int) -> float | None:
    try:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    except ImportError:
        return None
    consumer = Consumer(
        {
            "bootstrap.servers": address,
            "group.id": f"bench-{os.getpid()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 50 * 1024 * 1024,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
        }
    )
    consumer.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
    seen = 0
    started = None
    while seen < n:
        got = consumer.consume(num_messages=batch, timeout=2.0)
        if started is None and got:
            started = time.perf_counter()
        for m in got:
            if m.error() is None:
                len(m.value())
                seen += 1
    took = time.perf_counter() - started
    consumer.close()
    return took


def _row(name: str, n: int, seconds: float | None) -> None:
    if seconds is None:
        print(f"{name:<58} not installed here")
        return
    print(f"{name:<58} {n / seconds:>11,.0f} records/s  {seconds * 1e6 / n:>6.2f} µs a record")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", help="HOST:PORT of a running broker (default: start one)")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument(
        "--batch", type=int, default=2000, help="records a fetch hands over (kafka.batch_size)"
    )
    args = ap.parse_args()

    import orjson

    from fundflow.bench import _cpu_model
    from fundflow.schemas import RecordDecoder

    with tempfile.TemporaryDirectory(prefix="fundflow-bench-client-") as tmp:
        work = Path(tmp)
        broker = None
        address = args.broker
        if address is None:
            broker = make_broker(work / "kafka")
            broker.start()
            address = broker.address
        try:
            lines = _lines(work, args.records)
            n = len(lines)
            size = sum(map(len, lines))
            print(f"machine: {_cpu_model()}, {os.cpu_count()} cores, "
                  f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
            print(
                f"records: {n:,} transaction lines of a simulated world, {size / n:.0f} bytes each"
            )
            secs = _send(address, lines)
            _row("sent (kafka-python producer, 512 KiB batches)", n, secs)
            decoder = RecordDecoder()
            mib = 1024 * 1024
            _row("aiokafka, worker's fetch (1 MiB), values touched", n,
                 _aiokafka(address, n, args.batch, mib, len))  # fmt: skip
            _row("aiokafka, worker's fetch, orjson.loads each value", n,
                 _aiokafka(address, n, args.batch, mib, orjson.loads))  # fmt: skip
            _row("aiokafka, worker's fetch, typed decode (RecordDecoder)", n,
                 _aiokafka(address, n, args.batch, mib, decoder.decode))  # fmt: skip
            _row("aiokafka, 8 MiB fetches, values touched", n,
                 _aiokafka(address, n, args.batch, 8 * mib, len))  # fmt: skip
            _row("kafka-python, 1 MiB fetches, values touched", n,
                 _kafka_python(address, n, args.batch))  # fmt: skip
            _row("confluent-kafka (librdkafka), values touched", n,
                 _confluent(address, n, args.batch))  # fmt: skip
        finally:
            if broker is not None:
                broker.stop()


if __name__ == "__main__":
    main()
