"""``fundflow bench``: replay speed against a bare JSON decode, in one run.

Simulates a world of at least the requested number of records, then times,
on the same lines held in memory and on one core:

1. a bare decode of every line (``msgspec.json.decode``, untyped; and
   ``orjson.loads`` when installed) — the floor for any JSON consumer;
2. the typed decode and validation into records, a call a record
   (``RecordDecoder``, which hands each line to the compiled decoder);
3. the same decode (``fundflow._core``), counts only: the same
   lines in chunks of about 1 MiB, records per kind and dead letters per
   reason back, no Python object per record;
4. decode plus every detector (the engine, no output);
5. the whole ``replay`` as the command runs it: reading the file, the
   SQLite store and the JSONL outputs.

It prints records per second for each and the ratio of (2) to (5) to (1).
Then, on the small world of scale 1, it prints what each stage costs a
record in microseconds: the engine alone (deduplication, flows, reference
data, dispatch; no detector) and each default detector on top of it, each
the best of five runs over the same decoded records.
The figures are measurements of this machine at this moment: shared
machines are noisy, so compare the ratios within one run.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click
import msgspec

from fundflow.detectors import Config, Engine, load_config
from fundflow.detectors.engine import DEFAULT_DETECTORS
from fundflow.schemas import DeadLetter, RecordDecoder

from .replay import replay
from .simulate import write_world
from .store import SQLiteSink
from .text_table import format_table


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _timed(fn: Any, *args: Any) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def _chunks(lines: Iterable[bytes], size: int) -> Iterator[bytes]:
    """``lines`` joined by newlines into chunks of about ``size`` bytes, as
    they come (``lines`` may be a stream never held whole)."""
    group: list[bytes] = []
    held = 0
    for line in lines:
        group.append(line)
        held += len(line) + 1
        if held >= size:
            yield b"\n".join(group)
            group, held = [], 0
    if group:
        yield b"\n".join(group)


def detector_costs(path: Path, config: Config, runs: int = 5) -> dict[str, float]:
    """Microseconds a record, on the world at ``path``: ``engine`` with no
    detector, each default detector as the extra time of an engine running
    it alone, and ``all`` the engine with every default detector. Each is
    the best of ``runs`` runs over the same decoded records; a detector
    cheaper than the noise between runs shows as 0."""
    dec = RecordDecoder(config.engine.zone).decode
    decoded = (dec(ln) for ln in path.read_bytes().splitlines() if ln.strip())
    records = [r for r in decoded if type(r) is not DeadLetter]

    def best(names: list[str]) -> float:
        fastest = float("inf")
        for _ in range(runs):
            eng = Engine(config, detectors=names)
            process = eng.process
            t0 = time.perf_counter()
            for rec in records:
                process(rec)
            eng.finish()
            fastest = min(fastest, time.perf_counter() - t0)
        return fastest * 1e6 / len(records)

    base = best([])
    costs = {"engine": round(base, 2)}
    for det in DEFAULT_DETECTORS:
        costs[det.name] = round(max(0.0, best([det.name]) - base), 2)
    costs["all"] = round(best([d.name for d in DEFAULT_DETECTORS]), 2)
    return costs


def run_bench(*, records: int, seed: int, work_dir: str | None, as_json: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fundflow-bench-") as tmp:
        folder = Path(work_dir) if work_dir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        return _run(folder, records, seed, as_json)


def _run(folder: Path, records: int, seed: int, as_json: bool) -> dict[str, Any]:
    if hasattr(os, "sched_setaffinity"):
        # One core, as the target says; the other is left to the machine.
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    probe = write_world(folder / "probe", seed=seed, scale=1)
    scale = max(1, -(-records // probe["records"]))
    t0 = time.perf_counter()
    truth = write_world(folder, seed=seed, scale=scale)
    gen_s = time.perf_counter() - t0
    path = folder / "world.jsonl"
    lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
    n = len(lines)
    config = load_config()

    # The world carries deliberately malformed lines; a bare decoder refuses
    # them too, with the exception its caller would have to catch.
    def bare() -> None:
        dec = msgspec.json.decode
        for ln in lines:
            try:  # noqa: SIM105 - suppress() would add its own cost to the timed floor
                dec(ln)
            except msgspec.DecodeError:
                pass

    def bare_orjson() -> None:
        import orjson

        loads = orjson.loads
        for ln in lines:
            try:  # noqa: SIM105 - as above
                loads(ln)
            except orjson.JSONDecodeError:
                pass

    def typed() -> None:
        dec = RecordDecoder(config.engine.zone).decode
        for ln in lines:
            dec(ln)

    # The lines as a reader hands them over: chunks of about 1 MiB of whole
    # lines (joined before the timing, freed after it).
    chunks = list(_chunks(lines, 1 << 20))
    rust_counts: list[tuple[dict[str, int], dict[str, int]]] = []

    def rust() -> None:
        from fundflow._core import Decoder

        count = Decoder(config.engine.zone).count_lines
        for chunk in chunks:
            rust_counts.append(count(chunk))

    # Both paths of the replay: record by record (a decode call a record,
    # each record submitted) and in batches (Engine.process_batch); each through
    # the ordering stage and every detector, as the replay runs them.
    def engine() -> None:
        dec = RecordDecoder(config.engine.zone).decode
        eng = Engine(config)
        process = eng.submit
        for ln in lines:
            rec = dec(ln)
            if type(rec) is not DeadLetter:
                process(rec)
        eng.finish()

    def batched() -> None:
        eng = Engine(config)
        process_batch = eng.process_batch
        for chunk in chunks:
            process_batch(chunk)
        eng.finish()

    figures: dict[str, Any] = {
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "records": n,
        "scale": scale,
        "generate_seconds": round(gen_s, 2),
        "file_mb": round(path.stat().st_size / 1e6, 1),
    }
    t_bare = _timed(bare)
    figures["bare_msgspec_per_s"] = round(n / t_bare)
    try:
        figures["bare_orjson_per_s"] = round(n / _timed(bare_orjson))
    except ImportError:
        figures["bare_orjson_per_s"] = None
    t_typed = _timed(typed)
    figures["typed_decode_per_s"] = round(n / t_typed)
    figures["ratio_typed_to_bare"] = round(t_typed / t_bare, 2)
    try:
        t_rust = _timed(rust)
        figures["rust_decode_per_s"] = round(n / t_rust)
        figures["ratio_rust_to_bare"] = round(t_rust / t_bare, 2)
        figures["rust_decoded"] = sum(sum(k.values()) + sum(d.values()) for k, d in rust_counts)
    except ImportError:
        figures["rust_decode_per_s"] = figures["ratio_rust_to_bare"] = None
    t_batched = _timed(batched)
    chunks.clear()
    figures["batch_decode_and_detect_per_s"] = round(n / t_batched)
    t_engine = _timed(engine)
    figures["decode_and_detect_per_s"] = round(n / t_engine)
    out = folder / "bench-alerts.jsonl"
    dead = folder / "bench-deadletter.jsonl"
    db = folder / "bench.db"
    t0 = time.perf_counter()
    with open(out, "wb") as fa, open(dead, "wb") as fd, SQLiteSink(str(db)) as sink:
        summary = replay([str(path)], config=config, sink=sink, alerts_out=fa, deadletter_out=fd)
    t_replay = time.perf_counter() - t0
    figures["replay_command_per_s"] = round(n / t_replay)
    figures["ratio_detect_to_bare"] = round(t_engine / t_bare, 2)
    figures["ratio_batch_detect_to_bare"] = round(t_batched / t_bare, 2)
    figures["ratio_replay_to_bare"] = round(t_replay / t_bare, 2)
    figures["alerts"] = summary.by_detector()
    figures["violations_labelled"] = len(truth["violators"])
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    # After the peak above: these runs hold the small world's records only.
    figures["small_world_records"] = probe["records"]
    figures["small_world_us_per_record"] = detector_costs(folder / "probe" / "world.jsonl", config)
    if as_json:
        click.echo(json.dumps(figures, indent=2))
    else:
        click.echo(f"machine            {figures['machine']}")
        click.echo(
            f"world              {n:,} records, {figures['file_mb']} MB (scale {scale}, generated in {gen_s:.1f} s)"
        )
        click.echo(
            f"bare decode        {figures['bare_msgspec_per_s']:>10,} records/s  (msgspec, untyped)"
        )
        if figures["bare_orjson_per_s"]:
            click.echo(
                f"bare decode        {figures['bare_orjson_per_s']:>10,} records/s  (orjson)"
            )
        click.echo(
            f"typed decode       {figures['typed_decode_per_s']:>10,} records/s  "
            f"({figures['ratio_typed_to_bare']}x; validation into records, a call a record)"
        )
        if figures["rust_decode_per_s"]:
            click.echo(
                f"Rust decode        {figures['rust_decode_per_s']:>10,} records/s  "
                f"({figures['ratio_rust_to_bare']}x; fundflow._core, the same validation, counts only)"
            )
        click.echo(
            f"decode + detect    {figures['decode_and_detect_per_s']:>10,} records/s  "
            f"({figures['ratio_detect_to_bare']}x; a decode call a record, "
            "ordering stage, every detector)"
        )
        click.echo(
            f"batch + detect     {figures['batch_decode_and_detect_per_s']:>10,} records/s  "
            f"({figures['ratio_batch_detect_to_bare']}x; Engine.process_batch: Rust decode, "
            "ordering stage, every detector)"
        )
        click.echo(
            f"replay command     {figures['replay_command_per_s']:>10,} records/s  "
            f"({figures['ratio_replay_to_bare']}x; file, store and JSONL included)"
        )
        click.echo(f"peak RSS           {figures['peak_rss_mb']} MB")
        click.echo(f"alerts             {figures['alerts']}")
        click.echo(
            f"per record, small world ({figures['small_world_records']:,} records, scale 1):"
        )
        for stage, us in figures["small_world_us_per_record"].items():
            label = {
                "engine": "engine, no detector",
                "all": "engine, every detector",
            }.get(stage, f"+ {stage}")
            click.echo(f"  {label:<26}{us:>8.2f} us")
    return figures


#: The shapes each transfer world is benchmarked in: a name and the
#: :func:`~fundflow.transfers.write_transfers` arguments that give it.
TYPOLOGY_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("as generated", {}),
    ("amounts x0.01", {"amount_scale": (1, 100)}),
    ("amounts x100", {"amount_scale": (100, 1)}),
    ("one tick a minute", {"tick_ms": 60_000}),
    ("one tick a day", {"tick_ms": 86_400_000}),
    ("in USD (x0.14)", {"amount_scale": (14, 100), "currency": "USD"}),
)
#: The vendored IBM AMLSim sample, when the source tree is at hand.
AMLSIM_SAMPLE = (
    Path(__file__).resolve().parent.parent / "tests/data/amlsim/20K_fanin200cycle200.tgz"
)


def _f1(p: float | None, r: float | None) -> float | None:
    return None if p is None or r is None or p + r == 0 else 2 * p * r / (p + r)


def _ratio(n: int, d: int) -> float | None:
    return round(n / d, 3) if d else None


def _replay_world(folder: Path, truth: dict[str, Any], config: Config) -> tuple[list[Any], Any]:
    from fundflow.schemas.decode import ColumnMap
    from fundflow.schemas.records import Alert

    from .transfers import COLUMN_MAP, CONSTANTS

    columns = ColumnMap.parse("clearing_txn", COLUMN_MAP, CONSTANTS)
    with open(folder / "alerts.jsonl", "wb") as out, open(os.devnull, "wb") as dead:
        summary = replay(
            [str(folder / truth["file"])],
            config=config,
            kind="clearing_txn",
            detectors=["typologies"],
            columns=columns,
            alerts_out=out,
            deadletter_out=dead,
        )
    raw = (folder / "alerts.jsonl").read_bytes()
    return [msgspec.json.decode(line, type=Alert) for line in raw.splitlines()], summary


def _pooled(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """Pattern- and node-level precision, recall and F1 from pooled counts."""
    out = {}
    for t, c in counts.items():
        recall, precision = _ratio(c["found"], c["planted"]), _ratio(c["on_patterns"], c["alerted"])
        n_recall, n_precision = (
            _ratio(c["nodes_found"], c["nodes"]),
            _ratio(c["named_dirty"], c["named"]),
        )
        f1, n_f1 = _f1(precision, recall), _f1(n_precision, n_recall)
        out[t] = {
            **c,
            "recall": recall,
            "precision": precision,
            "f1": None if f1 is None else round(f1, 3),
            "node_recall": n_recall,
            "node_precision": n_precision,
            "node_f1": None if n_f1 is None else round(n_f1, 3),
        }
    return out


def run_typology_bench(
    *,
    seeds: int,
    scale: int,
    days: int,
    work_dir: str | None,
    as_json: bool,
    amlsim: Path | None = AMLSIM_SAMPLE,
) -> dict[str, Any]:
    """Precision, recall and F1 of the typology detectors at the shipped
    defaults, on ``seeds`` labelled transfer worlds (:mod:`fundflow.transfers`,
    seeds 1..N) in each shape of :data:`TYPOLOGY_VARIANTS`, each replayed
    through its foreign column layout as ``fundflow replay --map`` reads it,
    and on the IBM AMLSim sample ``amlsim`` (converted, node level).

    Pattern level: recall, planted patterns with an alert of their typology
    on their subject; precision, alerted subjects that belong to a planted
    pattern. Node level: recall, accounts of a typology's planted patterns
    named by its alerts; precision, named accounts that belong to a planted
    pattern (on AMLSim: labelled fraud). Counts pooled over the seeds; the
    alert volume is alerts (first revisions) per 10,000 accounts.
    """
    from .amlsim import convert_amlsim
    from .transfers import TYPOLOGIES, honest_alerted, score_typologies, write_transfers

    config = load_config()
    keys = (
        "planted",
        "found",
        "alerted",
        "on_patterns",
        "nodes",
        "nodes_found",
        "named",
        "named_dirty",
    )
    variants: list[dict[str, Any]] = []
    rows = seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="fundflow-typologies-") as tmp:
        base = Path(work_dir or tmp)
        for name, shape in TYPOLOGY_VARIANTS:
            totals = {t: dict.fromkeys(keys, 0) for t in TYPOLOGIES}
            honest: list[tuple[str, str]] = []
            alerts_n = accounts = 0
            for seed in range(1, seeds + 1):
                folder = base / name.replace(" ", "-") / f"seed-{seed}"
                folder.mkdir(parents=True, exist_ok=True)
                truth = write_transfers(folder, seed=seed, scale=scale, days=days, **shape)
                alerts, summary = _replay_world(folder, truth, config)
                rows += summary.read
                seconds += summary.seconds
                honest += honest_alerted(truth, alerts)
                alerts_n += len({a.alert_id for a in alerts})
                accounts += truth["accounts"]
                dirty = {acc for p in truth["patterns"] for acc in p["accounts"]}
                for t, sc in score_typologies(truth, alerts).items():
                    c = totals[t]
                    for k in ("planted", "found", "alerted", "on_patterns"):
                        c[k] += sc[k]
                    own = {
                        acc
                        for p in truth["patterns"]
                        if p["typology"] == t
                        for acc in p["accounts"]
                    }
                    named = {acc for a in alerts if a.detector == t for acc in a.accounts}
                    c["nodes"] += len(own)
                    c["nodes_found"] += len(own & named)
                    c["named"] += len(named)
                    c["named_dirty"] += len(named & dirty)
            variants.append(
                {
                    "variant": name,
                    "shape": {k: list(v) if isinstance(v, tuple) else v for k, v in shape.items()},
                    "typologies": _pooled(totals),
                    "alerts_per_10k_accounts": round(alerts_n * 10_000 / accounts, 1),
                    "honest_look_alikes_alerted": sorted(set(honest)),
                }
            )
        aml: dict[str, Any] | None = None
        if amlsim is not None and amlsim.exists():
            folder = base / "amlsim"
            folder.mkdir(parents=True, exist_ok=True)
            truth = convert_amlsim(amlsim, folder)
            alerts, summary = _replay_world(folder, truth, config)
            aml = _amlsim_scores(truth, alerts, TYPOLOGIES)
            aml["sample"] = str(amlsim)
            aml["replay_seconds"] = round(summary.seconds, 1)
    figures: dict[str, Any] = {
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "seeds": seeds,
        "scale": scale,
        "days": days,
        "transfers": int(rows),
        "records_per_second": round(rows / seconds) if seconds else 0,
        "variants": variants,
        "amlsim": aml,
    }
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return figures
    click.echo(f"machine         {figures['machine']}")
    click.echo(
        f"worlds          {seeds} seeds x {days} days, scale {scale}, in {len(variants)} shapes: "
        f"{int(rows):,} transfers, replayed at {figures['records_per_second']:,} transfers/s"
    )
    for v in variants:
        click.echo("")
        click.echo(
            f"{v['variant']}: {v['alerts_per_10k_accounts']} alerts per 10,000 accounts, "
            f"honest look-alikes alerted: {len(v['honest_look_alikes_alerted'])}"
            + "".join(f" {d}:{s}" for d, s in v["honest_look_alikes_alerted"])
        )
        for line in typology_table(v["typologies"]):
            click.echo(line)
    if aml is not None:
        click.echo("")
        click.echo(
            f"IBM AMLSim sample ({aml['accounts']:,} accounts, {aml['fraud']:,} labelled fraud; "
            f"node level, labels name no typology): {aml['alerts_per_10k_accounts']} alerts per "
            "10,000 accounts"
        )
        for line in amlsim_table(aml):
            click.echo(line)
    return figures


def _amlsim_scores(
    truth: dict[str, Any], alerts: list[Any], typologies: tuple[str, ...]
) -> dict[str, Any]:
    from .transfers import score_nodes

    per = {}
    for t in (*typologies, "all"):
        chosen = typologies if t == "all" else (t,)
        sc = score_nodes(truth, alerts, chosen)
        per[t] = {k: round(v, 3) if isinstance(v, float) else v for k, v in sc.items()}
    alerts_n = len({a.alert_id for a in alerts})
    return {
        "accounts": truth["accounts"],
        "fraud": len(truth["fraud_accounts"]),
        "alerts": alerts_n,
        "alerts_per_10k_accounts": round(alerts_n * 10_000 / truth["accounts"], 1),
        "typologies": per,
    }


def _cell(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def typology_table(typologies: dict[str, dict[str, Any]]) -> list[str]:
    """The lines of ``bench --typologies``' table for one shape of worlds:
    per typology, pattern level (patterns planted and found, recall,
    subjects alerted and those on a pattern, ``correct``, precision, F1)
    and node level (precision, recall, F1 over accounts); ``-`` where
    undefined."""
    rows = [
        (
            t, c["planted"], c["found"], _cell(c["recall"]), c["alerted"], c["on_patterns"],
            _cell(c["precision"]), _cell(c["f1"]),
            _cell(c["node_precision"]), _cell(c["node_recall"]), _cell(c["node_f1"]),
        )
        for t, c in typologies.items()
    ]  # fmt: skip
    header = (
        "typology", "planted", "found", "recall", "alerted", "correct", "precision", "F1",
        "node P", "node R", "node F1",
    )  # fmt: skip
    return format_table(header, rows, right=range(1, len(header)))


def amlsim_table(aml: dict[str, Any]) -> list[str]:
    """The lines of the AMLSim table: per typology and for all together,
    accounts named, of them labelled fraud, and node precision, recall, F1."""
    rows = [
        (t, c["named"], c["correct"], _cell(c["precision"]), _cell(c["recall"]), _cell(c["f1"]))
        for t, c in aml["typologies"].items()
    ]
    header = ("typology", "named", "fraud", "node P", "node R", "node F1")
    return format_table(header, rows, right=range(1, len(header)))
