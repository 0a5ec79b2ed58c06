"""Benchmark of the triage queue on PostgreSQL (a script, not a test).

    .venv/bin/python tests/bench_triage.py [--url postgresql://...] [--alerts 1000000]
        [--threads 20] [--rounds 25] [--keep | --only-load | --existing]

Without ``--url`` it starts a PostgreSQL server of its own (``initdb`` in a
temporary folder, a free 127.0.0.1 port, as the ``postgres`` user when run
as root; binaries as tests/integration/conftest.py finds them) and removes
it at the end. With ``--url`` it creates a database ``fundflow_bench_<n>``
beside the URL's and drops it at the end (``--keep`` keeps it,
``--only-load`` only loads it; ``--existing`` times a kept one as it is).
In one run:

1. migrates an empty store (``PostgresSink``), then COPYs ``--alerts``
   synthetic alerts into ``alerts`` and ``alert_revisions`` (one revision
   each, as the sink would write them: the same derived columns), a tenth
   of them acknowledged, a fifth closed, with audit events and the counts
   per status, severity and detector in ``alert_counts``; then ANALYZE;
2. runs each query ``--rounds`` times in each of ``--threads`` threads at
   once, every thread with its own ``PostgresStore`` (connection), and
   prints p50 / p99 / max of the wall time of one call:

   * ``page()`` first page (default order ``-last_ts``, 50 rows);
   * a filtered page: severity + detector;
   * a filtered page: text (an account-number fragment, about 0.2 % of
     the alerts, and a word in about 10 % of the summaries);
   * the 5th page through cursors (the cursor made once, then timed);
   * ``row()`` + ``revisions()`` + ``events()`` of a random alert;
   * ``severity_counts()`` unfiltered and filtered, for information (the
     API sends counts beside a page).
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg

from fundflow.schemas.records import Alert
from fundflow.store import AlertFilter, alert_json
from fundflow.store.base import encode_json, haystack, severity_rank
from fundflow.store.postgres import PostgresSink, PostgresStore

DETECTORS = (
    "fund_pool", "maturity_mismatch", "self_financing", "guaranteed_return", "excessive_return",
    "down_payment_loan", "private_product_split", "reserve_misuse", "cross_bank_clearing",
    "unlicensed_business",
)  # fmt: skip
SEVERITIES = ("low",) * 4 + ("medium",) * 3 + ("high",) * 2 + ("critical",)
START = datetime(2026, 1, 1, tzinfo=UTC)
_CST = timezone(timedelta(hours=8))
WORDS = ("pooled", "reserves", "clearing", "licence", "principal", "products", "loans")


def synthetic(i: int, rng: random.Random) -> Alert:
    detector = DETECTORS[i % len(DETECTORS)]
    subject = f"P{rng.randrange(5000):04d}"
    first = START + timedelta(seconds=rng.randrange(365 * 86400))
    last = first + timedelta(seconds=rng.randrange(30 * 86400))
    fen = rng.randrange(1, 10**11)
    word = WORDS[i % len(WORDS)] if i % 10 == 0 else "moved"
    return Alert(
        alert_id=f"{detector}:{subject}:{i:08d}",
        detector=detector,
        severity=SEVERITIES[rng.randrange(len(SEVERITIES))],  # type: ignore[arg-type]
        subject_id=subject,
        accounts=(f"ACC-{subject}-{rng.randrange(1000):03d}", f"ACC-{rng.randrange(10**6):06d}"),
        first_ts=first.astimezone(_CST).isoformat(),
        last_ts=last.astimezone(_CST).isoformat(),
        amount=f"{fen // 100}.{fen % 100:02d}",
        summary=f"{subject} {word} {fen // 100}.{fen % 100:02d} yuan through its accounts",
        evidence={"sample_txn_ids": [f"T{i}-1", f"T{i}-2"], "threshold_fen": 100000},
        detector_version="1",
        revision=1,
    )


def load(url: str, n: int) -> None:
    """Migrates, then COPYs ``n`` alerts."""
    PostgresSink(url).close()
    rng = random.Random(1)
    columns = (
        "alert_id, detector, severity, subject_id, accounts, first_ts, last_ts, amount, summary,"
        " evidence, detector_version, revision, first_ts_text, last_ts_text, status, assignee,"
        " severity_rank, amount_fen, haystack"
    )
    t0 = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        # The migration's own indexes, dropped for the load and built again
        # from their definitions after it (faster than maintaining them).
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'alerts'"
            " AND indexname <> 'alerts_pkey'"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(f"COPY alerts ({columns}) FROM STDIN") as alerts:
                for i in range(n):
                    a = synthetic(i, rng)
                    roll = i % 10
                    status = "closed" if roll < 2 else "acknowledged" if roll == 2 else "open"
                    fen = int(a.amount.replace(".", ""))
                    alerts.write_row((
                        a.alert_id, a.detector, a.severity, a.subject_id,
                        encode_json(a.accounts), a.first_ts, a.last_ts, a.amount, a.summary,
                        encode_json(a.evidence), a.detector_version, a.revision, a.first_ts,
                        a.last_ts, status, f"user{i % 20}" if i % 3 == 0 else None,
                        severity_rank(a.severity), fen, haystack(a),
                    ))  # fmt: skip
            rng = random.Random(1)
            with cur.copy(
                "COPY alert_revisions (alert_id, revision, body, seen_at) FROM STDIN"
            ) as revisions:
                now = datetime.now(UTC)
                for i in range(n):
                    a = synthetic(i, rng)
                    revisions.write_row((a.alert_id, 1, alert_json(a).decode(), now))
            cur.execute(
                "INSERT INTO alert_events (alert_id, action, actor, note, at)"
                " SELECT alert_id, CASE status WHEN 'closed' THEN 'closed' ELSE 'acknowledged' END,"
                " 'bench', NULL, now() FROM alerts WHERE status <> 'open'"
            )
            # What the sink keeps with every write (the queue's counts by severity).
            cur.execute(
                "INSERT INTO alert_counts (status, severity_rank, detector, n)"
                " SELECT status, severity_rank, detector, COUNT(*) FROM alerts"
                " GROUP BY status, severity_rank, detector"
            )
        for _, definition in indexes:
            conn.execute(definition)
        print("indexes: " + "; ".join(d.split(" ON ", 1)[1] for _, d in sorted(indexes)))
        conn.execute("VACUUM ANALYZE")
    print(f"loaded {n:,} alerts in {time.monotonic() - t0:.0f} s", flush=True)


def timed(
    url: str, threads: int, rounds: int, call: Callable[[PostgresStore, int], object]
) -> list[float]:
    stores = [PostgresStore(url) for _ in range(threads)]
    times: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def run(k: int) -> None:
        store = stores[k]
        call(store, -1)  # warm the connection's caches and prepared plans
        barrier.wait()
        mine = []
        for r in range(rounds):
            t = time.perf_counter()
            call(store, k * rounds + r)
            mine.append((time.perf_counter() - t) * 1000)
        with lock:
            times.extend(mine)

    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for s in stores:
        s.close()
    return times


def report(name: str, times: list[float]) -> None:
    times = sorted(times)
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"{name:<44} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   max {times[-1]:7.1f} ms"
          f"   ({len(times)} calls)", flush=True)  # fmt: skip


def bench(url: str, n: int, threads: int, rounds: int) -> None:
    load(url, n)
    measure(url, threads, rounds)


def measure(url: str, threads: int, rounds: int) -> None:
    with psycopg.connect(url) as conn:
        sample = [
            i for (i,) in conn.execute("SELECT alert_id FROM alerts WHERE alert_id LIKE '%7'")
        ]
        sample = random.Random(2).sample(sample, min(len(sample), 5000))
    with PostgresStore(url) as store:
        cursor = None
        for _ in range(4):
            cursor = store.page(AlertFilter(), cursor=cursor).next_cursor
        fifth = cursor
        hits = {
            "acc-p004": store.page(AlertFilter(text="acc-p004"), limit=500),
            "reserves": store.page(AlertFilter(text="reserves"), limit=50),
        }
        print(f"text 'acc-p004': {len(hits['acc-p004'].items)} rows on its first page"
              f" of 500; 'reserves': {store.severity_counts(AlertFilter(text='reserves'))}")  # fmt: skip
        print(f"alerts: {store.count():,}; severity counts {store.severity_counts(AlertFilter())}")
    high_pool = AlertFilter(severity="high", detector="fund_pool")
    queries: list[tuple[str, Callable[[PostgresStore, int], object]]] = [
        ("page() first page", lambda s, i: s.page(AlertFilter())),
        ("page() severity=high detector=fund_pool", lambda s, i: s.page(high_pool)),
        ("page() status=open severity=critical", lambda s, i: s.page(
            AlertFilter(status="open", severity="critical"))),
        ("page() text='acc-p004' (~0.2%)", lambda s, i: s.page(AlertFilter(text="acc-p004"))),
        ("page() text='reserves' (~1.4%)", lambda s, i: s.page(AlertFilter(text="reserves"))),
        ("page() 5th page by cursor", lambda s, i: s.page(AlertFilter(), cursor=fifth)),
        ("row() + revisions() + events()", lambda s, i: (
            s.row(aid := sample[i % len(sample)]), s.revisions(aid), s.events(aid))),
        ("severity_counts() unfiltered", lambda s, i: s.severity_counts(AlertFilter())),
        ("severity_counts() severity+detector", lambda s, i: s.severity_counts(high_pool)),
    ]  # fmt: skip
    print(f"{threads} threads x {rounds} calls each:")
    for name, call in queries:
        report(name, timed(url, threads, rounds, call))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def own_server() -> Iterator[str]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    bindir = Path(os.environ.get("FUNDFLOW_PG_BINDIR") or Path(found[-1]).parent)
    if not (bindir / "initdb").exists():
        sys.exit("no PostgreSQL binaries (initdb): give --url, or set FUNDFLOW_PG_BINDIR")
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="fundflow-bench-pg-"))
    if os.geteuid() == 0:
        import pwd  # noqa: PLC0415

        entry = pwd.getpwnam("postgres")
        os.chown(base, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", _free_port()

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], cwd=base, check=True, capture_output=True, text=True)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--no-locale", "--no-sync")  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c shared_buffers=512MB -c max_connections=100 -c maintenance_work_mem=256MB"
        )
        run(str(bindir / "pg_ctl"), "start", "-D", str(data), "-l", str(base / "log"), "-w",
            "-o", options)  # fmt: skip
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if data.exists():
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m",
                            "fast", "-w"], cwd=base, capture_output=True)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def fresh_database(url: str, keep: bool = False) -> Iterator[str]:
    name = f"fundflow_bench_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base, _, query = url.partition("?")
    try:
        yield base.rsplit("/", 1)[0] + "/" + name + (f"?{query}" if query else "")
    finally:
        if keep:
            print(f"kept database {name}")
        else:
            with psycopg.connect(url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a PostgreSQL server to create the bench database on")
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--keep", action="store_true", help="with --url: keep the database")
    parser.add_argument("--only-load", action="store_true", help="load, time nothing")
    parser.add_argument(
        "--existing", action="store_true", help="--url is a loaded bench database: time it"
    )
    args = parser.parse_args()
    print(f"bench_triage: {args.alerts:,} alerts, {args.threads} threads, {os.cpu_count()} CPUs")
    if args.url and args.existing:
        measure(args.url, args.threads, args.rounds)
    elif args.url:
        with fresh_database(args.url, keep=args.keep) as url:
            if args.only_load:
                load(url, args.alerts)
            else:
                bench(url, args.alerts, args.threads, args.rounds)
    else:
        with own_server() as server, fresh_database(server) as url:
            bench(url, args.alerts, args.threads, args.rounds)


if __name__ == "__main__":
    main()
