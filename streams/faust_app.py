"""The Faust wiring: the app, its topics and tables, the agents and timers,
and the reference table (a Faust class the worker extends).

:func:`_build_app` makes the Faust app of a :class:`~fundflow.streams.worker.Worker`
and connects it: the batch consumer (:mod:`~fundflow.streams.delivery`)
hands each fetched run of an input partition to the topic's agent
(:func:`_add_agent`), which calls the worker's record path, gap recovery
and checkpointing; the ``checkpoints`` table holds the checkpoints; the
reference topic is a global table whose records go to the worker's shared
reference (:func:`_reference_table_class`); rebalances call the worker's
``on_assigned`` and ``on_revoked``; two timers run the worker's tick and its
metrics. Faust's worker with the fundflow shutdown, which runs the app, is
the life cycle's (:mod:`~fundflow.streams.lifecycle`).

Nothing here decides what the worker does; it only says where Faust calls
in. Faust is imported by the caller (``faust`` is passed in), so this module
loads without it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .delivery import batch_transport_class
from .settings import KafkaSettings

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger("fundflow.worker")


def _credentials(faust: Any, s: KafkaSettings) -> Any:
    """SASL/SSL settings as Faust credentials (``None`` for PLAINTEXT)."""
    proto = s.security_protocol.upper()
    if proto == "PLAINTEXT":
        return None
    context = None
    if proto.endswith("SSL"):
        from aiokafka.helpers import create_ssl_context  # noqa: PLC0415

        context = create_ssl_context(
            cafile=s.ssl_cafile,
            certfile=s.ssl_certfile,
            keyfile=s.ssl_keyfile,
            password=s.ssl_password,
        )
        context.check_hostname = s.ssl_check_hostname
    if proto.startswith("SASL"):
        return faust.SASLCredentials(
            username=s.sasl_username,
            password=s.sasl_password,
            ssl_context=context,
            mechanism=s.sasl_mechanism or "PLAIN",
        )
    return faust.SSLCredentials(context)


def _build_app(faust: Any, w: Worker, datadir: str, loop: Any) -> Any:
    s = w.settings
    names = w.names
    n = w.n_partitions
    brokers = [f"kafka://{b.strip()}" for b in s.bootstrap.split(",") if b.strip()]
    handlers: dict[str, Any] = {}
    ref_partitions = w.ref_seen
    floors = {names.reference: lambda tp: ref_partitions.get(tp.partition, 0)}
    app = faust.App(
        names.group,
        loop=loop,
        broker=brokers,
        broker_client_id=s.client_id,
        broker_credentials=_credentials(faust, s),
        broker_session_timeout=s.session_timeout_ms / 1000,
        broker_heartbeat_interval=max(1.0, s.session_timeout_ms / 4000),
        broker_max_poll_records=s.batch_size,
        consumer_max_fetch_size=s.fetch_bytes,
        # Nothing commits on a timer: the worker commits after checkpoints.
        broker_commit_livelock_soft_timeout=365 * 24 * 3600.0,
        consumer_auto_offset_reset="earliest",
        datadir=datadir,
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
        producer_max_batch_size=s.producer_batch_bytes,
        store="memory://",
        stream_buffer_maxsize=max(4096, 2 * s.batch_size),
        stream_recovery_delay=0.0,
        stream_wait_empty=False,
        table_standby_replicas=0,
        topic_allow_declare=False,
        topic_disable_leader=True,
        topic_partitions=n,
        web_enabled=False,
    )
    # Before anything asks the app for its transport: input records reach
    # the agents a fetched batch at a time (streams/delivery.py).
    app.transport = batch_transport_class(handlers, floors)(app.conf.broker_consumer, app)

    def topic(name: str, partitions: int, acks: bool = True) -> Any:
        return app.topic(
            name,
            partitions=partitions,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            acks=acks,
        )

    w.alerts_topic = topic(names.alerts, n)
    w.deadletter_topic = topic(names.deadletter, 1)
    w.table = app.Table(
        "checkpoints",
        default=None,
        partitions=n,
        changelog_topic=topic(names.checkpoints, n),
        key_type=bytes,
        value_type=bytes,
    )
    reference = _reference_table_class(faust)(
        app,
        name="reference",
        default=None,
        partitions=1,
        changelog_topic=topic(names.reference, 1),
        key_type=bytes,
        value_type=bytes,
        is_global=True,
        synchronize_all_active_partitions=True,
        recovery_buffer_size=1000,
    )
    reference.worker = w
    app.tables.add(reference)

    @reference.on_recover
    async def recovered() -> None:
        w.on_recovered()

    for full, short in w.inputs.items():
        # Subscribed (the group assigns them) but fed to the agent by the
        # batch consumer, not by Faust's per-record streams.
        app.topics.add(topic(full, n, acks=False))
        handlers[full] = _add_agent(app, w, short)

    async def assigned(sender: Any, assigned: Any, **_: Any) -> None:
        w.on_assigned(assigned)

    async def revoked(sender: Any, revoked: Any, **_: Any) -> None:
        w.on_revoked(revoked)

    app.on_partitions_assigned.connect(assigned, weak=False)
    app.on_partitions_revoked.connect(revoked, weak=False)

    interval = max(0.01, s.batch_ms / 1000)

    @app.timer(interval)
    async def tick() -> None:
        try:
            await w.tick()
        except Exception:  # noqa: BLE001 - a timer that raises would stop the worker
            log.exception("periodic work failed; retrying at the next tick")

    @app.timer(1.0)
    async def metrics() -> None:
        try:
            w.report_metrics()
            w.maybe_log_progress()
        except Exception:  # noqa: BLE001
            log.exception("metrics report failed")

    return app


def _add_agent(app: Any, w: Worker, short: str) -> Any:
    """The agent of input topic ``short``: it takes the fetched batches of
    the topic's partitions from an in-memory channel. Returns the handler
    the batch consumer calls with each batch (it waits while the channel
    is full: back-pressure on the fetcher)."""
    channel = app.channel(maxsize=4)

    async def agent(stream: Any) -> None:
        async for tp, records in stream:
            await w.wait_for_store()
            await w.learn_start(tp)
            w.ingest(short, tp, records)
            await w.send_queued()
            await w.seek_gaps()
            await w.maybe_checkpoint()

    agent.__name__ = agent.__qualname__ = f"consume_{short}"
    app.agent(channel, name=f"fundflow.{short}", concurrency=1)(agent)

    async def handler(tp: Any, records: list[Any]) -> None:
        await channel.send(value=(tp, records))

    return handler


def _reference_table_class(faust: Any) -> type:
    class ReferenceTable(faust.GlobalTable):
        """The reference topic as a global table: its records go to the
        worker's shared :class:`Reference` (the table's store), not to a dict
        of raw bytes."""

        worker: Worker

        def _changelog_topic_name(self) -> str:
            # Faust's assignor names a global table's changelog by this
            # method, which ignores a changelog topic given to the table.
            return self.changelog_topic.get_topic_name()

        def persisted_offset(self, tp: Any) -> int | None:
            # What the worker read before Faust started (its preload) is
            # this table's persisted state: recovery reads what follows.
            seen = self.worker.ref_seen.get(tp.partition)
            return seen - 1 if seen else None

        async def on_changelog_event(self, event: Any) -> None:
            # Faust applies a table's changelog in batches of
            # recovery_buffer_size (1000) and, once the table is recovered,
            # only when a batch is full: the last records of a burst would
            # wait for the next thousand. Each is applied as it comes; the
            # batch then finds it applied.
            self.worker.apply_reference((event,))

        def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
            self.worker.apply_reference(batch)

    return ReferenceTable
