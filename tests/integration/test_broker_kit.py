"""Integration: the local Kafka broker kit (deploy/kafka/broker), for real.

Starts a single-node KRaft broker through the script in a temporary
FUNDFLOW_KAFKA_HOME on a free port, checks that `start` is idempotent and
prints the bootstrap address as its last stdout line, creates a topic and
round-trips one message with kafka-python, checks `status`, then `stop`s it.

Needs Java (and Maven on the first start, to fetch the broker jars into
deploy/kafka/libs) plus `pip install kafka-python crc32c`. Runs when
FUNDFLOW_TEST_BROKER is set or in CI (CI is set there); skipped otherwise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kafka_fixtures import free_port_pair

ROOT = Path(__file__).resolve().parents[2]
BROKER = ROOT / "deploy" / "kafka" / "broker"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


IN_CI = _flag("CI")
ENABLED = IN_CI or _flag("FUNDFLOW_TEST_BROKER")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not ENABLED,
        reason=(
            "starts a real Kafka broker (needs Java, and Maven on first use): "
            "set FUNDFLOW_TEST_BROKER=1 to run it (CI always runs it)"
        ),
    ),
    # kafka-python's own use of importlib.resources' legacy API (not ours).
    pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]

# The first start of a fresh checkout fetches ~46 MB of jars with Maven first.
FIRST_START_TIMEOUT = 900
START_TIMEOUT = 150
STOP_TIMEOUT = 90


@dataclass
class Kit:
    home: Path
    port: int
    env: dict[str, str]
    first_start: subprocess.CompletedProcess[str] | None = field(default=None)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pidfile(self) -> Path:
        return self.home / "broker.pid"

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def run(self, *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return _run(self.env, *args, timeout=timeout)


def _run(env: dict[str, str], *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BROKER), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _show(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def _alive(pid: int) -> bool:
    """True while `pid` is a live (non-zombie) Kafka broker process."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc: trust kill -0
    return b"kafka.Kafka" in cmdline


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def _teardown(kit: Kit) -> None:
    """Stop the broker whatever happened; kill it by pid if `stop` fails."""
    with contextlib.suppress(Exception):  # teardown must go on
        kit.run("stop", timeout=STOP_TIMEOUT)
    pid = kit.pid()
    if pid is not None and _alive(pid):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    home = tmp_path_factory.mktemp("kafka-home")
    port = free_port_pair()
    env = dict(os.environ)
    env.pop("FUNDFLOW_KAFKA_CONTROLLER_PORT", None)
    env.update(FUNDFLOW_KAFKA_HOME=str(home), FUNDFLOW_KAFKA_PORT=str(port))
    kit = Kit(home=home, port=port, env=env)
    try:
        kit.first_start = kit.run("start", timeout=FIRST_START_TIMEOUT)
        assert kit.first_start.returncode == 0, _show(kit.first_start)
        yield kit
    finally:
        _teardown(kit)


@pytest.fixture
def broker(kit: Kit) -> Kit:
    """The kit's broker, running (started again if a test stopped it)."""
    if kit.run("status").returncode != 0:
        proc = kit.run("start")
        assert proc.returncode == 0, _show(proc)
    return kit


def test_first_start_prints_the_bootstrap_address_last(kit: Kit) -> None:
    assert kit.first_start is not None
    lines = kit.first_start.stdout.strip().splitlines()
    assert lines and lines[-1] == kit.address, _show(kit.first_start)
    assert "formatting KRaft storage" in kit.first_start.stderr
    assert (kit.home / "data" / "meta.properties").is_file()
    assert (kit.home / "broker.log").is_file()
    props = (kit.home / "server.properties").read_text()
    for line in (
        f"listeners=PLAINTEXT://127.0.0.1:{kit.port},CONTROLLER://127.0.0.1:{kit.port + 1}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{kit.port}",
        f"controller.quorum.voters=1@127.0.0.1:{kit.port + 1}",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
    ):
        assert line in props.splitlines()


def test_start_is_idempotent(broker: Kit) -> None:
    pid = broker.pid()
    assert pid is not None and _alive(pid)
    t0 = time.monotonic()
    proc = broker.run("start")
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, _show(proc)
    assert proc.stdout.strip().splitlines()[-1] == broker.address, _show(proc)
    assert "already running" in proc.stderr
    assert broker.pid() == pid, "a second start must not spawn another broker"
    assert elapsed < 30, f"no-op start took {elapsed:.1f}s"


def test_status_reports_running(broker: Kit) -> None:
    proc = broker.run("status")
    assert proc.returncode == 0, _show(proc)
    assert proc.stdout.startswith("running"), _show(proc)
    assert broker.address in proc.stdout


def test_topic_produce_consume_roundtrip(broker: Kit, kafka_python) -> None:
    from kafka.admin import NewTopic  # noqa: PLC0415

    topic = f"fundflow-kit-{uuid.uuid4().hex[:8]}"
    admin = kafka_python.KafkaAdminClient(bootstrap_servers=broker.address, client_id="kit-test")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        assert topic in admin.list_topics()
    finally:
        admin.close()

    producer = kafka_python.KafkaProducer(bootstrap_servers=broker.address, acks="all")
    try:
        meta = producer.send(topic, key=b"pool-1", value=b'{"amount": 100}').get(timeout=30)
        producer.flush(timeout=30)
    finally:
        producer.close()
    assert meta.topic == topic and meta.offset == 0

    consumer = kafka_python.KafkaConsumer(
        topic,
        bootstrap_servers=broker.address,
        group_id=f"kit-test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=30_000,
    )
    try:
        records = []
        for record in consumer:
            records.append(record)
            break
        consumer.commit()
    finally:
        consumer.close()
    assert [(r.key, r.value) for r in records] == [(b"pool-1", b'{"amount": 100}')]


def test_topics_are_not_auto_created(broker: Kit, kafka_python) -> None:
    from kafka.errors import KafkaTimeoutError  # noqa: PLC0415

    topic = f"fundflow-kit-missing-{uuid.uuid4().hex[:8]}"
    producer = kafka_python.KafkaProducer(bootstrap_servers=broker.address, max_block_ms=3000)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(topic, value=b"x").get(timeout=10)
    finally:
        producer.close(timeout=5)
    admin = kafka_python.KafkaAdminClient(bootstrap_servers=broker.address, client_id="kit-test")
    try:
        assert topic not in admin.list_topics()
    finally:
        admin.close()


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    port = free_port_pair()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        env = dict(os.environ)
        env.pop("FUNDFLOW_KAFKA_CONTROLLER_PORT", None)
        env.update(FUNDFLOW_KAFKA_HOME=str(tmp_path / "home"), FUNDFLOW_KAFKA_PORT=str(port))
        proc = _run(env, "start", timeout=60)
    assert proc.returncode == 1, _show(proc)
    assert proc.stdout == "", _show(proc)
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 1 and "already in use" in errors[0], _show(proc)
    assert not (tmp_path / "home" / "broker.pid").exists()


def test_stop_then_status_then_restart(broker: Kit) -> None:
    pid = broker.pid()
    assert pid is not None

    proc = broker.run("stop", timeout=STOP_TIMEOUT)
    assert proc.returncode == 0, _show(proc)
    assert not broker.pidfile.exists()
    assert not _alive(pid)
    assert not _port_open(broker.port)

    proc = broker.run("status")
    assert proc.returncode == 1, _show(proc)
    assert proc.stdout.strip() == "stopped"

    again = broker.run("stop")  # stopping a stopped broker is fine
    assert again.returncode == 0, _show(again)

    # Restart on the already formatted storage: no second format.
    proc = broker.run("start")
    assert proc.returncode == 0, _show(proc)
    assert proc.stdout.strip().splitlines()[-1] == broker.address
    assert "formatting" not in proc.stderr
    assert broker.pid() not in (None, pid)
