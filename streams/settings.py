"""Kafka settings: one typed object, read once at start-up.

Sources, later ones winning: the defaults below, the ``[kafka]`` table of the
configuration file (the same TOML file as the detector thresholds), the
environment (``FUNDFLOW_KAFKA_<FIELD>``, e.g. ``FUNDFLOW_KAFKA_BOOTSTRAP``,
``FUNDFLOW_KAFKA_SASL_PASSWORD``), then command-line flags (never secrets:
there are no flags for passwords). streams/README.md lists every field.

>>> s = load_kafka_settings(None, env={"FUNDFLOW_KAFKA_PARTITIONS": "4"})
>>> s.bootstrap, s.partitions, s.client_options()["security_protocol"]
('127.0.0.1:19092', 4, 'PLAINTEXT')
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .topics import check_namespace

ENV_PREFIX = "FUNDFLOW_KAFKA_"
_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap: str = "127.0.0.1:19092"
    namespace: str = ""
    client_id: str = "fundflow"
    # topics (``fundflow topics create``)
    partitions: int = 1
    replication_factor: int = 1
    # security
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = None
    ssl_check_hostname: bool = True
    # worker
    checkpoint_records: int = 50_000
    checkpoint_seconds: float = 10.0
    batch_size: int = 2000
    batch_ms: int = 50
    sink_batch: int = 500
    #: a worker that dies is noticed (and its partitions moved) after this long
    session_timeout_ms: int = 10_000
    #: the alert store down: first retry after this long, doubling up to the cap
    store_retry_seconds: float = 1.0
    store_retry_max_seconds: float = 30.0
    #: the alert store down: alerts kept in memory before the agents wait for it
    store_buffer_limit: int = 100_000
    #: Faust not ready this long after it starts (the reference topic is read
    #: before): the worker starts again in a fresh process (3 attempts in all)
    start_timeout_seconds: float = 120.0
    #: every input of a partition caught up and silent this long: the ordering
    #: stage releases what it holds (the only wall clock the engine is fed)
    idle_seconds: float = 5.0
    #: the most bytes of messages to one partition the worker's producer
    #: puts in one batch (Kafka's ``batch.size``); a burst of alerts larger
    #: than a batch waits a broker round trip per batch
    producer_batch_bytes: int = 512 * 1024
    #: the most bytes of one input partition a fetch brings (Kafka's
    #: ``max.partition.fetch.bytes``): over a backlog the worker waits a
    #: broker round trip each time a partition's fetched bytes run out
    fetch_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.partitions < 1 or self.partitions > 10_000:
            raise ValueError(f"kafka.partitions must be in 1..10000, got {self.partitions}")
        if self.replication_factor < 1:
            raise ValueError(
                f"kafka.replication_factor must be >= 1, got {self.replication_factor}"
            )
        if self.security_protocol not in _PROTOCOLS:
            raise ValueError(
                f"kafka.security_protocol must be one of {', '.join(_PROTOCOLS)}, "
                f"got {self.security_protocol!r}"
            )
        if self.sasl_mechanism is not None and self.sasl_mechanism not in _MECHANISMS:
            raise ValueError(
                f"kafka.sasl_mechanism must be one of {', '.join(_MECHANISMS)}, "
                f"got {self.sasl_mechanism!r}"
            )
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError(
                f"kafka.security_protocol {self.security_protocol} needs sasl_mechanism"
            )
        if self.checkpoint_records < 1:
            raise ValueError(
                f"kafka.checkpoint_records must be >= 1, got {self.checkpoint_records}"
            )
        if self.checkpoint_seconds <= 0:
            raise ValueError(f"kafka.checkpoint_seconds must be > 0, got {self.checkpoint_seconds}")
        if self.batch_size < 1 or self.batch_ms < 0 or self.sink_batch < 1:
            raise ValueError("kafka.batch_size and kafka.sink_batch must be >= 1, batch_ms >= 0")
        if self.store_retry_seconds <= 0 or self.store_retry_max_seconds < self.store_retry_seconds:
            raise ValueError(
                "kafka.store_retry_seconds must be > 0 and <= kafka.store_retry_max_seconds, "
                f"got {self.store_retry_seconds} and {self.store_retry_max_seconds}"
            )
        if self.store_buffer_limit < 1:
            raise ValueError(
                f"kafka.store_buffer_limit must be >= 1, got {self.store_buffer_limit}"
            )
        if self.idle_seconds <= 0:
            raise ValueError(f"kafka.idle_seconds must be > 0, got {self.idle_seconds}")
        if self.start_timeout_seconds <= 0:
            raise ValueError(
                f"kafka.start_timeout_seconds must be > 0, got {self.start_timeout_seconds}"
            )
        if not 16_384 <= self.producer_batch_bytes <= 1_000_000:
            raise ValueError(
                "kafka.producer_batch_bytes must be in 16384..1000000 (the producer's "
                f"largest request), got {self.producer_batch_bytes}"
            )
        if not 1 << 20 <= self.fetch_bytes <= 1 << 26:
            raise ValueError(
                "kafka.fetch_bytes must be in 1048576..67108864 (at least a record's "
                f"limit, 1 MiB), got {self.fetch_bytes}"
            )
        if not self.bootstrap.strip():
            raise ValueError("kafka.bootstrap must name at least one host:port")
        check_namespace(self.namespace)

    def replace(self, **changes: Any) -> KafkaSettings:
        """A copy with the non-``None`` ``changes`` applied (command-line flags)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments common to kafka-python's producer, consumer and admin."""
        opts: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap.split(",") if s.strip()],
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            opts["sasl_mechanism"] = self.sasl_mechanism
            if self.sasl_username is not None:
                opts["sasl_plain_username"] = self.sasl_username
            if self.sasl_password is not None:
                opts["sasl_plain_password"] = self.sasl_password
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"):
            value = getattr(self, name)
            if value is not None:
                opts[name] = value
        if self.security_protocol.endswith("SSL"):
            opts["ssl_check_hostname"] = self.ssl_check_hostname
        return opts

    def __repr__(self) -> str:  # never print secrets
        shown = {
            f.name: (
                "***" if "password" in f.name and getattr(self, f.name) else getattr(self, f.name)
            )
            for f in fields(self)
        }
        return f"KafkaSettings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def _convert(name: str, value: Any, typ: Any) -> Any:
    t = str(typ)
    try:
        if t.startswith("int"):
            if isinstance(value, bool | float):
                raise ValueError
            return int(value)
        if t.startswith("float"):
            return float(value)
        if t.startswith("bool"):
            if isinstance(value, bool):
                return value
            low = str(value).strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"kafka.{name} must be {t.split(' ')[0]}, got {value!r}") from None
    if not isinstance(value, str):
        shown = "a secret that is not a string" if "password" in name else repr(value)
        raise ValueError(f"kafka.{name} must be a string, got {shown}")
    return value


def load_kafka_settings(
    path: str | Path | None, env: Mapping[str, str] | None = None
) -> KafkaSettings:
    """Defaults, then the ``[kafka]`` table of ``path`` (other tables are the
    detectors' and are ignored here), then ``FUNDFLOW_KAFKA_*`` variables of
    ``env`` (the process environment when ``None``). Raises ``ValueError``
    with one line naming the bad value, or the unknown key."""
    import os

    env = os.environ if env is None else env
    known = {f.name: f.type for f in fields(KafkaSettings)}
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                table = tomllib.load(fh).get("kafka", {})
        except OSError as e:
            raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path} is not valid TOML: {e}") from None
        if not isinstance(table, dict):
            raise ValueError(f"{path}: [kafka] must be a table")
        for key, value in table.items():
            if key not in known:
                raise ValueError(f"{path}: unknown setting kafka.{key}; known: {', '.join(known)}")
            values[key] = _convert(key, value, known[key])
    for name, typ in known.items():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None and raw != "":
            values[name] = _convert(name, raw, typ)
        elif "password" in name and env.get(ENV_PREFIX + name.upper() + "_FILE"):
            # FUNDFLOW_KAFKA_SASL_PASSWORD_FILE: a secret mounted as a file.
            from fundflow.redact import read_secret_file

            variable = ENV_PREFIX + name.upper() + "_FILE"
            values[name] = read_secret_file(env[variable], variable)
    return KafkaSettings(**values)
