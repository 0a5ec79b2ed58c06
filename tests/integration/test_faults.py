"""Integration: the Kafka daemon under faults, against a real broker and a
real PostgreSQL server.

* the broker stops in the middle of a stream and comes back (same home,
  same port: its data survives): the worker waits, answers its health
  endpoint, warns in its log, resumes, and drains to `fundflow replay`'s
  alerts;
* the worker is SIGKILLed at seeded random points, ten times over one run
  with new records sent between the kills: the final alert set (store and
  alerts topic) is the uninterrupted run's, nothing missing, nothing twice;
* the PostgreSQL alert store stops in the middle of the stream: the worker
  keeps running and keeps every alert, backs off (1 s doubling to a cap),
  writes no checkpoint while alerts are unwritten, and ends with the store
  equal to `fundflow replay`'s once the server is back; the same when the
  server is already down when the worker starts.

One broker per test (deploy/kafka/broker in a temporary home on a free
port), one namespace per test, a small simulated world (seed 1, 8 days,
about 34,000 records). Waits are on conditions (health endpoint, log lines,
exit codes), each with a timeout. Runs in CI and when FUNDFLOW_TEST_BROKER
is set; skipped otherwise.
"""

from __future__ import annotations

import json
import random
import re
import signal
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka_fixtures import (
    ENABLED,
    Broker,
    WorkerProcess,
    alert_diff,
    event_ms,
    fundflow,
    input_ends,
    namespace,
    processed_to,
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

DAYS = 8
SEED = 1
KILLS = 10
KILL_SEED = 20261127
# The broker's group.min.session.timeout.ms is Kafka's default, 6 s: the
# lowest session timeout it accepts. A killed worker's partition moves to the
# next one after it.
FAST = {"FUNDFLOW_KAFKA_SESSION_TIMEOUT_MS": "6000"}
CHECKPOINTS = ("--checkpoint-records", "1000", "--checkpoint-seconds", "1")
# The Kafka client's line, repeated while the broker is away.
BROKER_AWAY = re.compile(
    r"ERROR aiokafka: Unable connect to node with id \d+: .*Connect call failed"
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The world file, its days as separate files, and `fundflow replay`'s alerts."""
    from fundflow.simulate import write_world

    d = tmp_path_factory.mktemp("world")
    write_world(d, seed=SEED, days=DAYS)
    path = d / "world.jsonl"
    fundflow("replay", str(path), "--db", str(d / "replay.db"), cwd=d)
    expected = store_alerts(d / "replay.db")
    assert len(expected) >= 10, "the world should raise alerts of most detectors"
    return {"path": path, "dir": d, "expected": expected, "days": _days(path, d)}


def _days(path: Path, out: Path) -> list[Path]:
    """The world cut at each local midnight (by the time of the transactions,
    file order kept): reference data and the first day, then one file a day."""
    lines = path.read_bytes().splitlines(keepends=True)
    first: date | None = None
    cuts: list[int] = []
    next_cut = 0
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or rec.get("type") not in ("custody_txn", "clearing_txn"):
            continue
        try:
            ms = event_ms(rec["ts"])
        except Exception:  # noqa: BLE001, S112 - a malformed time: not a cut point
            continue
        if first is None:
            first = date.fromisoformat(rec["ts"][:10])
            next_cut = event_ms(f"{first + timedelta(days=1)}T00:00:00+08:00")
        if ms >= next_cut:
            cuts.append(i)
            day = date.fromisoformat(rec["ts"][:10])
            next_cut = event_ms(f"{day + timedelta(days=1)}T00:00:00+08:00")
    files = []
    for n, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(lines)], strict=True)):
        f = out / f"day-{n}.jsonl"
        f.write_bytes(b"".join(lines[a:b]))
        files.append(f)
    assert len(files) == DAYS, [f.name for f in files]
    return files


def _topics(broker: Broker, ns: str) -> None:
    out = fundflow("topics", "create", "--broker", broker.address, "--namespace", ns,
                   "--partitions", "1").stdout  # fmt: skip
    assert out.count("created") == 8, out


def _send(broker: Broker, ns: str, *paths: Path) -> None:
    fundflow("replay", "--to-kafka", broker.address, "--namespace", ns, *map(str, paths))


def _as_replayed(broker: Broker, ns: str, db: Path, world: dict[str, Any]) -> None:
    """The store ``db`` and the alerts topic of ``ns`` hold `fundflow
    replay`'s alerts, field for field."""
    got = store_alerts(db)
    assert got == world["expected"], alert_diff(got, world["expected"])
    _check_topic(broker, ns, world["expected"])


def _check_topic(broker: Broker, ns: str, want: dict[str, tuple[Any, ...]]) -> None:
    """The alerts topic holds every alert of ``want`` at its highest revision
    with the same figures, and no other."""
    on_topic = topic_alerts(broker, f"{ns}fundflow.alerts")
    assert set(on_topic) == set(want)
    for alert_id, a in on_topic.items():
        row = want[alert_id]
        assert (a["revision"], a["amount"], a["severity"], a["subject_id"], a["last_ts"]) == (
            row[-1], row[7], row[2], row[3], row[6],
        ), alert_id  # fmt: skip


def _one_row_per_alert(db: Path) -> None:
    import sqlite3  # noqa: PLC0415

    conn = sqlite3.connect(db)
    try:
        rows, ids = conn.execute("SELECT count(*), count(DISTINCT alert_id) FROM alerts").fetchone()
    finally:
        conn.close()
    assert rows == ids


def test_broker_outage_the_worker_waits_and_resumes(
    broker: Broker, world: dict[str, Any], tmp_path: Path
) -> None:
    """The broker stops after the first half of the stream is consumed and
    starts again on the same home and port; the worker neither exits nor
    stops answering its health endpoint, warns that the broker is away, then
    takes the second half sent after the restart and drains to the replay's
    alerts, in its store and on the alerts topic."""
    ns = namespace()
    _topics(broker, ns)
    days = world["days"]
    _send(broker, ns, *days[: DAYS // 2])
    ends = input_ends(broker, ns)
    db = tmp_path / "w.db"
    w = WorkerProcess(broker, ns, db, tmp_path / "w.log", *CHECKPOINTS, env=FAST)
    try:
        w.wait_health("the first half consumed", lambda h: processed_to(h, ends), timeout=120)
        broker.stop()
        away = time.monotonic()
        answers = []

        def warned() -> bool:
            assert w.proc.poll() is None, f"the worker exited without the broker:\n{w.output()}"
            h = w.health()
            assert h is not None, "the health endpoint stopped answering"
            answers.append(h["status"])
            # Away for longer than the group's session timeout (6 s).
            return time.monotonic() - away > 10 and BROKER_AWAY.search(w.output()) is not None

        wait_for("the worker to warn that the broker is away", warned, timeout=90, every=0.5)
        assert set(answers) == {"ready"}
        broker.start()
        _send(broker, ns, *days[DAYS // 2 :])
        ends = input_ends(broker, ns)
        w.wait_health("the second half consumed", lambda h: processed_to(h, ends), timeout=180)
        w.signal(signal.SIGUSR1)
        assert w.wait(timeout=120) == 0, w.output()
    finally:
        w.kill()
    _as_replayed(broker, ns, db, world)


def test_random_kills_give_the_uninterrupted_alerts(
    broker: Broker, world: dict[str, Any], tmp_path: Path
) -> None:
    """Ten SIGKILLs, each after a seeded random number of records processed,
    the worker's first checkpoint and records processed after its last one
    (read from the health endpoint), a day of new records sent before each
    restart; the last worker drains: the store and the alerts topic hold the
    uninterrupted run's alerts, ids, revisions and figures, one row each."""
    rng = random.Random(KILL_SEED)
    ns = namespace()
    _topics(broker, ns)
    days = list(world["days"])
    db = tmp_path / "w.db"
    kills = []
    for i in range(KILLS):
        if days:
            _send(broker, ns, days.pop(0))
        ends = input_ends(broker, ns)
        target = rng.randint(300, 2500)
        # Fetched batches of 250 records (2,000 by default): the records
        # come in steps small enough for kills to fall between checkpoints.
        env = {**FAST, "FUNDFLOW_KAFKA_BATCH_SIZE": "250"}
        w = WorkerProcess(broker, ns, db, tmp_path / f"w{i}.log", *CHECKPOINTS, env=env)
        try:
            # The kill waits for the worker's first checkpoint (so that the
            # next one resumes from it) and for records processed since its
            # last one, unless it has taken in all there is.
            h = w.wait_health(
                f"kill {i}: {target} records processed, a checkpoint and records after it, "
                "or all there is",
                lambda h, target=target, ends=ends: (
                    (
                        h["records"] >= target
                        and h["checkpoints"] >= 1
                        and h["uncheckpointed_records"] > 0
                    )
                    or processed_to(h, ends)
                ),
                timeout=120,
            )
            w.signal(signal.SIGKILL)
            w.wait(timeout=30)
        finally:
            w.kill()
        kills.append((target, h["records"], h["uncheckpointed_records"]))
    for day in days:
        _send(broker, ns, day)
    last = WorkerProcess(
        broker, ns, db, tmp_path / "last.log", *CHECKPOINTS, "--drain-and-exit", env=FAST
    )
    assert last.wait(timeout=240) == 0, last.output()
    assert "checkpoint generation" in last.output()  # resumed, not started over

    assert len(kills) == KILLS
    # Most kills fall between two checkpoints: records processed twice.
    assert sum(1 for *_, unsaved in kills if unsaved) >= KILLS // 2, kills
    _as_replayed(broker, ns, db, world)
    _one_row_per_alert(db)


def _database(postgres_server, prefix: str) -> str:
    """A new database on the test server, named for this test; its URL."""
    import psycopg  # noqa: PLC0415

    dbname = prefix + namespace().strip(".")
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    return postgres_server.url(dbname)


def _store_as_replayed(world: dict[str, Any], url: str) -> None:
    """The store at ``url`` holds `fundflow replay`'s alerts, field for field."""
    from fundflow.store import open_store  # noqa: PLC0415

    want = open_store(str(world["dir"] / "replay.db")).list()
    got = open_store(url).list()
    assert [a.alert_id for a in got] == [a.alert_id for a in want]
    assert got == want


def _store_worker(broker: Broker, ns: str, tmp_path: Path, url: str) -> WorkerProcess:
    """A worker writing its alerts to the store at ``url``, retrying it
    with the backoff capped at 4 s."""
    env = {**FAST, "FUNDFLOW_KAFKA_STORE_RETRY_MAX_SECONDS": "4"}
    # WorkerProcess names a SQLite file first; a repeated option's last value wins.
    return WorkerProcess(
        broker, ns, tmp_path / "unused.db", tmp_path / "w.log", *CHECKPOINTS, "--db", url, env=env
    )


def _last_start(log: str) -> list[float]:
    """The retry delays since the worker process last started with its
    store down."""
    mark = "alert store unavailable at start"
    return _retries(mark + log.rsplit(mark, 1)[-1])


def _retries(log: str) -> list[float]:
    return [float(x) for x in re.findall(r"alert store unavailable .* retry in ([0-9.]+) s", log)]


def test_alert_store_outage_keeps_every_alert(
    broker: Broker, world: dict[str, Any], tmp_path: Path, postgres_server
) -> None:
    """PostgreSQL stops while the worker consumes the second half of the
    stream: the worker keeps running, warns with its retry delay (1 s, 2 s,
    4 s, then the 4 s cap set here), writes no checkpoint while alerts are
    unwritten, and once the server is back on the same data and port the
    store equals `fundflow replay`'s, alert for alert."""
    url = _database(postgres_server, "faults_")
    ns = namespace()
    _topics(broker, ns)
    days = world["days"]
    _send(broker, ns, *days[: DAYS // 2])
    ends = input_ends(broker, ns)
    w = _store_worker(broker, ns, tmp_path, url)
    stopped = False
    try:
        w.wait_health(
            "the first half consumed and checkpointed",
            lambda h: (
                processed_to(h, ends) and not h["uncheckpointed_records"] and h["store"] == "ok"
            ),
            timeout=120,
        )
        postgres_server.stop()
        stopped = True
        _send(broker, ns, *days[DAYS // 2 :])
        ends = input_ends(broker, ns)
        h = w.wait_health(
            "the second half consumed with the store down",
            lambda h: processed_to(h, ends) and h["store"].startswith("unavailable (retry in "),
            timeout=120,
        )
        saved = h["checkpoints"]
        wait_for("the backoff to reach its cap", lambda: len(_retries(w.output())) >= 5, 60)
        assert _retries(w.output())[:5] == [1, 2, 4, 4, 4]
        h = w.wait_health("still running", lambda h: True)
        assert h["checkpoints"] == saved, "a checkpoint was written with the store down"
        assert h["uncheckpointed_records"] > 0 and h["store_pending"] > 0, h
        postgres_server.start()
        stopped = False
        w.wait_health(
            "the store written and a checkpoint taken",
            lambda h: h["store"] == "ok" and not h["store_pending"] and h["checkpoints"] > saved,
            timeout=60,
        )
        assert "alert store back after" in w.output()
        w.signal(signal.SIGUSR1)
        assert w.wait(timeout=120) == 0, w.output()
    finally:
        w.kill()
        if stopped:
            postgres_server.start()
    _store_as_replayed(world, url)
    _check_topic(broker, ns, world["expected"])


def test_alert_store_down_at_start_the_worker_starts_without_it(
    broker: Broker, world: dict[str, Any], tmp_path: Path, postgres_server
) -> None:
    """PostgreSQL is stopped before the worker starts: the worker starts
    anyway, consumes the first half of the stream with its health saying
    the store is unavailable, writes no checkpoint, and retries with the
    usual backoff (1 s, 2 s, then the 4 s cap set here); once the server is
    up its retry opens the store, creating the schema in the empty
    database, writes every kept alert and checkpoints. After the second
    half the store equals `fundflow replay`'s, alert for alert."""
    url = _database(postgres_server, "start_down_")
    ns = namespace()
    _topics(broker, ns)
    days = world["days"]
    _send(broker, ns, *days[: DAYS // 2])
    ends = input_ends(broker, ns)
    postgres_server.stop()
    stopped = True
    w = None
    try:
        w = _store_worker(broker, ns, tmp_path, url)
        h = w.wait_health(
            "the first half consumed with the store down",
            lambda h: processed_to(h, ends) and h["store"].startswith("unavailable (retry in "),
            timeout=120,
        )
        assert h["checkpoints"] == 0 and h["uncheckpointed_records"] > 0, h
        assert h["store_pending"] > 0, h  # the first half's alerts, kept
        assert "alert store unavailable at start (cannot open alert store " in w.output()
        # A start-up retried in a fresh process (the start watchdog) opens
        # its store again: the backoff counted is the last process's.
        wait_for("the backoff to reach its cap", lambda: len(_last_start(w.output())) >= 4, 60)
        assert _last_start(w.output())[:4] == [1, 2, 4, 4]
        h = w.wait_health("still running", lambda h: True)
        assert h["checkpoints"] == 0, "a checkpoint was written with the store down"
        assert not (tmp_path / "unused.db").exists()
        postgres_server.start()
        stopped = False
        w.wait_health(
            "the store opened and written, and a checkpoint taken",
            lambda h: h["store"] == "ok" and not h["store_pending"] and h["checkpoints"] > 0,
            timeout=60,
        )
        assert "alert store back after" in w.output()
        _send(broker, ns, *days[DAYS // 2 :])
        ends = input_ends(broker, ns)
        w.wait_health("the second half consumed", lambda h: processed_to(h, ends), timeout=120)
        w.signal(signal.SIGUSR1)
        assert w.wait(timeout=120) == 0, w.output()
    finally:
        if w is not None:
            w.kill()
        if stopped:
            postgres_server.start()
    _store_as_replayed(world, url)
    _check_topic(broker, ns, world["expected"])


# The worker's command with Faust's table manager failing (``raise``, as
# when the consumer thread starts late on a loaded machine) or never
# finishing (``hang``) in the first process only (a process started again
# has FUNDFLOW_WORKER_START_ATTEMPT set).
FAULTY_START = """
import asyncio, os, sys
import faust.tables.manager as manager
from faust.exceptions import ConsumerNotStarted
original = manager.TableManager._update_channels
async def update_channels(self):
    if "FUNDFLOW_WORKER_START_ATTEMPT" not in os.environ:
        if sys.argv[1] == "raise":
            raise ConsumerNotStarted("consumer thread not yet started")
        await asyncio.Event().wait()
    return await original(self)
manager.TableManager._update_channels = update_channels
from fundflow.cli import main
sys.argv = ["fundflow", *sys.argv[2:]]
main()
"""


def _faulty_worker(fault: str, broker: Broker, ns: str, db: Path, log_file: Any, **env: str) -> Any:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from kafka_fixtures import cli_env  # noqa: PLC0415

    return subprocess.Popen(
        [sys.executable, "-c", FAULTY_START, fault, "worker", "--broker", broker.address,
         "--namespace", ns, "--db", str(db), "--drain-and-exit"],
        env={**cli_env(), **FAST, **env}, stdin=subprocess.DEVNULL, stdout=log_file,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "timeout", "line"),
    [
        # An exception in Faust's start-up may end the app, or leave it
        # stopping for ever: either way a fresh process takes over.
        (
            "raise",
            "10",
            r"the Faust app (failed before it was ready|is not ready 10 s after its start) "
            r"\(attempt 1 of 3\); starting it again",
        ),
        (
            "hang",
            "5",
            r"the Faust app is not ready 5 s after its start \(attempt 1 of 3\); starting it again",
        ),
    ],
    ids=["fails", "hangs"],
)
def test_a_failed_start_runs_again_in_a_fresh_process(
    broker: Broker, world: dict[str, Any], tmp_path: Path, fault: str, timeout: str, line: str
) -> None:
    """Faust's app fails before it is ready, or is not ready within
    ``start_timeout_seconds``: the worker logs it, runs its own command line
    again in place (same pid, attempt 2), and that process drains to the
    replay's alerts."""
    ns = namespace()
    _topics(broker, ns)
    _send(broker, ns, world["path"])
    db = tmp_path / "w.db"
    log_path = tmp_path / "w.log"
    with open(log_path, "w") as log_file:
        proc = _faulty_worker(
            fault, broker, ns, db, log_file, FUNDFLOW_KAFKA_START_TIMEOUT_SECONDS=timeout
        )
        try:
            rc = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    out = log_path.read_text(errors="replace")
    assert rc == 0, out[-6000:]
    assert re.search(line, out), out[-6000:]
    assert out.count("reference topic read to its end") == 2, out[-6000:]
    assert "fundflow worker ready" in out
    _as_replayed(broker, ns, db, world)


def test_sigterm_before_ready_stops_at_once(
    broker: Broker, world: dict[str, Any], tmp_path: Path
) -> None:
    """A worker stuck in Faust's start-up has consumed nothing: SIGTERM ends
    it at once with exit 0 (Faust's own stop would wait on services that
    never started)."""
    ns = namespace()
    _topics(broker, ns)
    log_path = tmp_path / "w.log"
    with open(log_path, "w") as log_file:
        proc = _faulty_worker("hang", broker, ns, tmp_path / "w.db", log_file)
        try:
            wait_for(
                "the worker to reach Faust's start-up",
                lambda: "reference topic read to its end" in log_path.read_text(),
                timeout=60,
            )
            time.sleep(3.0)  # inside the hung table manager by now
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    out = log_path.read_text(errors="replace")
    assert rc == 0, out[-6000:]
    assert "signal SIGTERM before the worker was ready: stopping at once" in out, out[-6000:]
