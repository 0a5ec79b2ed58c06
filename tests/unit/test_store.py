"""Unit tests of the SQLite alert store (fundflow.store), on hand-built alerts."""

from __future__ import annotations

import socket
import sqlite3
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

import fundflow
from fundflow.schemas.records import Alert
from fundflow.store import (
    AlertSink,
    SQLiteSink,
    SQLiteStore,
    StoreError,
    StoreNotFoundError,
    mask_url,
    open_sink,
    open_store,
    scrub,
    url_secrets,
)


def make_alert(alert_id: str = "fund_pool:P1:1", **overrides: object) -> Alert:
    fields: dict[str, object] = {
        "alert_id": alert_id,
        "detector": "fund_pool",
        "severity": "high",
        "subject_id": "P1",
        "accounts": ("ACC-1", "ACC-2"),
        "first_ts": "2026-03-01T10:00:00+08:00",
        "last_ts": "2026-03-01T12:00:00+08:00",
        "amount": "150000.00",
        "summary": "Investor money pooled in the platform's own account.",
        "evidence": {"txn_ids": ["T1", "T2"], "pooled_fen": 15000000},
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
    evidence={"shortfall_fen": 999, "注": "中文"},
)
C = make_alert("C", severity="low", subject_id="P2", first_ts="2026-03-01T09:00:00+08:00")


# The columns of a version 1 file: the Alert fields and the bookkeeping.
V1_COLUMNS = ", ".join((*Alert.__struct_fields__, "status", "created_seq", "updated_seq"))


def raw_rows(path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT {V1_COLUMNS} FROM alerts ORDER BY alert_id").fetchall()


def committed(path) -> int:
    with open_store(path) as store:
        return store.count()


@pytest.fixture
def db(tmp_path):
    return tmp_path / "alerts.db"


def test_round_trip_returns_equal_alerts(db):
    with SQLiteSink(db) as sink:
        sink.upsert([A, B, C])
    with open_store(db) as store:
        assert store.get("A") == A
        assert store.get("B") == B  # Chinese text and nested evidence survive
        assert store.get("nope") is None
        assert store.count() == 3


def test_sink_implements_the_protocol(db):
    with SQLiteSink(db) as sink:
        assert isinstance(sink, AlertSink)


def test_upsert_is_idempotent_across_replays(db):
    with SQLiteSink(db) as sink:
        sink.upsert([A, B])
    first = raw_rows(db)
    with SQLiteSink(db) as sink:
        sink.upsert([A, B])
        sink.upsert([A])
    assert raw_rows(db) == first
    assert [(r[0], r[-3], r[-2], r[-1]) for r in first] == [
        ("A", "open", 1, 1),
        ("B", "open", 2, 2),
    ]


def test_higher_revision_replaces_and_keeps_created_seq(db):
    newer = make_alert("A", revision=2, severity="critical", amount="300000.00")
    with SQLiteSink(db) as sink:
        sink.upsert([A, B])
    with SQLiteSink(db) as sink:
        sink.upsert([newer])
    with open_store(db) as store:
        assert store.get("A") == newer
    row = raw_rows(db)[0]
    assert (row[0], row[-2], row[-1]) == ("A", 1, 3)  # created 1, updated 3


def test_lower_revision_arriving_late_is_ignored(db):
    newer = make_alert("A", revision=2, amount="300000.00")
    with SQLiteSink(db) as sink:
        sink.upsert([newer])
    before = raw_rows(db)
    with SQLiteSink(db) as sink:
        sink.upsert([A])  # revision 1, redelivered
    assert raw_rows(db) == before
    with open_store(db) as store:
        assert store.get("A") == newer


def test_lower_revision_in_the_same_batch_is_ignored(db):
    newer = make_alert("A", revision=3)
    with SQLiteSink(db) as sink:
        sink.upsert([newer, make_alert("A", revision=2), A])
    with open_store(db) as store:
        assert store.get("A") == newer


def test_upsert_leaves_status_alone(db):
    with SQLiteSink(db) as sink:
        sink.upsert([A, B])
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alerts SET status = 'acknowledged' WHERE alert_id = 'A'")
        conn.execute("UPDATE alerts SET status = 'closed' WHERE alert_id = 'B'")
    with SQLiteSink(db) as sink:
        # A grows while acknowledged; B is re-emitted unchanged after closing.
        sink.upsert([make_alert("A", revision=2), B])
    assert [(r[0], r[-3]) for r in raw_rows(db)] == [("A", "acknowledged"), ("B", "closed")]
    with open_store(db) as store:
        assert store.events("A") == store.events("B") == []


def test_commits_every_batch_size_and_on_flush(db):
    sink = SQLiteSink(db, batch_size=3)
    sink.upsert([A, B])
    assert (sink.pending, committed(db)) == (2, 0)
    sink.upsert([C, make_alert("D")])
    assert (sink.pending, committed(db)) == (1, 3)
    sink.flush()
    assert (sink.pending, committed(db)) == (0, 4)
    sink.upsert([make_alert("E")])
    assert committed(db) == 4
    sink.close()
    assert committed(db) == 5


def test_one_large_upsert_is_cut_into_batches(db):
    sink = SQLiteSink(db, batch_size=2)
    sink.upsert([make_alert(f"X{i}") for i in range(5)])
    assert (sink.pending, committed(db)) == (1, 4)
    sink.close()
    assert committed(db) == 5


def test_data_survives_close_and_reopen(db):
    with SQLiteSink(db) as sink:
        sink.upsert([A])
    with SQLiteSink(db) as sink:
        sink.upsert([B])
    with open_store(db) as store:
        assert store.list() == [B, A]


def test_exit_on_error_still_commits_what_was_upserted(db):
    with pytest.raises(RuntimeError, match="boom"), SQLiteSink(db) as sink:
        sink.upsert([A])
        raise RuntimeError("boom")
    assert committed(db) == 1


def test_wal_mode_schema_version_and_indexes(db):
    SQLiteSink(db).close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(3,)]
        indexes = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        }
    assert {name: sql.split(" ON ", 1)[1] for name, sql in indexes.items()} == {
        "alerts_updated_seq": "alerts (updated_seq)",
        "alert_events_alert": "alert_events (alert_id, id)",
        "tokens_user": "tokens (user_name)",
        "case_alerts_alert": "case_alerts (alert_id, case_id)",
        "case_events_case": "case_events (case_id, id)",
        "deliveries_due": "deliveries (state, next_at, notice_id)",
        "alerts_last": "alerts (last_utc, alert_id)",
        "alerts_status_last": "alerts (status, last_utc, alert_id)",
        "alerts_detector_severity_last": "alerts (detector, severity, last_utc, alert_id)",
        "alerts_severity_last": "alerts (severity_rank, last_utc, alert_id)",
        "alerts_amount": "alerts (amount_fen, alert_id)",
        "alerts_detector_id": "alerts (detector, alert_id)",
        "alerts_subject_id": "alerts (subject_id, alert_id)",
        "alerts_assignee_last": "alerts (assignee, last_utc, alert_id)",
    }


def test_sink_sets_synchronous_normal(db):
    sink = SQLiteSink(db)
    try:
        assert sink._conn.execute("PRAGMA synchronous").fetchone() == (1,)  # 1 = NORMAL
    finally:
        sink.close()


def test_list_orders_by_first_ts_then_alert_id_and_filters(db):
    with SQLiteSink(db) as sink:
        sink.upsert([A, C, B])
    with open_store(db) as store:
        assert store.list() == [B, C, A]
        assert store.list(detector="fund_pool") == [C, A]
        assert store.list(severity="critical") == [B]
        assert store.list(subject="P1") == [A]
        assert store.list(detector="fund_pool", severity="low") == [C]
        assert store.list(detector="fund_pool", subject="PAY1") == []
        assert store.list(limit=2) == [B, C]
        assert store.list(limit=0) == []
        assert store.count(detector="fund_pool") == 2
        with pytest.raises(ValueError, match="-1"):
            store.list(limit=-1)


def test_open_store_on_missing_path_raises_and_creates_nothing(tmp_path):
    path = tmp_path / "missing.db"
    with pytest.raises(StoreNotFoundError, match="alert store not found: .*missing.db") as info:
        open_store(path)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, StoreError)
    assert not path.exists()


def test_open_store_on_a_file_that_is_not_a_store(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="is not a fundflow alert store"):
        SQLiteStore(junk)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="is not a fundflow alert store"):
        open_store(other)


def test_unwritable_path_raises_store_error(tmp_path):
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_text("x")
    with pytest.raises(StoreError) as info:
        SQLiteSink(not_a_dir / "alerts.db")
    message = str(info.value)
    assert message.startswith(f"cannot open alert store {not_a_dir / 'alerts.db'}: ")
    assert "\n" not in message


def test_newer_schema_version_is_refused(db):
    SQLiteSink(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = 4")
    with pytest.raises(StoreError, match="schema version 4, this fundflow reads versions 1 to 3$"):
        SQLiteSink(db)
    with pytest.raises(StoreError, match="schema version 4"):
        open_store(db)
    with sqlite3.connect(db) as conn:  # refused, and left as it was
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(4,)]


def test_write_failure_is_a_store_error_and_keeps_the_batch(db):
    sink = SQLiteSink(db, batch_size=10)
    sink.upsert([A])
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TABLE alerts")
    with pytest.raises(StoreError, match=r"^cannot write alert store .*no such table: alerts$"):
        sink.flush()
    assert sink.pending == 1
    with pytest.raises(StoreError):
        sink.close()
    with pytest.raises(StoreError, match="is closed"):
        sink.upsert([B])


def test_close_twice_is_fine_and_upsert_after_close_fails(db):
    sink = SQLiteSink(db)
    sink.close()
    sink.close()
    with pytest.raises(StoreError, match="is closed"):
        sink.upsert([A])


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_batch_size_must_be_a_positive_integer(db, bad):
    with pytest.raises(ValueError, match=f"batch_size must be an integer >= 1, got {bad}"):
        SQLiteSink(db, batch_size=bad)
    assert not db.exists()


def test_reading_leaves_no_files_behind(tmp_path, db):
    SQLiteSink(db).close()
    before = sorted(p.name for p in tmp_path.iterdir())
    with open_store(db) as store:
        store.list()
    assert before == ["alerts.db"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --- lifecycle and audit trail -------------------------------------------------


@pytest.fixture
def filled(db):
    with SQLiteSink(db) as sink:
        sink.upsert([A, B, C])
    return db


def test_ack_then_close_records_the_audit_trail(filled):
    before = datetime.now(UTC)
    with open_store(filled) as store:
        assert store.status("A") == "open"
        acked = store.ack("A", by=" wang ", note="checking the custody ledger")
        closed = store.close_alert("A", by="li", note="")
        assert (store.status("A"), store.status("B"), store.status("nope")) == (
            "closed",
            "open",
            None,
        )
        trail = store.events("A")
        assert store.events("B") == store.events("nope") == []
    assert trail == [acked, closed]
    assert event_rows_of(trail) == [
        (1, "A", "acknowledged", "wang", "checking the custody ledger"),
        (2, "A", "closed", "li", None),
    ]
    assert before <= trail[0].at <= trail[1].at <= datetime.now(UTC)
    assert trail[0].at.utcoffset() == timedelta(0)
    # The alert itself is untouched: status is not part of the Alert.
    with open_store(filled) as store:
        assert store.get("A") == A


def event_rows_of(events) -> list[tuple]:
    return [(e.id, e.alert_id, e.action, e.actor, e.note) for e in events]


def test_an_open_alert_can_be_closed_directly(filled):
    with open_store(filled) as store:
        store.close_alert("B", by="li")
        assert store.status("B") == "closed"
        assert [e.action for e in store.events("B")] == ["closed"]


@pytest.mark.parametrize(
    ("moves", "move", "message"),
    [
        (["ack"], "ack", "cannot acknowledge alert 'A': it is already acknowledged"),
        (["close"], "ack", "cannot acknowledge alert 'A': it is closed"),
        (["ack", "close"], "ack", "cannot acknowledge alert 'A': it is closed"),
        (["close"], "close", "cannot close alert 'A': it is already closed"),
        (["ack", "close"], "close", "cannot close alert 'A': it is already closed"),
    ],
)
def test_illegal_moves_are_refused_and_change_nothing(filled, moves, move, message):
    do = {"ack": "ack", "close": "close_alert"}
    with open_store(filled) as store:
        for m in moves:
            getattr(store, do[m])("A", by="wang")
        status, trail = store.status("A"), store.events("A")
        with pytest.raises(StoreError) as info:
            getattr(store, do[move])("A", by="wang")
        assert str(info.value) == message
        assert (store.status("A"), store.events("A")) == (status, trail)


def test_moving_an_unknown_alert_is_a_store_error(filled):
    with open_store(filled) as store:
        with pytest.raises(StoreError) as info:
            store.ack("nope", by="wang")
        assert str(info.value) == f"no alert 'nope' in {filled}"
        with pytest.raises(StoreError, match="^no alert 'nope' in "):
            store.close_alert("nope", by="wang")


@pytest.mark.parametrize("by", ["", "   ", None])
def test_a_move_must_name_who_acts(filled, by):
    with open_store(filled) as store, pytest.raises(ValueError, match="by must name who acts"):
        store.ack("A", by=by)


def test_status_filter_and_iter_with_status(filled):
    with open_store(filled) as store:
        store.ack("A", by="wang")
        store.close_alert("B", by="wang")
        assert store.list(status="open") == [C]
        assert store.list(status="acknowledged") == [A]
        assert store.list(status="closed", detector="reserve_misuse") == [B]
        assert store.list(status="closed", detector="fund_pool") == []
        assert store.count(status="open") == 1
        assert [*store.iter_with_status()] == [(B, "closed"), (C, "open"), (A, "acknowledged")]
        assert [*store.iter_with_status(limit=1)] == [(B, "closed")]
        with pytest.raises(ValueError, match="status must be one of open, acknowledged, closed"):
            store.list(status="done")


def test_a_closed_alert_that_grows_is_reopened_with_an_event(filled):
    grown = make_alert("A", revision=2, severity="critical", amount="300000.00")
    with open_store(filled) as store:
        store.ack("A", by="wang")
        store.close_alert("A", by="wang", note="false alarm")
    with SQLiteSink(filled) as sink:
        sink.upsert([A])  # a late lower revision: nothing happens
        sink.upsert([grown])
    with SQLiteSink(filled) as sink:
        sink.upsert([grown])  # the same revision again: still nothing
    with open_store(filled) as store:
        assert store.get("A") == grown
        assert store.status("A") == "open"
        trail = store.events("A")
    assert event_rows_of(trail) == [
        (1, "A", "acknowledged", "wang", None),
        (2, "A", "closed", "wang", "false alarm"),
        (3, "A", "reopened", "fundflow",
         "revision 2 replaced revision 1 after closing: severity critical, amount 300000.00"),
    ]  # fmt: skip


def test_several_revisions_in_one_batch_reopen_once(filled):
    with open_store(filled) as store:
        store.close_alert("A", by="wang")
    with SQLiteSink(filled) as sink:
        sink.upsert([make_alert("A", revision=3), make_alert("A", revision=2)])
    with open_store(filled) as store:
        assert store.get("A") == make_alert("A", revision=3)
        assert [(e.action, e.note) for e in store.events("A")] == [
            ("closed", None),
            ("reopened", "revision 3 replaced revision 1 after closing: severity high, "
             "amount 150000.00"),
        ]  # fmt: skip
        # Reopened, it follows the lifecycle again.
        store.ack("A", by="li")
        assert store.status("A") == "acknowledged"


def test_an_acknowledged_alert_that_grows_stays_acknowledged(filled):
    with open_store(filled) as store:
        store.ack("A", by="wang")
    with SQLiteSink(filled) as sink:
        sink.upsert([make_alert("A", revision=2)])
    with open_store(filled) as store:
        assert store.status("A") == "acknowledged"
        assert [e.action for e in store.events("A")] == ["acknowledged"]


def test_moves_leave_the_alert_rows_bookkeeping_alone(filled):
    before = raw_rows(filled)
    with open_store(filled) as store:
        store.ack("A", by="wang")
    after = raw_rows(filled)
    assert after[0][-3] == "acknowledged"
    assert [r[:-3] + r[-2:] for r in after] == [r[:-3] + r[-2:] for r in before]


# --- migration -------------------------------------------------------------------

# The schema as fundflow 0.1 wrote it (schema version 1), verbatim.
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id         TEXT PRIMARY KEY,
    detector         TEXT NOT NULL,
    severity         TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    accounts         TEXT NOT NULL,
    first_ts         TEXT NOT NULL,
    last_ts          TEXT NOT NULL,
    amount           TEXT NOT NULL,
    summary          TEXT NOT NULL,
    evidence         TEXT NOT NULL,
    detector_version TEXT NOT NULL,
    revision         INTEGER NOT NULL,
    status           TEXT NOT NULL DEFAULT 'open',
    created_seq      INTEGER NOT NULL,
    updated_seq      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_detector_severity ON alerts (detector, severity);
CREATE INDEX IF NOT EXISTS alerts_subject ON alerts (subject_id);
CREATE INDEX IF NOT EXISTS alerts_updated_seq ON alerts (updated_seq);
INSERT INTO schema_version (version) VALUES (1);
INSERT INTO alerts VALUES ('A', 'fund_pool', 'high', 'P1', '["ACC-1","ACC-2"]',
    '2026-03-01T10:00:00+08:00', '2026-03-01T12:00:00+08:00', '150000.00',
    'Investor money pooled in the platform''s own account.',
    '{"pooled_fen":15000000,"txn_ids":["T1","T2"]}', '1.0', 1, 'closed', 1, 4);
"""


@pytest.fixture
def v1_db(db):
    with sqlite3.connect(db) as conn:
        conn.executescript(V1_SCHEMA)
    return db


def tables(path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_master ORDER BY name")]


def test_a_version_1_file_reads_as_it_is(v1_db):
    before = raw_rows(v1_db)
    with open_store(v1_db) as store:
        assert store.list() == [A]
        assert store.status("A") == "closed"
        assert store.events("A") == []
    assert raw_rows(v1_db) == before
    assert "alert_events" not in tables(v1_db)


def test_a_sink_migrates_a_version_1_file_keeping_its_rows(v1_db):
    before = raw_rows(v1_db)
    SQLiteSink(v1_db).close()
    assert raw_rows(v1_db) == before
    with sqlite3.connect(v1_db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(3,)]
    assert {"alert_events", "alert_events_alert", "alert_revisions", "alerts_last"} <= set(
        tables(v1_db)
    )
    # The migrated file works like a new one, reopen included.
    with SQLiteSink(v1_db) as sink:
        sink.upsert([make_alert("A", revision=2), B])
    with open_store(v1_db) as store:
        assert store.status("A") == "open"
        assert [e.action for e in store.events("A")] == ["reopened"]
        assert raw_rows(v1_db)[0][-2:] == (1, 5)  # created_seq kept, updated_seq moved on


def test_a_move_on_a_version_1_file_migrates_it_first(v1_db):
    with open_store(v1_db) as store:
        with pytest.raises(StoreError, match="it is already closed"):
            store.close_alert("A", by="wang")
        with sqlite3.connect(v1_db) as conn:
            assert conn.execute("SELECT version FROM schema_version").fetchall() == [(3,)]
        assert store.events("A") == []
        with sqlite3.connect(v1_db) as conn:
            conn.execute("UPDATE alerts SET status = 'open'")
        store.ack("A", by="wang")
        assert [e.action for e in store.events("A")] == ["acknowledged"]


def test_migrating_again_changes_nothing(db):
    with SQLiteSink(db) as sink:
        sink.upsert([A])
    schema = sqlite3.connect(db).execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    for _ in range(2):
        SQLiteSink(db).close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall() == schema
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(3,)]


def test_sinks_opening_one_new_file_together_migrate_it_once(db):
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            barrier.wait()
            with SQLiteSink(db) as sink:
                sink.upsert([A])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(3,)]
    assert committed(db) == 1


# --- choosing a backend, and masking passwords ---------------------------------


def test_open_sink_and_open_store_take_a_path_for_sqlite(db):
    with open_sink(db) as sink:
        assert isinstance(sink, SQLiteSink)
        sink.upsert([A])
    with open_store(str(db)) as store:
        assert isinstance(store, SQLiteStore)
        assert store.name == str(db)


@pytest.mark.parametrize("opener", [open_sink, open_store])
def test_an_unknown_url_scheme_is_refused(tmp_path, monkeypatch, opener):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError) as info:
        opener("mysql://root:pw@localhost/fundflow")
    assert str(info.value) == (
        "unsupported alert store URL scheme 'mysql': use a SQLite file path or a postgresql:// URL"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("opener", [open_sink, open_store])
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_an_unreachable_postgres_url_is_one_line_without_the_password(opener, scheme):
    pytest.importorskip("psycopg")
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"{scheme}://fundflow:pa%24%24-w0rd@127.0.0.1:{port}/alerts?connect_timeout=5"
    with pytest.raises(StoreError) as info:
        opener(url)
    message = str(info.value)
    assert message.startswith(
        f"cannot open alert store {scheme}://fundflow:***@127.0.0.1:{port}/alerts"
        "?connect_timeout=5: connection failed: "
    )
    assert "Connection refused" in message
    assert "\n" not in message
    assert "pa%24%24-w0rd" not in message and "pa$$-w0rd" not in message


@pytest.mark.parametrize("opener", [open_sink, open_store])
def test_a_postgres_url_without_the_driver_says_what_to_install(monkeypatch, opener):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "fundflow.store.postgres", raising=False)
    monkeypatch.delattr(fundflow.store, "postgres", raising=False)
    with pytest.raises(StoreError) as info:
        opener("postgresql://fundflow:pw@127.0.0.1/alerts")
    assert str(info.value) == (
        "a postgresql:// alert store needs psycopg: pip install 'psycopg[binary]>=3.1'"
    )


def test_a_malformed_postgres_url_does_not_echo_the_password():
    pytest.importorskip("psycopg")
    with pytest.raises(StoreError) as info:
        open_store("postgresql://fundflow:s3cr%zzet@127.0.0.1/alerts")
    assert str(info.value) == (
        "cannot open alert store postgresql://fundflow:***@127.0.0.1/alerts: "
        'invalid percent-encoded token: "***"'
    )


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://alice:s3cret@db:5432/ff", "postgresql://alice:***@db:5432/ff"),
        ("postgresql://alice@db/ff", "postgresql://alice@db/ff"),
        ("postgresql://db/ff?sslmode=require", "postgresql://db/ff?sslmode=require"),
        ("postgres://a:p@ss@h1,h2/ff", "postgres://a:***@h1,h2/ff"),
        ("postgresql://a:x@db/ff?password=y&sslmode=verify-full",
         "postgresql://a:***@db/ff?password=***&sslmode=verify-full"),
        ("postgresql:///ff?host=/run/pg&PASSWORD=y", "postgresql:///ff?host=/run/pg&PASSWORD=***"),
    ],
)  # fmt: skip
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_url_secrets_and_scrub():
    secrets = url_secrets("postgresql://a:p%40ss@db/ff?password=q", env={"PGPASSWORD": "envpw"})
    assert secrets == ["p%40ss", "envpw", "p@ss", "q"]
    assert scrub("bad p%40ss and\n\tp@ss, envpw q", secrets) == "bad *** and ***, *** ***"
