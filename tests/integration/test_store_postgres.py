"""Integration: the PostgreSQL alert store (fundflow.store.postgres) on a real server.

The store contract every backend passes runs here as
:class:`TestPostgresStoreContract` (``tests/store/contract.py``). The rest
is PostgreSQL's own: typed columns, constraints and indexes, true no-op
upserts (xmin), the migrations (from an empty database, again, from
versions 1 and 2 in place, by workers starting together), concurrent
writers, a role without CREATE, connection failures that never show the
password, and a replay of a simulated world that gives the same alerts as
the SQLite replay of that world.

Each test gets a fresh database on the session's server (conftest.py:
``postgres_server``); with no PostgreSQL binaries they are skipped, unless
``CI`` is set, where they fail.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from fundflow.cli import main
from fundflow.schemas.records import Alert
from fundflow.simulate import write_world
from fundflow.store import AlertSink, StoreError, open_sink, open_store

if os.environ.get("CI", "").strip().lower() in ("", "0", "false", "no"):
    psycopg = pytest.importorskip("psycopg", reason="pip install 'psycopg[binary]>=3.1'")
else:
    import psycopg  # in CI a missing driver is a failure, not a skip

from store.contract import StoreContract  # noqa: E402

from fundflow.store import AlertFilter  # noqa: E402
from fundflow.store.postgres import (  # noqa: E402
    MIGRATIONS,
    SCHEMA_VERSION,
    PostgresSink,
    PostgresStore,
)

pytestmark = pytest.mark.integration


def make_alert(alert_id: str = "fund_pool:P1:1", **overrides: object) -> Alert:
    fields: dict[str, object] = {
        "alert_id": alert_id,
        "detector": "fund_pool",
        "severity": "high",
        "subject_id": "P1",
        "accounts": ("ACC-1", "ACC-2"),
        "first_ts": "2026-03-01T10:00:00+08:00",
        "last_ts": "2026-03-01T12:00:00.250+08:00",
        "amount": "150000.00",
        "summary": "Investor money pooled in the platform's own account.",
        "evidence": {"txn_ids": ["T1", "T2"], "pooled_fen": 15000000, "ratio": "0.8000"},
        "detector_version": "1.0",
        "revision": 1,
    }
    fields.update(overrides)
    return Alert(**fields)  # type: ignore[arg-type]


A = make_alert("A")
B = make_alert(
    "B",
    detector="reserve_misuse",
    severity="critical",
    subject_id="PAY1",
    accounts=("RES-1",),
    first_ts="2026-03-01T09:00:00+08:00",
    amount="9.99",
    summary="备付金被挪用于关联公司。",
    evidence={"shortfall_fen": 999, "注": "中文", "nested": {"z": [1, 2.5], "a": None}},
)
C = make_alert(
    "C",
    severity="low",
    subject_id="P2",
    accounts=(),
    first_ts="2026-03-01T09:00:00+08:00",
    amount="0.50",
    evidence={},
)


@pytest.fixture
def admin(postgres_server) -> Iterator[psycopg.Connection]:
    with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
        yield conn


def _new_database(admin: psycopg.Connection) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    return name


@pytest.fixture
def dbname(admin) -> Iterator[str]:
    name = _new_database(admin)
    yield name
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def url(postgres_server, dbname) -> str:
    return postgres_server.url(dbname)


@pytest.fixture
def sql(url) -> Iterator[psycopg.Connection]:
    """A plain connection to the test database, to look behind the store's back."""
    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


def rows(sql: psycopg.Connection) -> list[tuple]:
    """Every alert row with its bookkeeping, and xmin: it changes whenever the
    row is written at all, so an unchanged xmin proves a true no-op."""
    return sql.execute(
        "SELECT alert_id, revision, status, created_at, updated_at, xmin::text"
        " FROM alerts ORDER BY alert_id"
    ).fetchall()


class TestPostgresStoreContract(StoreContract):
    """The store contract on a fresh PostgreSQL database."""

    @pytest.fixture
    def db(self, url) -> str:
        return url


def committed(url: str) -> int:
    with open_store(url) as store:
        return store.count()


# --- the sink contract, as for SQLite --------------------------------------------


def test_open_sink_and_open_store_take_a_postgres_url(url):
    with open_sink(url) as sink:
        assert isinstance(sink, PostgresSink)
        assert isinstance(sink, AlertSink)
        sink.upsert([A, B, C])
    with open_store(url) as store:
        assert isinstance(store, PostgresStore)
        assert store.count() == 3


def test_columns_hold_typed_values(url, sql):
    with open_sink(url) as sink:
        sink.upsert([A, B])
    got = sql.execute(
        "SELECT amount, first_ts, last_ts, accounts->>0, (evidence->>'pooled_fen')::bigint,"
        " jsonb_typeof(evidence), first_ts_text FROM alerts WHERE alert_id = 'A'"
    ).fetchone()
    assert got == (
        Decimal("150000.00"),
        datetime(2026, 3, 1, 2, 0, tzinfo=UTC),
        datetime(2026, 3, 1, 4, 0, 0, 250000, tzinfo=UTC),
        "ACC-1",
        15000000,
        "object",
        "2026-03-01T10:00:00+08:00",
    )
    assert sql.execute("SELECT SUM(amount) FROM alerts").fetchone() == (Decimal("150009.99"),)


def test_schema_types_constraints_and_indexes(url, sql):
    PostgresSink(url).close()
    types = dict(
        sql.execute(
            "SELECT column_name, CASE WHEN data_type = 'numeric'"
            " THEN format('numeric(%s,%s)', numeric_precision, numeric_scale) ELSE data_type END"
            " FROM information_schema.columns WHERE table_name = 'alerts'"
        ).fetchall()
    )
    assert types == {
        "alert_id": "text", "detector": "text", "severity": "text", "subject_id": "text",
        "accounts": "jsonb", "first_ts": "timestamp with time zone",
        "last_ts": "timestamp with time zone", "amount": "numeric(20,2)", "summary": "text",
        "evidence": "jsonb", "detector_version": "text", "revision": "integer",
        "first_ts_text": "text", "last_ts_text": "text", "status": "text",
        "created_at": "timestamp with time zone", "updated_at": "timestamp with time zone",
        "assignee": "text", "severity_rank": "smallint", "amount_fen": "bigint",
        "haystack": "text",
    }  # fmt: skip
    indexes = dict(
        sql.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('alerts', 'alert_events')"
        ).fetchall()
    )
    assert {name: d.split(" USING ")[1] for name, d in indexes.items()} == {
        "alerts_pkey": "btree (alert_id)",
        "alerts_last": "btree (last_ts, alert_id)",
        "alerts_status_last": "btree (status, last_ts, alert_id)",
        "alerts_detector_severity_last": "btree (detector, severity, last_ts, alert_id)",
        "alerts_severity_last": "btree (severity_rank, last_ts, alert_id)",
        "alerts_amount": "btree (amount_fen, alert_id)",
        "alerts_detector_id": "btree (detector, alert_id)",
        "alerts_subject_id": "btree (subject_id, alert_id)",
        "alerts_assignee_last": "btree (assignee, last_ts, alert_id)",
        "alerts_haystack": "gin (haystack gin_trgm_ops)",
        "alert_events_pkey": "btree (id)",
        "alert_events_alert": "btree (alert_id, id)",
    }
    with open_sink(url) as sink:
        sink.upsert([A])
    for bad in (
        "UPDATE alerts SET status = 'done'",
        "INSERT INTO alert_events (alert_id, action, actor) VALUES ('A', 'deleted', 'x')",
        "INSERT INTO users (name, role, password_hash, created_at) VALUES ('x', 'root', '$', now())",
    ):
        with pytest.raises(psycopg.errors.CheckViolation):
            sql.execute(bad)


def test_a_replay_does_not_even_rewrite_a_row(url, sql):
    with open_sink(url) as sink:
        sink.upsert([A, B])
    first = rows(sql)
    with open_sink(url) as sink:
        sink.upsert([A, B])
        sink.upsert([A])
    assert rows(sql) == first  # not even rewritten: same xmin
    assert [(r[0], r[1], r[2], r[3] == r[4]) for r in first] == [
        ("A", 1, "open", True),
        ("B", 1, "open", True),
    ]


def test_a_higher_revision_keeps_created_at_and_moves_updated_at(url, sql):
    newer = make_alert("A", revision=2, severity="critical", amount="300000.00")
    with open_sink(url) as sink:
        sink.upsert([A, B])
    before = {r[0]: r for r in rows(sql)}
    with open_sink(url) as sink:
        sink.upsert([newer])
    with open_store(url) as store:
        assert store.get("A") == newer
        assert store.get("B") == B
    after = {r[0]: r for r in rows(sql)}
    assert after["A"][3] == before["A"][3]  # created_at kept
    assert after["A"][4] > before["A"][4]  # updated_at moved
    assert after["B"] == before["B"]


def test_a_late_lower_revision_rewrites_nothing(url, sql):
    newer = make_alert("A", revision=2, amount="300000.00")
    with open_sink(url) as sink:
        sink.upsert([newer])
    before = rows(sql)
    with open_sink(url) as sink:
        sink.upsert([A])  # revision 1, redelivered
    assert rows(sql) == before
    with open_store(url) as store:
        assert store.get("A") == newer


# --- lifecycle and audit trail ------------------------------------------------------


@pytest.fixture
def filled(url) -> str:
    with open_sink(url) as sink:
        sink.upsert([A, B, C])
    return url


def test_an_unknown_alert_is_named_with_the_password_masked(filled, postgres_server, dbname):
    with (
        open_store(postgres_server.url(dbname, password="hunter2-pw")) as store,
        pytest.raises(StoreError) as info,
    ):
        store.ack("nope", by="wang")
    assert str(info.value) == (
        f"no alert 'nope' in postgresql://postgres:***@127.0.0.1:{postgres_server.port}/{dbname}"
    )


def test_closes_and_growing_revisions_in_parallel_stay_consistent(filled):
    """A person closing alerts while the sink writes their next revisions:
    no error, no deadlock, and each alert's status is its trail's last word.
    (The sink locks a batch's rows before reading their status, so a close
    cannot slip between that read and the upsert.)"""
    ids = [f"R{i:03d}" for i in range(60)]
    with open_sink(filled) as sink:
        sink.upsert([make_alert(i) for i in ids])
    errors: list[BaseException] = []

    def closer() -> None:
        try:
            with open_store(filled) as store:
                for i in ids:
                    store.close_alert(i, by="closer")
        except BaseException as exc:
            errors.append(exc)

    def grower() -> None:
        try:
            with open_sink(filled, batch_size=1) as sink:
                for i in ids:
                    sink.upsert([make_alert(i, revision=2)])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=closer), threading.Thread(target=grower)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with open_store(filled) as store:
        for i in ids:
            actions = [e.action for e in store.events(i)]
            # Closed before revision 2 landed: reopened; after: stays closed.
            assert actions in (["closed", "reopened"], ["closed"]), (i, actions)
            assert store.status(i) == ("open" if actions[-1] == "reopened" else "closed")
            assert store.get(i).revision == 2


# --- migrations ----------------------------------------------------------------------


def versions(sql: psycopg.Connection) -> list[tuple]:
    return sql.execute(
        "SELECT version, applied_at FROM fundflow_schema_version ORDER BY version"
    ).fetchall()


def schema(sql: psycopg.Connection) -> list[tuple]:
    return sql.execute(
        "SELECT c.relname, c.relkind, pg_get_userbyid(c.relowner) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
        " ORDER BY c.relname"
    ).fetchall()


def test_migrates_an_empty_database_and_a_rerun_changes_nothing(url, sql):
    assert schema(sql) == []
    PostgresSink(url).close()
    first_versions, first_schema = versions(sql), schema(sql)
    assert [v for v, _ in first_versions] == [1, 2, 3] == list(range(1, SCHEMA_VERSION + 1))
    assert {name for name, kind, _ in first_schema if kind == "r"} == {
        "alerts", "alert_events", "fundflow_schema_version", "alert_revisions", "users",
        "tokens", "cases", "case_alerts", "case_events", "notices", "deliveries", "store_meta",
        "alert_counts",
    }  # fmt: skip
    for _ in range(2):
        PostgresSink(url).close()
        with open_store(url):
            pass
    assert (versions(sql), schema(sql)) == (first_versions, first_schema)


def test_migrates_a_version_1_store_keeping_its_rows(url, sql):
    sql.execute(
        "CREATE TABLE fundflow_schema_version (version integer PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for statement in MIGRATIONS[0]:
        sql.execute(statement)
    sql.execute("INSERT INTO fundflow_schema_version (version) VALUES (1)")
    sql.execute(
        "INSERT INTO alerts (alert_id, detector, severity, subject_id, accounts, first_ts,"
        " last_ts, amount, summary, evidence, detector_version, revision, first_ts_text,"
        " last_ts_text, status) VALUES ('A', 'fund_pool', 'high', 'P1', '[\"ACC-1\", \"ACC-2\"]',"
        " '2026-03-01T10:00:00+08:00', '2026-03-01T12:00:00.250+08:00', 150000.00,"
        " 'Investor money pooled in the platform''s own account.',"
        ' \'{"txn_ids": ["T1", "T2"], "pooled_fen": 15000000, "ratio": "0.8000"}\','
        " '1.0', 1, '2026-03-01T10:00:00+08:00', '2026-03-01T12:00:00.250+08:00', 'closed')"
    )
    before = rows(sql)
    with open_store(url) as store:  # a reader reads version 1 as it is
        assert store.list() == [A]
        assert store.events("A") == []
    assert [v for v, _ in versions(sql)] == [1]
    with open_sink(url) as sink:
        assert [v for v, _ in versions(sql)] == [1, 2, 3]
        assert [r[:5] for r in rows(sql)] == [r[:5] for r in before]  # the backfill wrote it
        sink.upsert([make_alert("A", revision=2)])
    with open_store(url) as store:
        assert store.status("A") == "open"
        assert [e.action for e in store.events("A")] == ["reopened"]


def test_a_version_2_store_is_upgraded_in_place_keeping_alerts_and_trail(url, sql):
    sql.execute(
        "CREATE TABLE fundflow_schema_version (version integer PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for step in MIGRATIONS[:2]:
        for statement in step:
            sql.execute(statement)
    sql.execute("INSERT INTO fundflow_schema_version (version) VALUES (1), (2)")
    for a, status in ((A, "closed"), (B, "open")):
        sql.execute(
            "INSERT INTO alerts (alert_id, detector, severity, subject_id, accounts, first_ts,"
            " last_ts, amount, summary, evidence, detector_version, revision, first_ts_text,"
            " last_ts_text, status) VALUES (%s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s,"
            " %s::jsonb, %s, %s, %s, %s, %s)",
            (a.alert_id, a.detector, a.severity, a.subject_id, msgspec.json.encode(a.accounts).decode(),
             a.first_ts, a.last_ts, a.amount, a.summary, msgspec.json.encode(a.evidence).decode(),
             a.detector_version, a.revision, a.first_ts, a.last_ts, status),
        )  # fmt: skip
    sql.execute(
        "INSERT INTO alert_events (alert_id, action, actor, note, at) VALUES"
        " ('A', 'acknowledged', 'wang', 'checking', '2026-03-02T01:00:00Z'),"
        " ('A', 'closed', 'li', NULL, '2026-03-02T02:00:00Z')"
    )
    with open_store(url) as store:  # a reader reads version 2 as it is
        before = ([*store.iter_with_status()], store.events("A"))
    assert [v for v, _ in versions(sql)] == [1, 2]
    assert before[0] == [(B, "open"), (A, "closed")] and len(before[1]) == 2
    PostgresSink(url).close()
    assert [v for v, _ in versions(sql)] == [1, 2, 3]
    assert sql.execute(
        "SELECT alert_id, assignee, severity_rank, amount_fen, haystack FROM alerts"
        " ORDER BY alert_id"
    ).fetchall() == [
        ("A", None, 2, 15000000,
         "investor money pooled in the platform's own account.\np1\na\nacc-1\nacc-2"),
        ("B", None, 3, 999, "备付金被挪用于关联公司。\npay1\nb\nres-1"),
    ]  # fmt: skip
    assert sql.execute("SELECT COUNT(*) FROM notices").fetchone() == (0,)
    with open_store(url) as store:
        assert ([*store.iter_with_status()], store.events("A")) == before
        assert (store.revisions("A"), store.revisions("B")) == ([A], [B])
        assert [r.alert.alert_id for r in store.page(AlertFilter(text="备付金")).items] == ["B"]
        assert store.reopen("A", by="wang").id == 3  # the trail goes on where it was


def test_a_reader_without_create_privilege_cannot_upgrade_for_triage(
    postgres_server, url, sql, dbname
):
    sql.execute(
        "CREATE TABLE fundflow_schema_version (version integer PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for step in MIGRATIONS[:2]:
        for statement in step:
            sql.execute(statement)
    sql.execute("INSERT INTO fundflow_schema_version (version) VALUES (1), (2)")
    role = f"reader_{uuid.uuid4().hex[:8]}"
    sql.execute(f"CREATE ROLE {role} LOGIN")
    sql.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
    sql.execute(f"GRANT SELECT ON fundflow_schema_version, alerts, alert_events TO {role}")
    limited = postgres_server.url(dbname, user=role)
    with open_store(limited) as store:
        assert store.count() == 0
        with pytest.raises(StoreError) as info:
            store.page(AlertFilter())
    assert str(info.value).startswith(
        f"alert store {limited} has schema version 2 and cannot be brought to version 3"
        " for triage: "
    )
    assert [v for v, _ in versions(sql)] == [1, 2]


def test_a_newer_store_is_refused_and_left_alone(url, sql):
    PostgresSink(url).close()
    sql.execute("INSERT INTO fundflow_schema_version (version) VALUES (4)")
    for opener in (open_sink, open_store):
        with pytest.raises(StoreError) as info:
            opener(url)
        assert str(info.value).endswith("has schema version 4, this fundflow reads versions 1 to 3")
    assert [v for v, _ in versions(sql)] == [1, 2, 3, 4]


def test_a_reader_creates_nothing_in_a_database_that_is_not_a_store(url, sql, dbname):
    with pytest.raises(StoreError) as info:
        open_store(url)
    assert str(info.value).endswith(
        f"/{dbname} is not a fundflow alert store: no fundflow_schema_version table"
    )
    assert schema(sql) == []


def test_workers_starting_together_migrate_once(postgres_server, admin):
    """Eight sinks open each fresh database at the same instant; without the
    advisory lock they would race on CREATE TABLE (duplicate key on pg_type)."""
    for _ in range(3):
        name = _new_database(admin)
        url = postgres_server.url(name)
        barrier = threading.Barrier(8)
        errors: list[BaseException] = []

        def open_one(
            url: str = url,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                barrier.wait()
                with PostgresSink(url) as sink:
                    sink.upsert([A])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with psycopg.connect(url) as conn:
            assert [v for v, _ in versions(conn)] == [1, 2, 3]
        assert committed(url) == 1
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_overlapping_writers_do_not_deadlock(filled):
    alerts = [make_alert(f"W{i:03d}", revision=r) for r in (1, 2) for i in range(200)]
    errors: list[BaseException] = []

    def write(batch: list[Alert]) -> None:
        try:
            with open_sink(filled, batch_size=50) as sink:
                for _ in range(3):
                    sink.upsert(batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(order,))
        for order in (alerts, alerts[::-1], alerts[100:] + alerts[:100])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with open_store(filled) as store:
        assert {a.revision for a in store.iter() if a.alert_id.startswith("W")} == {2}


def test_a_role_without_create_privilege_writes_and_reads_a_migrated_store(
    postgres_server, url, sql, dbname
):
    PostgresSink(url).close()
    role = f"writer_{uuid.uuid4().hex[:8]}"
    sql.execute(f"CREATE ROLE {role} LOGIN")
    sql.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
    sql.execute(f"GRANT SELECT ON fundflow_schema_version TO {role}")
    sql.execute(
        f"GRANT SELECT, INSERT, UPDATE ON alerts, alert_events, alert_revisions, notices,"
        f" alert_counts TO {role}"
    )
    limited = postgres_server.url(dbname, user=role)
    with open_sink(limited) as sink:
        sink.upsert([A])
    with open_store(limited) as store:
        store.ack("A", by="wang")
        assert store.status("A") == "acknowledged"
    sql.execute(f"REVOKE UPDATE ON alerts FROM {role}")
    with open_store(limited) as store, pytest.raises(StoreError) as info:
        store.close_alert("A", by="wang")
    assert str(info.value).startswith(f"cannot write alert store {limited}: ")
    assert "permission denied for table alerts" in str(info.value)


# --- connections: failures, passwords, reconnecting ---------------------------------


@pytest.fixture
def password_role(postgres_server, admin, url) -> Iterator[tuple[str, str]]:
    """A role that must give its password over TCP (see conftest.py); it may
    create the store in the test database."""
    role, password = postgres_server.password_role, "Corr3ct-h0rse:b@ttery/staple"
    admin.execute(f"DROP ROLE IF EXISTS {role}")
    admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
    yield role, password
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {role} CASCADE")
    admin.execute(f"DROP ROLE {role}")


def test_a_wrong_password_is_one_line_and_never_shown(
    postgres_server, password_role, dbname, monkeypatch
):
    role, _ = password_role
    wrong = "Wr0ng-pa$$word"
    for opener in (open_sink, open_store):
        url = postgres_server.url(dbname, user=role, password=wrong)
        with pytest.raises(StoreError) as info:
            opener(url)
        message = str(info.value)
        assert message.startswith(
            f"cannot open alert store postgresql://{role}:***@127.0.0.1:{postgres_server.port}"
            f"/{dbname}: connection failed: "
        )
        assert f'password authentication failed for user "{role}"' in message
        assert "\n" not in message
        assert wrong not in message and "Wr0ng-pa%24%24word" not in message
    # The same through PGPASSWORD.
    monkeypatch.setenv("PGPASSWORD", wrong)
    with pytest.raises(StoreError) as info:
        open_store(postgres_server.url(dbname, user=role))
    assert "password authentication failed" in str(info.value)
    assert wrong not in str(info.value)


def test_the_password_can_come_from_the_url_pgpassword_or_pgpassfile(
    postgres_server, password_role, dbname, monkeypatch, tmp_path
):
    role, password = password_role
    with open_sink(postgres_server.url(dbname, user=role, password=password)) as sink:
        sink.upsert([A])  # the role owns what it created
    monkeypatch.setenv("PGPASSWORD", password)
    with open_store(postgres_server.url(dbname, user=role)) as store:
        assert store.list() == [A]
    monkeypatch.delenv("PGPASSWORD")
    passfile = tmp_path / "pgpass"
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    passfile.write_text(f"127.0.0.1:{postgres_server.port}:{dbname}:{role}:{escaped}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    with open_store(postgres_server.url(dbname, user=role)) as store:
        assert store.list() == [A]


def test_tls_settings_in_the_url_reach_libpq(postgres_server, dbname):
    # The test server has no certificate: sslmode=require must refuse it.
    url = postgres_server.url(dbname, password="s3cret-pw", query="sslmode=require")
    with pytest.raises(StoreError) as info:
        open_store(url)
    assert str(info.value) == (
        f"cannot open alert store postgresql://postgres:***@127.0.0.1:{postgres_server.port}"
        f"/{dbname}?sslmode=require: connection failed: connection to server at "
        f'"127.0.0.1", port {postgres_server.port} failed: server does not support SSL, '
        "but SSL was required"
    )
    # sslmode=prefer falls back to plain TCP on this server.
    with open_sink(postgres_server.url(dbname, query="sslmode=prefer")) as sink:
        sink.upsert([A])


def test_an_unknown_database_is_one_line(postgres_server):
    with pytest.raises(StoreError) as info:
        open_store(postgres_server.url("no_such_db", password="pw-in-url"))
    assert str(info.value).endswith('FATAL: database "no_such_db" does not exist')
    assert "pw-in-url" not in str(info.value)


def test_a_lost_connection_fails_one_flush_then_reconnects(url, admin):
    sink = PostgresSink(url)
    sink.upsert([A])
    pid = sink._conn.info.backend_pid
    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StoreError, match="^cannot write alert store "):
        sink.flush()
    assert sink.pending == 1
    sink.flush()
    assert sink._conn.info.backend_pid != pid
    sink.close()
    assert committed(url) == 1


# --- through the CLI: a replay of a world, and triage --------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("world")
    write_world(tmp, seed=1)
    return tmp / "world.jsonl"


def _replay(world: Path, db: str, out: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["replay", str(world), "--db", db, "--alerts-out", str(out / "alerts.jsonl"),
         "--deadletter-out", str(out / "dead.jsonl"), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def _export(db: str) -> bytes:
    result = CliRunner().invoke(main, ["alerts", "export", "--db", db])
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def test_replay_gives_the_same_alerts_as_the_sqlite_replay(world, url, sql, tmp_path):
    sqlite_db = str(tmp_path / "fundflow.db")
    _replay(world, sqlite_db, tmp_path)
    _replay(world, url, tmp_path)
    with open_store(sqlite_db) as lite, open_store(url) as pg:
        expected = [*lite.iter_with_status()]
        assert expected, "the seed-1 world has violators: the replay must alert"
        assert [*pg.iter_with_status()] == expected
    assert _export(url) == _export(sqlite_db)
    before = rows(sql)
    _replay(world, url, tmp_path)  # a second replay is a no-op
    assert rows(sql) == before


def test_triage_through_the_cli(filled, postgres_server, dbname):
    runner = CliRunner()
    db = postgres_server.url(dbname, password="cli-s3cret")
    masked = f"postgresql://postgres:***@127.0.0.1:{postgres_server.port}/{dbname}"
    result = runner.invoke(main, ["alerts", "ack", "A", "--by", "wang", "--note", "n", "--db", db])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("A acknowledged by wang at ")
    result = runner.invoke(main, ["alerts", "close", "A", "--by", "li", "--db", db])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["alerts", "close", "A", "--by", "li", "--db", db])
    assert (result.exit_code, result.stderr) == (
        2,
        "Error: cannot close alert 'A': it is already closed\n",
    )
    result = runner.invoke(main, ["alerts", "list", "--db", db, "--status", "open"])
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [
        ["alert_id", "status"],
        ["B", "open"],
        ["C", "open"],
    ]
    result = runner.invoke(main, ["alerts", "show", "A", "--db", db])
    shown = msgspec.json.decode(result.stdout)
    assert shown["status"] == "closed"
    assert [(e["action"], e["actor"], e["note"]) for e in shown["events"]] == [
        ("acknowledged", "wang", "n"),
        ("closed", "li", None),
    ]
    assert msgspec.json.decode(result.stdout, type=Alert) == A
    result = runner.invoke(main, ["alerts", "show", "nope", "--db", db])
    assert (result.exit_code, result.stderr) == (2, f"Error: no alert 'nope' in {masked}\n")
    assert "cli-s3cret" not in result.output
