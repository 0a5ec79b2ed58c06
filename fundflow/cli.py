"""The ``fundflow`` command.

Every user error (a missing file, a bad flag, a bad config value) is one line
on stderr and exit code 2; a failure to write an output is one line and exit
code 1. A stack trace is a bug.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import click
import msgspec

from fundflow.detectors import Config, default_toml, load_config
from fundflow.detectors.engine import detector_names as detector_list
from fundflow.schemas.decode import ColumnMap
from fundflow.schemas.records import KINDS

from . import kafka_cli
from .alerts_cli import alerts
from .graph import graph_cmd
from .notify_cli import notify_cmd
from .replay import (
    AtomicFile,
    ReplayError,
    check_columns,
    check_dumps,
    check_inputs,
    is_csv,
    replay,
)
from .serve.cli import serve_cmd, users
from .store import StoreError, open_sink

if TYPE_CHECKING:
    from .prom import PrometheusMetrics


#: ``fundflow replay``'s exit code when records were read and every one was refused.
ALL_REFUSED_EXIT = 3


class UserError(click.ClickException):
    """One line on stderr, exit code 2."""

    exit_code = 2

    def show(self, file=None) -> None:  # type: ignore[no-untyped-def]
        click.echo(f"fundflow: {self.format_message()}", err=True)


class OutputError(UserError):
    """An output could not be written: exit code 1."""

    exit_code = 1


def _config(path: str | None) -> Config:
    try:
        return load_config(path)
    except ValueError as e:
        raise UserError(str(e)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fundflow")
def main() -> None:
    """Fund-flow monitoring: finds fund pools, misused client reserves and
    maturity mismatches in custody and clearing transactions."""


main.add_command(alerts)
main.add_command(kafka_cli.worker_cmd)
main.add_command(kafka_cli.topics)
main.add_command(graph_cmd)
main.add_command(serve_cmd)
main.add_command(users)
main.add_command(notify_cmd)


@main.command("replay")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option(
    "--alerts-out",
    default="-",
    show_default=True,
    metavar="FILE",
    help="Alerts as JSONL ('-' for stdout).",
)
@click.option(
    "--deadletter-out",
    default="fundflow.deadletter.jsonl",
    show_default=True,
    metavar="FILE",
    help="Refused records with their reason, as JSONL.",
)
@click.option(
    "--db",
    default="fundflow.db",
    show_default=True,
    metavar="PATH|URL",
    help="Alert store: a SQLite file, or a postgresql:// URL.",
)
@click.option("--no-db", is_flag=True, help="Do not write the alert store.")
@click.option("--config", "config_path", metavar="FILE", help="Detector configuration (TOML).")
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    help="Record kind of every row (CSV dumps without a type column).",
)
@click.option(
    "--detectors",
    "detector_names",
    metavar="NAMES",
    help="Comma-separated detectors or groups to run: 'default' (the business detectors), "
    "'typologies' (fan_in, fan_out, cycle, gather_scatter, scatter_gather) or single names. "
    "Default: engine.detectors of the configuration.",
)
@click.option(
    "--map",
    "column_map",
    multiple=True,
    metavar="FIELD=COLUMN,...",
    help="CSV dumps in a foreign layout: read wire field FIELD from column COLUMN "
    "(e.g. payer_account=src,amount=value). Needs --kind; repeatable.",
)
@click.option(
    "--const",
    "column_consts",
    multiple=True,
    metavar="FIELD=VALUE,...",
    help="With a foreign CSV layout: give FIELD the value VALUE in every row "
    "(e.g. system=CNAPS). Needs --kind; repeatable.",
)
@click.option("--summary-json", metavar="FILE", help="Write the summary figures as JSON.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress on stderr (default: when stderr is a terminal).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    metavar="N",
    help="Serve Prometheus metrics on http://127.0.0.1:N/metrics during the replay "
    "(0: a free port, printed on stderr). Default: no metrics.",
)
@click.option(
    "--metrics-linger",
    type=click.FloatRange(0),
    default=0,
    show_default=True,
    metavar="SECONDS",
    help="Keep the metrics endpoint up this long after the replay, to be scraped "
    "(SIGTERM or Ctrl-C ends the wait early).",
)
@click.option(
    "--to-kafka",
    "to_kafka",
    metavar="BROKER",
    help="Send the records to the Kafka topics at BROKER (host:port) instead of replaying "
    "them here; see `fundflow worker`.",
)
@click.option(
    "--rate", type=click.FloatRange(min=1), metavar="N", help="With --to-kafka: N records/s."
)
@click.option("--namespace", metavar="PREFIX", help="With --to-kafka: topic-name prefix.")
@click.option(
    "--file-order",
    is_flag=True,
    help="With --to-kafka: every record in the dumps' order, reference records where they "
    "stand, as a live system publishes them (default: every dump's reference records first).",
)
def replay_cmd(
    paths: tuple[str, ...],
    alerts_out: str,
    deadletter_out: str,
    db: str,
    no_db: bool,
    config_path: str | None,
    kind: str | None,
    detector_names: str | None,
    column_map: tuple[str, ...],
    column_consts: tuple[str, ...],
    summary_json: str | None,
    progress: bool | None,
    metrics_port: int | None,
    metrics_linger: float,
    to_kafka: str | None,
    rate: float | None,
    namespace: str | None,
    file_order: bool,
) -> None:
    """Replay dumps (JSONL or CSV, gzip or not; '-' for stdin) through every detector.

    Reads the dumps in the order given, writes alerts to the store and as
    JSONL, refused records to the dead-letter file, and ends with a summary
    on stderr. Gzip is told by a dump's first bytes, whatever its name. When
    more than half of the records read were refused, one warning line
    follows, naming the commonest reasons and a likely fix.

    Exit 0 when the dumps were read; 3 when records were read and every one
    was refused; 2 (one line) for a missing file, a bad flag or config, a
    CSV dump with no type column and no --kind, or a dump in a compression
    other than gzip; 1 when an output cannot be written.
    """
    if to_kafka is None and (rate is not None or namespace is not None or file_order):
        raise UserError("--rate, --namespace and --file-order go with --to-kafka")
    if to_kafka is not None and detector_names:
        raise UserError(
            "--detectors does not go with --to-kafka (the workers' --config names them)"
        )
    if to_kafka is not None:
        if kind is not None and not all(is_csv(p) for p in paths):
            raise UserError("--kind with --to-kafka reads CSV dumps (a JSON line names its type)")
        try:
            check_inputs(list(paths))
        except ReplayError as e:
            raise UserError(str(e)) from None
        _, columns = _detectors_and_columns(None, column_map, column_consts, kind, list(paths))
        try:
            check_dumps(list(paths), kind)
        except ReplayError as e:
            raise UserError(str(e)) from None
        kafka_cli.replay_to_kafka(
            list(paths), to_kafka, rate=rate, namespace=namespace,
            config_path=config_path, progress=progress, file_order=file_order,
            kind=kind, columns=columns,
        )  # fmt: skip
        return
    config = _config(config_path)
    try:
        check_inputs(list(paths))
    except ReplayError as e:
        raise UserError(str(e)) from None
    names, columns = _detectors_and_columns(
        detector_names, column_map, column_consts, kind, list(paths)
    )
    try:
        check_dumps(list(paths), kind)
    except ReplayError as e:
        raise UserError(str(e)) from None
    if progress is None:
        progress = sys.stderr.isatty()
    if metrics_linger and metrics_port is None:
        raise UserError("--metrics-linger needs --metrics-port")
    metrics = _serve_metrics(metrics_port) if metrics_port is not None else None
    outputs: list[AtomicFile] = []
    sink = None
    try:
        with contextlib.ExitStack() as stack:
            try:
                if alerts_out == "-":
                    alerts_file = sys.stdout.buffer
                else:
                    alerts_file = AtomicFile(alerts_out)
                    outputs.append(alerts_file)
                dead_file = AtomicFile(deadletter_out)
                outputs.append(dead_file)
                summary_file = AtomicFile(summary_json) if summary_json else None
                if summary_file is not None:
                    outputs.append(summary_file)
                if not no_db:
                    sink = stack.enter_context(open_sink(db))
            except (ReplayError, StoreError) as e:
                raise OutputError(str(e)) from None
            summary = replay(
                list(paths),
                config=config,
                kind=kind,
                detectors=names,
                columns=columns,
                sink=sink,
                alerts_out=alerts_file,
                deadletter_out=dead_file,
                progress=progress,
                metrics=metrics,
            )
            if summary_file is not None:
                summary_file.write(
                    msgspec.json.format(msgspec.json.encode(summary.as_json())) + b"\n"
                )
        for out in outputs:
            out.commit()
    except ReplayError as e:
        for out in outputs:
            out.discard()
        raise UserError(str(e)) from None
    except (OSError, StoreError) as e:
        for out in outputs:
            out.discard()
        message = getattr(e, "strerror", None) or str(e)
        raise OutputError(f"could not write the results: {message}") from None
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
    click.echo(summary.render(), err=True)
    warning = summary.refused_warning(deadletter_out)
    if warning is not None:
        click.echo(f"fundflow: {warning}", err=True)
    if not summary.balanced():  # the accounting identity is a promise: say so loudly if broken
        raise OutputError("records read != accepted + duplicates + dead letters")
    if metrics_linger:
        _linger(metrics_linger)
    if summary.refused_all():  # a run that refused everything must not look like a success
        sys.exit(ALL_REFUSED_EXIT)


def _detectors_and_columns(
    detector_names: str | None,
    column_map: tuple[str, ...],
    column_consts: tuple[str, ...],
    kind: str | None,
    paths: list[str],
) -> tuple[list[str] | None, ColumnMap | None]:
    """``--detectors`` as a checked list of names, and ``--map``/``--const``
    as a column map checked against each CSV dump's header."""
    names = None
    if detector_names is not None:
        entries = [n.strip() for n in detector_names.split(",") if n.strip()]
        if any(":" in n for n in entries):
            raise UserError(
                "--detectors: a rule of your own (module:Class) is named in [engine] detectors "
                "of the --config file, where its settings are read"
            )
        try:
            names = detector_list(entries, rules=False)
        except ValueError as e:
            raise UserError(f"--detectors: {e}") from None
        if not names:
            raise UserError("--detectors: name at least one detector or group")
    if not (column_map or column_consts):
        return names, None
    if kind is None:
        raise UserError("--map and --const need --kind (the record kind of every row)")
    try:
        columns = ColumnMap.parse(kind, ",".join(column_map), ",".join(column_consts))
        check_columns(paths, columns)
    except (ValueError, ReplayError) as e:
        raise UserError(str(e)) from None
    return names, columns


def _serve_metrics(port: int) -> PrometheusMetrics:
    """Prometheus metrics for the replay, served on 127.0.0.1:``port`` until
    the command ends (the server is closed with click's context)."""
    try:
        from .prom import PrometheusMetrics
    except ImportError:
        raise UserError(
            "--metrics-port needs the prometheus-client package (pip install prometheus-client)"
        ) from None
    metrics = PrometheusMetrics(mode="replay")
    try:
        server = metrics.serve(port)
    except OSError as e:
        raise UserError(f"cannot serve metrics on 127.0.0.1:{port}: {e.strerror or e}") from None
    click.get_current_context().call_on_close(server.close)
    click.echo(f"fundflow: metrics on {server.url}", err=True)
    return metrics


def _linger(seconds: float) -> None:
    """Waits ``seconds`` with the metrics endpoint up, to be scraped; SIGTERM
    or Ctrl-C ends the wait, and the command, with exit 0 (the replay is done)."""
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait(seconds)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


@main.command()
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for world.jsonl and truth.json.",
)
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--scale", default=1, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--days", default=30, show_default=True, type=click.IntRange(8, 3650))
@click.option(
    "--noise",
    default=0.002,
    show_default=True,
    type=click.FloatRange(0, 0.5),
    help="Share of malformed and duplicate lines.",
)
@click.option("--gzip", "compress", is_flag=True, help="Write world.jsonl.gz.")
@click.option(
    "--transfers",
    is_flag=True,
    help="Write a raw-transfer world instead: transfers.csv in a foreign column layout with "
    "planted laundering typologies and honest look-alikes, and truth.json (no --noise).",
)
@click.option(
    "--amlsim",
    "amlsim_src",
    metavar="PATH",
    type=click.Path(exists=True),
    help="Convert an IBM AMLSim sample (a folder or .tgz with nodes.csv and transactions.csv) "
    "into a transfer world instead: transfers.csv in the --transfers layout, one step a day, "
    "and truth.json with its labelled fraud accounts.",
)
@click.option(
    "--currency",
    default="USD",
    show_default=True,
    help="With --amlsim: the currency of its amounts (the sample names none).",
)
def simulate(
    out_dir: str,
    seed: int,
    scale: int,
    days: int,
    noise: float,
    compress: bool,
    transfers: bool,
    amlsim_src: str | None,
    currency: str,
) -> None:
    """Write a synthetic world with labelled violators and honest look-alikes."""
    from .simulate import write_world

    path = Path(out_dir)
    if amlsim_src:
        _convert_amlsim(Path(amlsim_src), path, currency=currency)
        return
    if transfers:
        _simulate_transfers(path, seed=seed, scale=scale, days=days, compress=compress)
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
        truth = write_world(path, seed=seed, scale=scale, days=days, noise=noise, compress=compress)
    except OSError as e:
        raise OutputError(f"cannot write {out_dir}: {e.strerror or e}") from None
    click.echo(
        f"wrote {truth['records']:,} records to {path / ('world.jsonl.gz' if compress else 'world.jsonl')}: "
        f"{len(truth['violators'])} violations, {len(truth['honest'])} honest subjects (truth in {path / 'truth.json'})",
        err=True,
    )


def _convert_amlsim(src: Path, path: Path, *, currency: str) -> None:
    from .amlsim import AMLSimError, convert_amlsim

    if not currency.isalpha() or len(currency) != 3 or not currency.isupper():
        raise UserError(f"--currency: {currency!r} is not a three-letter code such as USD")
    try:
        path.mkdir(parents=True, exist_ok=True)
        truth = convert_amlsim(src, path, currency=currency)
    except AMLSimError as e:
        raise UserError(str(e)) from None
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    click.echo(
        f"wrote {truth['rows']:,} transfers to {path / truth['file']}: {truth['accounts']:,} "
        f"accounts, {len(truth['fraud_accounts']):,} labelled fraud (truth in "
        f"{path / 'truth.json'}); replay with: fundflow replay "
        + " ".join(truth["replay_args"])
        + f" --detectors typologies {path / truth['file']}",
        err=True,
    )


def _simulate_transfers(path: Path, *, seed: int, scale: int, days: int, compress: bool) -> None:
    from .transfers import write_transfers

    try:
        path.mkdir(parents=True, exist_ok=True)
        truth = write_transfers(path, seed=seed, scale=scale, days=days, compress=compress)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    click.echo(
        f"wrote {truth['rows']:,} transfers to {path / truth['file']}: "
        f"{len(truth['patterns'])} planted patterns, {len(truth['honest'])} honest look-alikes "
        f"(truth in {path / 'truth.json'}); replay with: fundflow replay "
        + " ".join(truth["replay_args"])
        + f" --detectors typologies {path / truth['file']}",
        err=True,
    )


@main.command()
@click.option("--defaults", is_flag=True, help="Print the default configuration with its comments.")
@click.option(
    "--check", "check_path", metavar="FILE", help="Check a configuration file and print the result."
)
def config(defaults: bool, check_path: str | None) -> None:
    """Show or check the configuration (one TOML file): the detectors'
    sections, and the [kafka], [logging] and [[webhooks]] tables the
    worker, its log and the deliverer read."""
    if check_path:
        cfg = _config(check_path)
        click.echo(
            f"{check_path}: ok ({len(cfg.raw)} detector sections{_shell_tables(check_path)})"
        )
        return
    if not defaults:
        raise UserError("say --defaults to print the defaults, or --check FILE to check a file")
    click.echo(default_toml(), nl=False)


def _shell_tables(path: str) -> str:
    """The shells' tables of ``path``, each checked by the reader that
    uses it (the file alone: no ``FUNDFLOW_*`` variable is read), as the
    end of ``config --check``'s line; ``UserError`` names a bad one."""
    from fundflow.streams.settings import load_kafka_settings

    from .notify import load_hooks
    from .redact import load_redactor

    doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    try:
        load_kafka_settings(path, env={})
        load_redactor(path, env={})
        hooks = load_hooks(path, required=False)
    except ValueError as e:
        raise UserError(str(e)) from None
    shown = [name for name in ("kafka", "logging") if name in doc]
    if hooks:
        shown.append(f"{len(hooks)} webhook{'s' if len(hooks) > 1 else ''}")
    return f"; {', '.join(shown)}" if shown else ""


@main.command()
@click.option(
    "--dir",
    "work_dir",
    default="fundflow-demo",
    show_default=True,
    type=click.Path(file_okay=False),
)
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--scale", default=1, show_default=True, type=click.IntRange(1, 10_000))
def demo(work_dir: str, seed: int, scale: int) -> None:
    """Simulate a world, replay it through every detector, and check the
    alerts against the world's truth: the embedded default, no broker."""
    from .demo import run_demo

    try:
        ok = run_demo(Path(work_dir), seed=seed, scale=scale)
    except (OSError, StoreError, ReplayError) as e:
        raise OutputError(str(e)) from None
    if not ok:
        sys.exit(1)


@main.command()
@click.option(
    "--records",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(10_000),
    help="At least this many records.",
)
@click.option("--seed", default=1, show_default=True, type=int)
@click.option(
    "--dir",
    "work_dir",
    type=click.Path(file_okay=False),
    help="Keep the world here (default: a temporary folder).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option(
    "--typologies",
    is_flag=True,
    help="Measure the typology detectors' precision and recall per typology instead, on "
    "labelled transfer worlds (simulate --transfers) of seeds 1..--seeds.",
)
@click.option(
    "--seeds",
    default=5,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="With --typologies: how many worlds in each shape.",
)
@click.option(
    "--amlsim",
    "amlsim_src",
    metavar="PATH",
    type=click.Path(exists=True),
    help="With --typologies: the IBM AMLSim sample to score at node level too (default: the "
    "one vendored in tests/data/amlsim, when the source tree is at hand).",
)
def bench(
    records: int,
    seed: int,
    work_dir: str | None,
    as_json: bool,
    typologies: bool,
    seeds: int,
    amlsim_src: str | None,
) -> None:
    """Measure replay speed against a bare JSON decode of the same file."""
    from .amlsim import AMLSimError
    from .bench import AMLSIM_SAMPLE, run_bench, run_typology_bench

    if typologies:
        sample = Path(amlsim_src) if amlsim_src else AMLSIM_SAMPLE
        try:
            run_typology_bench(
                seeds=seeds, scale=1, days=30, work_dir=work_dir, as_json=as_json, amlsim=sample
            )
        except AMLSimError as e:
            raise UserError(str(e)) from None
        return
    run_bench(records=records, seed=seed, work_dir=work_dir, as_json=as_json)


if __name__ == "__main__":  # pragma: no cover
    main()
