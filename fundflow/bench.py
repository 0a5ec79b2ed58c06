"""``fundflow bench``: replay speed against a bare JSON decode, in one run.

Simulates a world of at least the requested number of records, then times,
on the same lines held in memory and on one core:

1. a bare decode of every line (``msgspec.json.decode``, untyped; and
   ``orjson.loads`` when installed) — the floor for any JSON consumer;
2. the typed decode and validation into records (``RecordDecoder``);
3. decode plus every detector (the engine, no output);
4. the whole ``replay`` as the command runs it: reading the file, the
   SQLite store and the JSONL outputs.

It prints records per second for each and the ratio of (3) and (4) to (1).
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

    def engine() -> None:
        dec = RecordDecoder(config.engine.zone).decode
        eng = Engine(config)
        process = eng.process
        for ln in lines:
            rec = dec(ln)
            if type(rec) is not DeadLetter:
                process(rec)
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
            f"typed decode       {figures['typed_decode_per_s']:>10,} records/s  (validation into records)"
        )
        click.echo(
            f"decode + detect    {figures['decode_and_detect_per_s']:>10,} records/s  "
            f"({figures['ratio_detect_to_bare']}x the bare decode time)"
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


def run_typology_bench(
    *, seeds: int, scale: int, days: int, work_dir: str | None, as_json: bool
) -> dict[str, Any]:
    """Precision and recall of the typology detectors on ``seeds`` labelled
    transfer worlds (:mod:`fundflow.transfers`, seeds 1..N), each replayed
    through its foreign column layout as ``fundflow replay --map`` reads it.

    Recall: planted patterns with an alert of their typology on their
    subject. Precision: alerted subjects that belong to a planted pattern.
    Both pooled over the seeds; per seed in ``seeds`` of the result.
    """
    from fundflow.schemas.decode import ColumnMap
    from fundflow.schemas.records import Alert

    from .transfers import (
        COLUMN_MAP,
        CONSTANTS,
        TYPOLOGIES,
        honest_alerted,
        score_typologies,
        write_transfers,
    )

    config = load_config()
    columns = ColumnMap.parse("clearing_txn", COLUMN_MAP, CONSTANTS)
    totals = {
        t: dict.fromkeys(("planted", "found", "alerted", "on_patterns"), 0) for t in TYPOLOGIES
    }
    per_seed: list[dict[str, Any]] = []
    rows = seconds = 0.0
    honest_hits = 0
    with tempfile.TemporaryDirectory(prefix="fundflow-typologies-") as tmp:
        for seed in range(1, seeds + 1):
            folder = Path(work_dir or tmp) / f"seed-{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            truth = write_transfers(folder, seed=seed, scale=scale, days=days)
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
            alerts = [msgspec.json.decode(line, type=Alert) for line in raw.splitlines()]
            scores = score_typologies(truth, alerts)
            honest = honest_alerted(truth, alerts)
            honest_hits += len(honest)
            rows += summary.read
            seconds += summary.seconds
            per_seed.append({"seed": seed, "scores": scores, "honest_alerted": honest})
            for t, sc in scores.items():
                for k in totals[t]:
                    totals[t][k] += sc[k]
    figures: dict[str, Any] = {
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "seeds": seeds,
        "scale": scale,
        "days": days,
        "transfers": int(rows),
        "records_per_second": round(rows / seconds) if seconds else 0,
        "honest_look_alikes_alerted": honest_hits,
        "typologies": {
            t: {
                **c,
                "recall": round(c["found"] / c["planted"], 3) if c["planted"] else None,
                "precision": round(c["on_patterns"] / c["alerted"], 3) if c["alerted"] else None,
            }
            for t, c in totals.items()
        },
        "per_seed": per_seed,
    }
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return figures
    click.echo(f"machine         {figures['machine']}")
    click.echo(
        f"worlds          {seeds} seeds x {days} days, scale {scale}: {int(rows):,} transfers, "
        f"replayed at {figures['records_per_second']:,} transfers/s"
    )
    for line in typology_table(figures["typologies"]):
        click.echo(line)
    click.echo(f"honest look-alikes alerted: {honest_hits}")
    return figures


def typology_table(typologies: dict[str, dict[str, Any]]) -> list[str]:
    """The lines of ``bench --typologies``' table: per typology, patterns
    planted and found, recall, subjects alerted and those on a pattern
    (``correct``), precision (``-`` where nothing was planted or alerted)."""
    rows = [
        (
            t, c["planted"], c["found"], "-" if c["recall"] is None else f"{c['recall']:.3f}",
            c["alerted"], c["on_patterns"],
            "-" if c["precision"] is None else f"{c['precision']:.3f}",
        )
        for t, c in typologies.items()
    ]  # fmt: skip
    header = ("typology", "planted", "found", "recall", "alerted", "correct", "precision")
    return format_table(header, rows, right=range(1, len(header)))
