"""Path safety, secrets, account numbers in logs, and listening addresses.

* Outputs go where they were named and nowhere else: a symlink planted at
  an output path or at its temporary name cannot redirect the writes, and
  nothing a record or a configuration file holds names a path.
* Passwords come from the environment or from files, never from flags, and
  never show in error messages, ``repr``s, the worker's health JSON or argv.
* Logs carry account numbers hashed (default), left out, or plain.
* The metrics and health servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import click
import msgspec
import pytest

from fundflow import replay as replay_module
from fundflow.cli import main
from fundflow.detectors import default_toml, load_config
from fundflow.redact import AccountRedactor, RedactingFilter, install, load_redactor
from fundflow.replay import AtomicFile, ReplayError, replay
from fundflow.store import StoreError
from fundflow.streams.settings import KafkaSettings, load_kafka_settings

SECRET = "Pa55-w0rd-that-must-not-leak"

# -- path safety ------------------------------------------------------------


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("untouched")
    out = tmp_path / "out"
    out.mkdir()
    (out / "dead.jsonl").symlink_to(victim)
    f = AtomicFile(str(out / "dead.jsonl"))
    f.write(b"new\n")
    f.commit()
    assert victim.read_text() == "untouched"
    assert not (out / "dead.jsonl").is_symlink()
    assert (out / "dead.jsonl").read_bytes() == b"new\n"


def test_a_symlink_planted_at_the_temporary_name_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    out = tmp_path / "out"
    out.mkdir()
    names = iter([".a.jsonl.planted1.part", ".a.jsonl.planted2.part", ".a.jsonl.free.part"])
    monkeypatch.setattr(replay_module, "_temp_name", lambda target: next(names))
    (out / ".a.jsonl.planted1.part").symlink_to(victim)
    (out / ".a.jsonl.planted2.part").symlink_to(tmp_path / "would-be-created")
    f = AtomicFile(str(out / "a.jsonl"))
    assert f.tmp == str(out / ".a.jsonl.free.part")
    f.write(b"x\n")
    f.commit()
    assert victim.read_text() == "untouched"
    assert not (tmp_path / "would-be-created").exists()
    assert (out / "a.jsonl").read_bytes() == b"x\n"


def test_an_output_that_is_a_directory_or_socket_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(ReplayError, match=r"^cannot write .*/d: is a directory$"):
        AtomicFile(str(tmp_path / "d"))
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(tmp_path / "s"))
        with pytest.raises(ReplayError, match=r"^cannot write .*/s: not a regular file$"):
            AtomicFile(str(tmp_path / "s"))
    finally:
        sock.close()


def test_a_discarded_output_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("the previous complete run\n")
    f = AtomicFile(str(tmp_path / "a.jsonl"))
    f.write(b"half")
    f.discard()
    assert os.listdir(tmp_path) == ["a.jsonl"]
    assert (tmp_path / "a.jsonl").read_text() == "the previous complete run\n"


def test_paths_in_records_are_never_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    evil = "../../../tmp/evil"
    lines = [
        {"type": "entity", "entity_id": evil, "name": "/etc/passwd", "kind": "company"},
        {"type": "account", "account_id": evil + "/acc", "owner_id": evil, "bank_id": "B",
         "role": "client_reserve"},
        {"type": "custody_txn", "txn_id": "../T1", "ts": 0, "bank_id": "..", "platform_id": evil,
         "debit_account": "/dev/full", "credit_account": evil, "amount": "5.00",
         "purpose": "invest"},
    ]  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(b"\n".join(msgspec.json.encode(x) for x in lines) + b"\n")
    monkeypatch.chdir(work)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    out = AtomicFile(str(work / "alerts.jsonl"))
    dead = AtomicFile(str(work / "dead.jsonl"))
    s = replay([str(dump)], config=load_config(), alerts_out=out, deadletter_out=dead)
    out.commit()
    dead.commit()
    assert (s.read, s.accepted) == (3, 3)
    after = sorted(p.name for p in tmp_path.rglob("*"))
    assert sorted(set(after) - set(before)) == ["alerts.jsonl", "dead.jsonl"]


def test_no_setting_names_a_path_to_write() -> None:
    # Detector thresholds hold no paths at all; the Kafka settings name three
    # files the client reads (TLS), the webhooks one each (the key), none
    # that is written.
    keys = {k for section in tomllib.loads(default_toml()).values() for k in section}
    assert not {k for k in keys if any(w in k for w in ("path", "file", "dir", "output"))}
    pathish = {
        f
        for f in KafkaSettings.__dataclass_fields__
        if any(w in f for w in ("path", "file", "dir", "output"))
    }
    assert pathish == {"ssl_cafile", "ssl_certfile", "ssl_keyfile"}
    # A webhook names the file its HMAC key is read from, nothing it writes.
    from fundflow.notify import _KEYS as webhook_keys

    assert {k for k in webhook_keys if any(w in k for w in ("path", "file", "dir", "output"))} == {
        "secret_file"
    }


# -- secrets -------------------------------------------------------------------


def _all_options(group: click.Group, prefix: str = "fundflow") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out |= _all_options(cmd, f"{prefix} {name}")
        else:
            out[f"{prefix} {name}"] = [o for p in cmd.params for o in p.opts]
    return out


#: Flags that name where a secret comes from: the TLS key file of `fundflow
#: serve`, the password file or stdin of `fundflow users`.
WHERE_FROM = frozenset({"--key", "--password-file", "--password-stdin"})


def test_no_flag_takes_a_password_or_key() -> None:
    options = _all_options(main)
    assert "fundflow replay" in options and "fundflow worker" in options
    leaky = [
        (cmd, opt)
        for cmd, opts in options.items()
        for opt in opts
        if any(w in opt for w in ("password", "secret", "token", "key")) and opt not in WHERE_FROM
    ]
    assert leaky == []
    # The allowed ones name where a secret is read from (a file, stdin), never the secret.
    assert {o for opts in options.values() for o in opts} >= WHERE_FROM


def test_kafka_passwords_from_files(tmp_path: Path) -> None:
    (tmp_path / "sasl").write_text(SECRET + "\n")
    (tmp_path / "ssl").write_text("key-pass")
    env = {
        "FUNDFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "FUNDFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "FUNDFLOW_KAFKA_SASL_USERNAME": "fundflow",
        "FUNDFLOW_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "sasl"),
        "FUNDFLOW_KAFKA_SSL_PASSWORD_FILE": str(tmp_path / "ssl"),
    }
    s = load_kafka_settings(None, env=env)
    assert (s.sasl_password, s.ssl_password) == (SECRET, "key-pass")
    assert s.client_options()["sasl_plain_password"] == SECRET
    assert SECRET not in repr(s) and "sasl_password='***'" in repr(s)
    # The variable itself wins over the file.
    env["FUNDFLOW_KAFKA_SASL_PASSWORD"] = "direct"
    assert load_kafka_settings(None, env=env).sasl_password == "direct"


def test_kafka_secret_errors_name_the_file_never_the_secret(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(ValueError) as e:
        load_kafka_settings(None, env={"FUNDFLOW_KAFKA_SASL_PASSWORD_FILE": missing})
    assert str(e.value) == (
        f"cannot read the secret file {missing} (FUNDFLOW_KAFKA_SASL_PASSWORD_FILE): "
        "No such file or directory"
    )
    config = tmp_path / "c.toml"
    config.write_text("[kafka]\nsasl_password = 31415926535\n")
    with pytest.raises(ValueError) as e:
        load_kafka_settings(config, env={})
    assert "31415926535" not in str(e.value)
    assert str(e.value) == "kafka.sasl_password must be a string, got a secret that is not a string"


def test_pg_password_from_a_file_reaches_libpq_and_no_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fundflow.store import postgres as store_pg

    (tmp_path / "pg").write_text(SECRET + "\n")
    monkeypatch.setenv("FUNDFLOW_PG_PASSWORD_FILE", str(tmp_path / "pg"))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    seen: dict = {}

    def refuse(url: str, **kwargs: object) -> None:
        seen.update(kwargs)
        raise store_pg.psycopg.OperationalError(f"password {SECRET} rejected for {url}")

    monkeypatch.setattr(store_pg.psycopg, "connect", refuse)
    with pytest.raises(StoreError) as e:
        store_pg.connect("postgresql://fundflow@127.0.0.1:1/alerts", "pg")
    assert seen["password"] == SECRET
    assert str(e.value) == (
        "cannot open alert store pg: password *** rejected for postgresql://fundflow@127.0.0.1:1/alerts"
    )


def test_a_real_refused_connection_shows_no_secret(tmp_path: Path) -> None:
    (tmp_path / "pg").write_text(SECRET)
    env = {
        **os.environ,
        "FUNDFLOW_PG_PASSWORD_FILE": str(tmp_path / "pg"),
        "PGCONNECT_TIMEOUT": "3",
    }
    env.pop("PGPASSWORD", None)
    argv = [sys.executable, "-m", "fundflow.cli", "alerts", "list", "--db",
            "postgresql://fundflow@127.0.0.1:1/alerts"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    out, err = proc.communicate(timeout=60)
    assert SECRET.encode() not in cmdline
    assert proc.returncode != 0, err
    [line] = err.decode().splitlines()
    assert "cannot open alert store postgresql://fundflow@127.0.0.1:1/alerts: " in line
    assert SECRET not in line and SECRET.encode() not in out


def test_the_worker_health_carries_no_secret() -> None:
    from fundflow.streams.worker import Worker

    settings = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="fundflow",
        sasl_password=SECRET,
        ssl_password=SECRET,
    )
    body = json.dumps(Worker(settings, load_config()).health())
    assert SECRET not in body
    assert json.loads(body)["status"] == "starting"


def test_the_checkpoint_key_is_in_no_log_health_repr_or_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from types import SimpleNamespace

    from fundflow.streams.checkpoint import Checkpoint, encode_checkpoint, load_checkpoint_key
    from fundflow.streams.worker import Worker

    (tmp_path / "key").write_text(SECRET + "\n")
    key = load_checkpoint_key({"FUNDFLOW_CHECKPOINT_KEY_FILE": str(tmp_path / "key")})
    assert key == SECRET.encode()
    worker = Worker(KafkaSettings(), load_config(), checkpoint_key=key)
    cp = Checkpoint(0, 1, {"custody": 3}, {}, b"state", finished=False)
    rows = encode_checkpoint(cp, key)
    assert not any(SECRET.encode() in k.encode() + v for k, v in rows)
    # A checkpoint signed with another key, refused: its log line names no key.
    other = encode_checkpoint(cp, b"another key, 16 bytes or more")
    worker.table = SimpleNamespace(data={k.encode(): v for k, v in other})
    caplog.set_level(logging.DEBUG)
    worker._state(0)
    assert "checkpoint refused" in caplog.text
    shown = [caplog.text, json.dumps(worker.health()), repr(worker), repr(cp), repr(rows)]
    assert not [text for text in shown if SECRET in text]


# -- account numbers in logs ------------------------------------------------------

LINE = (
    '{"type":"custody_txn","txn_id":"T1","debit_account":"6222020200112233",'
    '"credit_account":"ACC-P003-CUSTODY","amount":"5.00"}'
)


def test_hashed_accounts_are_stable_keyed_and_leave_the_rest() -> None:
    a, b = AccountRedactor("hash", key=b"k1"), AccountRedactor("hash", key=b"k2")
    out = a.text(LINE)
    assert "6222020200112233" not in out and "ACC-P003-CUSTODY" not in out
    assert a.account("6222020200112233") == "acct:" + out.split('"debit_account":"acct:')[1][:16]
    assert a.text(LINE) == out  # the same account reads the same in every line
    assert b.account("6222020200112233") != a.account("6222020200112233")
    assert json.loads(out)["txn_id"] == "T1" and json.loads(out)["amount"] == "5.00"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("plain", LINE),
        (
            "omit",
            LINE.replace("6222020200112233", "acct:***").replace("ACC-P003-CUSTODY", "acct:***"),
        ),
    ],
)
def test_plain_and_omit(mode: str, expected: str) -> None:
    assert AccountRedactor(mode, key=b"k").text(LINE) == expected


def test_reprs_and_alert_account_lists_are_rewritten() -> None:
    r = AccountRedactor("omit")
    text = (
        "Flow(src_account='A1', dst_account=\"B2\", amount=5) "
        'alert {"accounts":["A1","B2"],"subject_id":"P1"} accounts=(\'A1\', \'B2\')'
    )
    assert r.text(text) == (
        "Flow(src_account='acct:***', dst_account=\"acct:***\", amount=5) "
        'alert {"accounts":["acct:***","acct:***"],"subject_id":"P1"} '
        "accounts=('acct:***', 'acct:***')"
    )


def test_the_log_filter_rewrites_messages_and_tracebacks() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("fundflow.test_security")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    install(AccountRedactor("hash", key=b"k"), logger)
    try:
        logger.warning("dead letter %s", LINE)
        try:
            raise KeyError("payer_account='6222020200112233'")
        except KeyError:
            logger.exception("engine failed on %s", {"account_id": "6222020200112233"})
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "6222020200112233" not in text and "ACC-P003-CUSTODY" not in text
    # The two messages, the raising line of the traceback and the exception text.
    assert text.count(AccountRedactor("hash", key=b"k").account("6222020200112233")) == 4
    assert "Traceback" in text and "KeyError" in text


def test_redaction_settings_from_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[logging]\naccount_ids = "omit"\n')
    assert load_redactor(config, env={}).mode == "omit"
    assert load_redactor(config, env={"FUNDFLOW_LOG_ACCOUNT_IDS": "plain"}).mode == "plain"
    assert load_redactor(None, env={}).mode == "hash"
    (tmp_path / "key").write_text("the-key\n")
    keyed = load_redactor(None, env={"FUNDFLOW_LOG_KEY_FILE": str(tmp_path / "key")})
    assert keyed.account("A1") == AccountRedactor("hash", key=b"the-key").account("A1")
    config.write_text('[logging]\naccount_ids = "scramble"\n')
    with pytest.raises(
        ValueError, match=r"^logging.account_ids must be one of hash, plain, omit, got 'scramble'$"
    ):
        load_redactor(config, env={})
    config.write_text('[logging]\nkey = "in-the-file"\n')
    with pytest.raises(ValueError, match=r"unknown setting logging.key; known: account_ids$"):
        load_redactor(config, env={})


def test_a_filter_in_plain_mode_changes_nothing() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "a %s", (LINE,), None)
    assert RedactingFilter(AccountRedactor("plain")).filter(record)
    assert record.getMessage() == "a " + LINE


# -- listening addresses ----------------------------------------------------------


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return True
    return False


def test_the_health_server_listens_on_loopback_only() -> None:
    from fundflow.streams.health import HealthServer

    server = HealthServer(0, lambda: {"status": "ready"}).start()
    try:
        assert server.server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(server.url, timeout=5) as r:
            assert json.loads(r.read()) == {"status": "ready"}
        # 127.0.0.2 is this machine too: a wildcard bind would answer it.
        assert _refused("127.0.0.2", server.port)
    finally:
        server.close()


def test_the_metrics_server_listens_on_loopback_only() -> None:
    from fundflow.prom import PrometheusMetrics

    server = PrometheusMetrics(mode="replay").serve(0)
    try:
        host, port = server.addr, server.port
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert b"fundflow_build_info" in r.read()
        assert _refused("127.0.0.2", port)
    finally:
        server.close()
