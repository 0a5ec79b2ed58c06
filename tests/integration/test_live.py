"""Integration: the daemon on a live stream gives the replay's alerts.

The daemon tests of ``test_daemon.py`` send the whole stream before a
worker starts, so the worker drains a backlog. Here the workers start
first, are ready, and the records come while they run
(:func:`kafka_fixtures.feed_live`, the producer of ``fundflow replay
--to-kafka --file-order``): each input is read as it is
written, the reference records race the transactions that name them, and
the ordering stage releases what it holds as the inputs move and go quiet.
Once everything is sent, SIGUSR1 asks each worker to drain and stop: the
store then holds `fundflow replay`'s alerts, figure for figure and revision
for revision, and the alerts topic repeats no revision with other figures.
On topics of several partitions a whole-stream worker (``fundflow worker
--whole-stream``) runs beside the partitioned ones, reading every
partition for the detector no key co-locates (``down_payment_loan``).

The world is its own (seed 2, 8 days), not the backlog tests' one, sent
as a live system publishes: in the file's order with the reference records
where they stand, accounts and loans published as they are first used (or
after), some transactions late and some delivered twice, each test in an
order of its own, in parts at different rates with pauses longer than the
idleness bound between them.
Runs in CI and when FUNDFLOW_TEST_BROKER is set; skipped otherwise.
"""

from __future__ import annotations

import json
import re
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka_fixtures import (
    ENABLED,
    Broker,
    WorkerProcess,
    alert_diff,
    feed_live,
    fundflow,
    live_order,
    namespace,
    read_topic,
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

SEED, DAYS = 2, 8
# Short idleness and frequent checkpoints: the live stream's releases and
# the kills below land between checkpoints, with records processed since.
# The shipped idleness bound (5 s): a stall of the feeder on a loaded
# machine is far shorter, so the idle releases come at the pauses below,
# where no late record is cut off its place (a shorter bound releases
# mid-part whenever the feeder stalls that long, and the late records
# behind it are then ``too_late``, as streams/README.md says).
LIVE = {"FUNDFLOW_KAFKA_IDLE_SECONDS": "5"}
CHECKPOINTS = ("--checkpoint-seconds", "2")
# Between the parts of a live feed: longer than the idleness bound, so the
# workers release what they hold mid-stream.
PAUSE = 7.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The world file and what `fundflow replay` makes of it."""
    from fundflow.simulate import write_world

    d = tmp_path_factory.mktemp("live-world")
    write_world(d, seed=SEED, days=DAYS)
    fundflow("replay", str(d / "world.jsonl"), "--db", str(d / "replay.db"), cwd=d)
    expected = store_alerts(d / "replay.db")
    assert len(expected) >= 10, "the world should raise alerts of most detectors"
    return {"path": d / "world.jsonl", "expected": expected}


def _sent_live(world: dict[str, Any], tmp_path: Path, seed: int, **how: Any) -> list[Path]:
    """The world in a live system's order (:func:`kafka_fixtures.live_order`:
    accounts and loans just before their first use, 2 % of the
    transactions late, 1 % delivered twice, ``how`` for the rest), checked
    first: `fundflow replay` of its parts gives the alerts of the world in
    its own order, figure for figure."""
    parts = live_order(world["path"], tmp_path / "live.jsonl", seed, **how)
    fundflow("replay", *map(str, parts), "--db", str(tmp_path / "parts.db"),
             "--deadletter-out", str(tmp_path / "parts-dead.jsonl"), cwd=tmp_path)  # fmt: skip
    got = store_alerts(tmp_path / "parts.db")
    assert got == world["expected"], alert_diff(got, world["expected"])
    return parts


def _letters_agree(broker: Broker, ns: str, tmp_path: Path) -> None:
    """The dead-letter topic refuses the records `fundflow replay` refused in
    the same parts, for the same reasons (no ``too_late`` the replay did not
    have). Dead letters are delivered at least once: a record processed again
    after a partition moved is refused again under the same
    ``topic/partition@offset``, so the letters are counted once per record
    they name, and a record is refused for one reason only."""
    replayed = Counter(
        json.loads(line)["reason"]
        for line in (tmp_path / "parts-dead.jsonl").read_text().splitlines()
    )
    reasons: dict[str, set[str]] = {}
    for m in read_topic(broker, f"{ns}fundflow.deadletter"):
        letter = json.loads(m.value)
        assert letter["source"], letter
        reasons.setdefault(letter["source"], set()).add(letter["reason"])
    assert all(len(r) == 1 for r in reasons.values()), reasons
    live = Counter(next(iter(r)) for r in reasons.values())
    assert live == replayed


def _topics(broker: Broker, ns: str, partitions: int) -> None:
    out = fundflow("topics", "create", "--broker", broker.address, "--namespace", ns,
                   "--partitions", str(partitions)).stdout  # fmt: skip
    assert out.count("created") == 8, out


def _ready(w: WorkerProcess, partitions: int | None = None) -> dict[str, Any]:
    return w.wait_health(
        "the worker ready" + (f" with {partitions} partitions" if partitions else ""),
        lambda h: (
            h["status"] == "ready"
            and (partitions is None or len(h["assigned_partitions"]) == partitions)
        ),
        timeout=240,
    )


def _drain_all(*workers: WorkerProcess) -> None:
    for w in workers:
        w.signal(signal.SIGUSR1)
    for w in workers:
        assert w.wait(timeout=240) == 0, w.output()


def _revisions_agree(broker: Broker, ns: str, want: dict[str, tuple[Any, ...]]) -> None:
    """Every alert revision on the alerts topic, however often it was
    delivered, says one thing; the last of each alert is the replay's. Each
    names the input record that raised it (most of them; the rest come
    from the end's settling) and when the worker took that record in,
    before the message was produced."""
    bodies: dict[tuple[str, int], bytes] = {}
    last: dict[str, dict[str, Any]] = {}
    messages = read_topic(broker, f"{ns}fundflow.alerts")
    where = re.compile(rf"{re.escape(ns)}fundflow\.(custody|clearing|reports)/\d+@\d+")
    traced = 0
    for m in messages:
        headers = dict(m.headers)
        source = headers["source"].decode()
        assert source == "" or where.fullmatch(source), source
        traced += source != ""
        assert 0 < int(headers["released_ms"]) <= m.timestamp, (headers, m.timestamp)
    assert traced > len(messages) / 2, (traced, len(messages))
    for m in messages:
        a = json.loads(m.value)
        key = (a["alert_id"], a["revision"])
        assert bodies.setdefault(key, m.value) == m.value, f"revision {key} said two things"
        if a["alert_id"] not in last or a["revision"] > last[a["alert_id"]]["revision"]:
            last[a["alert_id"]] = a
    assert last.keys() == want.keys()
    for alert_id, a in last.items():
        assert (a["revision"], a["amount"], a["last_ts"]) == (
            want[alert_id][-1], want[alert_id][7], want[alert_id][6],
        ), alert_id  # fmt: skip


def test_live_one_partition(broker: Broker, world: dict[str, Any], tmp_path: Path) -> None:
    """One worker, one partition, the records fed while it runs in four
    parts (6,000 records/s, a burst as fast as the producer goes, 1,500/s,
    4,000/s) with pauses longer than the idleness bound between them; a
    fifth of the accounts and loans registered after their first use (with
    one partition every record reaches the engine whatever it was keyed by)."""
    parts = _sent_live(world, tmp_path, 11, parts=4, after_use=0.2)
    ns = namespace()
    _topics(broker, ns, 1)
    w = WorkerProcess(broker, ns, tmp_path / "w.db", tmp_path / "w.log", env=LIVE)
    try:
        _ready(w, 1)
        feed_live(broker, ns, parts, [6000, None, 1500, 4000], PAUSE)
        _drain_all(w)
    finally:
        w.kill()
    _letters_agree(broker, ns, tmp_path)
    got = store_alerts(tmp_path / "w.db")
    assert got == world["expected"], alert_diff(got, world["expected"])
    _revisions_agree(broker, ns, world["expected"])


def _whole(broker: Broker, ns: str, tmp_path: Path, name: str, *extra: str) -> WorkerProcess:
    """The whole-stream worker of namespace ``ns``, its store and log named ``name``."""
    return WorkerProcess(broker, ns, tmp_path / f"{name}.db", tmp_path / f"{name}.log",
                         "--whole-stream", *extra, env=LIVE)  # fmt: skip


def _ready_whole(w: WorkerProcess, partitions: int) -> None:
    h = _ready(w, partitions)
    assert (h["whole_stream"], h["detectors"]) == (True, ["down_payment_loan"]), h


def test_live_four_partitions_two_workers(
    broker: Broker, world: dict[str, Any], tmp_path: Path
) -> None:
    """Two workers splitting four partitions 2 + 2 and the whole-stream
    worker on all four, the records fed while they run in three parts
    (4,000 records/s, a burst, 2,000/s) with pauses between: together they
    give the replay's alerts."""
    parts = _sent_live(world, tmp_path, 12, parts=3)
    ns = namespace()
    _topics(broker, ns, 4)
    a = WorkerProcess(broker, ns, tmp_path / "a.db", tmp_path / "a.log", env=LIVE)
    whole = _whole(broker, ns, tmp_path, "whole")
    b = None
    try:
        _ready(a, 4)
        assert a.health()["detectors"] == [  # type: ignore[index]
            "fund_pool", "reserve_misuse", "maturity_mismatch", "self_financing",
            "guaranteed_return", "excessive_return", "cross_bank_clearing",
            "unlicensed_business", "private_product_split",
        ]  # fmt: skip
        _ready_whole(whole, 4)
        b = WorkerProcess(broker, ns, tmp_path / "b.db", tmp_path / "b.log", env=LIVE)

        def split() -> bool:
            ha, hb = a.health(), b.health()
            return (
                ha is not None
                and hb is not None
                and hb["status"] == "ready"
                and len(ha["assigned_partitions"]) == 2
                and sorted(ha["assigned_partitions"] + hb["assigned_partitions"]) == [0, 1, 2, 3]
            )

        wait_for("the partitions split 2 + 2", split, timeout=180)
        feed_live(broker, ns, parts, [4000, None, 2000], PAUSE)
        _drain_all(a, b, whole)
    finally:
        a.kill()
        whole.kill()
        if b is not None:
            b.kill()
    _letters_agree(broker, ns, tmp_path)
    got = store_alerts(tmp_path / "a.db", tmp_path / "b.db")
    trails = store_alerts(tmp_path / "whole.db")
    assert {row[1] for row in trails.values()} == {"down_payment_loan"}, trails
    assert trails.keys().isdisjoint(got.keys())
    got.update(trails)
    assert got == world["expected"], alert_diff(got, world["expected"])
    _revisions_agree(broker, ns, world["expected"])


def test_live_sigkill_restarts(broker: Broker, world: dict[str, Any], tmp_path: Path) -> None:
    """Four SIGKILLs while the records come (two partitions, four parts at
    1,500 records/s with pauses between), of the partitioned worker and of
    the whole-stream worker in turn, each once the worker killed has
    processed records its last checkpoint does not cover; a new one starts
    after each. The store ends with the replay's alerts, none missing or
    repeated, and no revision said two ways on the topic."""
    parts = _sent_live(world, tmp_path, 13, parts=4)
    reference = ('"type":"entity"', '"type":"account"', '"type":"product"', '"type":"loan"')
    total = sum(
        1
        for part in parts
        for line in part.read_text().splitlines()
        if not any(k in line for k in reference)
    )
    ns = namespace()
    _topics(broker, ns, 2)
    db = tmp_path / "w.db"
    sent: list[Any] = []
    # Part n + 1 is sent once kill n is done and its worker replaced: each
    # kill finds records flowing however long a restart takes.
    gates = [threading.Event() for _ in range(3)]
    feed = threading.Thread(
        target=lambda: sent.append(feed_live(broker, ns, parts, [1500] * 4, PAUSE, gates)),
        daemon=True,
    )
    workers: list[WorkerProcess] = []
    try:
        w = WorkerProcess(broker, ns, db, tmp_path / "w0.log", *CHECKPOINTS, env=LIVE)
        h = _whole(broker, ns, tmp_path, "h0", *CHECKPOINTS)
        workers += [w, h]
        _ready(w, 2)
        _ready_whole(h, 2)
        feed.start()
        for n in range(1, 5):
            # Killed once a further share of the stream is taken in and
            # some of it is not covered by a checkpoint: the partitioned
            # worker, then the whole-stream one, in turn.
            share = total * n // 6
            victim = w if n % 2 else h
            victim.wait_health(
                f"kill {n}: {share} input records taken in, some not checkpointed",
                lambda hl, share=share: (
                    hl["uncheckpointed_records"] > 0
                    and sum(sum(o.values()) for o in hl["offsets"].values()) >= share
                ),
                timeout=240,
            )
            victim.signal(signal.SIGKILL)
            assert victim.wait(timeout=30) == -signal.SIGKILL, victim.output()
            if n % 2:
                w = WorkerProcess(broker, ns, db, tmp_path / f"w{n}.log", *CHECKPOINTS, env=LIVE)
                workers.append(w)
                _ready(w, 2)
            else:
                h = _whole(broker, ns, tmp_path, f"h{n}", *CHECKPOINTS)
                workers.append(h)
                _ready_whole(h, 2)
            if n <= len(gates):
                gates[n - 1].set()
        feed.join(timeout=300)
        assert sent, "the feed did not finish"
        _drain_all(w, h)
    finally:
        for gate in gates:
            gate.set()
        for w in workers:
            w.kill()
    resumed = [
        n
        for n in range(1, 5)
        if "checkpoint generation"
        in (tmp_path / (f"w{n}.log" if n % 2 else f"h{n}.log")).read_text()
    ]
    assert resumed == [1, 2, 3, 4], "every restarted worker should resume from a checkpoint"
    got = store_alerts(db)
    # The whole-stream workers' stores, one per process (the highest
    # revision of each alert over them).
    trails = store_alerts(*(tmp_path / f"h{n}.db" for n in (0, 2, 4)))
    assert {row[1] for row in trails.values()} == {"down_payment_loan"}, trails
    got.update(trails)
    assert got == world["expected"], alert_diff(got, world["expected"])
    _revisions_agree(broker, ns, world["expected"])
