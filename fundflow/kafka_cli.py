"""The Kafka commands: ``fundflow worker``, ``fundflow topics create`` and
the producer behind ``fundflow replay --to-kafka``.

Kafka settings (SASL/SSL included) come from the ``[kafka]`` table of the
``--config`` file and ``FUNDFLOW_KAFKA_*`` variables; flags override the
non-secret ones. See streams/README.md.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from fundflow.detectors import load_config
from fundflow.schemas.decode import ColumnMap
from fundflow.text_table import format_table


class KafkaUserError(click.ClickException):
    """One line on stderr, exit code 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"fundflow: {self.format_message()}", err=True)


class KafkaRuntimeError(KafkaUserError):
    """The broker or the store failed while running: exit code 1."""

    exit_code = 1


def _settings(config_path: str | None, **flags: Any):  # type: ignore[no-untyped-def]
    from fundflow.streams.settings import load_kafka_settings

    try:
        return load_kafka_settings(config_path).replace(**flags)
    except ValueError as e:
        raise KafkaUserError(str(e)) from None


def _detector_config(path: str | None):  # type: ignore[no-untyped-def]
    """The detector thresholds of ``path`` without its ``[kafka]`` table
    (until the detector loader ignores that table itself)."""
    if path is None:
        return load_config()
    import tomllib

    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as e:
        raise KafkaUserError(f"cannot read {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise KafkaUserError(f"{path} is not valid TOML: {e}") from None
    if "kafka" not in raw:
        try:
            return load_config(path)
        except ValueError as e:
            raise KafkaUserError(str(e)) from None
    raw.pop("kafka")
    try:
        return load_config(overrides=raw)
    except (TypeError, ValueError) as e:
        raise KafkaUserError(str(e)) from None


def _kafka_errors() -> tuple[type[BaseException], ...]:
    try:
        from kafka.errors import KafkaError
    except ImportError:
        raise KafkaUserError(
            "the Kafka commands need kafka-python: pip install kafka-python crc32c"
        ) from None
    return (KafkaError,)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _open_sink(db: str):  # type: ignore[no-untyped-def]
    """The worker's alert sink.

    A PostgreSQL server that cannot be reached at start (connection refused,
    not started, starting up or shutting down, out of connection slots, host
    name not resolvable yet, timeout: :class:`~fundflow.store.StoreUnavailableError`)
    does not stop the worker: it starts with the store down and the store
    guard's retries open the sink (see ``StoreGuard`` in streams/store_guard.py).
    Everything else is fatal here, one line and exit 1, since a retry
    would fail the same way: a malformed URL or unknown scheme, a password
    refused or missing, an unknown database or role, no pg_hba.conf entry,
    TLS refused, no privilege to create the schema, a newer schema, psycopg
    missing, a SQLite path that cannot be opened.
    """
    from fundflow import store

    try:
        if store.is_postgres_url(db):
            return store.DeferredSink(lambda: store.open_sink(db), store.mask_url(db))
        return store.open_sink(db)
    except store.StoreError as e:
        raise KafkaRuntimeError(str(e)) from None


# -- fundflow worker -----------------------------------------------------------------


@click.command("worker")
@click.option("--broker", metavar="HOST:PORT[,...]", help="Bootstrap servers (default: settings).")
@click.option(
    "--db",
    default="fundflow.db",
    show_default=True,
    metavar="PATH|URL",
    help="Alert store: a SQLite file, or a postgresql:// URL.",
)
@click.option("--no-db", is_flag=True, help="Alerts to the alerts topic only.")
@click.option(
    "--config", "config_path", metavar="FILE", help="Detector and [kafka] settings (TOML)."
)
@click.option(
    "--namespace", metavar="PREFIX", help="Prefix of every topic name and of the group id."
)
@click.option(
    "--partitions",
    type=click.IntRange(1),
    metavar="N",
    help="Refuse to start unless the input topics have N partitions.",
)
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    metavar="P",
    help="Serve GET /health on 127.0.0.1:P (0: a free port, logged).",
)
@click.option(
    "--drain-and-exit",
    is_flag=True,
    help="Stop when every assigned input partition is consumed to its end, after "
    "settling the detectors as at the end of a replay (also: SIGUSR1).",
)
@click.option(
    "--whole-stream",
    is_flag=True,
    help="Read every partition of the input topics into one engine and run the detectors "
    "of [engine] detectors that need the whole stream (down_payment_loan, the typologies); "
    "the other workers leave them to it. For topics of more than one partition; one such "
    "worker per namespace.",
)
@click.option(
    "--checkpoint-records", type=click.IntRange(1), metavar="N", help="Checkpoint every N records."
)
@click.option(
    "--checkpoint-seconds", type=click.FloatRange(0.01), metavar="S", help="...or every S seconds."
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    metavar="N",
    help="Serve Prometheus metrics on http://127.0.0.1:N/metrics (0: a free port). Default: none.",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING"]),
)
def worker_cmd(
    broker: str | None,
    db: str,
    no_db: bool,
    config_path: str | None,
    namespace: str | None,
    partitions: int | None,
    health_port: int | None,
    drain_and_exit: bool,
    whole_stream: bool,
    checkpoint_records: int | None,
    checkpoint_seconds: float | None,
    metrics_port: int | None,
    log_level: str,
) -> None:
    """The always-on daemon: consume the input topics, alert within a second.

    Logs `fundflow worker ready` once the reference topic is read to its end.
    SIGTERM: final checkpoint, store flushed, exit 0.
    """
    settings = _settings(
        config_path,
        bootstrap=broker,
        namespace=namespace,
        checkpoint_records=checkpoint_records,
        checkpoint_seconds=checkpoint_seconds,
    )
    config = _detector_config(config_path)
    from fundflow.streams.checkpoint import load_checkpoint_key

    try:
        checkpoint_key = load_checkpoint_key()  # the environment only: never a flag
    except ValueError as e:
        raise KafkaUserError(str(e)) from None
    errors = _kafka_errors()
    from fundflow.streams.health import HealthServer
    from fundflow.streams.worker import START_ATTEMPT_ENV, Worker, WorkerError

    logging.basicConfig(
        level=log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from fundflow.redact import install, load_redactor

    try:
        install(load_redactor(config_path))  # account ids in log lines: hashed by default
    except ValueError as e:
        raise KafkaUserError(str(e)) from None
    logging.getLogger("mode.timers").setLevel(logging.ERROR)  # "timer overlapping" on a busy loop
    from fundflow.streams.logfilter import RepeatFilter

    noisy = ("kafka", "aiokafka", "faust", "mode")
    for name in noisy:
        logging.getLogger(name).setLevel(logging.WARNING if log_level != "DEBUG" else logging.INFO)
    # A broker away makes the client log a failed connection many times a second.
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter(noisy, interval=10.0))
    metrics = server = None
    if metrics_port is not None:
        try:
            from .prom import PrometheusMetrics
        except ImportError:
            raise KafkaUserError(
                "--metrics-port needs prometheus-client (pip install prometheus-client)"
            ) from None
        # The whole-stream worker reads every record the others read: its
        # mode lets a sum over workers leave its input counts out.
        metrics = PrometheusMetrics(mode="whole_stream" if whole_stream else "worker")
        try:
            server = metrics.serve(metrics_port)
        except OSError as e:
            raise KafkaUserError(
                f"cannot serve metrics on 127.0.0.1:{metrics_port}: {e.strerror or e}"
            ) from None
        logging.getLogger("fundflow.worker").info("metrics on %s", server.url)
    sink = None if no_db else _open_sink(db)

    def restart(attempt: int) -> None:
        """The same command line in a fresh process, under the same pid
        (the worker's start-up attempt ``attempt``; sockets close on exec)."""
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os.environ[START_ATTEMPT_ENV] = str(attempt)
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])

    worker = Worker(
        settings,
        config,
        sink,
        drain=drain_and_exit,
        expect_partitions=partitions,
        metrics=metrics,
        restart=restart,
        checkpoint_key=checkpoint_key,
        whole_stream=whole_stream,
    )
    health = None
    if health_port is not None:
        try:
            health = HealthServer(health_port, worker.health).start()
        except OSError as e:
            raise KafkaUserError(
                f"cannot serve health on 127.0.0.1:{health_port}: {e.strerror or e}"
            ) from None
        logging.getLogger("fundflow.worker").info("health on %s", health.url)
    try:
        code = worker.run()
    except WorkerError as e:
        raise KafkaUserError(str(e)) from None
    except errors as e:
        raise KafkaRuntimeError(f"kafka: {e}") from None
    finally:
        if health is not None:
            health.close()
        if server is not None:
            server.close()
    if code:
        raise KafkaRuntimeError(f"the worker stopped on an error (exit {code}); see the log above")


# -- fundflow topics -------------------------------------------------------------------


@click.group("topics")
def topics() -> None:
    """Manage the pipeline's Kafka topics."""


@topics.command("create")
@click.option("--broker", metavar="HOST:PORT[,...]")
@click.option("--config", "config_path", metavar="FILE")
@click.option("--namespace", metavar="PREFIX")
@click.option(
    "--partitions", type=click.IntRange(1, 10_000), metavar="N", help="Input topics' partitions."
)
@click.option("--replication-factor", type=click.IntRange(1), metavar="N")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for the broker, to connect and for each request.",
)
def topics_create(
    broker: str | None,
    config_path: str | None,
    namespace: str | None,
    partitions: int | None,
    replication_factor: int | None,
    timeout: float,
) -> None:
    """Create every topic (idempotent): reference and alerts compacted.

    Exit 2 (one line) for a bad flag or setting; 1 (one line) when the
    broker cannot be reached within --timeout, refuses, or answers
    something the Kafka client cannot handle.
    """
    settings = _settings(
        config_path,
        bootstrap=broker,
        namespace=namespace,
        partitions=partitions,
        replication_factor=replication_factor,
    )
    errors = _kafka_errors()
    from fundflow.streams.producer import create_topics

    try:
        result = create_topics(settings, timeout_s=timeout)
    except errors as e:
        raise KafkaRuntimeError(f"kafka: {_one_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - an odd answer trips the client anywhere
        raise KafkaRuntimeError(
            f"kafka: the broker's answer could not be handled: {type(e).__name__}: {_one_line(e)}"
        ) from None
    for line in format_table(("status", "topic"), [(what, name) for name, what in result.items()]):
        click.echo(line)


# -- fundflow replay --to-kafka ----------------------------------------------------------


def replay_to_kafka(
    paths: list[str],
    broker: str,
    *,
    rate: float | None = None,
    namespace: str | None = None,
    config_path: str | None = None,
    progress: bool | None = None,
    file_order: bool = False,
    kind: str | None = None,
    columns: ColumnMap | None = None,
) -> None:
    """What ``fundflow replay --to-kafka BROKER`` runs: every dump into the
    topics, then one summary line on stderr."""
    settings = _settings(config_path, bootstrap=broker, namespace=namespace)
    config = _detector_config(config_path)
    zone = config.engine.zone
    errors = _kafka_errors()
    from fundflow.streams.producer import DumpProducer
    from fundflow.streams.topics import TopicNames

    if progress is None:
        progress = sys.stderr.isatty()

    def show(n: int) -> None:
        sys.stderr.write(f"\r{n:>12,} records sent ")
        sys.stderr.flush()

    try:
        _check_topics_exist(settings, TopicNames(settings.namespace))
        producer = DumpProducer(
            settings,
            rate=rate,
            zone=zone,
            progress=show if progress else None,
            config=config,
            file_order=file_order,
            kind=kind,
            columns=columns,
        )
        try:
            summary = producer.send_dumps(paths)
        finally:
            producer.close()
    except OSError as e:
        raise KafkaUserError(f"cannot read a dump: {e.strerror or e}") from None
    except errors as e:
        raise KafkaRuntimeError(f"kafka: {e}") from None
    if progress:
        sys.stderr.write("\r" + " " * 40 + "\r")
    click.echo(summary.render(), err=True)


def _check_topics_exist(settings: Any, names: Any) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(enable_auto_commit=False, **settings.client_options())
    try:
        existing = consumer.topics()
    finally:
        consumer.close()
    missing = [t for t in names.needed() if t not in existing]
    if missing:
        raise KafkaUserError(
            f"missing topics {', '.join(missing)}: run `fundflow topics create` with the same --namespace first"
        )
