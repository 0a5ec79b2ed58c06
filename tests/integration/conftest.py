"""Shared fixtures of the integration tests (each one self-contained).

``postgres_server`` (session): a real PostgreSQL server of its own, started
from the distribution's binaries (Debian: ``/usr/lib/postgresql/*/bin``;
elsewhere ``initdb`` on ``PATH``, or ``FUNDFLOW_PG_BINDIR``) in a temporary
data folder, listening on a free 127.0.0.1 port and a unix socket in that
folder, stopped (``pg_ctl stop -m fast``) and removed at the end. initdb
refuses to run as root, so as root the server runs as the ``postgres``
system user (``runuser -u postgres --``). Authentication is ``trust``,
except for the role :attr:`PostgresServer.password_role`, which must give
its password over TCP (scram-sha-256), for the tests of password handling.

Without the binaries the PostgreSQL tests are skipped on a laptop, but
**fail** when ``CI`` is set: CI runs deploy/postgres/ci-install.sh first and
must run them.

``kafka_python`` (module) and ``broker`` (a Kafka broker of its own per test,
through deploy/kafka/broker): for the daemon, fault and broker kit tests;
kafka-python missing is a skip on a laptop and a failure in CI.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

_PG_START_ATTEMPTS = 3  # a free port can be taken between our probe and the server's bind
_PG_TIMEOUT = 120


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class PostgresServer:
    """A running test server; ``superuser`` connects without a password."""

    host: str
    port: int
    socket_dir: Path
    bindir: Path
    superuser: str = "postgres"
    password_role: str = "fundflow_pw"
    #: ``pg_ctl`` (with ``runuser`` as root), the data folder, log and options,
    #: for :meth:`stop` and :meth:`start` (a test that takes the server away)
    pg_ctl: tuple[str, ...] = ()
    data_dir: Path | None = None
    options: str = ""

    def _pg_ctl(self, *args: str) -> None:
        assert self.pg_ctl and self.data_dir is not None
        result = subprocess.run(
            [*self.pg_ctl, *args, "-D", str(self.data_dir), "-w", "-t", "60"],
            cwd=self.socket_dir, capture_output=True, text=True, timeout=_PG_TIMEOUT,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl {args[0]} failed: {result.stderr or result.stdout}")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: sessions are cut, the data stays."""
        self._pg_ctl("stop", "-m", "fast")

    def start(self) -> None:
        """Starts the server again on its data folder and port."""
        log = str(self.socket_dir / "server.log")
        self._pg_ctl("start", "-l", log, "-o", self.options)

    def running(self) -> bool:
        assert self.pg_ctl and self.data_dir is not None
        result = subprocess.run(
            [*self.pg_ctl, "status", "-D", str(self.data_dir)],
            cwd=self.socket_dir, capture_output=True, text=True, timeout=_PG_TIMEOUT,
        )  # fmt: skip
        return result.returncode == 0

    def url(
        self,
        dbname: str = "postgres",
        user: str | None = None,
        password: str | None = None,
        query: str = "",
    ) -> str:
        """``postgresql://user[:password]@host:port/dbname[?query]``."""
        auth = quote(user or self.superuser, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}" + (
            f"?{query}" if query else ""
        )


def _version(initdb: str) -> tuple[int, ...]:
    m = re.search(r"/postgresql/([0-9.]+)/bin/", initdb)
    return tuple(int(p) for p in m.group(1).split(".")) if m else (0,)


def _find_bindir() -> Path | None:
    configured = os.environ.get("FUNDFLOW_PG_BINDIR")
    if configured:
        return Path(configured) if (Path(configured) / "initdb").exists() else None
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if debian:
        return Path(debian[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unavailable(reason: str) -> None:
    if _ci():
        pytest.fail(f"{reason} (CI is set: the PostgreSQL tests must run there)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _find_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        _unavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: "
            "run deploy/postgres/ci-install.sh, or set FUNDFLOW_PG_BINDIR"
        )
    assert bindir is not None
    as_user: list[str] = []
    owner: tuple[int, int] | None = None
    if os.geteuid() == 0:
        import pwd

        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' user to run initdb as")
        runuser = shutil.which("runuser")
        if runuser is None:
            _unavailable("running as root and runuser (util-linux) is missing")
        as_user = [str(runuser), "-u", "postgres", "--"]
        owner = (entry.pw_uid, entry.pw_gid)

    base = Path(tempfile.mkdtemp(prefix="fundflow-pg-"))
    if owner is not None:
        os.chown(base, *owner)
    data, log = base / "data", base / "server.log"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # cwd=base: the postgres user may not be allowed into our cwd.
        return subprocess.run(
            [*as_user, *args], cwd=base, capture_output=True, text=True, timeout=_PG_TIMEOUT
        )

    def options_for(port: int) -> str:
        return " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={port}",
                f"-c unix_socket_directories={base}",
                # A throwaway server: durability costs time and buys nothing.
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                "-c max_connections=100",
            ]
        )

    def started(port: int) -> bool:
        options = options_for(port)
        result = run(str(bindir / "pg_ctl"), "start", "-D", str(data), "-l", str(log),
                     "-w", "-t", "60", "-o", options)  # fmt: skip
        return result.returncode == 0

    server: PostgresServer | None = None
    try:
        init = run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                   "-E", "UTF8", "--no-locale", "--no-sync")  # fmt: skip
        if init.returncode != 0:
            pytest.fail(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        hba = data / "pg_hba.conf"
        hba.write_text(
            "# fundflow test server: trust, except one role that must give a password\n"
            "local all all                        trust\n"
            f"host  all {PostgresServer.password_role} 127.0.0.1/32 scram-sha-256\n"
            "host  all all                127.0.0.1/32 trust\n"
        )
        if owner is not None:
            os.chown(hba, *owner)
        for _ in range(_PG_START_ATTEMPTS):
            port = _free_port()
            if started(port):
                server = PostgresServer(
                    "127.0.0.1", port, base, bindir,
                    pg_ctl=(*as_user, str(bindir / "pg_ctl")), data_dir=data,
                    options=options_for(port),
                )  # fmt: skip
                break
        if server is None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            pytest.fail(f"PostgreSQL did not start; server log ends:\n{tail}")
        yield server
    finally:
        if data.exists():
            run(str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w")
        shutil.rmtree(base, ignore_errors=True)


# -- Kafka -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kafka_python():
    """The kafka-python package: a failure in CI, a skip elsewhere."""
    from kafka_fixtures import IN_CI  # noqa: PLC0415

    try:
        import kafka  # noqa: PLC0415
    except ImportError:
        msg = "kafka-python is not installed: pip install kafka-python crc32c"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return kafka


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory, kafka_python) -> Iterator[Any]:
    """A broker of its own per test (deploy/kafka/broker, temporary home,
    free port): a worker SIGKILLed by one test must not share a group
    coordinator and its session timeouts with the next test's groups."""
    from kafka_fixtures import make_broker  # noqa: PLC0415

    b = make_broker(tmp_path_factory.mktemp("kafka-home"))
    try:
        b.start()
        yield b
    finally:
        b.stop()
