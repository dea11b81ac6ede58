"""Notifications that a source finished an export: which source and day to ingest now.

A system that finishes an export publishes a CloudEvent (structured JSON mode, spec 1.0) to the
configured RabbitMQ queue or NATS JetStream subject (`source_events.kind`):

    {"specversion": "1.0", "id": "exp-2026-03-10-crm", "source": "urn:crm:exporter",
     "type": "fabric.source.exported", "datacontenttype": "application/json",
     "data": {"source": "crm", "entity": "customers", "partition": "2026-03-10"}}

`entity` is optional (all entities of the source). The event id is the run key: a redelivered
or re-sent event never starts a second run. An event that does not parse, names an unknown
source or entity, or a day outside the partitions is invalid: it is moved to the dead letter
queue (NATS: subject) with the reason (header `x-fabric-reason`) and acknowledged, so it never
blocks the queue. `open_queue` gives the same `EventQueue` interface for both brokers.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from fabric.aio import LoopOwner
from fabric.config import (
    FabricConfig,
    NatsSourceEvents,
    RabbitmqSourceEvents,
    SourceEventsConfig,
    nats_subject_covers,
)
from fabric.errors import ConfigError, FabricError, redact

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
    """One message taken from the queue, not yet acknowledged (`tag`: RabbitMQ's delivery tag,
    the JetStream stream sequence)."""

    tag: int
    body: bytes
    redelivered: bool


class EventQueue(Protocol):
    """What the sensor needs of a broker: take a message, then ack or dead-letter it."""

    @property
    def dead_letter_queue(self) -> str: ...

    def get(self) -> Delivery | None: ...

    def ack(self, delivery: Delivery) -> None: ...

    def dead_letter(self, delivery: Delivery, reason: str) -> None: ...


class RabbitQueue:
    """basic_get on the events queue; ack or dead-letter each message explicitly."""

    def __init__(self, channel: Any, settings: RabbitmqSourceEvents) -> None:
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


def _environment(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise ConfigError(
            f"fabric.yaml: source_events names the environment variable {name}, which is not set"
        )
    return value


def _credentials(settings: RabbitmqSourceEvents) -> tuple[str, str]:
    def read(name: str | None, default: str) -> str:
        return default if name is None else _environment(name)

    return read(settings.user_env, "guest"), read(settings.password_env, "guest")


def open_queue(settings: SourceEventsConfig) -> AbstractContextManager[EventQueue]:
    """The events queue of `settings`' broker, open for the `with` block.

    Messages taken and neither acked nor dead-lettered go back to the queue when it closes.
    Raises BrokerUnavailable when the broker cannot be reached (the message names the server,
    never a credential), ConfigError when the broker's setup contradicts fabric.yaml.
    """
    if isinstance(settings, NatsSourceEvents):
        return _open_nats(settings)
    return _open_rabbitmq(settings)


@contextmanager
def _open_rabbitmq(settings: RabbitmqSourceEvents) -> Iterator[RabbitQueue]:
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


class NatsQueue(LoopOwner):
    """The durable pull consumer (explicit ack) of the events subject on NATS JetStream.

    `get` pulls one message with `no_wait`, so an empty subject answers at once instead of
    holding the tick for a fetch timeout. `redelivered` is JetStream's delivery count > 1. An
    invalid event is published to the dead letter subject (in the same stream, stored before the
    original is acked) with the reason header. Messages taken and neither acked nor dead-lettered
    are nak'ed on close, so they come back at once; after a crash the server redelivers them when
    `ack_wait_seconds` has passed.
    """

    def __init__(self, settings: NatsSourceEvents) -> None:
        super().__init__()
        self.settings = settings
        self.dead_letter_queue = settings.dead_letters
        self.where = f"{','.join(settings.servers)} stream {settings.stream} subject {settings.subject}"
        self._nc: Any = None
        self._js: Any = None
        self._inbox: Any = None  # the subscription pulled messages are delivered to
        self._taken: dict[int, Any] = {}  # stream sequence -> message neither acked nor dead-lettered
        self._connect_failures: list[str] = []
        self._secrets: tuple[str | None, ...] = ()

    def connect(self, token: str | None, user: str | None, password: str | None) -> None:
        """Connect, create the stream and the consumer if missing, check them if they exist."""
        self._secrets = (token, password)
        self._call(self._connect(token, user, password))

    def _reason(self, exc: BaseException) -> str:
        """The error's class and message (e.g. the server's 'Authorization Violation'), on one
        line, with the credentials masked should a client ever echo them."""
        message = redact(" ".join(str(exc).split()), self._secrets)
        return f"{type(exc).__name__}: {message}" if message else type(exc).__name__

    def get(self) -> Delivery | None:
        msg = self._call(self._pull())
        if msg is None:
            return None
        metadata = msg.metadata
        tag = int(metadata.sequence.stream)
        self._taken[tag] = msg
        return Delivery(tag, bytes(msg.data), metadata.num_delivered > 1)

    def ack(self, delivery: Delivery) -> None:
        msg = self._taken.pop(delivery.tag)
        self._call(msg.ack_sync(timeout=self.settings.timeout_seconds))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Publish the message to the dead letter subject (with the reason), then ack it."""
        # A header value is one line.
        headers = {REASON_HEADER: " ".join(reason.split())[:1000]}
        publish = self._js.publish(
            self.dead_letter_queue, delivery.body, stream=self.settings.stream, headers=headers
        )
        self._call(publish)
        self.ack(delivery)

    def close(self) -> None:
        """Nak what was taken but not settled, then close the connection (best effort: a broken
        connection leaves the messages to the server's ack wait)."""
        if self._nc is not None:
            with contextlib.suppress(Exception):
                self.run(self._release())
            with contextlib.suppress(Exception):
                self.run(self._nc.close())
            self._nc = self._js = self._inbox = None
        self._taken.clear()
        self.close_loop()

    def _call(self, coroutine: Any) -> Any:
        from nats.errors import Error as NatsError
        from nats.errors import NoServersError

        try:
            return self.run(coroutine)
        except NoServersError:
            causes = ", ".join(dict.fromkeys(self._connect_failures)) or "no server answered"
            raise BrokerUnavailable(f"{self.where}: cannot connect ({causes})") from None
        except (OSError, TimeoutError, NatsError) as exc:
            raise BrokerUnavailable(f"{self.where}: {self._reason(exc)}") from None

    async def _connect(self, token: str | None, user: str | None, password: str | None) -> None:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
        from nats.js.errors import APIError, NotFoundError

        async def failed(exc: Exception) -> None:  # the client's error callback
            self._connect_failures.append(self._reason(exc))

        s = self.settings
        # max_reconnect_attempts=0 would make nats-py retry a down server forever; 1 with no
        # wait gives up after a second attempt.
        self._nc = await nats.connect(
            servers=s.servers, token=token, user=user, password=password,
            connect_timeout=s.timeout_seconds, allow_reconnect=False, max_reconnect_attempts=1,
            reconnect_time_wait=0, error_cb=failed,
        )  # fmt: skip
        js = self._nc.jetstream(timeout=s.timeout_seconds)
        subjects = [s.subject, self.dead_letter_queue]
        try:
            info = await js.stream_info(s.stream)
        except NotFoundError:
            try:
                await js.add_stream(
                    StreamConfig(
                        name=s.stream, subjects=subjects, retention=RetentionPolicy.WORK_QUEUE,
                        storage=StorageType.FILE,
                    )
                )  # fmt: skip
            except APIError as exc:
                raise ConfigError(f"{self.where}: cannot create the stream: {exc.description}") from None
        else:
            offered = info.config.subjects or []
            missing = [x for x in subjects if not any(nats_subject_covers(p, x) for p in offered)]
            if missing:
                raise ConfigError(
                    f"{self.where}: the stream exists with subjects {', '.join(offered) or '(none)'}, "
                    f"which do not take {', '.join(missing)}; add them to it or name another stream"
                )
        try:
            consumer = await js.consumer_info(s.stream, s.durable)
        except NotFoundError:
            consumer = None
        if consumer is not None and consumer.config.filter_subject != s.subject:
            raise ConfigError(
                f"{self.where}: the consumer {s.durable} exists with filter subject "
                f"{consumer.config.filter_subject!r}; name another durable"
            )
        try:  # creates the consumer, or updates its ack wait to fabric.yaml's
            await js.add_consumer(
                s.stream,
                ConsumerConfig(
                    durable_name=s.durable, filter_subject=s.subject, ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=s.ack_wait_seconds, max_deliver=-1,
                ),
            )  # fmt: skip
        except APIError as exc:
            raise ConfigError(f"{self.where}: consumer {s.durable}: {exc.description}") from None
        self._js = js

    async def _pull(self) -> Any:
        """One message of the consumer, or None when none is waiting (JetStream's pull API)."""
        s = self.settings
        if self._inbox is None:
            self._inbox = await self._nc.subscribe(self._nc.new_inbox())
        await self._nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{s.stream}.{s.durable}",
            b'{"batch": 1, "no_wait": true}',
            reply=self._inbox.subject,
        )
        msg = await self._inbox.next_msg(timeout=s.timeout_seconds)
        status = (msg.headers or {}).get("Status")
        if status in ("404", "408"):  # no message waiting / the pull request expired
            return None
        if status:
            description = (msg.headers or {}).get("Description", "")
            raise BrokerUnavailable(f"{self.where}: pull refused ({status} {description})")
        return msg

    async def _release(self) -> None:
        for msg in self._taken.values():
            # With a reply subject the server confirms the nak, so it is in effect on return.
            await self._nc.request(msg.reply, b"-NAK", timeout=self.settings.timeout_seconds)


def _nats_credentials(settings: NatsSourceEvents) -> tuple[str | None, str | None, str | None]:
    def read(name: str | None) -> str | None:
        return None if name is None else _environment(name)

    return read(settings.token_env), read(settings.user_env), read(settings.password_env)


@contextmanager
def _open_nats(settings: NatsSourceEvents) -> Iterator[NatsQueue]:
    credentials = _nats_credentials(settings)
    queue = NatsQueue(settings)
    try:
        queue.connect(*credentials)
        yield queue
    finally:
        queue.close()
