"""Integration: the worker on a live stream gives the replay's alerts.

The worker is up and ready before the first record; the records are then
produced while it runs, throttled, in parts with a pause longer than the
idleness bound between them, so the worker is caught up most of the time and
the engines' ordering stage, not the backlog, puts the records in order.
Once the stream has gone quiet the store equals what `fundflow replay` gives
before its end-of-stream settlement (``finish()``); after SIGUSR1 (drain:
``finish()``) it equals the replay field for field.

Runs in CI and when FUNDFLOW_TEST_BROKER is set; skipped otherwise.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from kafka_fixtures import (
    ENABLED,
    Broker,
    WorkerProcess,
    alert_diff,
    cut_world,
    fundflow,
    namespace,
    store_alerts,
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
IDLE = 2.0  # the idleness bound the workers run with (seconds)
PAUSE_AFTER = "2026-03-05T00:00:00+08:00"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The world, what the replay stores with and without its end-of-stream
    settlement, and the world cut in two for the pause."""
    from fundflow.detectors import load_config
    from fundflow.replay import replay
    from fundflow.simulate import write_world
    from fundflow.store import open_sink

    d = tmp_path_factory.mktemp("world")
    write_world(d, seed=1, days=DAYS)
    path = d / "world.jsonl"
    for name, finish in (("replay.db", True), ("unsettled.db", False)):
        sink = open_sink(str(d / name))
        try:
            replay([str(path)], config=load_config(), sink=sink, finish=finish)
        finally:
            sink.close()
    full, unsettled = store_alerts(d / "replay.db"), store_alerts(d / "unsettled.db")
    assert len(full) >= 5 and full != unsettled  # the settlement changes some figures
    return {
        "path": path,
        "expected": full,
        "unsettled": unsettled,
        "parts": cut_world(path, d, PAUSE_AFTER),
    }


def _input_ends(broker: Broker, ns: str) -> int:
    """How many records the input topics of ``ns`` hold, all partitions."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker.address, enable_auto_commit=False)
    try:
        tps = [
            TopicPartition(f"{ns}fundflow.{short}", p)
            for short in ("custody", "clearing", "reports")
            for p in sorted(consumer.partitions_for_topic(f"{ns}fundflow.{short}") or ())
        ]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def test_live_stream_gives_the_replays_alerts(
    broker: Broker, world: dict[str, Any], tmp_path: Path
) -> None:
    """One partition, live: the replay's alerts, field for field."""
    _live(broker, world, tmp_path, 1, world["unsettled"], world["expected"])


def _live(
    broker: Broker,
    world: dict[str, Any],
    tmp_path: Path,
    partitions: int,
    quiet: dict | None,
    final: dict,
) -> None:
    """Records produced while the worker runs, with a pause; the store once
    quiet equals ``quiet`` (when given) and after the drain ``final``."""
    ns = namespace()
    fundflow("topics", "create", "--broker", broker.address, "--namespace", ns,
             "--partitions", str(partitions))  # fmt: skip
    w = WorkerProcess(
        broker, ns, tmp_path / "w.db", tmp_path / "w.log",
        env={"FUNDFLOW_KAFKA_IDLE_SECONDS": str(IDLE)},
    )  # fmt: skip
    try:
        w.wait_health(
            "the worker ready with its partitions",
            lambda h: h["status"] == "ready" and len(h["assigned_partitions"]) == partitions,
            timeout=240,
        )
        first, rest = world["parts"]
        fundflow("replay", "--to-kafka", broker.address, "--namespace", ns, "--rate", "4000",
                 str(first))  # fmt: skip
        time.sleep(3 * IDLE)  # a pause longer than the idleness bound
        fundflow("replay", "--to-kafka", broker.address, "--namespace", ns, "--rate", "4000",
                 str(rest))  # fmt: skip
        total = _input_ends(broker, ns)
        w.wait_health(
            "every record taken in and released by the ordering stage",
            lambda h: h["records"] >= total and h["held"] == 0 and h["store_pending"] == 0,
            timeout=300,
        )
        # The store is flushed with each checkpoint: wait for one after the last record.
        if quiet is not None:
            try:
                wait_for(
                    "the live store to equal the replay before its settlement",
                    lambda: store_alerts(tmp_path / "w.db") == quiet,
                    timeout=60,
                    every=1.0,
                )
            except AssertionError:
                got = store_alerts(tmp_path / "w.db")
                raise AssertionError(alert_diff(got, quiet)) from None
        w.signal(signal.SIGUSR1)
        assert w.wait(timeout=240) == 0, w.output()
    finally:
        w.kill()
    got = store_alerts(tmp_path / "w.db")
    assert got == final, alert_diff(got, final)
