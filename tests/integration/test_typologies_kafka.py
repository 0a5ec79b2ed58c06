"""Integration: the typologies on Kafka, against a real broker.

The typologies read the whole stream as one transfer graph
(``Detector.whole_stream``): a cycle or a scatter-gather joins payments of
accounts that no key puts in one partition. On topics of one partition a
worker runs them; on topics of more, the whole-stream worker (``fundflow
worker --whole-stream``) reads every partition into one engine, and a
partitioned worker configured with the typologies alone refuses to start
(one line, exit 2: it would run nothing). A raw transfer dump in a foreign CSV
layout goes in through ``fundflow replay --to-kafka`` with the same
``--kind``/``--map``/``--const`` that ``fundflow replay`` reads it with,
each row sent as the wire JSON line that says the same.

The world is ``fundflow simulate --transfers --seed 1`` (the one
``tests/e2e/test_transfer_world.py`` pins): the worker, started and ready
first, is fed the whole dump while it runs and, drained, holds the
replay's alerts field for field.
Runs in CI and when FUNDFLOW_TEST_BROKER is set; skipped otherwise.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from kafka_fixtures import (
    ENABLED,
    Broker,
    WorkerProcess,
    alert_diff,
    fundflow,
    namespace,
    store_alerts,
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

CONFIG = '[engine]\ndetectors = ["typologies"]\n'


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The transfer world of seed 1 and what `fundflow replay` makes of it
    with the typologies."""
    d = tmp_path_factory.mktemp("transfer-world")
    fundflow("simulate", "--transfers", "--out", str(d), "--seed", "1")
    truth = json.loads((d / "truth.json").read_text())
    (d / "typologies.toml").write_text(CONFIG)
    dump = str(d / truth["file"])
    fundflow("replay", dump, *truth["replay_args"], "--config", str(d / "typologies.toml"),
             "--db", str(d / "replay.db"), cwd=d)  # fmt: skip
    expected = store_alerts(d / "replay.db")
    by_detector = sorted({row[1] for row in expected.values()})
    assert by_detector == [
        "bipartite", "cycle", "fan_in", "fan_out", "gather_scatter",
        "off_profile", "peel_chain", "scatter_gather", "split_payments", "stack",
    ], by_detector  # fmt: skip
    return {"dir": d, "dump": dump, "args": truth["replay_args"], "expected": expected}


def _topics(broker: Broker, ns: str, partitions: int) -> None:
    out = fundflow("topics", "create", "--broker", broker.address, "--namespace", ns,
                   "--partitions", str(partitions)).stdout  # fmt: skip
    assert out.count("created") == 8, out


def test_the_typologies_on_one_partition_give_the_replays_alerts(
    broker: Broker, world: dict[str, Any], tmp_path: Path
) -> None:
    ns = namespace()
    _topics(broker, ns, 1)
    config = str(world["dir"] / "typologies.toml")
    w = WorkerProcess(broker, ns, tmp_path / "w.db", tmp_path / "w.log", "--config", config)
    try:
        w.wait_health(
            "the worker ready with its partition",
            lambda h: h["status"] == "ready" and len(h["assigned_partitions"]) == 1,
            timeout=240,
        )
        sent = fundflow("replay", "--to-kafka", broker.address, "--namespace", ns,
                        world["dump"], *world["args"], timeout=600).stderr  # fmt: skip
        assert sent.startswith("sent 81,718 records (clearing 81,718)"), sent
        w.signal(signal.SIGUSR1)
        assert w.wait(timeout=600) == 0, w.output()
    finally:
        w.kill()
    got = store_alerts(tmp_path / "w.db")
    assert got == world["expected"], alert_diff(got, world["expected"])


def test_the_whole_stream_worker_on_three_partitions_gives_the_replays_alerts(
    broker: Broker, world: dict[str, Any], tmp_path: Path
) -> None:
    """The dump sent to topics of three partitions (each payment keyed by
    its initiator's bank), then the whole-stream worker started on the
    backlog and drained: the replay's alerts, field for field. A
    partitioned worker with the same configuration refuses to start."""
    ns = namespace()
    _topics(broker, ns, 3)
    config = str(world["dir"] / "typologies.toml")
    w = WorkerProcess(broker, ns, tmp_path / "w.db", tmp_path / "w.log", "--config", config)
    try:
        assert w.wait(timeout=120) == 2, w.output()
    finally:
        w.kill()
    assert (
        "fan_in, fan_out, cycle, gather_scatter, scatter_gather, split_payments, off_profile, "
        "bipartite, stack, peel_chain read the whole stream: on input topics of 3 partitions "
        "they run in `fundflow worker --whole-stream`, and this worker would run nothing"
    ) in w.output()
    sent = fundflow("replay", "--to-kafka", broker.address, "--namespace", ns,
                    world["dump"], *world["args"], timeout=600).stderr  # fmt: skip
    assert sent.startswith("sent 81,718 records (clearing 81,718)"), sent
    whole = WorkerProcess(broker, ns, tmp_path / "h.db", tmp_path / "h.log", "--config", config,
                          "--whole-stream", "--drain-and-exit")  # fmt: skip
    try:
        assert whole.wait(timeout=600) == 0, whole.output()
    finally:
        whole.kill()
    got = store_alerts(tmp_path / "h.db")
    assert got == world["expected"], alert_diff(got, world["expected"])
