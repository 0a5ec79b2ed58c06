"""A real webhook receiver for the tests: ``http.server`` in a thread, on a
free loopback port, answering each request as its script says.

Script steps, one per request, the last repeated: an HTTP status (``500``,
``200``, ``302``), ``"hang"`` (read the request, then answer nothing for
``hang_seconds``: a client timeout), or ``"slow"`` (200 after
``slow_seconds``). :meth:`Receiver.down` closes the port
(connections refused) and :meth:`Receiver.up` opens it again on the same port.
Every request that reached the handler is kept in :attr:`Receiver.requests`
with its headers and exact body bytes, and the step it got.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    answer: int | str


class Receiver:
    def __init__(
        self,
        script: list[int | str] | None = None,
        hang_seconds: float = 2.0,
        slow_seconds: float = 0.05,
    ) -> None:
        self.script = list(script or [200])
        self.hang_seconds = hang_seconds
        self.slow_seconds = slow_seconds
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _next(self) -> int | str:
        with self._lock:
            return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = receiver._next()
                with receiver._lock:
                    receiver.requests.append(
                        Request(
                            self.path,
                            dict(self.headers.items()),
                            body,
                            200 if answer == "slow" else answer,
                        )
                    )
                if answer == "hang":
                    time.sleep(receiver.hang_seconds)
                    return
                if answer == "slow":
                    time.sleep(receiver.slow_seconds)
                    answer = 200
                self.send_response(int(answer))
                if 300 <= int(answer) < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=10)
            self._server = None

    def close(self) -> None:
        self.down()
