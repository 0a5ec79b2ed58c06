"""The alert store's contract, once for every backend.

:class:`StoreContract` is a mixin of tests (the pattern of arroyo's
``tests/backends/mixins.py``): a backend's test module subclasses it as
``Test...`` and provides the fixture ``db``, a place (a SQLite path or a
PostgreSQL URL) where no store exists yet. Every test opens its sinks and
stores through :func:`fundflow.store.open_sink` / :func:`open_store` on it.
``tests/unit/test_store_sqlite.py`` and
``tests/integration/test_store_postgres.py`` run it; what only one backend
has (WAL, bookkeeping columns, connection faults, URL masking, schema
details) stays in those files.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from msgspec.structs import replace

from fundflow.schemas.records import Alert
from fundflow.store import (
    ORDERS,
    AlertEvent,
    AlertFilter,
    AlertRow,
    AlertSink,
    AlertView,
    BadCursor,
    CaseEvent,
    CaseRef,
    StoreConflict,
    StoreError,
    StoreNotFound,
    alert_json,
    open_sink,
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

# A queue of six alerts for the page tests: distinct last_ts instants,
# written in two zones (Q4's +00:00 is the latest instant though its text
# sorts first), a tie on last_ts (Q2, Q3), amounts and severities spread.
QUEUE = [
    make_alert("Q1", detector="fund_pool", severity="low", subject_id="P1",
               last_ts="2026-03-01T09:00:00+08:00", amount="100.00",
               summary="Pool at P1", accounts=("ACC-P1",)),
    make_alert("Q2", detector="fund_pool", severity="high", subject_id="P2",
               last_ts="2026-03-01T10:00:00+08:00", amount="2500.00",
               summary="Pool at P2", accounts=("ACC-P2",)),
    make_alert("Q3", detector="reserve_misuse", severity="high", subject_id="I1",
               last_ts="2026-03-01T10:00:00+08:00", amount="99.99",
               summary="Reserves moved", accounts=("RES-I1",)),
    make_alert("Q4", detector="reserve_misuse", severity="critical", subject_id="I2",
               last_ts="2026-03-01T05:00:00+00:00", amount="1000000.00",
               summary="Reserves emptied", accounts=("RES-I2",)),
    make_alert("Q5", detector="cross_bank_clearing", severity="medium", subject_id="I1",
               last_ts="2026-03-01T11:00:00+08:00", amount="2500.00",
               summary="Clearing between own banks", accounts=("ACC-I1-B1", "ACC-I1-B2")),
    make_alert("Q6", detector="fund_pool", severity="medium", subject_id="P3",
               last_ts="2026-02-28T23:00:00+08:00", amount="0.01",
               summary="Pool at P3", accounts=("ACC-P3",)),
]  # fmt: skip

# Each order's exact result over QUEUE (ties broken by alert id; severity
# ties by last_ts, then id).
EXPECTED_ORDER = {
    "-last_ts": ["Q4", "Q5", "Q3", "Q2", "Q1", "Q6"],
    "last_ts": ["Q6", "Q1", "Q2", "Q3", "Q5", "Q4"],
    "-severity": ["Q4", "Q3", "Q2", "Q5", "Q6", "Q1"],
    "severity": ["Q1", "Q6", "Q5", "Q2", "Q3", "Q4"],
    "-amount": ["Q4", "Q5", "Q2", "Q1", "Q3", "Q6"],
    "amount": ["Q6", "Q3", "Q1", "Q2", "Q5", "Q4"],
    "detector": ["Q5", "Q1", "Q2", "Q6", "Q3", "Q4"],
    "subject": ["Q3", "Q5", "Q4", "Q1", "Q2", "Q6"],
}

# Hostile text: SQL injection attempts and LIKE metacharacters, which every
# filter and every free-text field must treat as plain data.
HOSTILE = [
    "' OR '1'='1",
    "'; DROP TABLE alerts; --",
    '" OR ""="',
    "%",
    "_",
    "\\",
    "%_\\'",
    "a%b",
    "x_y",
    "); DELETE FROM alerts WHERE (1=1",
    "?",
    "%s",
    "$1",
]

CST = timezone(timedelta(hours=8))
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
T1 = "a" * 64
T2 = "b" * 64
CSRF = "c" * 64


def ids(page) -> list[str]:
    return [r.alert.alert_id for r in page.items]


def walk(store, filters: AlertFilter, order: str, limit: int) -> list[list[str]]:
    """Every page of a query, as lists of ids."""
    pages, cursor = [], None
    while True:
        page = store.page(filters, order=order, cursor=cursor, limit=limit)
        pages.append(ids(page))
        cursor = page.next_cursor
        if cursor is None:
            return pages
        assert len(pages) < 100, "the cursor does not move on"


class StoreContract:
    """Tests every backend passes. Subclasses provide the ``db`` fixture."""

    @pytest.fixture
    def filled(self, db):
        with open_sink(db) as sink:
            sink.upsert([A, B, C])
        return db

    @pytest.fixture
    def queue(self, db):
        with open_sink(db) as sink:
            sink.upsert(QUEUE)
        return db

    # --- the sink ---------------------------------------------------------------

    def test_round_trip_returns_equal_alerts(self, db):
        with open_sink(db) as sink:
            assert isinstance(sink, AlertSink)
            sink.upsert([A, B, C])
        with open_store(db) as store:
            assert store.get("A") == A  # millisecond last_ts, nested evidence
            assert store.get("B") == B  # Chinese text
            assert store.get("C") == C  # no accounts, empty evidence
            assert store.get("nope") is None
            assert store.count() == 3
            # Evidence keys come back sorted at every depth, on every backend.
            assert list(store.get("B").evidence) == ["nested", "shortfall_fen", "注"]
            assert list(store.get("B").evidence["nested"]) == ["a", "z"]

    def test_upsert_is_idempotent_across_replays(self, db):
        with open_sink(db) as sink:
            sink.upsert([A, B])
        with open_store(db) as store:
            first = ([*store.iter_with_status()], store.revisions("A"), store.events("A"))
            first_notices = [d.notice for d in store.due_deliveries(["h"], datetime.now(UTC))]
        with open_sink(db) as sink:
            sink.upsert([A, B])
            sink.upsert([A])
        with open_store(db) as store:
            assert ([*store.iter_with_status()], store.revisions("A"), store.events("A")) == first
            notices = [d.notice for d in store.due_deliveries(["h"], datetime.now(UTC))]
        assert notices == first_notices
        assert [(n.alert_id, n.kind) for n in notices] == [("A", "new"), ("B", "new")]

    def test_higher_revision_replaces(self, db):
        newer = make_alert("A", revision=2, severity="critical", amount="300000.00")
        with open_sink(db) as sink:
            sink.upsert([A, B])
        with open_sink(db) as sink:
            sink.upsert([newer])
        with open_store(db) as store:
            assert store.get("A") == newer
            assert store.get("B") == B

    def test_lower_revision_arriving_late_is_ignored(self, db):
        newer = make_alert("A", revision=2, amount="300000.00")
        with open_sink(db) as sink:
            sink.upsert([newer])
        with open_sink(db) as sink:
            sink.upsert([A])  # revision 1, redelivered
        with open_store(db) as store:
            assert store.get("A") == newer
            assert store.list() == [newer]

    def test_revisions_in_one_batch_keep_the_highest_and_the_last_of_equals(self, db):
        newer = make_alert("A", revision=3)
        equal_later = make_alert("B", summary="second of two revision-1 rows")
        with open_sink(db) as sink:
            sink.upsert([newer, make_alert("A", revision=2), A, B, equal_later])
        with open_store(db) as store:
            assert store.get("A") == newer
            assert store.get("B") == equal_later

    def test_commits_every_batch_size_and_on_flush(self, db):
        def committed() -> int:
            with open_store(db) as store:
                return store.count()

        sink = open_sink(db, batch_size=3)
        sink.upsert([A, B])
        assert (sink.pending, committed()) == (2, 0)
        sink.upsert([C, make_alert("D")])
        assert (sink.pending, committed()) == (1, 3)
        sink.flush()
        assert (sink.pending, committed()) == (0, 4)
        sink.upsert([make_alert(f"X{i}") for i in range(7)])
        assert (sink.pending, committed()) == (1, 10)
        sink.close()
        assert committed() == 11
        sink.close()  # twice is fine
        with pytest.raises(StoreError, match="is closed"):
            sink.upsert([A])

    def test_a_large_batch_round_trips(self, db):
        many = [
            make_alert(
                f"fund_pool:P{i % 7}:{i:05d}", subject_id=f"P{i % 7}", amount=f"{i}.{i % 100:02d}"
            )
            for i in range(2500)
        ]
        with open_sink(db) as sink:
            sink.upsert(many)
        with open_store(db) as store:
            assert store.count() == 2500
            by_id = sorted(many, key=lambda a: a.alert_id)
            got = sorted(store.iter(), key=lambda a: a.alert_id)
            assert got == by_id
            assert store.count(subject="P3") == len([a for a in many if a.subject_id == "P3"])

    def test_exit_on_error_still_commits_what_was_upserted(self, db):
        with pytest.raises(RuntimeError, match="boom"), open_sink(db) as sink:
            sink.upsert([A])
            raise RuntimeError("boom")
        with open_store(db) as store:
            assert store.count() == 1

    def test_list_orders_by_first_ts_then_alert_id_and_filters(self, db):
        with open_sink(db) as sink:
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
            with pytest.raises(ValueError, match="status must be one of"):
                store.count(status="done")

    def test_ids_order_by_code_point(self, db):
        alert_ids = ["b", "B", "a_2", "a-1", "a1", "é", "Z"]
        with open_sink(db) as sink:
            sink.upsert([make_alert(i) for i in alert_ids])
        with open_store(db) as store:
            assert [a.alert_id for a in store.list()] == sorted(alert_ids)
            assert ids(store.page(AlertFilter(), order="detector")) == sorted(alert_ids)

    @pytest.mark.parametrize(
        ("overrides", "message"),
        [
            ({"amount": "9.9"}, "alert X: amount '9.9' is not yuan with 2 decimals"),
            ({"amount": "1.005"}, "alert X: amount '1.005' is not yuan with 2 decimals"),
            ({"first_ts": "2026-03-01T10:00:00"}, "alert X: first_ts '2026-03-01T10:00:00' has no UTC offset"),
            ({"last_ts": "yesterday"}, "alert X: last_ts 'yesterday' is not an ISO-8601 time"),
        ],
    )  # fmt: skip
    def test_an_alert_that_would_not_read_back_or_sort_is_refused(self, db, overrides, message):
        sink = open_sink(db)
        sink.upsert([make_alert("X", **overrides)])
        with pytest.raises(StoreError) as info:
            sink.flush()
        assert str(info.value) == message
        assert sink.pending == 1  # kept, like any batch that failed

    # --- lifecycle and audit trail ----------------------------------------------

    def test_ack_then_close_records_the_audit_trail(self, filled):
        before = datetime.now(UTC)
        with open_store(filled) as store:
            assert store.status("A") == "open"
            acked = store.ack("A", by=" wang ", note="checking the custody ledger")
            closed = store.close_alert("A", by="li", note="")
            store.close_alert("B", by="li", note="open -> closed directly")
            assert [store.status(i) for i in ("A", "B", "C", "nope")] == [
                "closed",
                "closed",
                "open",
                None,
            ]
            trail = store.events("A")
            assert store.events("C") == store.events("nope") == []
            assert [e.action for e in store.events("B")] == ["closed"]
            assert store.get("A") == A
        assert trail == [acked, closed]
        assert [(e.alert_id, e.action, e.actor, e.note) for e in trail] == [
            ("A", "acknowledged", "wang", "checking the custody ledger"),
            ("A", "closed", "li", None),
        ]
        assert [e.id for e in trail] == [1, 2]
        assert before <= trail[0].at <= trail[1].at <= datetime.now(UTC)
        assert trail[0].at.tzinfo == UTC
        assert trail[0].at.utcoffset() == timedelta(0)

    @pytest.mark.parametrize(
        ("moves", "move", "message"),
        [
            (["ack"], "ack", "cannot acknowledge alert 'A': it is already acknowledged"),
            (["close"], "ack", "cannot acknowledge alert 'A': it is closed"),
            (["ack", "close"], "ack", "cannot acknowledge alert 'A': it is closed"),
            (["close"], "close", "cannot close alert 'A': it is already closed"),
            (["ack", "close"], "close", "cannot close alert 'A': it is already closed"),
            ([], "reopen", "cannot reopen alert 'A': it is already open"),
            (["ack"], "reopen", "cannot reopen alert 'A': it is acknowledged"),
        ],
    )
    def test_illegal_moves_are_refused_and_change_nothing(self, filled, moves, move, message):
        do = {"ack": "ack", "close": "close_alert", "reopen": "reopen"}
        with open_store(filled) as store:
            for m in moves:
                getattr(store, do[m])("A", by="wang")
            status, trail = store.status("A"), store.events("A")
            with pytest.raises(StoreConflict) as info:
                getattr(store, do[move])("A", by="wang")
            assert str(info.value) == message
            assert (store.status("A"), store.events("A")) == (status, trail)

    @pytest.mark.parametrize(
        "act",
        [
            lambda s: s.ack("nope", by="wang"),
            lambda s: s.close_alert("nope", by="wang"),
            lambda s: s.reopen("nope", by="wang"),
            lambda s: s.assign("nope", by="wang", assignee="li"),
            lambda s: s.comment("nope", by="wang", text="hello"),
        ],
    )
    def test_acting_on_an_unknown_alert_is_store_not_found(self, filled, act):
        with open_store(filled) as store, pytest.raises(StoreNotFound) as info:
            act(store)
        assert str(info.value) == f"no alert 'nope' in {store.name}"
        assert isinstance(info.value, StoreError)

    @pytest.mark.parametrize("by", ["", "   ", None])
    def test_a_move_must_name_who_acts(self, filled, by):
        with open_store(filled) as store:
            for act in (store.ack, store.close_alert, store.reopen):
                with pytest.raises(ValueError, match="by must name who acts"):
                    act("A", by=by)
            with pytest.raises(ValueError, match="by must name who acts"):
                store.comment("A", by=by, text="x")
            assert store.events("A") == []

    def test_status_filter_and_iter_with_status(self, filled):
        with open_store(filled) as store:
            store.ack("A", by="wang")
            store.close_alert("B", by="wang")
            assert store.list(status="open") == [C]
            assert store.list(status="acknowledged") == [A]
            assert store.list(status="closed", detector="reserve_misuse") == [B]
            assert store.list(status="closed", detector="fund_pool") == []
            assert store.count(status="closed") == 1
            assert store.count(status="open") == 1
            assert [*store.iter_with_status()] == [(B, "closed"), (C, "open"), (A, "acknowledged")]
            assert [*store.iter_with_status(limit=1)] == [(B, "closed")]
            with pytest.raises(
                ValueError, match="status must be one of open, acknowledged, closed"
            ):
                store.list(status="done")

    def test_a_closed_alert_that_grows_is_reopened_with_an_event(self, filled):
        grown = make_alert("A", revision=2, severity="critical", amount="300000.00")
        with open_store(filled) as store:
            store.ack("A", by="wang")
            store.close_alert("A", by="wang", note="false alarm")
            store.close_alert("B", by="wang")
        with open_sink(filled) as sink:
            sink.upsert([A, B])  # a late revision 1, and B unchanged: nothing happens
            sink.upsert([grown])
        with open_sink(filled) as sink:
            sink.upsert([grown])  # the same revision again: still nothing
        with open_store(filled) as store:
            assert store.get("A") == grown
            assert (store.status("A"), store.status("B")) == ("open", "closed")
            trail = [(e.id, e.action, e.actor, e.note) for e in store.events("A")]
        assert trail == [
            (1, "acknowledged", "wang", None),
            (2, "closed", "wang", "false alarm"),
            (4, "reopened", "fundflow",
             "revision 2 replaced revision 1 after closing: severity critical, amount 300000.00"),
        ]  # fmt: skip

    def test_several_revisions_in_one_batch_reopen_once(self, filled):
        with open_store(filled) as store:
            store.close_alert("A", by="wang")
        with open_sink(filled) as sink:
            sink.upsert([make_alert("A", revision=3), make_alert("A", revision=2)])
        with open_store(filled) as store:
            assert store.get("A") == make_alert("A", revision=3)
            assert [(e.action, e.note) for e in store.events("A")] == [
                ("closed", None),
                ("reopened",
                 "revision 3 replaced revision 1 after closing: severity high, amount 150000.00"),
            ]  # fmt: skip
            # Reopened, it follows the lifecycle again.
            store.ack("A", by="li")
            assert store.status("A") == "acknowledged"

    def test_an_acknowledged_alert_that_grows_stays_acknowledged(self, filled):
        with open_store(filled) as store:
            store.ack("A", by="wang")
        with open_sink(filled) as sink:
            sink.upsert([make_alert("A", revision=2), make_alert("A", revision=3)])
        with open_store(filled) as store:
            assert store.status("A") == "acknowledged"
            assert [e.action for e in store.events("A")] == ["acknowledged"]

    def test_reopen_assign_and_comment(self, filled):
        with open_store(filled) as store:
            store.close_alert("A", by="wang", note="false alarm")
            reopened = store.reopen("A", by="li", note="the ledger disagrees")
            assigned = store.assign("A", by="li", assignee=" zhao ")
            commented = store.comment("A", by="zhao", text="  custody statement requested \n")
            unassigned = store.assign("A", by="li", assignee=None)
            assert store.status("A") == "open"
            trail = store.events("A")
            with pytest.raises(StoreConflict, match="^alert 'A' is already assigned to nobody$"):
                store.assign("A", by="li", assignee=None)
            store.assign("A", by="li", assignee="zhao")
            with pytest.raises(StoreConflict, match="^alert 'A' is already assigned to 'zhao'$"):
                store.assign("A", by="li", assignee="zhao")
            with pytest.raises(ValueError, match="comment must be non-empty text"):
                store.comment("A", by="li", text="  ")
            with pytest.raises(ValueError, match="assignee must be a non-empty name"):
                store.assign("A", by="li", assignee="")
            assert store.row("A") == AlertRow(A, "open", "zhao", ())
        assert [(e.action, e.actor, e.note) for e in trail] == [
            ("closed", "wang", "false alarm"),
            ("reopened", "li", "the ledger disagrees"),
            ("assigned", "li", "zhao"),
            ("commented", "zhao", "custody statement requested"),
            ("assigned", "li", None),
        ]
        assert trail[1:] == [reopened, assigned, commented, unassigned]
        assert all(isinstance(e, AlertEvent) for e in trail)

    def test_an_upsert_leaves_the_assignee_alone(self, filled):
        with open_store(filled) as store:
            store.assign("A", by="li", assignee="zhao")
        with open_sink(filled) as sink:
            sink.upsert([make_alert("A", revision=2)])
        with open_store(filled) as store:
            assert store.row("A").assignee == "zhao"

    # --- revisions --------------------------------------------------------------

    def test_every_revision_seen_is_kept_ascending(self, db):
        r1, r2, r3 = A, make_alert("A", revision=2, amount="200000.00"), make_alert("A", revision=3)
        with open_sink(db) as sink:
            sink.upsert([r1])
            sink.flush()
            sink.upsert([r3, r2])  # one batch, out of order
        with open_sink(db) as sink:
            sink.upsert([r1, make_alert("A", revision=2, summary="seen again, changed")])
        with open_store(db) as store:
            assert store.revisions("A") == [r1, r2, r3]  # first seen kept
            assert store.revisions("B") == []
            assert store.get("A") == r3

    def test_alert_view_is_the_row_cases_revisions_and_trail(self, db):
        r2 = make_alert("A", revision=2, amount="200000.00")
        with open_sink(db) as sink:
            sink.upsert([A, B])
            sink.flush()
            sink.upsert([r2])
        with open_store(db) as store:
            assert store.alert_view("B") == AlertView(store.row("B"), (), (B,), ())
            store.ack("A", by="wang", note="seen")
            store.comment("A", by="li", text="statement asked for")
            first = store.create_case("Reserve at PAY1", by="wang", alert_ids=["A", "B"])
            second = store.create_case("All of P1", by="li", alert_ids=["A"])
            store.set_case_status(second.case_id, "closed", by="li")
            view = store.alert_view("A")
            assert view == AlertView(
                AlertRow(r2, "acknowledged", None, (first.case_id, second.case_id)),
                (
                    CaseRef(first.case_id, "Reserve at PAY1", "open"),
                    CaseRef(second.case_id, "All of P1", "closed"),
                ),
                (A, r2),
                tuple(store.events("A")),
            )
            assert [(e.action, e.actor, e.note) for e in view.events] == [
                ("acknowledged", "wang", "seen"),
                ("commented", "li", "statement asked for"),
            ]
            assert all(e.at.utcoffset() is not None for e in view.events)
            for unknown in ("Z", "A\x00", "", "'; DROP TABLE alerts; --"):
                assert store.alert_view(unknown) is None
            assert store.count() == 2

    # --- the queue: page, counts, row -------------------------------------------

    @pytest.mark.parametrize("order", ORDERS)
    def test_every_order_pages_by_keyset(self, queue, order):
        with open_store(queue) as store:
            whole = store.page(AlertFilter(), order=order, limit=500)
            assert (ids(whole), whole.next_cursor) == (EXPECTED_ORDER[order], None)
            expected = EXPECTED_ORDER[order]
            assert walk(store, AlertFilter(), order, 2) == [
                expected[0:2],
                expected[2:4],
                expected[4:6],
            ]
            assert walk(store, AlertFilter(), order, 4) == [expected[0:4], expected[4:6]]
            assert walk(store, AlertFilter(), order, 6) == [expected]
            assert walk(store, AlertFilter(), order, 5) == [expected[0:5], expected[5:6]]

    def test_the_default_order_is_newest_last_ts_first(self, queue):
        with open_store(queue) as store:
            page = store.page(AlertFilter())
            assert ids(page) == EXPECTED_ORDER["-last_ts"]
            assert page.items[0] == AlertRow(QUEUE[3], "open", None, ())

    def test_a_page_sees_rows_written_since_the_cursor_was_made(self, queue):
        with open_store(queue) as store:
            first = store.page(AlertFilter(), order="-last_ts", limit=2)
            with open_sink(queue) as sink:
                # Newer than the cursor: not on later pages. Older: on them.
                sink.upsert([make_alert("Q0", last_ts="2026-03-02T00:00:00+08:00"),
                             make_alert("Q9", last_ts="2026-01-01T00:00:00+08:00")])  # fmt: skip
            rest = walk_from(store, AlertFilter(), "-last_ts", 2, first.next_cursor)
        assert rest == [["Q3", "Q2"], ["Q1", "Q6"], ["Q9"]]

    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            (AlertFilter(), ["Q4", "Q5", "Q3", "Q2", "Q1", "Q6"]),
            (AlertFilter(detector="fund_pool"), ["Q2", "Q1", "Q6"]),
            (AlertFilter(detector=("fund_pool", "cross_bank_clearing")), ["Q5", "Q2", "Q1", "Q6"]),
            (AlertFilter(severity="high"), ["Q3", "Q2"]),
            (AlertFilter(severity=("critical", "low")), ["Q4", "Q1"]),
            (AlertFilter(severity="high", detector="reserve_misuse"), ["Q3"]),
            (AlertFilter(subject="I1"), ["Q5", "Q3"]),
            (AlertFilter(since=datetime(2026, 3, 1, 2, 0, tzinfo=UTC)), ["Q4", "Q5", "Q3", "Q2"]),
            (AlertFilter(until=datetime(2026, 3, 1, 2, 0, tzinfo=UTC)), ["Q1", "Q6"]),
            (AlertFilter(since=datetime(2026, 3, 1, 9, 0, tzinfo=CST),
                         until=datetime(2026, 3, 1, 11, 0, tzinfo=CST)),
             ["Q3", "Q2", "Q1"]),
            (AlertFilter(text="pool at"), ["Q2", "Q1", "Q6"]),
            (AlertFilter(text="POOL AT p2"), ["Q2"]),
            (AlertFilter(text="res-i"), ["Q4", "Q3"]),  # an account
            (AlertFilter(text="i1"), ["Q5", "Q3"]),  # a subject and accounts
            (AlertFilter(text="q6"), ["Q6"]),  # the alert id
            (AlertFilter(text="  "), ["Q4", "Q5", "Q3", "Q2", "Q1", "Q6"]),  # blank: no filter
            (AlertFilter(text="nowhere"), []),
            (AlertFilter(detector="fund_pool", severity="medium", text="p3", subject="P3"), ["Q6"]),
        ],
    )  # fmt: skip
    def test_filters_select_exactly(self, queue, filters, expected):
        with open_store(queue) as store:
            assert ids(store.page(filters)) == expected
            counts = store.severity_counts(filters)
        assert list(counts) == ["low", "medium", "high", "critical"]
        by_id = {a.alert_id: a for a in QUEUE}
        assert counts == {
            s: sum(by_id[i].severity == s for i in expected)
            for s in ("low", "medium", "high", "critical")
        }

    @pytest.mark.parametrize(
        "filters",
        [
            AlertFilter(),
            AlertFilter(severity=("high", "critical")),
            AlertFilter(severity="high", detector="reserve_misuse"),
            AlertFilter(status="open", severity="low"),
            AlertFilter(text="pool at"),
            AlertFilter(subject="I1", since=datetime(2026, 3, 1, 2, 0, tzinfo=UTC)),
            AlertFilter(text="nowhere"),
            AlertFilter(status="closed"),
        ],
    )
    @pytest.mark.parametrize("order", ["-last_ts", "amount", "-severity", "subject"])
    def test_page_with_counts_is_the_page_and_its_counts(self, queue, filters, order):
        with open_store(queue) as store:
            store.close_alert("Q3", by="wang")
            pages, cursor = [], None
            while True:
                both = store.page_with_counts(filters, order=order, cursor=cursor, limit=2)
                page = store.page(filters, order=order, cursor=cursor, limit=2)
                assert both == (page, store.severity_counts(filters))
                assert list(both[1]) == ["low", "medium", "high", "critical"]
                pages.append(ids(page))
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert sum(len(p) for p in pages) == sum(store.severity_counts(filters).values())

    def test_page_with_counts_refuses_what_page_refuses(self, queue):
        with open_store(queue) as store:
            with pytest.raises(ValueError, match="limit"):
                store.page_with_counts(AlertFilter(), limit=0)
            with pytest.raises(BadCursor):
                store.page_with_counts(AlertFilter(), cursor="nonsense")
            other = store.page(AlertFilter(severity="high"), limit=1).next_cursor
            with pytest.raises(BadCursor):
                store.page_with_counts(AlertFilter(), cursor=other)

    def test_kept_counts_follow_every_write(self, queue):
        """The counts per status and severity the store keeps (for the
        unfiltered and per-status queue) equal a count of the rows after
        upserts, growth, reopening and every move."""

        def counted(store, status=None, detector=None):
            statuses = [status] if status is None or isinstance(status, str) else status
            return {
                s: sum(store.count(status=x, severity=s, detector=detector) for x in statuses)
                for s in ("low", "medium", "high", "critical")
            }

        def check(store):
            for status in (None, "open", "acknowledged", "closed", ("open", "acknowledged")):
                assert store.severity_counts(AlertFilter(status=status)) == counted(store, status)
                for detector in ("fund_pool", "reserve_misuse"):
                    kept = store.severity_counts(AlertFilter(status=status, detector=detector))
                    assert kept == counted(store, status, detector)
            assert store.severity_counts(AlertFilter(severity=("high", "low"))) == {
                **counted(store), "medium": 0, "critical": 0,
            }  # fmt: skip

        with open_store(queue) as store:
            assert store.severity_counts(AlertFilter()) == {
                "low": 1, "medium": 2, "high": 2, "critical": 1,
            }  # fmt: skip
            store.ack("Q1", by="wang")
            store.close_alert("Q2", by="wang")
            store.close_alert("Q4", by="wang")
            check(store)
            with open_sink(queue) as sink:
                sink.upsert([
                    replace(QUEUE[1], revision=2, severity="critical"),  # closed, grows: reopened
                    replace(QUEUE[0], revision=2, severity="medium"),  # acknowledged, grows
                    replace(QUEUE[2], revision=2, severity="low"),  # falls
                    QUEUE[2],  # late
                    make_alert("Q7", severity="critical"),  # new
                ])  # fmt: skip
                sink.flush()
                sink.upsert([make_alert("Q7", severity="critical")])  # the same again
            check(store)
            assert store.severity_counts(AlertFilter(status="open")) == {
                "low": 1, "medium": 2, "high": 0, "critical": 2,
            }  # fmt: skip
            assert store.severity_counts(AlertFilter(detector="reserve_misuse")) == {
                "low": 1, "medium": 0, "high": 0, "critical": 1,
            }  # fmt: skip
            store.reopen("Q4", by="li")
            store.ack("Q4", by="li")
            check(store)
            assert store.severity_counts(AlertFilter()) == {
                "low": 1, "medium": 3, "high": 0, "critical": 3,
            }  # fmt: skip

    def test_status_assignee_and_case_filters(self, queue):
        with open_store(queue) as store:
            store.ack("Q1", by="wang")
            store.close_alert("Q2", by="wang")
            store.assign("Q3", by="wang", assignee="li")
            store.assign("Q4", by="wang", assignee="zhao")
            case = store.create_case("Reserves", by="wang", alert_ids=["Q4", "Q3"])
            other = store.create_case("P1", by="wang", alert_ids=["Q1", "Q3"])
            assert ids(store.page(AlertFilter(status="open"))) == ["Q4", "Q5", "Q3", "Q6"]
            assert ids(store.page(AlertFilter(status=("acknowledged", "closed")))) == ["Q2", "Q1"]
            assert ids(store.page(AlertFilter(assignee="li"))) == ["Q3"]
            assert ids(store.page(AlertFilter(assignee=""))) == ["Q5", "Q2", "Q1", "Q6"]
            assert ids(store.page(AlertFilter(case_id=case.case_id))) == ["Q4", "Q3"]
            assert ids(store.page(AlertFilter(case_id=other.case_id, status="open"))) == ["Q3"]
            assert ids(store.page(AlertFilter(case_id=other.case_id + 100))) == []
            assert store.severity_counts(AlertFilter(status="open")) == {
                "low": 0, "medium": 2, "high": 1, "critical": 1,
            }  # fmt: skip
            row = store.row("Q3")
            assert row == AlertRow(QUEUE[2], "open", "li", (case.case_id, other.case_id))
            assert store.page(AlertFilter(case_id=case.case_id)).items[1] == row
            assert store.row("nope") is None

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"order": "-first_ts"}, "order must be one of -last_ts, last_ts, -severity"),
            ({"order": "last_ts; DROP TABLE alerts"}, "order must be one of"),
            ({"limit": 0}, "limit must be an integer from 1 to 500, got 0"),
            ({"limit": 501}, "limit must be an integer from 1 to 500, got 501"),
            ({"limit": True}, "limit must be an integer from 1 to 500, got True"),
            ({"filters": AlertFilter(severity="severe")}, "severity must be one of low, medium"),
            ({"filters": AlertFilter(status="done")}, "status must be one of open, acknowledged"),
            ({"filters": AlertFilter(detector=())}, "detector must be a string or a non-empty tuple"),
            ({"filters": AlertFilter(detector=("",))}, "detector must name something"),
            ({"filters": AlertFilter(since=datetime(2026, 3, 1))}, "since must be an aware datetime"),
            ({"filters": AlertFilter(until="2026-03-01")}, "until must be an aware datetime"),
            ({"filters": AlertFilter(case_id=0)}, "case_id must be a positive integer"),
            ({"filters": AlertFilter(case_id="1 OR 1=1")}, "case_id must be a positive integer"),
            ({"filters": AlertFilter(text="x" * 201)}, "text must be at most 200 characters"),
            ({"filters": AlertFilter(text="a\x00b")}, "text must be at most 200 characters"),
            ({"filters": {"detector": "fund_pool"}}, "filters must be an AlertFilter"),
        ],
    )  # fmt: skip
    def test_a_bad_order_limit_or_filter_is_a_value_error(self, queue, kwargs, message):
        with open_store(queue) as store:
            args = {"filters": AlertFilter(), **kwargs}
            with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")) as info:
                store.page(args.pop("filters"), **args)
            assert not isinstance(info.value, BadCursor)

    def test_a_bad_cursor_is_refused(self, queue):
        with open_store(queue) as store:
            cursor = store.page(AlertFilter(), limit=2).next_cursor
            body, _, sig = cursor.partition(".")
            flipped = body[:-1] + ("A" if body[-1] != "A" else "B")
            for bad, message in [
                ("", "malformed cursor"),
                ("not-a-cursor", "malformed cursor"),
                ("not.a-cursor", "cursor signature does not match"),
                ("!!!.???", "malformed cursor"),
                (f"{flipped}.{sig}", "cursor signature does not match"),
                (f"{body}.{sig[:-2]}", "cursor signature does not match"),
                ("x" * 5000, "malformed cursor"),
            ]:
                with pytest.raises(BadCursor, match=message):
                    store.page(AlertFilter(), cursor=bad, limit=2)
            # A good cursor for another filter or order is refused too.
            with pytest.raises(BadCursor, match="made for another filter or order"):
                store.page(AlertFilter(), order="last_ts", cursor=cursor, limit=2)
            with pytest.raises(BadCursor, match="made for another filter or order"):
                store.page(AlertFilter(severity="high"), cursor=cursor, limit=2)
            assert ids(store.page(AlertFilter(), cursor=cursor, limit=2)) == ["Q3", "Q2"]
            # The limit may change between pages: it is not part of the query.
            assert ids(store.page(AlertFilter(), cursor=cursor, limit=3)) == ["Q3", "Q2", "Q1"]
            assert isinstance(BadCursor("x"), ValueError)

    def test_a_cursor_of_another_store_is_refused(self, queue, tmp_path):
        other = tmp_path / "other.db"
        with open_sink(other) as sink:
            sink.upsert(QUEUE)
        with open_store(other) as store:
            foreign = store.page(AlertFilter(), limit=2).next_cursor
        with open_store(queue) as store, pytest.raises(BadCursor, match="not made by this store"):
            store.page(AlertFilter(), cursor=foreign, limit=2)

    # --- hostile text is data ---------------------------------------------------

    @pytest.fixture
    def hostile(self, db):
        plain = [
            make_alert("H-plain-abc", summary="abc xy 100 percent", subject_id="S-plain"),
            make_alert("H-plain-x1y", summary="x1y", subject_id="S-x1y"),
        ]
        nasty = [
            make_alert(f"H{i:02d}", summary=f"before {text} after", subject_id=text,
                       detector=text, accounts=(text,))
            for i, text in enumerate(HOSTILE)
        ]  # fmt: skip
        with open_sink(db) as sink:
            sink.upsert(plain + nasty)
        return db

    @pytest.mark.parametrize("text", HOSTILE)
    def test_hostile_filter_text_matches_only_literally(self, hostile, text):
        contains = sorted(f"H{i:02d}" for i, t in enumerate(HOSTILE) if text.lower() in t.lower())
        with open_store(hostile) as store:
            got = store.page(AlertFilter(text=text), order="detector", limit=500)
            assert sorted(ids(got)) == contains
            assert ids(store.page(AlertFilter(subject=text))) == [f"H{HOSTILE.index(text):02d}"]
            assert ids(store.page(AlertFilter(detector=text))) == [f"H{HOSTILE.index(text):02d}"]
            either = sorted(
                [
                    (text, f"H{HOSTILE.index(text):02d}"),
                    ("fund_pool", "H-plain-abc"),
                    ("fund_pool", "H-plain-x1y"),
                ]
            )
            got_either = store.page(AlertFilter(detector=(text, "fund_pool")), order="detector")
            assert ids(got_either) == [i for _, i in either]  # fmt: skip
            assert ids(store.page(AlertFilter(assignee=text))) == []
            assert store.list(subject=text) == store.list(detector=text) != []
            assert store.count(subject=text, detector=text) == 1
            assert store.get(text) is None and store.row(text) is None
            assert store.revisions(text) == store.events(text) == []
            assert store.count() == 2 + len(HOSTILE)  # nothing dropped or deleted

    def test_a_key_no_row_can_have_is_simply_absent(self, filled):
        with open_store(filled) as store:
            for key in ("A\x00", "\x00"):
                assert (store.get(key), store.status(key), store.row(key)) == (None, None, None)
                assert store.events(key) == store.revisions(key) == []
                assert (store.get_user(key), store.get_token(key)) == (None, None)
                with pytest.raises(StoreNotFound, match="^no alert "):
                    store.ack(key, by="wang")
                with pytest.raises(ValueError, match="alert_ids must be a sequence of alert ids"):
                    store.create_case("c", by="wang", alert_ids=[key])
                for bad in (AlertFilter(subject=key), AlertFilter(detector=key)):
                    with pytest.raises(ValueError):
                        store.page(bad)
                with pytest.raises(ValueError, match="comment must not contain NUL"):
                    store.comment("A", by="wang", text=key)
                with pytest.raises(ValueError, match="by and note must not contain NUL"):
                    store.ack("A", by="wang", note=key)
            assert store.events("A") == []

    def test_like_metacharacters_do_not_widen_a_match(self, hostile):
        with open_store(hostile) as store:
            # '_' would match the '1' of "x1y" and '%' any run, were they live.
            assert ids(store.page(AlertFilter(text="x_y"))) == ["H08"]
            assert ids(store.page(AlertFilter(text="a%b"))) == ["H07"]
            assert sorted(ids(store.page(AlertFilter(text="%"), limit=500))) == [
                "H03", "H06", "H07", "H11",
            ]  # fmt: skip
            assert sorted(ids(store.page(AlertFilter(text="\\"), limit=500))) == ["H05", "H06"]

    @pytest.mark.parametrize("text", HOSTILE)
    def test_hostile_free_text_round_trips(self, filled, text):
        with open_store(filled) as store:
            store.ack("A", by=text, note=text)
            store.comment("A", by="wang", text=text)
            store.assign("A", by="wang", assignee=text)
            case = store.create_case(text, by=text, alert_ids=["A"], owner=text, note=text)
            store.comment_case(case.case_id, by="wang", text=text)
            store.add_user(text, "viewer", HASH)
            assert [(e.actor, e.note) for e in store.events("A")] == [
                (text.strip(), text.strip() or None),
                ("wang", text.strip()),
                ("wang", text.strip()),
            ]
            assert store.get_case(case.case_id).title == text.strip()
            assert store.get_case(case.case_id).owner == text.strip()
            assert [e.note for e in store.case_events(case.case_id)] == [
                text.strip(), None, text.strip(),
            ]  # fmt: skip
            assert store.get_user(text.strip()).name == text.strip()
            assert ids(store.page(AlertFilter(assignee=text.strip()))) == ["A"]
            assert store.list_cases(owner=text.strip()).items == [store.get_case(case.case_id)]
            assert store.count() == 3

    # --- users and tokens -------------------------------------------------------

    def test_users(self, db):
        with open_sink(db):
            pass
        before = datetime.now(UTC)
        with open_store(db) as store:
            wang = store.add_user("wang", "analyst", HASH)
            store.add_user("admin", "admin", HASH + "x")
            assert wang.name == "wang" and wang.role == "analyst" and not wang.disabled
            assert before <= wang.created_at <= datetime.now(UTC)
            assert store.get_user("wang") == wang
            assert store.get_user("nobody") is None
            assert [u.name for u in store.list_users()] == ["admin", "wang"]
            store.set_role("wang", "viewer")
            store.set_password("wang", HASH + "2")
            got = store.get_user("wang")
            assert (got.role, got.password_hash, got.created_at) == (
                "viewer",
                HASH + "2",
                wang.created_at,
            )
            with pytest.raises(StoreConflict, match="^user 'wang' already exists in "):
                store.add_user("wang", "admin", HASH)
            for act in (
                lambda: store.set_role("nobody", "admin"),
                lambda: store.set_password("nobody", HASH),
                lambda: store.disable_user("nobody"),
            ):
                with pytest.raises(StoreNotFound, match="^no user 'nobody' in "):
                    act()
            with pytest.raises(ValueError, match="role must be one of viewer, analyst, admin"):
                store.add_user("li", "root", HASH)
            with pytest.raises(ValueError, match="role must be one of"):
                store.set_role("wang", "root")
            with pytest.raises(ValueError, match="password_hash must be a PHC-format hash"):
                store.add_user("li", "viewer", "hunter2")
            with pytest.raises(ValueError, match="name must be a non-empty name"):
                store.add_user(" ", "viewer", HASH)
            with pytest.raises(ValueError, match="name must be at most 200 printable"):
                store.add_user("li\nadmin", "viewer", HASH)
            assert [u.name for u in store.list_users()] == ["admin", "wang"]

    def test_tokens(self, db):
        with open_sink(db):
            pass
        expires = datetime(2026, 12, 4, 8, 30, 0, 123456, tzinfo=UTC)
        with open_store(db) as store:
            store.add_user("wang", "analyst", HASH)
            store.add_user("li", "viewer", HASH)
            store.add_token(T1, "wang", "session", expires, csrf_hash=CSRF)
            store.add_token(T2, "wang", "api", None)
            store.add_token("d" * 64, "li", "api", None)
            t1 = store.get_token(T1)
            assert (t1.token_hash, t1.user, t1.kind, t1.expires_at, t1.csrf_hash) == (
                T1, "wang", "session", expires, CSRF,
            )  # fmt: skip
            assert t1.created_at.tzinfo is not None
            t2 = store.get_token(T2)
            assert (t2.kind, t2.expires_at, t2.csrf_hash) == ("api", None, None)
            assert store.get_token("e" * 64) is None
            with pytest.raises(StoreConflict, match="a token with this hash already exists"):
                store.add_token(T1, "li", "api", None)
            with pytest.raises(StoreNotFound, match="^no user 'nobody' in "):
                store.add_token("f" * 64, "nobody", "api", None)
            for bad in ("A" * 64, "a" * 63, "secret-token", "a" * 64 + "'"):
                with pytest.raises(ValueError, match="token_hash must be a SHA-256 hex digest"):
                    store.add_token(bad, "wang", "api", None)
            with pytest.raises(ValueError, match="kind must be one of api, session"):
                store.add_token("f" * 64, "wang", "cookie", None)
            with pytest.raises(ValueError, match="expires_at must be an aware datetime"):
                store.add_token("f" * 64, "wang", "api", datetime(2026, 12, 4))
            with pytest.raises(ValueError, match="csrf_hash must be a SHA-256 hex digest"):
                store.add_token("f" * 64, "wang", "session", None, csrf_hash="plain")
            store.revoke_token(T1)
            store.revoke_token(T1)  # twice is fine
            assert store.get_token(T1) is None and store.get_token(T2) is not None
            store.revoke_tokens("wang")
            assert store.get_token(T2) is None and store.get_token("d" * 64) is not None
            store.add_token(T1, "li", "session", None)
            store.disable_user("li")
            assert store.get_user("li").disabled is True
            assert store.get_token(T1) is None and store.get_token("d" * 64) is None
            with pytest.raises(StoreConflict, match="^user 'li' is disabled$"):
                store.add_token(T2, "li", "api", None)

    # --- cases ------------------------------------------------------------------

    def test_cases(self, filled):
        with open_store(filled) as store:
            case = store.create_case(" Reserve misuse at PAY1 ", by="wang",
                                     alert_ids=["B", "A", "B"], note="opened from the queue")  # fmt: skip
            assert (case.title, case.status, case.owner, case.created_by, case.alert_ids) == (
                "Reserve misuse at PAY1", "open", None, "wang", ("A", "B"),
            )  # fmt: skip
            assert case.created_at == case.updated_at
            assert store.get_case(case.case_id) == case
            assert store.get_case(case.case_id + 1000) is None
            grown = store.add_to_case(case.case_id, ["C", "A"], by="li")
            assert grown.alert_ids == ("A", "B", "C")
            assert grown.updated_at >= case.updated_at
            shrunk = store.remove_from_case(case.case_id, "A", by="li")
            assert shrunk.alert_ids == ("B", "C")
            owned = store.assign_case(case.case_id, by="li", owner="zhao")
            assert owned.owner == "zhao"
            note = store.comment_case(case.case_id, by="zhao", text="bank statement asked for")
            assert isinstance(note, CaseEvent) and note.note == "bank statement asked for"
            closed = store.set_case_status(case.case_id, "closed", by="zhao", note="referred")
            assert closed.status == "closed"
            store.set_case_status(case.case_id, "open", by="li")
            trail = [
                (e.action, e.actor, e.note, e.alert_id) for e in store.case_events(case.case_id)
            ]
            assert store.case_events(case.case_id + 1000) == []
            assert store.row("B").case_ids == (case.case_id,)
            assert store.row("A").case_ids == ()
        assert trail == [
            ("created", "wang", "opened from the queue", None),
            ("added", "wang", None, "A"),
            ("added", "wang", None, "B"),
            ("added", "li", None, "C"),
            ("removed", "li", None, "A"),
            ("assigned", "li", "zhao", None),
            ("commented", "zhao", "bank statement asked for", None),
            ("closed", "zhao", "referred", None),
            ("reopened", "li", None, None),
        ]

    def test_case_refusals(self, filled):
        with open_store(filled) as store:
            case = store.create_case("c", by="wang", alert_ids=["A"], owner="li")
            missing = case.case_id + 1000
            with pytest.raises(StoreNotFound, match="^no alert 'nope', 'zz' in "):
                store.create_case("d", by="wang", alert_ids=["A", "zz", "nope"])
            with pytest.raises(StoreNotFound, match="^no alert 'nope' in "):
                store.add_to_case(case.case_id, ["B", "nope"], by="wang")
            assert store.get_case(case.case_id).alert_ids == ("A",)  # nothing added
            for act in (
                lambda: store.add_to_case(missing, ["A"], by="wang"),
                lambda: store.remove_from_case(missing, "A", by="wang"),
                lambda: store.set_case_status(missing, "closed", by="wang"),
                lambda: store.assign_case(missing, by="wang", owner="li"),
                lambda: store.comment_case(missing, by="wang", text="x"),
            ):
                with pytest.raises(StoreNotFound, match=f"^no case {missing} in "):
                    act()
            with pytest.raises(StoreNotFound, match=f"^alert 'B' is not in case {case.case_id}$"):
                store.remove_from_case(case.case_id, "B", by="wang")
            with pytest.raises(StoreConflict, match=f"^case {case.case_id} is already open$"):
                store.set_case_status(case.case_id, "open", by="wang")
            with pytest.raises(
                StoreConflict, match=f"^case {case.case_id} is already owned by 'li'$"
            ):
                store.assign_case(case.case_id, by="wang", owner="li")
            with pytest.raises(ValueError, match="status must be one of open, closed"):
                store.set_case_status(case.case_id, "done", by="wang")
            with pytest.raises(ValueError, match="title must be non-empty text"):
                store.create_case(" ", by="wang")
            with pytest.raises(ValueError, match="alert_ids must be a sequence of alert ids"):
                store.create_case("e", by="wang", alert_ids="A")
            with pytest.raises(ValueError, match="case_id must be a positive integer"):
                store.get_case("1")
            assert [c.title for c in store.list_cases().items] == ["c"]
            assert [e.action for e in store.case_events(case.case_id)] == ["created", "added"]

    def test_list_cases_pages_newest_first(self, filled):
        with open_store(filled) as store:
            made = [
                store.create_case(f"case {i}", by="wang", owner="li" if i % 2 else None)
                for i in range(5)
            ]
            store.set_case_status(made[1].case_id, "closed", by="wang")
            first = store.list_cases(limit=2)
            assert [c.title for c in first.items] == ["case 4", "case 3"]
            second = store.list_cases(limit=2, cursor=first.next_cursor)
            assert [c.title for c in second.items] == ["case 2", "case 1"]
            third = store.list_cases(limit=2, cursor=second.next_cursor)
            assert ([c.title for c in third.items], third.next_cursor) == (["case 0"], None)
            assert [c.title for c in store.list_cases(status="open").items] == [
                "case 4", "case 3", "case 2", "case 0",
            ]  # fmt: skip
            assert [c.title for c in store.list_cases(owner="li").items] == ["case 3", "case 1"]
            assert [c.title for c in store.list_cases(status="closed", owner="li").items] == [
                "case 1"
            ]
            with pytest.raises(BadCursor, match="made for another filter or order"):
                store.list_cases(status="open", cursor=first.next_cursor)
            with pytest.raises(BadCursor):
                store.list_cases(cursor="garbage")
            with pytest.raises(ValueError, match="status must be one of open, closed"):
                store.list_cases(status="pending")
            with pytest.raises(ValueError, match="limit must be an integer from 1 to 500"):
                store.list_cases(limit=0)

    # --- the webhook outbox -----------------------------------------------------

    def test_the_sink_writes_a_notice_per_new_alert_and_severity_rise(self, db):
        with open_sink(db) as sink:
            sink.upsert([A, C])
            sink.flush()
            sink.upsert([
                make_alert("A", revision=2, severity="critical"),  # rise
                make_alert("C", revision=2, severity="low"),  # grew, same severity
                make_alert("C", revision=1),  # late
                B,  # new
            ])  # fmt: skip
            sink.flush()
            sink.upsert(
                [
                    make_alert("A", revision=3, severity="medium"),  # a fall: nothing
                    make_alert("A", revision=3, severity="medium"),
                    make_alert("C", revision=3, severity="medium"),  # rise
                    make_alert("C", revision=4, severity="high"),
                ]
            )  # same batch: one notice
        now = datetime.now(UTC) + timedelta(seconds=1)
        with open_store(db) as store:
            due = store.due_deliveries(["hook"], now)
        assert [(d.notice.alert_id, d.notice.revision, d.notice.kind, d.notice.severity)
                for d in due] == [
            ("A", 1, "new", "high"),
            ("C", 1, "new", "low"),
            ("A", 2, "severity_rise", "critical"),
            ("B", 1, "new", "critical"),
            ("C", 4, "severity_rise", "high"),
        ]  # fmt: skip
        ids_ = [d.notice_id for d in due]
        assert ids_ == sorted(ids_) and len(set(ids_)) == 5
        # Each delivery carries the alert as of its notice's revision.
        assert [d.alert for d in due[:3]] == [
            A,
            C,
            make_alert("A", revision=2, severity="critical"),
        ]
        assert all(alert_json(d.alert) == alert_json(d.alert) for d in due)

    def test_deliveries_move_pending_delivered_dead_and_back(self, filled):
        t0 = datetime.now(UTC) + timedelta(seconds=1)
        with open_store(filled) as store:
            assert store.due_deliveries([], t0) == []
            first = store.due_deliveries(["ops", "audit"], t0)
            assert [(d.notice.alert_id, d.hook, d.state, d.attempts) for d in first] == [
                ("A", "audit", "pending", 0), ("A", "ops", "pending", 0),
                ("B", "audit", "pending", 0), ("B", "ops", "pending", 0),
                ("C", "audit", "pending", 0), ("C", "ops", "pending", 0),
            ]  # fmt: skip
            a, b, c = (d.notice_id for d in first[::2])
            assert first[0].next_at == first[0].notice.created_at
            assert (first[0].last_error, first[0].delivered_at) == (None, None)
            assert [d.alert for d in first[::2]] == [A, B, C]
            # Due again until something is marked: creating is idempotent.
            assert store.due_deliveries(["ops", "audit"], t0) == first
            assert len(store.due_deliveries(["ops", "audit"], t0, limit=2)) == 2

            delivered_at = t0 + timedelta(seconds=1)
            store.mark_delivered(a, "ops", delivered_at)
            retry_at = t0 + timedelta(minutes=5)
            store.mark_failed(b, "ops", "HTTP 503\nService Unavailable", retry_at, dead=False)
            store.mark_failed(c, "ops", "connection refused", None, dead=True)
            due = store.due_deliveries(["ops"], t0)
            assert due == []
            later = store.due_deliveries(["ops"], retry_at)
            assert [(d.notice_id, d.attempts, d.last_error, d.next_at) for d in later] == [
                (b, 1, "HTTP 503 Service Unavailable", retry_at),
            ]
            by_state = {
                state: [(d.notice_id, d.hook) for d in store.list_deliveries(state=state)]
                for state in ("pending", "delivered", "dead")
            }
            assert by_state == {
                "pending": [(c, "audit"), (b, "audit"), (b, "ops"), (a, "audit")],
                "delivered": [(a, "ops")],
                "dead": [(c, "ops")],
            }
            (done,) = store.list_deliveries(state="delivered")
            assert (done.attempts, done.delivered_at, done.next_at) == (1, delivered_at, None)
            assert [d.hook for d in store.list_deliveries(hook="ops")] == ["ops"] * 3
            assert len(store.list_deliveries(limit=2)) == 2

            with pytest.raises(
                StoreConflict, match=f"^delivery of notice {a} to 'ops' is delivered$"
            ):
                store.mark_failed(a, "ops", "late", None, dead=True)
            with pytest.raises(
                StoreConflict, match=f"^delivery of notice {b} to 'ops' is pending$"
            ):
                store.retry_delivery(b, "ops", by="admin")
            with pytest.raises(StoreNotFound, match=f"^no delivery of notice {a} to 'nope'$"):
                store.mark_delivered(a, "nope", t0)
            with pytest.raises(ValueError, match="next_at is needed unless the delivery is dead"):
                store.mark_failed(b, "ops", "x", None, dead=False)
            with pytest.raises(ValueError, match="state must be one of pending, delivered, dead"):
                store.list_deliveries(state="failed")
            with pytest.raises(ValueError, match="hooks must be a sequence of hook names"):
                store.due_deliveries("ops", t0)

            store.retry_delivery(c, "ops", by="admin")
            (again,) = [
                d for d in store.due_deliveries(["ops"], datetime.now(UTC)) if d.notice_id == c
            ]
            assert (again.state, again.attempts, again.last_error) == (
                "pending", 0, "connection refused",
            )  # fmt: skip

    def test_a_new_hook_gets_every_notice_and_an_old_one_only_new_ones(self, filled):
        now = datetime.now(UTC) + timedelta(seconds=1)
        with open_store(filled) as store:
            for d in store.due_deliveries(["ops"], now):
                store.mark_delivered(d.notice_id, "ops", now)
        with open_sink(filled) as sink:
            sink.upsert([make_alert("D")])
        later = datetime.now(UTC) + timedelta(seconds=1)
        with open_store(filled) as store:
            assert [d.notice.alert_id for d in store.due_deliveries(["ops"], later)] == ["D"]
            assert [d.notice.alert_id for d in store.due_deliveries(["new"], later)] == [
                "A", "B", "C", "D",
            ]  # fmt: skip

    def test_a_delivery_keeps_its_revision_body_as_the_alert_grows(self, filled):
        now = datetime.now(UTC) + timedelta(seconds=1)
        with open_store(filled) as store:
            (first,) = [d for d in store.due_deliveries(["ops"], now) if d.notice.alert_id == "A"]
            store.mark_failed(first.notice_id, "ops", "timeout", now, dead=False)
        with open_sink(filled) as sink:
            sink.upsert([make_alert("A", revision=2, amount="999999.00")])
        with open_store(filled) as store:
            (again,) = [
                d for d in store.due_deliveries(["ops"], now) if d.notice_id == first.notice_id
            ]
        assert again.alert == A
        assert alert_json(again.alert) == alert_json(first.alert) == alert_json(A)

    # --- concurrency ------------------------------------------------------------

    def test_one_store_shared_by_threads_takes_turns(self, queue):
        errors: list[BaseException] = []
        with open_store(queue) as store:

            def work(k: int) -> None:
                try:
                    for r in range(5):
                        assert ids(store.page(AlertFilter(), limit=3)) == ["Q4", "Q5", "Q3"]
                        store.comment("Q1", by=f"user{k}", text=f"note {k}.{r}")
                        assert store.row("Q1").status == "open"
                except BaseException as exc:  # reported below
                    errors.append(exc)

            threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            notes = sorted(e.note for e in store.events("Q1"))
        assert errors == []
        assert notes == sorted(f"note {k}.{r}" for k in range(6) for r in range(5))

    def test_concurrent_actions_on_one_alert_record_one_move_each(self, filled):
        """Several people closing one alert at once: one wins, the others
        get StoreConflict, and the trail holds one close."""
        results: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(4)

        def close(i: int) -> None:
            with open_store(filled) as store:
                barrier.wait()
                try:
                    store.close_alert("A", by=f"user{i}")
                    outcome = "closed"
                except StoreConflict:
                    outcome = "conflict"
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=close, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["closed", "conflict", "conflict", "conflict"]
        with open_store(filled) as store:
            assert [e.action for e in store.events("A")] == ["closed"]


def walk_from(store, filters: AlertFilter, order: str, limit: int, cursor: str) -> list[list[str]]:
    pages = []
    while cursor is not None:
        page = store.page(filters, order=order, cursor=cursor, limit=limit)
        pages.append(ids(page))
        cursor = page.next_cursor
    return pages
