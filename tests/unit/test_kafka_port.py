"""One Kafka address for tools on the host, everywhere it is written.

deploy/compose.yaml's broker has two client listeners. ``HOST`` is
published on 127.0.0.1 and is what the host's tools use (``fundflow replay
--to-kafka``, ``topics create``, a worker outside compose); the local broker
kit (deploy/kafka/broker) listens on the same port, and it is the default of
the settings (``kafka.bootstrap``), so a tool run with no ``--broker`` finds
either. ``INTERNAL`` (``kafka:9092``) is reachable only from the other
containers, which use it; it is never published, so a host-side address
with its port names nothing.

Read here: compose's listeners, advertised addresses, published ports and
commands; the settings' default; the broker kit's default; and every
address in the docs, env files and comments that tell a user where Kafka is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from fundflow.cli import main
from fundflow.streams.settings import KafkaSettings, load_kafka_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
KAFKA = COMPOSE["services"]["kafka"]
BROKER_KIT = REPO / "deploy" / "kafka" / "broker"

#: Every file that tells a user (or a default) where Kafka is, and how many
#: host-side Kafka addresses or ports each writes at least.
DOCS = {
    "README.md": 4,
    "deploy/README.md": 1,
    "deploy/compose.yaml": 1,
    "deploy/kafka/README.md": 3,
    "deploy/kafka/broker": 2,
    "deploy/systemd/fundflow-worker.env.example": 1,
    "deploy/systemd/fundflow-worker.service": 0,
    "streams/README.md": 1,
    "streams/settings.py": 1,
}


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` as ``{NAME: (host, port)}``."""
    out = {}
    for item in value.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


LISTEN = listeners(KAFKA["environment"]["KAFKA_LISTENERS"])
ADVERTISED = listeners(KAFKA["environment"]["KAFKA_ADVERTISED_LISTENERS"])


def published() -> list[tuple[str, int, int]]:
    """``(host ip, host port, container port)`` of the broker's published ports."""
    out = []
    for port in KAFKA["ports"]:
        ip, host, container = str(port).split(":")
        out.append((ip, int(host), int(container)))
    return out


(HOST_IP, HOST_PORT, _) = published()[0]
HOST_ADDRESS = f"{HOST_IP}:{HOST_PORT}"
INTERNAL_ADDRESS = "{}:{}".format(*ADVERTISED["INTERNAL"])
INTERNAL_PORT = ADVERTISED["INTERNAL"][1]


# --- compose ---------------------------------------------------------------------------


def test_compose_publishes_the_host_listener_and_only_it():
    assert len(published()) == 1, "one port of the broker is published"
    ((ip, host_port, container_port),) = published()
    assert ip == "127.0.0.1"
    assert container_port == LISTEN["HOST"][1], "the published port is the HOST listener"
    # A client that bootstraps on the host is sent back to an address it can reach.
    assert ADVERTISED["HOST"] == (ip, host_port)


def test_the_internal_listener_is_for_containers_only():
    assert ADVERTISED["INTERNAL"] == ("kafka", LISTEN["INTERNAL"][1])
    assert INTERNAL_PORT != HOST_PORT
    assert INTERNAL_PORT not in {host for _, host, _ in published()}
    assert KAFKA["environment"]["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"


@pytest.mark.parametrize("name", ["topics", "worker"])
def test_containers_use_the_internal_address(name):
    argv = [str(a) for a in COMPOSE["services"][name]["command"]]
    assert argv[argv.index("--broker") + 1] == INTERNAL_ADDRESS


def test_the_broker_health_check_asks_its_own_internal_listener():
    (check,) = KAFKA["healthcheck"]["test"][1:]
    assert f"--bootstrap-server localhost:{INTERNAL_PORT} " in check


# --- defaults --------------------------------------------------------------------------


def test_the_settings_default_is_the_host_address():
    assert KafkaSettings().bootstrap == HOST_ADDRESS
    assert load_kafka_settings(None, env={}).bootstrap == HOST_ADDRESS
    # --broker left out is None, which keeps the settings' value.
    assert KafkaSettings().replace(bootstrap=None).bootstrap == HOST_ADDRESS


@pytest.mark.parametrize("path", [("worker",), ("topics", "create")])
def test_commands_without_broker_take_the_settings_default(path):
    cmd = main
    for name in path:
        cmd = cmd.commands[name]
    # No --broker parses to None, which settings.replace() leaves alone.
    assert cmd.make_context(path[-1], []).params["broker"] is None
    assert cmd.make_context(path[-1], ["--broker", "h:1"]).params["broker"] == "h:1"


def test_the_broker_kit_listens_on_the_host_port():
    text = BROKER_KIT.read_text()
    assert re.search(r"^HOST=(\S+)$", text, re.M).group(1) == HOST_IP
    assert re.search(r"^PORT=\$\{FUNDFLOW_KAFKA_PORT:-(\d+)\}$", text, re.M).group(1) == str(
        HOST_PORT
    )


# --- every written address ---------------------------------------------------------


@dataclass(frozen=True)
class Mention:
    where: str  # file:line
    text: str  # the address or port as written
    host: str | None  # None: a bare port (FUNDFLOW_KAFKA_PORT's default)
    port: int
    kafka: bool  # written where a Kafka address goes


_ADDRESS = re.compile(r"(?<![\w.-])([A-Za-z][\w.-]*|\d+\.\d+\.\d+\.\d+):(\d{2,5})\b")
# Where a Kafka address is written: after one of these on the same line.
_KAFKA_CONTEXT = re.compile(
    r"--broker\b|--to-kafka\b|--bootstrap-server\b|bootstrap|deploy/kafka/broker|HOST://", re.I
)
_KIT_PORT = re.compile(r"FUNDFLOW_KAFKA_PORT\b[^0-9\n]*?(\d{4,5})\b")
_LOOPBACK = ("127.0.0.1", "localhost")


def mentions(where: str, text: str) -> list[Mention]:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        context = _KAFKA_CONTEXT.search(line)
        for m in _ADDRESS.finditer(line):
            kafka = context is not None and context.start() < m.start()
            out.append(Mention(f"{where}:{number}", m.group(0), m.group(1), int(m.group(2)),
                               kafka))  # fmt: skip
        for m in _KIT_PORT.finditer(line):
            out.append(Mention(f"{where}:{number}", m.group(1), None, int(m.group(1)), True))
    return out


def wrong(m: Mention) -> str | None:
    """Why a mention disagrees with compose's two addresses, or ``None``."""
    if m.host == "kafka" and m.text != INTERNAL_ADDRESS:
        return f"{m.text}: the containers' address is {INTERNAL_ADDRESS}"
    if m.host in _LOOPBACK and m.port == INTERNAL_PORT:
        return f"{m.text}: {INTERNAL_PORT} is the containers' listener, unreachable from the host"
    if m.kafka and (m.host is None or m.host in _LOOPBACK) and m.port != HOST_PORT:
        return f"{m.text}: Kafka on the host is {HOST_ADDRESS}"
    return None


def doc_mentions(name: str) -> list[Mention]:
    text = (REPO / name).read_text()
    if name == "deploy/compose.yaml":
        # Its comments; the values themselves are checked above.
        text = "\n".join(ln if ln.lstrip().startswith("#") else "" for ln in text.splitlines())
    return mentions(name, text)


def swept() -> list[str]:
    """Every file of the package, the deploy kit and the docs that could
    write an address: the files of DOCS and any other text file beside them."""
    suffixes = {".md", ".py", ".yaml", ".yml", ".toml", ".example", ".service", ".sh", ".json"}
    local = ("deploy/env/", "deploy/kafka/libs/", "deploy/kafka/run/")
    out = set(DOCS) | {p.name for p in REPO.glob("*.md")}
    for top in ("fundflow", "schemas", "detectors", "streams", "deploy", "docs"):
        for path in (REPO / top).rglob("*"):
            rel = path.relative_to(REPO).as_posix()
            if path.is_file() and path.suffix in suffixes and not rel.startswith(local):
                out.add(rel)
    return sorted(out)


@pytest.mark.parametrize("name", swept())
def test_every_written_kafka_address_is_one_of_compose_s_two(name):
    problems = [f"{m.where}: {why}" for m in doc_mentions(name) if (why := wrong(m))]
    assert problems == []


@pytest.mark.parametrize("name", sorted(DOCS))
def test_the_docs_write_the_host_address(name):
    found = doc_mentions(name)
    on_host = [m for m in found if m.kafka and m.host in (None, *_LOOPBACK)]
    assert len(on_host) >= DOCS[name], f"{name}: fewer Kafka addresses than expected: {found}"


def test_the_mention_check_tells_the_addresses_apart():
    def verdicts(line: str) -> list[str | None]:
        return [wrong(m) for m in mentions("x", line)]

    assert verdicts(f"fundflow replay --to-kafka 127.0.0.1:{HOST_PORT} w.jsonl") == [None]
    assert verdicts(f"fundflow worker --broker {INTERNAL_ADDRESS} --db x") == [None]
    assert verdicts("fundflow replay --to-kafka 127.0.0.1:9092 w.jsonl") != [None]
    assert verdicts("FUNDFLOW_KAFKA_BOOTSTRAP=localhost:29092") != [None]
    assert verdicts("fundflow topics create --broker kafka:19092") != [None]
    assert verdicts("| `FUNDFLOW_KAFKA_PORT` | `29092` | client port |") != [None]
    assert verdicts(f"curl 127.0.0.1:{INTERNAL_PORT}/health") != [None]
    # Other services' loopback ports, and Kafka elsewhere, are not Kafka's host port.
    assert verdicts("open http://127.0.0.1:3000 (Grafana); --broker follows") == [None]
    assert verdicts('bootstrap = "kafka-1.example:9093"') == [None]
    assert [m.kafka for m in mentions("x", "curl -s 127.0.0.1:8081/health")] == [False]
