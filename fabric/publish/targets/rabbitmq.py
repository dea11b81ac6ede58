"""RabbitMQ: CloudEvents to a durable topic exchange, persistent, with publisher confirms.

The AMQP `message_id` is the record's message id, so a consumer de-duplicating by it drops a
re-send. Every message is published `mandatory`: a message no queue is bound for comes back and
is dead-lettered in `publish.dead_letter`; a broker nack likewise. When `queue` is configured it
is declared durable, bound with the routing key, with `x-dead-letter-exchange` set to
`dead_letter_exchange` (a durable fanout exchange), where messages its consumers reject go.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any

import pyarrow as pa

from fabric.config import RabbitmqPublisher
from fabric.publish.cloudevents import CONTENT_TYPE, events
from fabric.publish.outbox import BatchOutcome
from fabric.publish.targets.aio import LoopOwner
from fabric.publish.targets.base import TransientError

IN_FLIGHT = 2_000
"""Publishes awaiting their confirm at once."""


class RabbitmqTarget(LoopOwner):
    per_partition = False

    def __init__(self, declared: RabbitmqPublisher, password: str, source: str) -> None:
        super().__init__()
        self.declared, self._password, self.source = declared, password, source
        self.label = f"amqp://{declared.host}:{declared.port}{declared.virtual_host}#{declared.exchange}"
        self._connection: Any = None
        self._exchange: Any = None

    def __enter__(self) -> RabbitmqTarget:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # already broken: closing is best effort
                self.run(self._connection.close())
            self._connection = self._exchange = None
        self.close_loop()

    async def _open(self) -> Any:
        import aio_pika

        d = self.declared
        self._connection = await aio_pika.connect(
            host=d.host, port=d.port, login=d.user, password=self._password,
            virtualhost=d.virtual_host, timeout=d.timeout_seconds,
        )  # fmt: skip
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.declare_exchange(d.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        await channel.declare_exchange(d.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True)
        if d.queue is not None:
            queue = await channel.declare_queue(
                d.queue, durable=True, arguments={"x-dead-letter-exchange": d.dead_letter_exchange}
            )
            await queue.bind(exchange, d.routing_key)
        self._exchange = exchange
        return exchange

    async def _send(self, batch: pa.Table) -> BatchOutcome:
        import aio_pika
        from aio_pika.exceptions import DeliveryError
        from aio_pika.exceptions import PublishError as Returned

        exchange = self._exchange or await self._open()
        outcome = BatchOutcome()
        pending = asyncio.Semaphore(IN_FLIGHT)
        d = self.declared

        async def publish(message_id: str, body: str) -> None:
            async with pending:
                message = aio_pika.Message(
                    body.encode(), message_id=message_id, content_type=CONTENT_TYPE,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )  # fmt: skip
                try:
                    await exchange.publish(message, d.routing_key, mandatory=True, timeout=d.timeout_seconds)
                except Returned:  # mandatory and no queue bound for it
                    outcome.rejected[message_id] = (
                        f"{self.label}: returned unroutable (routing key {d.routing_key})"
                    )
                    return
                except DeliveryError:
                    outcome.rejected[message_id] = f"{self.label}: nacked by the broker"
                    return
                outcome.confirmed[message_id] = message_id

        await asyncio.gather(*(publish(i, body) for i, body in events(batch, self.source)))
        return outcome

    def send(self, batch: pa.Table, keep: pa.Table | None) -> BatchOutcome:
        try:
            return self.run(self._send(batch))
        except (OSError, TimeoutError, ConnectionError) as exc:
            self.__exit__(None, None, None)
            raise TransientError(f"{self.label}: {type(exc).__name__}: {exc}") from None
        except Exception as exc:
            from aio_pika.exceptions import AMQPError

            if isinstance(exc, AMQPError):
                self.__exit__(None, None, None)
                raise TransientError(f"{self.label}: {type(exc).__name__}: {exc}") from None
            raise
