"""Memory benchmark of the engine (a script, not a test).

    .venv/bin/python tests/bench_memory.py accounts [--accounts 1000000]
    .venv/bin/python tests/bench_memory.py replay [--records 10000000] [--scale 10]

``accounts``: what holding N accounts costs. A synthetic custody world is
streamed through the engine as JSON lines, never held in memory, in the
replay's runs of about 64 KiB (``Engine.process_batch``: the Rust decoder,
the ordering stage, the detectors): 19-digit account numbers,
12-character entity ids, one person entity for every two accounts (an
outside ``personal`` account and a custody sub-account), 90 % lenders and
10 % borrowers, one loan per borrower, about three transactions per
account spread over 30 days
(recharge, invest for a named loan and product, fee, repay, withdraw; a
tenth of the people pay through a payment institution's reserve account).
It prints the process's resident memory (RSS) before and after, and a
breakdown by structure (deep size of each, every object counted once,
in the order listed) per account held.

``replay``: whether memory grows with history. A long simulated world
(``fundflow simulate``'s generator, ``--scale`` times over, as many days as
the record count needs) is written by a child process into a pipe and
replayed from it by this one, in the replay's runs of lines
(``Engine.process_batch``), so neither side holds the stream; the
generator's own memory is the child's. Peak RSS of the replaying process
is printed at every million records.

Each mode runs in a fresh process of its own, pinned to one core.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from fundflow.bench import _chunks
from fundflow.detectors import Engine, load_config
from fundflow.replay import _chunks as read_runs
from fundflow.schemas.decode import MAX_LINE_BYTES

DAY_MS = 86_400_000
START_MS = 1_772_294_400_000  # 2026-03-01T00:00+08:00
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
PRODUCT_TERMS = (30, 90, 180, 360)


def machine() -> str:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def rss_mb() -> float:
    """Resident memory now (Linux /proc), in MB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 * 1.048576


def _pin() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


# --------------------------------------------------------------------------- accounts held


def accounts_world(accounts: int, platforms: int = 200, institutions: int = 20) -> Iterator[str]:
    """JSON lines of a custody world holding ``accounts`` person accounts
    (plus the platforms' and institutions' own), reference first, then about
    three transactions per account in event-time order over 30 days."""
    people = accounts // 2
    custody_banks = [f"BK{n:010d}" for n in range(1, 5)]
    plain_banks = [f"BK{n:010d}" for n in range(5, 7)]
    for bank in custody_banks:
        yield (
            f'{{"type":"entity","entity_id":"{bank}","name":"托管银行{bank[-2:]}",'
            f'"kind":"custody_bank","licenses":["custody"]}}'
        )
    for bank in plain_banks:
        yield f'{{"type":"entity","entity_id":"{bank}","name":"商业银行{bank[-2:]}","kind":"bank"}}'

    def pid(p: int) -> str:
        return f"PL{p:010d}"

    def acct(n: int) -> str:
        return f"62{n:017d}"

    for p in range(platforms):
        bank = custody_banks[p % 4]
        yield (
            f'{{"type":"entity","entity_id":"{pid(p)}","name":"平台{p}网络借贷信息中介服务有限公司",'
            f'"kind":"p2p_platform","licenses":["p2p_registered"]}}'
        )
        for k, role in enumerate(("platform_custody", "platform_own")):
            yield (
                f'{{"type":"account","account_id":"{acct(9 * 10**15 + 2 * p + k)}",'
                f'"owner_id":"{pid(p)}","bank_id":"{bank}","role":"{role}",'
                f'"platform_id":"{pid(p)}"}}'
            )
        for term in PRODUCT_TERMS:
            yield (
                f'{{"type":"product","product_id":"PR{p:06d}{term:04d}","platform_id":"{pid(p)}",'
                f'"term_days":{term},"annual_rate":"0.08"}}'
            )
    for i in range(institutions):
        iid = f"PI{i:010d}"
        yield (
            f'{{"type":"entity","entity_id":"{iid}","name":"支付机构{i}有限公司",'
            f'"kind":"payment_institution","licenses":["payment"]}}'
        )
        yield (
            f'{{"type":"account","account_id":"{acct(8 * 10**15 + i)}","owner_id":"{iid}",'
            f'"bank_id":"{custody_banks[i % 4]}","role":"client_reserve"}}'
        )
    for n in range(people):
        eid = f"E{n:011d}"
        name = SURNAMES[n % 20] + GIVEN[n // 20 % len(GIVEN)] + GIVEN[n // 500 % len(GIVEN)]
        p = n // 10 % platforms
        role = "borrower_sub" if n % 10 == 9 else "lender_sub"
        yield f'{{"type":"entity","entity_id":"{eid}","name":"{name}","kind":"person"}}'
        yield (
            f'{{"type":"account","account_id":"{acct(2 * n)}","owner_id":"{eid}",'
            f'"bank_id":"{plain_banks[n % 2]}","role":"personal"}}'
        )
        yield (
            f'{{"type":"account","account_id":"{acct(2 * n + 1)}","owner_id":"{eid}",'
            f'"bank_id":"{custody_banks[p % 4]}","role":"{role}","platform_id":"{pid(p)}"}}'
        )
        if role == "borrower_sub":
            term = PRODUCT_TERMS[n // 10 % 4]
            yield (
                f'{{"type":"loan","loan_id":"LN{n:012d}","platform_id":"{pid(p)}",'
                f'"borrower_account":"{acct(2 * n + 1)}","principal":"20000.00",'
                f'"term_days":{term},"annual_rate":"0.10","issued_at":{START_MS}}}'
            )
    # Transactions: person n acts at its own instant, spread evenly over 30 days.
    txn = 0
    span = 30 * DAY_MS
    for n in range(people):
        p = n // 10 % platforms
        t = START_MS + n * span // people
        platform_id = pid(p)
        bank = custody_banks[p % 4]
        personal, sub = acct(2 * n), acct(2 * n + 1)
        borrower_n = (n // 10) * 10 + 9  # the borrower of this person's group
        if borrower_n >= people:
            borrower_n = 9 if people > 9 else n
        loan = f"LN{borrower_n:012d}"
        borrower_sub = acct(2 * borrower_n + 1)
        own = acct(9 * 10**15 + 2 * p + 1)
        product = f"PR{p:06d}{PRODUCT_TERMS[borrower_n // 10 % 4]:04d}"
        moves: list[tuple[str, str, str, str]]
        if n % 10 == 9:
            moves = [(sub, own, "fee", loan), (sub, personal, "withdraw", "")]
            if n % 20 == 19:
                reserve = acct(8 * 10**15 + n // 20 % institutions)
                iid = f"PI{n // 20 % institutions:010d}"
                for k, (a, b) in enumerate(((personal, reserve), (reserve, personal))):
                    txn += 1
                    yield (
                        f'{{"type":"clearing_txn","txn_id":"TX{txn:018d}","ts":{t + 600_000 * k},'
                        f'"system":"NUCC","initiator_id":"{iid}","payer_bank":"{bank}",'
                        f'"payer_account":"{a}","payee_bank":"{bank}","payee_account":"{b}",'
                        f'"amount":"300.00","purpose":"{("topup", "withdraw")[k]}"}}'
                    )
        else:
            moves = [
                (personal, sub, "recharge", ""),
                (sub, borrower_sub, "invest", loan),
                (sub, borrower_sub, "invest", loan),
                (borrower_sub, sub, "repay", loan),
                (borrower_sub, sub, "repay", loan),
                (sub, personal, "withdraw", ""),
            ]
        for k, (debit, credit, purpose, loan_id) in enumerate(moves):
            txn += 1
            extra = ""
            if purpose == "invest":
                extra = f',"product_id":"{product}","loan_id":"{loan_id}"'
            elif loan_id:
                extra = f',"loan_id":"{loan_id}"'
            yield (
                f'{{"type":"custody_txn","txn_id":"TX{txn:018d}","ts":{t + 60_000 * k},'
                f'"bank_id":"{bank}","platform_id":"{platform_id}","debit_account":"{debit}",'
                f'"credit_account":"{credit}","amount":"{1000 + 100 * (k % 3)}.00",'
                f'"purpose":"{purpose}"{extra}}}'
            )


def deep_size(root: object, seen: set[int]) -> int:
    """Bytes reachable from ``root`` not yet in ``seen`` (types, modules and
    functions excluded), per ``sys.getsizeof``."""
    total = 0
    stack = [root]
    skip = (type, type(sys), type(deep_size))
    while stack:
        obj = stack.pop()
        i = id(obj)
        if i in seen or isinstance(obj, skip):
            continue
        seen.add(i)
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
        slots = getattr(type(obj), "__slots__", None)
        if slots and not gc.is_tracked(obj):
            stack.extend(getattr(obj, s) for s in slots if hasattr(obj, s))
    return total


def structures(eng: Engine) -> list[tuple[str, object]]:
    """The engine's memory, structure by structure (what deep_size walks)."""
    ref = eng.ref
    parts: list[tuple[str, object]] = [
        ("reference: accounts", ref.accounts),
        ("reference: entities", ref.entities),
        ("reference: related links", [v for k, v in vars(ref).items() if k.startswith("_")]),
        ("reference: products and loans", (ref.products, ref.loans)),
        ("deduplicator", eng.dedup),
    ]
    for det in eng.detectors:
        parts.append(
            (f"{det.name} state", [getattr(det, k) for k in det._state_names])  # noqa: SLF001
        )
        parts.append((f"{det.name} alert book", det.book))
    return parts


def bench_accounts(accounts: int, detectors: list[str] | None = None) -> dict[str, object]:
    _pin()
    config = load_config()
    gc.collect()
    base = rss_mb()
    eng = Engine(config, detectors)
    n = 0
    t0 = time.perf_counter()
    # The replay's runs of about 64 KiB (its reads), from lines made as they go.
    for chunk in _chunks((line.encode() for line in accounts_world(accounts)), 1 << 16):
        batch = eng.process_batch(chunk)
        n += batch.read
        if batch.dead_letters:
            d = batch.dead_letters[0]
            raise SystemExit(f"generator wrote a bad line: {d.reason} {d.detail}: {d.raw}")
    eng.finish()
    seconds = time.perf_counter() - t0
    gc.collect()
    after = rss_mb()
    subjects, held, edges = eng.state_size()
    seen: set[int] = set()
    rows = [(name, deep_size(obj, seen)) for name, obj in structures(eng)]
    return {
        "machine": machine(),
        "records": n,
        "seconds": round(seconds, 1),
        "accounts": held,
        "subjects": subjects,
        "entities": len(eng.ref.entities),
        "loans": len(eng.ref.loans),
        "dedup_ids": len(eng.dedup),
        "counts": dict(eng.counts),
        "rss_base_mb": round(base, 1),
        "rss_after_mb": round(after, 1),
        "rss_bytes_per_account": round((after - base) * 1e6 / held),
        "structures": rows,
        "per_account": [(name, round(size / held)) for name, size in rows],
    }


def print_accounts(fig: dict[str, object]) -> None:
    print(f"machine            {fig['machine']}")
    print(
        f"world              {fig['records']:,} records in {fig['seconds']} s: "
        f"{fig['accounts']:,} accounts, {fig['entities']:,} entities, {fig['loans']:,} loans, "
        f"{fig['subjects']:,} subjects; {fig['dedup_ids']:,} txn ids held by the deduplicator"
    )
    print(
        f"RSS                {fig['rss_base_mb']} MB before, {fig['rss_after_mb']} MB after: "
        f"{fig['rss_bytes_per_account']} bytes per account held"
    )
    total = 0
    print(f"{'structure':<36}{'MB':>10}{'bytes/account':>15}")
    for (name, size), (_, per) in zip(fig["structures"], fig["per_account"], strict=True):  # type: ignore[arg-type]
        total += size
        print(f"{name:<36}{size / 1e6:>10.1f}{per:>15}")
    print(f"{'all structures':<36}{total / 1e6:>10.1f}{round(total / fig['accounts']):>15}")  # type: ignore[operator]


# --------------------------------------------------------------------------- long replay


def _generate(fifo: str, scale: int, days: int, seed: int) -> None:
    """In a child process: write the world into the pipe."""
    from fundflow.simulate import write_world

    write_world(Path(fifo).parent, seed=seed, scale=scale, days=days)


def bench_replay(records: int, scale: int, seed: int, step: int) -> list[tuple[int, float, float]]:
    # About 75,000 records per unit of scale in 30 days.
    days = max(8, -(-records * 30 // (75_000 * scale)))
    config = load_config()
    eng = Engine(config)
    rows: list[tuple[int, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="fundflow-mem-") as tmp:
        fifo = os.path.join(tmp, "world.jsonl")
        os.mkfifo(fifo)
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(target=_generate, args=(fifo, scale, days, seed))
        child.start()
        _pin()  # after the start: the generator keeps the other core
        n = 0
        t0 = time.perf_counter()
        print(f"machine            {machine()}")
        print(f"world              scale {scale}, {days} days (streamed from a child process)")
        print(
            f"{'records':>12}{'peak RSS MB':>14}{'RSS MB':>10}{'seconds':>10}  state (subjects, accounts, edges), dedup ids"
        )
        with open(fifo, "rb", buffering=1 << 20) as f:
            due = step
            # The replay's own reader of a JSON-lines dump: runs of whole lines.
            for run, _lines in read_runs(f, MAX_LINE_BYTES):
                assert type(run) is bytes, "the simulated world has no overlong line"
                n += eng.process_batch(run).read
                if n >= due:
                    due += step
                    row = (n, round(peak_rss_mb(), 1), round(rss_mb(), 1))
                    rows.append(row)
                    print(
                        f"{n:>12,}{row[1]:>14}{row[2]:>10}{time.perf_counter() - t0:>10.0f}  "
                        f"{eng.state_size()}, {len(eng.dedup):,}",
                        flush=True,
                    )
                    if n >= records:
                        break
        if child.is_alive():  # stopped early: the rest of the world is not needed
            child.terminate()
        child.join()
        eng.finish()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="mode", required=True)
    a = sub.add_parser("accounts", help="memory per account held")
    a.add_argument("--accounts", type=int, default=1_000_000)
    a.add_argument(
        "--detectors", help="comma-separated detector names (default: the engine's default set)"
    )
    r = sub.add_parser("replay", help="peak RSS against records replayed")
    r.add_argument("--records", type=int, default=10_000_000)
    r.add_argument("--scale", type=int, default=10)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--step", type=int, default=1_000_000)
    args = ap.parse_args()
    if args.mode == "accounts":
        names = args.detectors.split(",") if args.detectors else None
        print_accounts(bench_accounts(args.accounts, names))
    else:
        bench_replay(args.records, args.scale, args.seed, args.step)


if __name__ == "__main__":
    main()
