"""The private parts of Faust and mode that the daemon relies on.

The worker replaces Faust's consumer fetch loop with one that hands whole
batches to the agents (:mod:`fundflow.streams.delivery`), calls the consumer's
own offset-gap method there and its commit method after a checkpoint
(:mod:`fundflow.streams.checkpointing`), drains the producer's buffer after
each fetched run (:meth:`fundflow.streams.partitions.Partitions.send_queued`),
and extends mode's signal handling
(:mod:`fundflow.streams.lifecycle`). None of these are public API, so the
releases they were verified against are bounded in ``pyproject.toml`` and
every function relied on is fingerprinted here: the SHA-256 of its source as
those releases ship it. ``tests/unit/test_dependencies.py`` fails when a bound
in ``pyproject.toml`` differs from :data:`VERIFIED`, when the installed
release is outside it, or when a fingerprint no longer matches; moving a
bound means reading the new release's versions of these functions, adapting
the overrides, and recording the new fingerprints.

The attributes read off instances (the consumer's ``_read_offset``, the
consumer thread's ``_consumer``, a service's ``_stopped``) are checked by the
same test in the source of the classes that set them.
"""

from __future__ import annotations

#: distribution -> the version specifier the overrides were verified against
VERIFIED: dict[str, str] = {
    "faust-streaming": ">=0.15.3,<0.16",
    "mode-streaming": ">=0.7.1,<0.8",
}

#: "module:qualified.name" -> SHA-256 of the function's source
FINGERPRINTS: dict[str, str] = {
    "faust.transport.consumer:Consumer._drain_messages": "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417",
    "faust.transport.consumer:Consumer._add_gap": "4df2573ded7c1c2cde04dc6bde6d4480cb5875ef565256e56966b585ae39b1c1",
    "faust.transport.drivers.aiokafka:Consumer._commit": "a20eec84e4b2ed5072f6c6ab7707ac03d69e2255d67f115c31f8dc9cc246dc66",
    "faust.transport.producer:ProducerBuffer.flush_atmost": "4966e8c5f9b42eb97abe3f93cbc9bc566a22bdea01ae5328c5a6593414820323",
    "mode.worker:Worker._stop_on_signal": "beff8fabfeb1e1e3d4330c3e374c7472d1e72bf58b0353d5b3ccecba94172f3a",
    "mode.worker:Worker._schedule_shutdown": "1a6a5dfc88c2298b7ddc84be024a4344a54eaca8ba3a2d39e0447fa5b3905aa4",
}

#: "module:Class" -> assignments its source must contain
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "faust.transport.consumer:Consumer": ("self._read_offset = ",),
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread": ("self._consumer = ",),
    "faust.transport.producer:Producer": ("self.buffer = ProducerBuffer(",),
    "faust.transport.producer:ProducerBuffer": ("self.pending = asyncio.Queue()",),
    "mode.services:Service": ("self._stopped = ",),
}
