"""The Kafka commands' shell (fundflow.kafka_cli) without a broker: their
help, and ``topics create`` against local servers that are not Kafka."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner

from fundflow.cli import main


def _help_line(command: str, option: str) -> str:
    result = CliRunner().invoke(
        main, [command, "--help"], terminal_width=200, max_content_width=200
    )
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.lstrip().startswith(option + " ")]
    return " ".join(line.split())


def test_worker_help_says_the_store_may_be_a_url() -> None:
    assert _help_line("worker", "--db") == (
        "--db PATH|URL Alert store: a SQLite file, or a postgresql:// URL. [default: fundflow.db]"
    )


# -- topics create against servers that are not Kafka ---------------------------------


class _Server:
    """A TCP server on 127.0.0.1 that serves each connection with
    ``serve(connection, port)`` in a thread of its own."""

    def __init__(self, serve: Callable[[socket.socket, int], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.serve = serve
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.serve(conn, self.port)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server() -> Iterator[Callable[[Callable[[socket.socket, int], None]], _Server]]:
    started: list[_Server] = []

    def start(serve: Callable[[socket.socket, int], None]) -> _Server:
        started.append(_Server(serve))
        return started[-1]

    yield start
    for s in started:
        s.close()


def _hang_up(conn: socket.socket, port: int) -> None:
    """Accepts, then closes at once."""


def _garbage(conn: socket.socket, port: int) -> None:
    """Answers every request with bytes that are no Kafka response."""
    while conn.recv(65536):
        conn.sendall(b"\x00\x00\x00\x08" + b"\xff" * 8 + b"HTTP/1.1 400 Bad Request\r\n\r\n")


# The Kafka protocol, as much of it as `topics create` asks for: ApiVersions
# v0, Metadata v1 and CreateTopics v4 or v5 (v5 is flexible: compact
# strings and tagged fields, and describes the created topic's configs).


def _uvarint(n: int) -> bytes:
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7F) | 0x80])
        n >>= 7
    return out + bytes([n])


def _compact(text: str) -> bytes:
    return _uvarint(len(text) + 1) + text.encode()


def _string(text: str) -> bytes:
    return struct.pack(">h", len(text)) + text.encode()


def _broker(existing: tuple[str, ...] = (), config_source: int | None = None):  # type: ignore[no-untyped-def]
    """A broker holding the topics ``existing`` that creates every topic
    asked for. With ``config_source`` it answers CreateTopics v5, describing
    one config of the topic with that source; without, v4 (no configs)."""

    def serve(conn: socket.socket, port: int) -> None:
        while True:
            head = conn.recv(4, socket.MSG_WAITALL)
            if len(head) < 4:
                return
            request = conn.recv(struct.unpack(">i", head)[0], socket.MSG_WAITALL)
            api_key, version, correlation = struct.unpack(">hhi", request[:8])
            if api_key == 18 and version != 0:  # ApiVersions: this broker speaks v0 only
                body = struct.pack(">hi", 35, 1) + struct.pack(">hhh", 18, 0, 0)
            elif api_key == 18:
                create = 4 if config_source is None else 5
                apis = [(18, 0, 0), (3, 0, 1), (19, 0, create)]
                body = struct.pack(">hi", 0, len(apis))
                body += b"".join(struct.pack(">hhh", *a) for a in apis)
            elif api_key == 3:  # Metadata v1: this broker, its controller, the topics
                body = (
                    struct.pack(">ii", 1, 0) + _string("127.0.0.1") + struct.pack(">ih", port, -1)
                )
                body += struct.pack(">ii", 0, len(existing))
                for name in existing:
                    body += struct.pack(">h", 0) + _string(name) + struct.pack(">?i", False, 0)
            elif api_key == 19 and config_source is None:  # CreateTopics v4: created
                name = _string("t")
                body = struct.pack(">ii", 0, 1) + name + struct.pack(">hh", 0, -1)
            elif api_key == 19:  # CreateTopics v5: created, one config of that source
                config = _compact("cleanup.policy") + _compact("compact")
                config += struct.pack(">bbb", 0, config_source, 0) + b"\x00"
                topic = _compact("t") + struct.pack(">h", 0) + b"\x00"
                topic += struct.pack(">ih", 1, 1) + _uvarint(2) + config + b"\x00"
                body = b"\x00" + struct.pack(">i", 0) + _uvarint(2) + topic + b"\x00"
            else:
                return
            answer = struct.pack(">i", correlation) + body
            conn.sendall(struct.pack(">i", len(answer)) + answer)

    return serve


def _topics_create(port: int):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(
        main, ["topics", "create", "--broker", f"127.0.0.1:{port}", "--timeout", "1"]
    )


@pytest.mark.parametrize("serve", [_hang_up, _garbage], ids=["hangs up", "answers garbage"])
def test_topics_create_against_a_server_that_is_no_broker_is_one_line(server, serve) -> None:
    port = server(serve).port
    started = time.monotonic()
    result = _topics_create(port)
    assert (result.exit_code, result.output) == (
        1,
        f"fundflow: kafka: KafkaTimeoutError: Unable to bootstrap from ['127.0.0.1:{port}']\n",
    )
    assert time.monotonic() - started < 10  # --timeout 1, not kafka-python's 30 s


def test_topics_create_prints_a_table_of_what_it_did(server) -> None:
    existing = ("fundflow.reference", "fundflow.alerts")
    result = _topics_create(server(_broker(existing)).port)
    assert (result.exit_code, result.output.splitlines()) == (
        0,
        [
            "status   topic",
            "exists   fundflow.reference",
            "exists   fundflow.alerts",
            "created  fundflow.custody",
            "created  fundflow.clearing",
            "created  fundflow.reports",
            "created  fundflow.deadletter",
            "created  fundflow.checkpoints",
            "created  fundflow.checkpoints-whole",
        ],
    )


def test_topics_create_against_a_broker_that_answers_oddly_is_one_line(server) -> None:
    # A config source kafka-python has no name for (a newer broker's, or a bug's).
    result = _topics_create(server(_broker(config_source=-1)).port)
    assert (result.exit_code, result.output) == (
        1,
        "fundflow: kafka: the broker's answer could not be handled: "
        "ValueError: Unrecognized ConfigSourceType: -1\n",
    )
