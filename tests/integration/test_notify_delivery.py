"""Webhook delivery (fundflow/notify.py) from the real stores' outbox to a real
HTTP receiver (webhook_receiver.py: ``http.server`` on a free loopback port).

The receiver fails the first tries (500, then no answer until the client
times out, then a refused connection while it is down), then accepts:
nothing is lost, every body sent under one delivery id is the same bytes,
the signatures check, a delivery is dead after ``max_attempts`` and a retry
from dead delivers it, and a deliverer killed mid-way and started again
loses nothing.

Every test runs against SQLite, and against a real PostgreSQL (conftest.py:
``postgres_server``, a fresh database per test; skipped without the
binaries on a laptop, a failure in CI).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from webhook_receiver import Receiver

from fundflow.notify import Hook, deliver_due, post, run, verify
from fundflow.schemas.records import Alert
from fundflow.store import alert_json, open_sink, open_store

KEY = b"test-webhook-key-0123456789"


def make_alert(alert_id: str, severity: str = "medium", revision: int = 1) -> Alert:
    return Alert(
        alert_id=alert_id,
        detector="fund_pool",
        severity=severity,  # type: ignore[arg-type]
        subject_id="P1",
        accounts=("ACC-1", "ACC-2"),
        first_ts="2026-03-01T10:00:00+08:00",
        last_ts=f"2026-03-01T12:{revision:02d}:00+08:00",
        amount=f"{150000 * revision}.00",
        summary=f"Investor money pooled ({alert_id}, revision {revision}).",
        evidence={"txn_ids": ["T1", "T2"], "注": "中文", "pooled_fen": 15000000 * revision},
        detector_version="1.0",
        revision=revision,
    )


# --- the stores -------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "fundflow.db")
        return
    if os.environ.get("CI", "").strip().lower() in ("", "0", "false", "no"):
        psycopg = pytest.importorskip("psycopg", reason="pip install 'psycopg[binary]>=3.1'")
    else:
        import psycopg
    server = request.getfixturevalue("postgres_server")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield server.url(name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def store_alerts(db: str, *alerts: Alert) -> None:
    with open_sink(db) as sink:
        sink.upsert(list(alerts))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(hang_seconds=3.0)
    yield r
    r.close()


class Clock:
    """The deliverer's clock, moved by the test (from the wall clock's now,
    since the store dates notices by it)."""

    def __init__(self) -> None:
        self.t = datetime.now(UTC) + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


def hook_for(receiver: Receiver, **kw: object) -> Hook:
    settings: dict[str, object] = {
        "timeout_seconds": 1.0,
        "max_attempts": 10,
        "first_retry_seconds": 1.0,
        "max_retry_seconds": 4.0,
    }
    settings.update(kw)
    return Hook(name="cases", url=receiver.url, key=KEY, **settings)  # type: ignore[arg-type]


def one_pass(store, hook: Hook, clock: Clock):  # type: ignore[no-untyped-def]
    return asyncio.run(deliver_due(store, [hook], clock(), clock=clock))


def deliveries(store) -> dict[int, object]:  # type: ignore[no-untyped-def]
    return {d.notice_id: d for d in store.list_deliveries(limit=1000)}


def check_received(  # type: ignore[no-untyped-def]
    receiver: Receiver, store, hook: Hook, exactly_once: bool = True
) -> None:
    """Every request is signed, says its event, and carries the alert as the
    store kept it at the noticed revision; each delivery id's bodies are the
    same bytes; each delivered notice got exactly one 2xx answer (at least
    one when the deliverer may have died between an answer and its record);
    a notice the hook does not take was never sent."""
    by_id: dict[str, list[bytes]] = {}
    accepted: dict[str, int] = {}
    for r in receiver.requests:
        assert verify(r.body, r.headers["X-Fundflow-Signature"], KEY), r.headers
        assert r.headers["Content-Type"] == "application/json"
        body = json.loads(r.body)
        assert str(body["notice_id"]) == r.headers["X-Fundflow-Delivery"]
        assert body["event"] == r.headers["X-Fundflow-Event"]
        delivery_id = r.headers["X-Fundflow-Delivery"]
        by_id.setdefault(delivery_id, []).append(r.body)
        if r.answer == 200:
            accepted[delivery_id] = accepted.get(delivery_id, 0) + 1
    for delivery_id, bodies in by_id.items():
        assert len(set(bodies)) == 1, f"delivery {delivery_id} sent different bodies"
    for d in store.list_deliveries(limit=1000):
        if d.state != "delivered" or d.hook != hook.name:
            continue
        if not hook.wants(d.notice.kind, d.notice.severity):
            assert str(d.notice_id) not in by_id
            continue
        times = accepted.get(str(d.notice_id), 0)
        assert times == 1 if exactly_once else times >= 1, f"notice {d.notice_id}: {times} 2xx"
        (body,) = set(by_id[str(d.notice_id)])
        revision = store.revisions(d.notice.alert_id)[d.notice.revision - 1]
        assert revision.revision == d.notice.revision
        assert body == (
            b'{"alert":' + alert_json(revision)
            + f',"event":"{d.notice.kind}","notice_id":{d.notice_id}}}'.encode()
        )  # fmt: skip


# --- retries, then delivered --------------------------------------------------------


def test_a_flaky_receiver_gets_every_notice_once_with_the_same_bytes(db, receiver) -> None:
    store_alerts(db, make_alert("A"), make_alert("B", severity="low"))
    store_alerts(db, make_alert("A", severity="critical", revision=2))  # a severity rise
    clock, hook = Clock(), hook_for(receiver)
    with open_store(db) as store:
        assert store.list_deliveries() == []  # made when the deliverer first asks
        receiver.script = [500]
        first = one_pass(store, hook, clock)
        ids = sorted(deliveries(store))
        assert len(ids) == 3
        kinds = [(d.notice.alert_id, d.notice.kind, d.notice.revision, d.notice.severity)
                 for d in (deliveries(store)[i] for i in ids)]  # fmt: skip
        assert kinds == [("A", "new", 1, "medium"), ("B", "new", 1, "low"),
                         ("A", "severity_rise", 2, "critical")]  # fmt: skip
        # The first delivery fails; the rest of the hook's batch waits. A
        # failed delivery goes behind the others (due oldest first).
        assert (first.failed, first.delivered) == (1, 0)
        d = deliveries(store)[ids[0]]
        assert (d.state, d.attempts, d.last_error) == ("pending", 1, "HTTP 500")
        assert d.next_at == clock() + hook.retry_delay(ids[0], 1)

        # the second: no answer within the timeout
        receiver.script = ["hang"]
        assert one_pass(store, hook, clock).failed == 1
        d = deliveries(store)[ids[1]]
        assert (d.attempts, d.last_error) == (1, "timed out after 1 s")
        assert d.next_at == clock() + hook.retry_delay(ids[1], 1)

        # the third: down, the connection is refused
        receiver.down()
        assert one_pass(store, hook, clock).failed == 1
        d = deliveries(store)[ids[2]]
        assert (d.attempts, d.last_error) == (1, "connection refused")
        assert one_pass(store, hook, clock).attempts == 0  # nothing due until the backoff ends

        # up again: everything is delivered, once the backoffs have passed
        receiver.up()
        receiver.script = [200]
        clock.advance(1.0)
        total = asyncio.run(run(store, [hook], asyncio.Event(), clock=clock, once=True))
        assert (total.delivered, total.failed, total.dead) == (3, 0, 0)
        final = deliveries(store)
        assert [(final[i].state, final[i].attempts) for i in ids] == [("delivered", 2)] * 3
        assert all(final[i].delivered_at == clock() for i in ids)
        answers = {
            i: [r.answer for r in receiver.requests if r.headers["X-Fundflow-Delivery"] == str(i)]
            for i in ids
        }
        # the refused attempt never reached the receiver
        assert answers == {ids[0]: [500, 200], ids[1]: ["hang", 200], ids[2]: [200]}
        check_received(receiver, store, hook)
        # nothing more is due, and nothing is sent again
        before = len(receiver.requests)
        clock.advance(3600)
        assert one_pass(store, hook, clock).attempts == 0
        assert len(receiver.requests) == before


def test_dead_after_max_attempts_then_a_retry_delivers(db, receiver) -> None:
    store_alerts(db, make_alert("A"))
    clock, hook = Clock(), hook_for(receiver, max_attempts=3)
    receiver.script = [503]
    with open_store(db) as store:
        for _ in range(3):
            one_pass(store, hook, clock)
            clock.advance(5.0)
        (d,) = store.list_deliveries(state="dead")
        assert (d.attempts, d.last_error, d.next_at) == (3, "HTTP 503", None)
        assert one_pass(store, hook, clock).attempts == 0  # dead stays dead
        assert len(receiver.requests) == 3

        store.retry_delivery(d.notice_id, "cases", by="admin")
        receiver.script = [200]
        clock.t = max(clock.t, datetime.now(UTC) + timedelta(seconds=1))
        assert one_pass(store, hook, clock).delivered == 1
        (d,) = store.list_deliveries()
        assert (d.state, d.attempts) == ("delivered", 1)  # counted afresh after the retry
        assert len(receiver.requests) == 4
        check_received(receiver, store, hook)


def test_a_notice_the_hook_does_not_take_leaves_without_a_request(db, receiver) -> None:
    store_alerts(db, make_alert("A", severity="low"), make_alert("B", severity="high"))
    store_alerts(db, make_alert("A", severity="medium", revision=2))  # a rise below the floor
    store_alerts(db, make_alert("A", severity="critical", revision=3))
    clock = Clock()
    hook = hook_for(receiver, events=("severity_rise",), min_severity="high")
    with open_store(db) as store:
        total = asyncio.run(run(store, [hook], asyncio.Event(), clock=clock, once=True))
        assert (total.delivered, total.skipped) == (1, 3)
        assert {d.state for d in store.list_deliveries()} == {"delivered"}
        ((event, alert_id, severity),) = [
            (r.headers["X-Fundflow-Event"], json.loads(r.body)["alert"]["alert_id"],
             json.loads(r.body)["alert"]["severity"]) for r in receiver.requests]  # fmt: skip
        assert (event, alert_id, severity) == ("severity_rise", "A", "critical")
        check_received(receiver, store, hook)


def test_two_hooks_each_get_every_notice(db, receiver) -> None:
    other = Receiver(script=[200])
    try:
        store_alerts(db, make_alert("A"), make_alert("B"))
        clock = Clock()
        hooks = [hook_for(receiver), Hook(name="chat", url=other.url, key=b"another-key-0123456")]
        with open_store(db) as store:
            asyncio.run(run(store, hooks, asyncio.Event(), clock=clock, once=True))
            assert sorted((d.hook, d.state) for d in store.list_deliveries()) == [
                ("cases", "delivered"), ("cases", "delivered"),
                ("chat", "delivered"), ("chat", "delivered")]  # fmt: skip
        assert len(receiver.requests) == len(other.requests) == 2
        assert [r.body for r in receiver.requests] == [r.body for r in other.requests]
        assert all(verify(r.body, r.headers["X-Fundflow-Signature"], b"another-key-0123456")
                   for r in other.requests)  # fmt: skip
    finally:
        other.close()


# --- the loop as a background task, and a restart -------------------------------------


def test_the_background_task_delivers_what_arrives_until_stopped(db, receiver) -> None:
    store_alerts(db, make_alert("A"))
    hook = hook_for(receiver)

    async def scenario() -> int:
        with open_store(db) as store:
            stop = asyncio.Event()
            task = asyncio.create_task(run(store, [hook], stop, poll_seconds=0.05))
            await _until(lambda: len(receiver.requests) == 1)
            await asyncio.to_thread(store_alerts, db, make_alert("B"))
            await _until(lambda: len(receiver.requests) == 2)
            stop.set()
            total = await asyncio.wait_for(task, timeout=10)
            check_received(receiver, store, hook)
            return total.delivered

    assert asyncio.run(scenario()) == 2


async def _until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_deliverer_killed_midway_loses_nothing(db, receiver, tmp_path: Path) -> None:
    """``fundflow notify`` killed (SIGKILL) while it delivers 40 notices to a
    slow receiver, then run again with --once: every notice is delivered,
    any sent twice with the same bytes."""
    store_alerts(db, *(make_alert(f"A{i:02d}") for i in range(40)))
    (tmp_path / "hook.key").write_bytes(KEY)
    config = tmp_path / "fundflow.toml"
    config.write_text(
        f'[[webhooks]]\nname = "cases"\nurl = "{receiver.url}"\nsecret_file = "hook.key"\n'
    )
    receiver.script = ["slow"]
    cmd = [sys.executable, "-m", "fundflow.cli", "notify", "--db", db, "--config", str(config)]
    proc = subprocess.Popen([*cmd, "--poll-seconds", "0.1"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(receiver.requests) < 10:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the deliverer sent nothing"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    with open_store(db) as store:
        midway = [d.state for d in store.list_deliveries(limit=100)]
        assert midway.count("pending") > 0 and len(midway) == 40  # killed with work left
    receiver.script = [200]
    again = subprocess.run([*cmd, "--once"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stderr.strip().splitlines()[-1].startswith("delivered ")
    with open_store(db) as store:
        assert [d.state for d in store.list_deliveries(limit=100)] == ["delivered"] * 40
        sent = {r.headers["X-Fundflow-Delivery"] for r in receiver.requests}
        assert sent == {str(d.notice_id) for d in store.list_deliveries(limit=100)}
        check_received(receiver, store, Hook(name="cases", url=receiver.url, key=KEY), False)


# --- one request --------------------------------------------------------------------


def test_a_redirect_is_a_failure_not_followed(receiver) -> None:
    receiver.script = [302]
    assert post(receiver.url, b"{}", {}, 5.0) == "HTTP 302 (redirects are not followed)"
    assert len(receiver.requests) == 1


def test_any_2xx_is_delivered_and_4xx_is_not(receiver) -> None:
    receiver.script = [204, 202, 404]
    assert post(receiver.url, b"{}", {}, 5.0) is None
    assert post(receiver.url, b"{}", {}, 5.0) is None
    assert post(receiver.url, b"{}", {}, 5.0) == "HTTP 404"
