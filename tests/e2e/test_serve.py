"""``fundflow serve`` as a real process over the store ``fundflow demo``
fills: the API shows the demo's alerts, and a real browser (Debian's
chromium driven by Playwright) works them: sign in, filter the queue, open
an alert and see its graph, assign, comment, close, group two alerts into a
case; a viewer sees no action buttons and the API refuses them.

Screenshots go to ``test-artifacts/serve/`` at the repository root (kept by
CI, ignored by git). Without chromium (``apt-get install chromium``) the
browser test is skipped on a laptop and fails when ``CI`` is set.
"""

from __future__ import annotations

import json
import os
import queue
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "serve"
FUNDFLOW = str(Path(sys.executable).parent / "fundflow")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PASSWORD = "correct horse battery"
READY = "fundflow serve ready: "


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder after ``fundflow demo``, with three users (one per role)."""
    work = tmp_path_factory.mktemp("serve-demo")
    run = subprocess.run([FUNDFLOW, "demo"], cwd=work, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    db = str(work / "fundflow-demo" / "fundflow.db")
    for name, role in (("root", "admin"), ("ana", "analyst"), ("vic", "viewer")):
        added = subprocess.run(
            [FUNDFLOW, "users", "add", name, "--role", role, "--password-stdin", "--db", db],
            input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
    return work / "fundflow-demo"


@contextmanager
def serving(*args: str) -> Iterator[str]:
    """``fundflow serve --port 0 ARGS``; yields its URL from the ready line."""
    proc = subprocess.Popen(
        [FUNDFLOW, "serve", "--port", "0", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    stderr = proc.stderr
    threading.Thread(target=lambda: [lines.put(x) for x in stderr], daemon=True).start()
    try:
        while True:
            try:
                line = lines.get(timeout=60)
            except queue.Empty:
                pytest.fail("fundflow serve logged no ready line within 60 s")
            if line.startswith(READY):
                yield line[len(READY) :].split()[0].rstrip("/")
                break
            assert proc.poll() is None, f"fundflow serve exited: {line}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_after_the_demo_shows_its_alerts(demo: Path) -> None:
    lines = (demo / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    expected = sorted({json.loads(line)["alert_id"] for line in lines})  # every revision is a line
    assert len(expected) == 21
    with serving("--db", str(demo / "fundflow.db"), "--anonymous-loopback-viewer") as url:
        assert httpx.get(f"{url}/api/v1/me").json()["role"] == "viewer"
        body = httpx.get(f"{url}/api/v1/alerts?limit=500").json()
        assert sorted(r["alert"]["alert_id"] for r in body["items"]) == expected
        assert sum(body["counts"].values()) == 21
        assert body["counts"] == {"low": 3, "medium": 11, "high": 6, "critical": 1}
        page = httpx.get(f"{url}/")
        assert page.status_code == 200 and "main.js" in page.text
        # Loopback reading is a viewer's only: acting is refused.
        r = httpx.post(f"{url}/api/v1/alerts/{expected[0]}/ack", json={})
        assert r.status_code == 403


def test_serve_without_the_flag_serves_nothing_unsigned(demo: Path) -> None:
    with serving("--db", str(demo / "fundflow.db")) as url:
        assert httpx.get(f"{url}/api/v1/alerts").status_code == 401
        assert httpx.get(f"{url}/api/v1/alerts/x/graph").status_code == 401


def test_serve_over_tls_sets_a_secure_cookie(demo: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    with serving("--db", str(demo / "fundflow.db"), "--cert", str(cert), "--key", str(key)) as url:
        assert url.startswith("https://127.0.0.1:")
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert))) as c:
            r = c.post(f"{url}/api/v1/session", json={"name": "vic", "password": PASSWORD})
            assert r.status_code == 200
            cookie = r.headers["set-cookie"].lower()
            assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
            assert c.get(f"{url}/api/v1/me").json()["name"] == "vic"


def test_serve_delivers_the_webhooks_of_its_config(demo: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from webhook_receiver import Receiver

    from fundflow.notify import SIGNATURE_HEADER, verify

    key = b"a key of at least sixteen bytes"
    (tmp_path / "hook.key").write_bytes(key)
    receiver = Receiver([200])
    config = tmp_path / "fundflow.toml"
    config.write_text(
        f'[[webhooks]]\nname = "ops"\nurl = "{receiver.url}"\nsecret_file = "hook.key"\n'
    )
    db = str(demo / "fundflow.db")
    made = subprocess.run([FUNDFLOW, "users", "token", "root", "--db", db],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    token = made.stdout.strip()
    try:
        with serving("--db", db, "--config", str(config)) as url:
            deadline = time.monotonic() + 60
            while len(receiver.requests) < 21 and time.monotonic() < deadline:
                time.sleep(0.2)
            auth = {"Authorization": f"Bearer {token}"}
            body = httpx.get(f"{url}/api/v1/webhooks/deliveries?state=delivered&limit=500",
                             headers=auth).json()  # fmt: skip
    finally:
        receiver.down()
    assert len(receiver.requests) == 21
    assert all(verify(r.body, r.headers[SIGNATURE_HEADER], key) for r in receiver.requests)
    assert body["hooks"] == ["ops"]
    assert len(body["items"]) == 21 and {d["state"] for d in body["items"]} == {"delivered"}


def _chromium():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} missing: apt-get install -y chromium"
        if _ci():
            pytest.fail(message + " (CI is set: the browser test must run)", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    return sync_playwright


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _sign_in(page, url: str, name: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{url}/")
    page.fill("#login-name", name)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("table.queue")


CRITICAL = "23ff50343be7290d38b12ffc"  # I004's reserve misuse (README's graph example)


@pytest.mark.slow
def test_a_supervisor_works_alerts_in_a_real_browser(demo: Path) -> None:
    sync_playwright = _chromium()
    from playwright.sync_api import expect

    db = str(demo / "fundflow.db")
    errors: list[str] = []
    with serving("--db", db, "--data", str(demo / "world.jsonl")) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            # Refused requests (401 before sign-in) are logged as failed loads;
            # the statuses are checked where they matter. Any other error fails.
            page.on("console", lambda m: errors.append(m.text) if m.type == "error"
                    and not m.text.startswith("Failed to load resource") else None)  # fmt: skip
            page.on("pageerror", lambda e: errors.append(str(e)))
            _sign_in(page, url, "ana")
            assert page.inner_text("#count-total").endswith("21")
            assert page.locator("table.queue tbody tr").count() == 21
            _shot(page, "01-queue")

            # Filter: critical only.
            page.select_option("#f-severity", "critical")
            page.click("#apply-filters")
            expect(page.locator("table.queue tbody tr")).to_have_count(1)
            row = page.locator("table.queue tbody tr")
            assert row.get_attribute("data-alert-id") == CRITICAL
            _shot(page, "02-filtered")

            # Open it: summary, thresholds, its transactions, the graph.
            row.locator("a.alert-link").click()
            page.wait_for_selector("#alert-summary")
            assert "11143302.66" in page.inner_text("#alert-summary")
            assert "CL000024995" in page.inner_text("#txns")
            page.wait_for_selector("#graph svg g.node", timeout=90_000)
            nodes = page.locator("#graph svg g.node").count()
            assert nodes >= 3
            assert page.locator("#graph svg g.node.in-alert").count() >= 2
            assert page.locator("#graph svg line.edge.in-alert").count() >= 1
            _shot(page, "03-alert-graph")

            # Assign, comment, close.
            page.fill("#assign-input", "ana")
            page.click("#do-assign")
            expect(page.locator("#alert-assignee")).to_have_text("ana")
            page.fill("#comment-text", "Reserve moved to the operating account: <b>not</b> allowed")
            page.click("#do-comment")
            page.wait_for_selector("#audit tr[data-action='commented']")
            page.click("#do-close")
            expect(page.locator("#alert-status")).to_have_text("closed")
            audit = page.locator("#audit tbody tr")
            assert [audit.nth(i).get_attribute("data-action") for i in range(audit.count())] == [
                "assigned", "commented", "closed",
            ]  # fmt: skip
            assert set(page.locator("#audit td.actor").all_inner_texts()) == {"ana"}
            # The comment is shown as text, not markup.
            assert "<b>not</b>" in page.inner_text("#audit")
            assert page.locator("#audit b").count() == 0
            _shot(page, "04-closed")

            # Two alerts into a case.
            page.goto(f"{url}/#/queue?detector=fund_pool")
            expect(page.locator("table.queue tbody tr")).to_have_count(4)
            picks = page.locator("table.queue input.pick")
            picks.nth(0).check()
            picks.nth(1).check()
            chosen = [
                page.locator("table.queue tbody tr").nth(i).get_attribute("data-alert-id")
                for i in (0, 1)
            ]
            page.fill("#case-title", "Fund pools to examine together")
            page.click("#group-case")
            page.wait_for_selector("table.case-alerts")
            got = page.locator("table.case-alerts tbody tr")
            assert sorted(
                got.nth(i).get_attribute("data-alert-id") for i in range(got.count())
            ) == sorted(chosen)
            assert page.inner_text("#case-title-text") == "Fund pools to examine together"
            _shot(page, "05-case")

            # Chinese labels and large type.
            page.click("#lang")
            page.wait_for_selector("text=预警")
            base = page.evaluate("() => getComputedStyle(document.documentElement).fontSize")
            page.click("#large")
            large = page.evaluate("() => getComputedStyle(document.documentElement).fontSize")
            assert float(large.removesuffix("px")) > float(base.removesuffix("px"))
            _shot(page, "06-case-zh-large")

            # A viewer: no action buttons, and the API refuses.
            viewer = browser.new_context().new_page()
            _sign_in(viewer, url, "vic")
            assert viewer.locator("#group-case").count() == 0
            assert viewer.locator("input.pick").count() == 0
            viewer.goto(f"{url}/#/alert/{CRITICAL}")
            viewer.wait_for_selector("#read-only")
            # Grafana's link to the alert, followed before signing in: the
            # sign-in form, then the alert's page.
            linked = browser.new_context().new_page()
            linked.goto(f"{url}/alerts/{CRITICAL}")
            linked.fill("#login-name", "vic")
            linked.fill("#login-password", PASSWORD)
            linked.click("#login-submit")
            linked.wait_for_selector("#alert-summary")
            assert "11143302.66" in linked.inner_text("#alert-summary")
            assert linked.url == f"{url}/#/alert/{CRITICAL}"
            for button in ("#do-ack", "#do-close", "#do-reopen", "#do-assign", "#do-comment"):
                assert viewer.locator(button).count() == 0
            status = viewer.evaluate(
                """async (id) => {
                    const me = await (await fetch('/api/v1/me')).json();
                    const r = await fetch(`/api/v1/alerts/${id}/reopen`, {method: 'POST',
                        headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf_token},
                        body: '{}'});
                    return [r.status, (await r.json()).error];
                }""",
                CRITICAL,
            )
            assert status == [403, "forbidden"]
            _shot(viewer, "07-viewer")

            # An admin retries a dead webhook delivery.
            from datetime import UTC, datetime

            from fundflow.store import open_store

            with open_store(db) as st:
                due = st.due_deliveries(["pager"], datetime.now(UTC), limit=1)
                st.mark_failed(
                    due[0].notice_id, "pager", "HTTP 503 from the pager", None, dead=True
                )
            admin = browser.new_context().new_page()
            _sign_in(admin, url, "root")
            admin.click("#nav-deliveries")
            admin.goto(f"{url}/#/deliveries?state=dead")
            dead = admin.locator("table.deliveries tbody tr")
            expect(dead).to_have_count(1)
            assert "HTTP 503 from the pager" in dead.inner_text()
            _shot(admin, "08-deliveries")
            dead.locator("button.retry").click()
            expect(admin.locator("table.deliveries tbody tr")).to_have_count(0)
            with open_store(db) as st:
                (pending,) = [
                    d for d in st.list_deliveries(hook="pager") if d.notice_id == due[0].notice_id
                ]
            assert pending.state == "pending"
        finally:
            browser.close()
    assert errors == []
