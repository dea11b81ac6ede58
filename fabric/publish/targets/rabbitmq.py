"""RabbitMQ: CloudEvents to a durable topic exchange, persistent, with publisher confirms.

The AMQP `message_id` is the record's message id, so a consumer de-duplicating by it drops a
re-send. Every message is published `mandatory`: a message no queue is bound for comes back and
is dead-lettered in `publish.dead_letter`; a broker nack likewise. A record counts as delivered
only once the broker has confirmed it. When `queue` is configured it is declared durable, bound
with the routing key, with `x-dead-letter-exchange` set to `dead_letter_exchange` (a durable
fanout exchange), where messages its consumers reject go.

The client is pika's `SelectConnection`, driven from `send` until the batch is confirmed: it
buffers the frames of many publishes and writes them in one system call, where aio-pika wrote
and drained each message on its own (about 10x the client CPU per message, which bounded the
publish rate at ~1-3k msgs/s on this machine; see docs/benchmarks.md, publish).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import pyarrow as pa

from fabric.config import RabbitmqPublisher
from fabric.publish.cloudevents import CONTENT_TYPE, events
from fabric.publish.outbox import BatchOutcome
from fabric.publish.targets.base import TransientError

IN_FLIGHT = 2_000
"""Publishes awaiting their confirm at once."""


def _describe(exc: BaseException) -> str:
    """Class and message of what closed the connection; for a failed connect, its last cause (pika
    wraps those as `AMQPConnectionError(AMQPConnectionWorkflowFailed)`). No credentials in them."""
    tried = getattr(exc.args[0], "exceptions", None) if exc.args else None
    cause = tried[-1] if tried else exc
    message = str(cause) or repr(cause)  # pika's connector errors only have a repr
    return message if message.startswith(type(cause).__name__) else f"{type(cause).__name__}: {message}"


class RabbitmqTarget:
    per_partition = False

    def __init__(self, declared: RabbitmqPublisher, password: str, source: str) -> None:
        self.declared, self._password, self.source = declared, password, source
        self.label = f"amqp://{declared.host}:{declared.port}{declared.virtual_host}#{declared.exchange}"
        self._connection: Any = None
        self._channel: Any = None
        self._loop: Any = None
        self._failure: str | None = None
        self._done: Callable[[], bool] = lambda: True
        self._progress = 0  # broker frames seen: the watchdog's sign of life
        self._published = 0  # delivery tags handed out on this channel (they count from 1)
        self._unconfirmed: dict[int, str] = {}  # delivery tag -> message id
        self._returned: set[str] = set()
        self._outcome = BatchOutcome()
        self._settled = 0
        self._pump: Callable[[], None] = lambda: None

    def __enter__(self) -> RabbitmqTarget:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is None:
            return
        self._failure = None
        with contextlib.suppress(Exception):  # already broken: closing is best effort
            if not (connection.is_closing or connection.is_closed):
                connection.close()
            self._drive(connection.ioloop, lambda: bool(connection.is_closed))
        connection.ioloop.close()

    # ------------------------------------------------------------ the I/O loop

    def _event(self) -> None:
        """A callback ran: stop the loop when what `_run_until` waits for has happened."""
        self._progress += 1
        if self._failure is not None or self._done():
            self._loop.stop()

    def _lost(self, _source: Any, exc: BaseException) -> None:
        """The connection or the channel closed (or could not open)."""
        if self._failure is None:
            self._failure = _describe(exc)
        self._event()

    def _drive(self, loop: Any, done: Callable[[], bool]) -> None:
        """Run `loop` until `done()`, a failure, or `timeout_seconds` without a frame from the broker."""
        self._loop, self._done = loop, done
        seen = -1

        def watchdog() -> None:
            nonlocal seen
            if self._progress == seen:
                self._failure = (
                    self._failure or f"no answer from the broker for {self.declared.timeout_seconds}s"
                )
                loop.stop()
            else:
                seen = self._progress
                timer[0] = loop.call_later(self.declared.timeout_seconds, watchdog)

        timer = [loop.call_later(0, watchdog)]
        try:
            while self._failure is None and not done():
                loop.start()  # returns at once after a stop() issued while it was not running
        finally:
            loop.remove_timeout(timer[0])

    def _run_until(self, done: Callable[[], bool]) -> None:
        self._drive(self._connection.ioloop, done)
        if self._failure is not None:
            raise TransientError(f"{self.label}: {self._failure}")

    def _rpc(self, start: Callable[[Callable[[Any], None]], None]) -> Any:
        """Call `start(callback)` and run the loop until the broker's reply reaches the callback."""
        replies: list[Any] = []

        def reply(frame: Any) -> None:
            replies.append(frame)
            self._event()

        start(reply)
        self._run_until(lambda: bool(replies))
        return replies[0]

    # ------------------------------------------------------------ connection

    def _open(self) -> Any:
        import pika

        d = self.declared
        parameters = pika.ConnectionParameters(
            host=d.host, port=d.port, virtual_host=d.virtual_host,
            credentials=pika.PlainCredentials(d.user, self._password), connection_attempts=1,
            socket_timeout=d.timeout_seconds, stack_timeout=d.timeout_seconds,
            blocked_connection_timeout=d.timeout_seconds,
        )  # fmt: skip
        self._failure = None
        self._published, self._unconfirmed, self._returned = 0, {}, set()
        self._connection = pika.SelectConnection(
            parameters,
            on_open_callback=lambda _connection: self._event(),
            on_open_error_callback=self._lost,
            on_close_callback=self._lost,
        )
        self._run_until(lambda: bool(self._connection.is_open))
        channel = self._rpc(lambda reply: self._connection.channel(on_open_callback=reply))
        channel.add_on_close_callback(self._lost)
        channel.add_on_return_callback(self._on_return)
        self._rpc(lambda reply: channel.confirm_delivery(self._on_confirm, callback=reply))
        self._rpc(lambda reply: channel.exchange_declare(d.exchange, "topic", durable=True, callback=reply))
        self._rpc(
            lambda reply: channel.exchange_declare(
                d.dead_letter_exchange, "fanout", durable=True, callback=reply
            )
        )
        if d.queue is not None:
            queue = d.queue
            arguments = {"x-dead-letter-exchange": d.dead_letter_exchange}
            self._rpc(
                lambda reply: channel.queue_declare(queue, durable=True, arguments=arguments, callback=reply)
            )
            self._rpc(lambda reply: channel.queue_bind(queue, d.exchange, d.routing_key, callback=reply))
        self._channel = channel
        return channel

    # ------------------------------------------------------------ confirms

    def _on_return(self, _channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
        """Mandatory and no queue bound for it; the broker's ack for it follows."""
        self._returned.add(properties.message_id)
        self._event()

    def _on_confirm(self, frame: Any) -> None:
        import pika

        method = frame.method
        if method.multiple:
            tags = list(itertools.takewhile(lambda t: t <= method.delivery_tag, self._unconfirmed))
        else:
            tags = [method.delivery_tag] if method.delivery_tag in self._unconfirmed else []
        outcome, nacked = self._outcome, isinstance(method, pika.spec.Basic.Nack)
        for tag in tags:
            message_id = self._unconfirmed.pop(tag)
            if nacked:
                outcome.rejected[message_id] = f"{self.label}: nacked by the broker"
            elif message_id in self._returned:
                self._returned.discard(message_id)
                outcome.rejected[message_id] = (
                    f"{self.label}: returned unroutable (routing key {self.declared.routing_key})"
                )
            else:
                outcome.confirmed[message_id] = message_id
        self._settled += len(tags)
        self._pump()
        self._event()

    # ------------------------------------------------------------ sending

    def _send(self, batch: pa.Table) -> BatchOutcome:
        import pika

        channel = self._channel if self._connection is not None and self._connection.is_open else None
        channel = channel or self._open()
        d = self.declared
        self._outcome, self._settled = BatchOutcome(), 0
        pending: Iterator[tuple[str, str]] = events(batch, self.source)

        def pump() -> None:
            """Publish until IN_FLIGHT are unconfirmed or the batch is all out."""
            for message_id, body in pending:
                channel.basic_publish(
                    d.exchange, d.routing_key, body.encode(),
                    pika.BasicProperties(message_id=message_id, content_type=CONTENT_TYPE, delivery_mode=2),
                    mandatory=True,
                )  # fmt: skip
                self._published += 1
                self._unconfirmed[self._published] = message_id
                if len(self._unconfirmed) >= IN_FLIGHT:
                    return

        self._pump = pump
        try:
            pump()
            self._run_until(lambda: self._settled == batch.num_rows)
        finally:
            self._pump = lambda: None
        return self._outcome

    def send(self, batch: pa.Table, keep: pa.Table | None) -> BatchOutcome:
        import pika.exceptions

        try:
            return self._send(batch)
        except (TransientError, OSError, pika.exceptions.AMQPError) as exc:
            self.__exit__(None, None, None)
            if isinstance(exc, TransientError):
                raise
            raise TransientError(f"{self.label}: {type(exc).__name__}: {exc}") from None
