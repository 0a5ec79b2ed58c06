"""The SQLite alert store (fundflow.store.sqlite), on hand-built alerts.

The store contract every backend passes runs here as
:class:`TestSQLiteStoreContract` (``tests/store/contract.py``); the rest is
SQLite's own: WAL, the bookkeeping columns, files that are not stores, the
migrations of older files, choosing a backend and masking passwords.
"""

from __future__ import annotations

import socket
import sqlite3
import sys
import threading

import pytest
from store.contract import StoreContract

import fundflow
from fundflow.schemas.records import Alert
from fundflow.store import (
    AlertFilter,
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


class TestSQLiteStoreContract(StoreContract):
    """The store contract on a SQLite file (the ``db`` fixture above)."""


def test_sink_implements_the_protocol(db):
    with SQLiteSink(db) as sink:
        assert isinstance(sink, AlertSink)


def test_a_replay_leaves_the_rows_and_their_sequence_alone(db):
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


def test_a_higher_revision_keeps_created_seq_and_moves_updated_seq(db):
    newer = make_alert("A", revision=2, severity="critical", amount="300000.00")
    with SQLiteSink(db) as sink:
        sink.upsert([A, B])
    with SQLiteSink(db) as sink:
        sink.upsert([newer])
    with open_store(db) as store:
        assert store.get("A") == newer
    row = raw_rows(db)[0]
    assert (row[0], row[-2], row[-1]) == ("A", 1, 3)  # created 1, updated 3


def test_a_late_lower_revision_rewrites_nothing(db):
    newer = make_alert("A", revision=2, amount="300000.00")
    with SQLiteSink(db) as sink:
        sink.upsert([newer])
    before = raw_rows(db)
    with SQLiteSink(db) as sink:
        sink.upsert([A])  # revision 1, redelivered
    assert raw_rows(db) == before
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


# A version 2 file as this fundflow's predecessor wrote it: its schema by
# migrations 1 and 2, then alerts and an audit trail.
def write_v2(path) -> None:
    from fundflow.store.sqlite import MIGRATIONS  # noqa: PLC0415

    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for step in MIGRATIONS[:2]:
            for statement in step:
                conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (2)")
        conn.executemany(
            f"INSERT INTO alerts ({V1_COLUMNS}) VALUES ({', '.join('?' * 15)})",
            [
                ("A", "fund_pool", "high", "P1", '["ACC-1","ACC-2"]', "2026-03-01T10:00:00+08:00",
                 "2026-03-01T12:00:00+08:00", "150000.00",
                 "Investor money pooled in the platform's own account.",
                 '{"pooled_fen":15000000,"txn_ids":["T1","T2"]}', "1.0", 1, "closed", 1, 3),
                ("B", "reserve_misuse", "critical", "PAY1", '["RES-1"]',
                 "2026-03-01T09:00:00+08:00", "2026-03-01T12:00:00+08:00", "9.99",
                 "备付金被挪用于关联公司。", '{"shortfall_fen":999,"注":"中文"}', "1.0", 1, "open",
                 2, 2),
            ],
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO alert_events (alert_id, action, actor, note, at) VALUES (?, ?, ?, ?, ?)",
            [
                ("A", "acknowledged", "wang", "checking", "2026-03-02T01:00:00.000000+00:00"),
                ("A", "closed", "li", None, "2026-03-02T02:00:00.000000+00:00"),
            ],
        )


def test_a_version_2_file_is_upgraded_in_place_keeping_alerts_and_trail(db):
    write_v2(db)
    with open_store(db) as store:  # a reader reads version 2 as it is
        before = ([*store.iter_with_status()], store.events("A"), store.events("B"))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    rows_before = raw_rows(db)
    SQLiteSink(db).close()
    assert raw_rows(db) == rows_before
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(3,)]
        assert conn.execute("SELECT COUNT(*) FROM notices").fetchone() == (0,)
        derived = conn.execute(
            "SELECT alert_id, assignee, last_utc, severity_rank, amount_fen FROM alerts"
            " ORDER BY alert_id"
        ).fetchall()
    assert derived == [
        ("A", None, "2026-03-01T04:00:00.000000+00:00", 2, 15000000),
        ("B", None, "2026-03-01T04:00:00.000000+00:00", 3, 999),
    ]
    with open_store(db) as store:
        assert ([*store.iter_with_status()], store.events("A"), store.events("B")) == before
        a, b = (alert for alert, _ in before[0][::-1])
        assert (store.revisions("A"), store.revisions("B")) == ([a], [b])
        assert [r.alert.alert_id for r in store.page(AlertFilter(text="备付金")).items] == ["B"]
        assert [r.status for r in store.page(AlertFilter(), order="subject").items] == [
            "closed", "open",
        ]  # fmt: skip
        assert store.reopen("A", by="wang").id == 3  # the trail goes on where it was


def test_a_reader_upgrades_a_version_2_file_for_the_triage_reads(db):
    write_v2(db)
    with open_store(db) as store:
        assert store.events("A")[0].note == "checking"
        assert [r.alert.alert_id for r in store.page(AlertFilter()).items] == ["B", "A"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(3,)]


def test_a_read_only_version_2_file_reads_but_cannot_be_triaged(db, monkeypatch):
    """A file this process may only read (read-only media, another user's)
    is opened with mode=ro: the old reads work, the triage reads say why not."""
    from fundflow.store import sqlite as backend  # noqa: PLC0415

    write_v2(db)

    def read_only(path):
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)
        conn.execute("PRAGMA query_only = ON")
        return conn

    monkeypatch.setattr(backend, "_connect_reader", read_only)
    with open_store(db) as store:
        assert store.count() == 2
        assert [e.action for e in store.events("A")] == ["acknowledged", "closed"]
        with pytest.raises(StoreError) as info:
            store.page(AlertFilter())
        with pytest.raises(
            StoreError, match="cannot write alert store .*: attempt to write a readonly"
        ):
            store.ack("B", by="wang")
    assert str(info.value) == (
        f"alert store {db} has schema version 2 and cannot be brought to version 3 for triage: "
        "attempt to write a readonly database"
    )
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(2,)]


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
