"""Unit tests of the SQLite alert store (fundflow.store), on hand-built alerts."""

from __future__ import annotations

import sqlite3

import pytest

from fundflow.schemas.records import Alert
from fundflow.store import (
    AlertSink,
    SQLiteSink,
    SQLiteStore,
    StoreError,
    StoreNotFoundError,
    open_store,
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


def raw_rows(path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM alerts ORDER BY alert_id").fetchall()


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
        sink.upsert([A])
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alerts SET status = 'closed' WHERE alert_id = 'A'")
    with SQLiteSink(db) as sink:
        sink.upsert([make_alert("A", revision=2)])
    assert raw_rows(db)[0][-3] == "closed"


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
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        indexes = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        }
    assert indexes == {
        "alerts_detector_severity": "CREATE INDEX alerts_detector_severity ON alerts (detector, severity)",
        "alerts_subject": "CREATE INDEX alerts_subject ON alerts (subject_id)",
        "alerts_updated_seq": "CREATE INDEX alerts_updated_seq ON alerts (updated_seq)",
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
        conn.execute("UPDATE schema_version SET version = 2")
    with pytest.raises(StoreError, match="schema version 2, this fundflow reads version 1"):
        SQLiteSink(db)
    with pytest.raises(StoreError, match="schema version 2"):
        open_store(db)


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
