"""Benchmark of the triage queue over HTTP (a script, not a test).

    .venv/bin/python tests/bench_serve.py [--alerts 20000] [--clients 20] [--seconds 15]
        [--db URL [--existing]] [--mix all|queue]

Fills a store (a temporary SQLite file, or an empty PostgreSQL database
given with --db) with ``--alerts`` synthetic alerts over 10 detectors, 4
severities and 500 subjects, adds a user and an API token, starts
``fundflow serve`` as a process on a free port, and runs ``--clients``
concurrent clients (one thread and one keep-alive connection each) for
``--seconds``, in closed loop (each sends its next request when the last
answer is read, no think time). Each client loops over the queue's usual
requests: the first page of the default order, a severity filter, a text
search, a subject, a sort by amount, and the next two pages of one of them
by cursor, then the page of one alert listed (``--mix queue``: only the pages of the indexed
filters, and the alerts' pages). ``--existing`` uses a store already filled
(a million alerts loaded by ``tests/bench_triage.py --keep --only-load``).
Prints requests per second, the p50 / p95 / p99 / max latency of each
kind (``--skip-first``: without each client's first request, which opens
its connection), and the CPU time the server's processes used per request (user +
system, from the operating system's accounting of the finished server):
the figure that moves least with the machine's other load; and the
clients' own (this process's) CPU time per request. The clients run on the
same machine as the server, so they use ``http.client`` (standard library)
and decode of a page only the ids and cursor they follow (until 2026-12-04
they used httpx and parsed every body whole: 1.6-1.9 ms of CPU a request
taken from the cores the server and the database share).
"""

from __future__ import annotations

import argparse
import http.client
import os
import queue
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

FUNDFLOW = str(Path(sys.executable).parent / "fundflow")
DETECTORS = (
    "fund_pool", "reserve_misuse", "maturity_mismatch", "self_financing", "guaranteed_return",
    "excessive_return", "cross_bank_clearing", "unlicensed_business", "down_payment_loan",
    "private_product_split",
)  # fmt: skip
SEVERITIES = ("low", "medium", "high", "critical")


def fill(db: str, n: int) -> None:
    from fundflow.schemas.records import Alert
    from fundflow.serve.auth import hash_password
    from fundflow.store import open_sink, open_store

    rng = random.Random(7)
    batch: list[Alert] = []
    with open_sink(db, batch_size=2000) as sink:
        for i in range(n):
            day, sec = rng.randrange(1, 28), rng.randrange(86_400)
            subject = f"P{rng.randrange(500):03d}"
            batch.append(Alert(
                alert_id=f"bench{i:08d}", detector=rng.choice(DETECTORS),
                severity=rng.choice(SEVERITIES), subject_id=subject,
                accounts=(f"ACC-{subject}-{rng.randrange(40)}",),
                first_ts=f"2026-03-{day:02d}T00:00:00+08:00",
                last_ts=f"2026-03-{day:02d}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}+08:00",
                amount=f"{rng.randrange(1, 10**9)}.{rng.randrange(100):02d}",
                summary=f"Platform {subject} moved money through {rng.randrange(2, 60)} accounts",
                evidence={"thresholds": {"window_days": 7}}, detector_version="1.0", revision=1,
            ))  # fmt: skip
            if len(batch) == 2000:
                sink.upsert(batch)
                batch = []
        sink.upsert(batch)
    with open_store(db) as st:
        st.add_user("bench", "viewer", hash_password("bench password"))


def token(db: str) -> str:
    out = subprocess.run([FUNDFLOW, "users", "token", "bench", "--db", db],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.strip()


REQUESTS = {
    "first page": "/api/v1/alerts",
    "severity": "/api/v1/alerts?severity=high,critical",
    "sev+detector": "/api/v1/alerts?severity=high&detector=fund_pool",
    "status+sev": "/api/v1/alerts?status=open&severity=critical",
    "text": "/api/v1/alerts?q=P123",
    "subject": "/api/v1/alerts?subject=P042",
    "by amount": "/api/v1/alerts?order=-amount",
}
#: ``--mix queue``: the queue's pages by its indexed filters and an alert's page.
QUEUE = ("first page", "severity", "sev+detector", "status+sev")


class _Listed(msgspec.Struct):
    alert_id: str


class _Item(msgspec.Struct):
    alert: _Listed


class _Page(msgspec.Struct):
    """What a client reads of a page: the ids listed and the next cursor."""

    items: list[_Item]
    next_cursor: str | None


_PAGE = msgspec.json.Decoder(_Page)


def client(url: str, auth: str, until: float, kinds: tuple[str, ...], out: queue.Queue) -> None:
    """Loops until ``until``: a page of one of ``kinds``, the next two pages
    by cursor, then the page of one alert it listed (its revisions and audit
    trail, as the web page's alert view asks for them). One keep-alive
    connection (``http.client``: the client's own CPU is small beside the
    server's, and it shares the machine with it); each body is read whole,
    a page's decoded only as far as the ids and cursor it needs."""
    rng = random.Random(threading.get_ident())
    timings: list[tuple[str, float, int]] = []
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Authorization": f"Bearer {auth}"}

    def get(path: str) -> tuple[float, int, bytes]:
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        body = r.read()
        return time.perf_counter() - t0, r.status, body

    def page(kind: str, path: str) -> _Page | None:
        took, status, body = get(path)
        timings.append((kind, took, status))
        return _PAGE.decode(body) if status == 200 else None

    try:
        while time.monotonic() < until:
            kind = rng.choice(kinds)
            first = page(kind, REQUESTS[kind])
            listed = [i.alert.alert_id for i in first.items] if first is not None else []
            cursor = first.next_cursor if first is not None else None
            for _ in range(2):
                if cursor is None or time.monotonic() >= until:
                    break
                sep = "&" if "?" in REQUESTS[kind] else "?"
                nxt = page("next page", f"{REQUESTS[kind]}{sep}cursor={cursor}")
                cursor = nxt.next_cursor if nxt is not None else None
            if listed and time.monotonic() < until:
                took, status, _ = get(f"/api/v1/alerts/{rng.choice(listed)}")
                timings.append(("alert page", took, status))
    finally:
        conn.close()
    out.put(timings)


def bench_user(db: str) -> None:
    """A viewer ``bench`` in a store that has none (an ``--existing`` one)."""
    from fundflow.serve.auth import hash_password
    from fundflow.store import open_store

    with open_store(db) as st:
        if not any(u.name == "bench" for u in st.list_users()):
            st.add_user("bench", "viewer", hash_password("bench password"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alerts", type=int, default=20_000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument(
        "--db", help="an empty PostgreSQL database URL (default: a temporary SQLite file)"
    )
    ap.add_argument(
        "--existing",
        action="store_true",
        help="--db is a filled store (e.g. tests/bench_triage.py --keep --only-load): use it as it is",
    )
    ap.add_argument(
        "--mix",
        choices=("all", "queue"),
        default="all",
        help="all: every request kind; queue: the indexed filters only (no text, subject or amount)",
    )
    ap.add_argument(
        "--skip-first",
        action="store_true",
        help="leave each client's first request out of the latencies (it opens the "
        "client's connection; the server's store connections are open before it listens)",
    )
    args = ap.parse_args()
    if args.existing and not args.db:
        ap.error("--existing needs --db")
    kinds = QUEUE if args.mix == "queue" else tuple(REQUESTS)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or os.path.join(tmp, "bench.db")
        t0 = time.perf_counter()
        if args.existing:
            bench_user(db)
        else:
            fill(db, args.alerts)
            print(
                f"store: {args.alerts:,} alerts in {time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
            )
        auth = token(db)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        mine = resource.getrusage(resource.RUSAGE_SELF)
        proc = subprocess.Popen([FUNDFLOW, "serve", "--db", db, "--port", "0"],
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            url = line.split("ready: ")[1].split()[0].rstrip("/")
            out: queue.Queue = queue.Queue()
            until = time.monotonic() + args.seconds
            threads = [threading.Thread(target=client, args=(url, auth, until, kinds, out))
                       for _ in range(args.clients)]  # fmt: skip
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - start
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        mine_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    own = (mine_after.ru_utime - mine.ru_utime) + (mine_after.ru_stime - mine.ru_stime)
    timings = [x for _ in range(args.clients) for x in out.get()[int(args.skip_first) :]]
    bad = sum(1 for _, _, status in timings if status != 200)
    print(f"{len(timings):,} requests from {args.clients} clients in {elapsed:.1f} s: "
          f"{len(timings) / elapsed:,.0f} requests/s, {bad} not 200; "
          f"server CPU {1000 * cpu / max(1, len(timings)):.2f} ms per request "
          f"(start and stop included), clients' {1000 * own / max(1, len(timings)):.2f} ms")  # fmt: skip
    print(f"{'request':<12} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for kind in [*REQUESTS, "next page", "alert page"]:
        ms = sorted(1000 * d for k, d, _ in timings if k == kind)
        if not ms:
            continue
        q = statistics.quantiles(ms, n=100, method="inclusive")
        print(f"{kind:<12} {len(ms):>6} {q[49]:>8.1f} {q[94]:>8.1f} {q[98]:>8.1f} {ms[-1]:>8.1f}")


if __name__ == "__main__":
    main()
