"""Notifications that a source finished an export: which source and day to ingest now.

A system that finishes an export publishes a CloudEvent (structured JSON mode, spec 1.0) to the
configured RabbitMQ queue:

    {"specversion": "1.0", "id": "exp-2026-03-10-crm", "source": "urn:crm:exporter",
     "type": "fabric.source.exported", "datacontenttype": "application/json",
     "data": {"source": "crm", "entity": "customers", "partition": "2026-03-10"}}

`entity` is optional (all entities of the source). The event id is the run key: a redelivered
or re-sent event never starts a second run. An event that does not parse, names an unknown
source or entity, or a day outside the partitions is invalid: it is moved to the dead letter
queue with the reason (header `x-fabric-reason`) and acknowledged, so it never blocks the queue.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fabric.config import FabricConfig, SourceEventsConfig
from fabric.errors import ConfigError, FabricError

EVENT_TYPE = "fabric.source.exported"
REASON_HEADER = "x-fabric-reason"


class InvalidEvent(FabricError):
    """A message on the queue is not a usable "source exported" event (the reason says why)."""


class BrokerUnavailable(FabricError):
    """The broker cannot be reached or refused the consumer."""


@dataclass(frozen=True)
class SourceExported:
    event_id: str
    event_source: str
    source: str
    entities: tuple[str, ...]
    partition: date

    @property
    def run_key(self) -> str:
        return self.event_id


def parse_event(config: FabricConfig, body: bytes, today: date | None = None) -> SourceExported:
    """Validate one message body against the CloudEvent envelope and the configuration."""
    try:
        event = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEvent(f"not a JSON CloudEvent: {exc}") from None
    if not isinstance(event, dict):
        raise InvalidEvent("not a JSON CloudEvent: the message is not an object")
    for attribute in ("specversion", "id", "source", "type"):
        if not isinstance(event.get(attribute), str) or not event[attribute]:
            raise InvalidEvent(f"CloudEvent attribute {attribute!r} is missing or not a string")
    if event["specversion"] != "1.0":
        raise InvalidEvent(f"specversion {event['specversion']!r}: only CloudEvents 1.0 is read")
    if event["type"] != EVENT_TYPE:
        raise InvalidEvent(f"type {event['type']!r}: expected {EVENT_TYPE!r}")
    data = event.get("data")
    if not isinstance(data, dict):
        raise InvalidEvent("data must be an object with source, partition and optionally entity")
    source = data.get("source")
    if not isinstance(source, str) or source not in config.sources:
        known = ", ".join(config.sources)
        raise InvalidEvent(f"data.source {source!r} is not a source of fabric.yaml ({known})")
    declared = list(config.sources[source].entities)
    entity = data.get("entity")
    if entity is not None and entity not in declared:
        raise InvalidEvent(
            f"data.entity {entity!r} is not an entity of source {source} ({', '.join(declared)})"
        )
    try:
        partition = date.fromisoformat(str(data.get("partition")))
    except ValueError:
        raise InvalidEvent(f"data.partition {data.get('partition')!r} is not a date YYYY-MM-DD") from None
    last = (today or datetime.now(UTC).date()) - timedelta(days=1)
    if not config.partitions.start_date <= partition <= last:
        raise InvalidEvent(
            f"data.partition {partition} is outside the partitions {config.partitions.start_date}..{last}"
        )
    return SourceExported(
        event_id=event["id"],
        event_source=event["source"],
        source=source,
        entities=(entity,) if entity else tuple(declared),
        partition=partition,
    )


@dataclass(frozen=True)
class Delivery:
    """One message taken from the queue, not yet acknowledged."""

    tag: int
    body: bytes
    redelivered: bool


class RabbitQueue:
    """basic_get on the events queue; ack or dead-letter each message explicitly."""

    def __init__(self, channel: Any, settings: SourceEventsConfig) -> None:
        self.channel = channel
        self.queue = settings.queue
        self.dead_letter_queue = settings.dead_letter_queue or f"{settings.queue}.invalid"

    def get(self) -> Delivery | None:
        method, _, body = self.channel.basic_get(self.queue, auto_ack=False)
        if method is None:
            return None
        return Delivery(method.delivery_tag, bytes(body), bool(method.redelivered))

    def ack(self, delivery: Delivery) -> None:
        self.channel.basic_ack(delivery.tag)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move the message to the dead letter queue (persistent, with the reason), then ack it."""
        import pika

        self.channel.basic_publish(
            exchange="",
            routing_key=self.dead_letter_queue,
            body=delivery.body,
            properties=pika.BasicProperties(delivery_mode=2, headers={REASON_HEADER: reason[:1000]}),
        )
        self.channel.basic_ack(delivery.tag)


def _credentials(settings: SourceEventsConfig) -> tuple[str, str]:
    def read(name: str | None, default: str) -> str:
        if name is None:
            return default
        value = os.environ.get(name)
        if value is None:
            raise ConfigError(
                f"fabric.yaml: source_events names the environment variable {name}, which is not set"
            )
        return value

    return read(settings.user_env, "guest"), read(settings.password_env, "guest")


@contextmanager
def open_queue(settings: SourceEventsConfig) -> Iterator[RabbitQueue]:
    """A channel on the events queue (declared durable, with its dead letter queue).

    Messages taken and neither acked nor dead-lettered go back to the queue when it closes.
    """
    import pika
    import pika.exceptions

    user, password = _credentials(settings)
    parameters = pika.ConnectionParameters(
        host=settings.host,
        port=settings.port,
        virtual_host=settings.virtual_host,
        credentials=pika.PlainCredentials(user, password),
        connection_attempts=1,
        socket_timeout=5,
        blocked_connection_timeout=10,
    )
    where = f"amqp://{settings.host}:{settings.port}{settings.virtual_host} queue {settings.queue}"
    try:
        connection = pika.BlockingConnection(parameters)
    except pika.exceptions.AMQPError as exc:  # never echo credentials: only the class and host
        raise BrokerUnavailable(f"{where}: cannot connect ({type(exc).__name__})") from None
    try:
        channel = connection.channel()
        queue = RabbitQueue(channel, settings)
        channel.queue_declare(queue=settings.queue, durable=True)
        channel.queue_declare(queue=queue.dead_letter_queue, durable=True)
        yield queue
    except pika.exceptions.AMQPError as exc:
        raise BrokerUnavailable(f"{where}: {type(exc).__name__}: {exc}") from None
    finally:
        if connection.is_open:
            connection.close()
