"""Helpers for the daemon's integration tests: a broker started through
``deploy/kafka/broker`` in a temporary home on a free port, and the
``fundflow`` commands run as subprocesses (the worker as a real daemon).

Imported by the test modules; the fixtures themselves are declared there.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[2]
BROKER = ROOT / "deploy" / "kafka" / "broker"
FIRST_START_TIMEOUT = 900  # a fresh checkout fetches the jars with Maven first
STOP_TIMEOUT = 90


def flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


IN_CI = flag("CI")
ENABLED = IN_CI or flag("FUNDFLOW_TEST_BROKER")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair() -> int:
    """A free port whose +1 is free too, below the ephemeral range."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        if _bindable(port) and _bindable(port + 1):
            return port
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Broker:
    home: Path
    port: int
    env: dict[str, str]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def script(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BROKER), *args], env=self.env, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def start(self) -> None:
        proc = self.script("start", timeout=FIRST_START_TIMEOUT)
        if proc.returncode != 0 or proc.stdout.strip().splitlines()[-1:] != [self.address]:
            raise RuntimeError(f"broker start failed:\n{proc.stdout}\n{proc.stderr}")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.script("stop", timeout=STOP_TIMEOUT)
        try:
            pid = int((self.home / "broker.pid").read_text().strip())
        except (OSError, ValueError):
            return
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def make_broker(home: Path) -> Broker:
    port = free_port_pair()
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("FUNDFLOW_KAFKA_"):
            env.pop(name)  # the test's broker only, whatever the caller has set
    env.update(FUNDFLOW_KAFKA_HOME=str(home), FUNDFLOW_KAFKA_PORT=str(port))
    return Broker(home=home, port=port, env=env)


def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


# The tests' workers sign and verify their checkpoints with this key.
CHECKPOINT_KEY = "the integration tests' checkpoint key"


def cli_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FUNDFLOW_KAFKA_", "FUNDFLOW_CHECKPOINT_KEY"))
        and k != "FUNDFLOW_WORKER_START_ATTEMPT"
    }
    env["FUNDFLOW_CHECKPOINT_KEY"] = CHECKPOINT_KEY
    return env


# A worker whose Faust app is not ready 45 s after it starts runs again in a
# fresh process (the default, 120 s, is longer than the tests' waits).
START = {"FUNDFLOW_KAFKA_START_TIMEOUT_SECONDS": "45"}


def fundflow(
    *args: str, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``fundflow ARGS`` and fails with its output when it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "fundflow.cli", *args], env=cli_env(), cwd=cwd,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise AssertionError(
            f"fundflow {' '.join(args)}: exit {proc.returncode}\n{proc.stderr[-4000:]}"
        )
    return proc


def wait_for(what: str, condition: Callable[[], Any], timeout: float, every: float = 0.05) -> Any:
    """Polls ``condition`` until it returns something true; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class WorkerProcess:
    """``fundflow worker`` as a subprocess, with its health endpoint
    (``env``: variables added to its environment, e.g. ``FUNDFLOW_KAFKA_*``
    settings)."""

    def __init__(
        self,
        broker: Broker,
        ns: str,
        db: Path,
        log: Path,
        *extra: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.health_port = free_port()
        self.log_path = log
        self.log = open(log, "w")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fundflow.cli", "worker", "--broker", broker.address,
             "--namespace", ns, "--db", str(db), "--health-port", str(self.health_port), *extra],
            env={**cli_env(), **START, **(env or {})}, stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/health", timeout=2
            ) as r:
                return json.loads(r.read())
        except Exception:  # noqa: BLE001 - not up yet, or starting (503)
            return None

    def wait_health(
        self, what: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 120
    ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"worker exited ({self.proc.returncode}) while waiting for {what}:\n{self.output()}"
                )
            h = self.health()
            last[0] = h
            return h if h is not None and pred(h) else None

        last: list[dict[str, Any] | None] = [None]
        try:
            return wait_for(what, check, timeout)
        except AssertionError as e:
            if self.proc.poll() is not None:
                raise
            raise AssertionError(
                f"{e}\nlast health: {json.dumps(last[0])}\nworker log:\n{self.output()}"
            ) from None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 180) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"worker did not exit within {timeout:.0f} s:\n{self.output()}"
            ) from None
        finally:
            self.log.close()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]


ALERT_COLUMNS = (
    "alert_id, detector, severity, subject_id, accounts, first_ts, last_ts, amount, "
    "summary, evidence, detector_version, revision"
)


def store_alerts(*dbs: Path) -> dict[str, tuple[Any, ...]]:
    """alert id -> its row of highest revision, over one or more stores."""
    out: dict[str, tuple[Any, ...]] = {}
    for db in dbs:
        conn = sqlite3.connect(db)
        try:
            for row in conn.execute(f"SELECT {ALERT_COLUMNS} FROM alerts"):
                old = out.get(row[0])
                if old is None or row[-1] > old[-1]:
                    out[row[0]] = row
        finally:
            conn.close()
    return out


def read_topic(broker: Broker, topic: str, timeout: float = 30) -> list[Any]:
    """Every record of ``topic`` now (all partitions, from the beginning)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker.address, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to its end")
            for records in consumer.poll(timeout_ms=200).values():
                out.extend(records)
        return out
    finally:
        consumer.close()


INPUTS = ("custody", "clearing", "reports")


def input_ends(broker: Broker, ns: str) -> dict[str, int]:
    """The end offsets of the input topics of ``ns`` (one partition each),
    by short name."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker.address, enable_auto_commit=False)
    try:
        tps = {short: TopicPartition(f"{ns}fundflow.{short}", 0) for short in INPUTS}
        ends = consumer.end_offsets(list(tps.values()))
        return {short: ends[tp] for short, tp in tps.items()}
    finally:
        consumer.close()


def processed_to(h: dict[str, Any], ends: dict[str, int]) -> bool:
    """The worker of health ``h`` has processed every input record up to
    ``ends`` (from :func:`input_ends`)."""
    offsets = h["offsets"].get("0", {})
    return all(offsets.get(short, 0) >= end for short, end in ends.items() if end)


def topic_alerts(broker: Broker, topic: str) -> dict[str, dict[str, Any]]:
    """alert id -> the alert (as JSON) of highest revision on the alerts topic."""
    out: dict[str, dict[str, Any]] = {}
    for m in read_topic(broker, topic):
        a = json.loads(m.value)
        assert m.key.decode() == a["alert_id"]
        old = out.get(a["alert_id"])
        if old is None or a["revision"] > old["revision"]:
            out[a["alert_id"]] = a
    return out


def alert_diff(got: dict[str, tuple[Any, ...]], want: dict[str, tuple[Any, ...]]) -> str:
    """A readable account of how two alert sets differ (for assertion messages)."""
    names = [c.strip() for c in ALERT_COLUMNS.split(",")]
    lines = []
    for alert_id in sorted(set(got) | set(want)):
        g, w = got.get(alert_id), want.get(alert_id)
        if g == w:
            continue
        if g is None or w is None:
            lines.append(f"{alert_id}: {'missing' if g is None else 'unexpected'}")
            continue
        for name, x, y in zip(names, g, w, strict=True):
            if x != y:
                lines.append(f"{alert_id} {name}: got {str(x)[:300]!r} want {str(y)[:300]!r}")
    return "\n".join(lines)


def event_ms(value: str | int) -> int:
    """A wire time (ISO-8601, read in Asia/Shanghai without an offset, or
    epoch ms) as epoch ms; a ``ValueError`` when it is neither."""
    if isinstance(value, int):
        return value
    t = datetime.datetime.fromisoformat(value)
    if t.tzinfo is None:
        t = t.replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    d = t - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (d.days * 86400 + d.seconds) * 1000 + d.microseconds // 1000


def cut_world(path: Path, out: Path, *at: str) -> list[Path]:
    """The world file ``path`` in ``len(at) + 1`` files, cut at each time of ``at`` (by
    event time of the transactions, file order kept): everything before the
    first, then up to the next, and so on."""
    cuts = [event_ms(t) for t in at]
    lines = path.read_bytes().splitlines(keepends=True)
    starts = [0]
    for i, line in enumerate(lines):
        if len(starts) > len(cuts):
            break
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("type") in ("custody_txn", "clearing_txn"):
            try:
                ms = event_ms(rec["ts"])
            except Exception:  # noqa: BLE001, S112 - a malformed time: not a cut point
                continue
            while len(starts) <= len(cuts) and ms >= cuts[len(starts) - 1]:
                starts.append(i)
    starts += [len(lines)] * (len(cuts) + 1 - len(starts))
    files = []
    for n, (a, b) in enumerate(zip(starts, [*starts[1:], len(lines)], strict=True)):
        f = out / f"part-{n}.jsonl"
        f.write_bytes(b"".join(lines[a:b]))
        files.append(f)
    return files


SHANGHAI = ZoneInfo("Asia/Shanghai")
REFERENCE_IDS = {
    "entity": "entity_id",
    "account": "account_id",
    "product": "product_id",
    "loan": "loan_id",
}


def _strings(value: Any) -> Any:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def live_order(
    path: Path,
    out: Path,
    seed: int,
    *,
    parts: int = 1,
    late: float = 0.02,
    repeated: float = 0.01,
    within: int = 400,
    after_use: float = 0.0,
    when_used: tuple[str, ...] = ("account", "loan"),
) -> list[Path]:
    """The world file ``path`` in the order a live system publishes it, cut
    into ``parts`` files of about as many transactions (``out``-0.jsonl, ...):
    entities and products registered first, each account and loan just
    before the first record that names it (an account opened, then used; a
    loan booked as it is paid out), with what it names before it; a share
    ``late`` of the transactions delivered up to ``within`` records after
    their place, and a share ``repeated`` delivered a second time as far
    after; a share ``after_use`` of the accounts and loans published up to
    ``within`` records after their first use instead. Nothing moves into
    the next part, and a record the world books out of order joins the part
    that holds what it precedes on its feed (:func:`_cut_in_order`), so a
    pause between parts cuts no record off its place. Malformed lines stay where they are. Accounts and loans
    nothing names come at the end of the last part."""
    rng = random.Random(seed)
    refs: dict[str, list[tuple[bytes, Any]]] = {}
    head: list[bytes] = []
    stream: list[tuple[bytes, Any]] = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        kind = rec.get("type") if isinstance(rec, dict) else None
        if kind in when_used and isinstance(rec.get(REFERENCE_IDS[kind]), str):
            refs.setdefault(rec[REFERENCE_IDS[kind]], []).append((line, rec))
        elif kind in REFERENCE_IDS:
            head.append(line)
        else:
            stream.append((line, rec))
    sent: set[str] = set()

    def introduce(
        ref_id: str, lines: list[bytes], moves: list[tuple[int, bytes]], later: bool = False
    ) -> None:
        if ref_id in sent:
            return
        sent.add(ref_id)
        for line, rec in refs[ref_id]:
            for value in _strings(rec):
                if value in refs and value != ref_id:
                    introduce(value, lines, moves)
            if later and rng.random() < after_use:
                moves.append((len(lines) + rng.randrange(1, within), line))
            else:
                lines.append(line)

    size = -(-len(stream) // parts)
    chunks = [stream[n * size : (n + 1) * size] for n in range(parts)]
    while (cut := _cut_in_order(chunks)) != chunks:
        chunks = cut
    files = []
    for n in range(parts):
        lines: list[bytes] = head if n == 0 else []
        moves: list[tuple[int, bytes]] = []
        for line, rec in chunks[n]:
            for value in _strings(rec):
                if value in refs:
                    introduce(value, lines, moves, later=True)
            is_txn = isinstance(rec, dict) and rec.get("type") in ("custody_txn", "clearing_txn")
            if is_txn and rng.random() < late:
                moves.append((len(lines) + rng.randrange(1, within), line))
                continue
            lines.append(line)
            if is_txn and rng.random() < repeated:
                moves.append((len(lines) + rng.randrange(1, within), line))
        if n == parts - 1:
            for ref_id in refs:
                introduce(ref_id, lines, moves)
        for at, line in sorted(moves, key=lambda m: -m[0]):
            lines.insert(min(at, len(lines)), line)
        f = out.with_name(f"{out.stem}-{n}.jsonl")
        f.write_bytes(b"".join(line + b"\n" for line in lines))
        files.append(f)
    return files


def _feeds_and_time(rec: Any) -> tuple[set[str], datetime.datetime] | None:
    """A record's event time (a reserve report's is the end of its day) and
    every subject whose feed it may be on: its platform, institution or
    initiator, and the owner an account id names (``ACC-I003-R1``: I003),
    a superset of the feed the engine orders it in."""
    if not isinstance(rec, dict):
        return None
    try:
        if rec.get("type") == "reserve_report":
            day = datetime.date.fromisoformat(rec["as_of"]) + datetime.timedelta(days=1)
            t = datetime.datetime.combine(day, datetime.time(), SHANGHAI)
        else:
            t = datetime.datetime.fromisoformat(rec.get("ts") or rec["as_of"])
    except (KeyError, TypeError, ValueError):
        return None
    if t.tzinfo is None:
        return None
    feeds = {
        rec[k]
        for k in ("platform_id", "institution_id", "initiator_id")
        if isinstance(rec.get(k), str)
    }
    for k in ("account_id", "debit_account", "credit_account", "payer_account", "payee_account"):
        v = rec.get(k)
        if isinstance(v, str) and v.count("-") >= 2:
            feeds.add(v.split("-")[1])
    return feeds, t


def _cut_in_order(
    chunks: list[list[tuple[bytes, Any]]],
) -> list[list[tuple[bytes, Any]]]:
    """The parts of a stream cut where no feed is out of order across a cut:
    a record of a later part that is earlier than what a part before it
    holds of one of its feeds (the world itself books some records out of
    order) joins the end of the part before. A live system's pause longer
    than the idleness bound lets the worker release what it holds, so a
    record on the far side of one that is older than what was released is
    ``too_late`` by design (streams/README.md), and the parts replayed
    would not be a fair reference."""
    latest: dict[str, datetime.datetime] = {}
    out: list[list[tuple[bytes, Any]]] = []
    for chunk in chunks:
        here: list[tuple[bytes, Any]] = []
        seen: dict[str, datetime.datetime] = {}
        for item in chunk:
            ft = _feeds_and_time(item[1])
            if out and ft is not None and any(t0 > ft[1] for f in ft[0] if (t0 := latest.get(f))):
                out[-1].append(item)
                target = latest
            else:
                here.append(item)
                target = seen
            if ft is not None:
                for f in ft[0]:
                    if f not in target or target[f] < ft[1]:
                        target[f] = ft[1]
        out.append(here)
        for f, t in seen.items():
            if f not in latest or latest[f] < t:
                latest[f] = t
    return out


def feed_live(
    broker: Broker,
    ns: str,
    parts: list[Path],
    rates: list[float | None],
    pause: float,
    gates: list[threading.Event] | None = None,
) -> dict[str, int]:
    """Sends ``parts`` into the topics of ``ns`` in file order (reference
    records where they stand), part *i* at ``rates[i]`` records/s (``None``:
    as fast as it goes), with ``pause`` seconds of silence between parts;
    with ``gates``, part *i* > 0 waits for ``gates[i - 1]`` as well (a test
    that must act while a part is flowing holds the next one back until it
    has). One producer, so each record is keyed by every reference record
    sent before it. Returns the records sent by topic."""
    from fundflow.detectors import load_config
    from fundflow.streams.producer import DumpProducer
    from fundflow.streams.settings import KafkaSettings

    settings = KafkaSettings(bootstrap=broker.address, namespace=ns)
    producer = DumpProducer(settings, config=load_config(), file_order=True)
    try:
        for n, (part, rate) in enumerate(zip(parts, rates, strict=True)):
            if n:
                time.sleep(pause)
                if gates is not None:
                    assert gates[n - 1].wait(timeout=600), f"part {n} was never let through"
            producer.rate = rate
            producer.send_dumps([str(part)])
    finally:
        producer.close()
    return dict(producer.summary.sent)
