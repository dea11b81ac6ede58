"""NATS JetStream: CloudEvents published to a subject of a stream, `Nats-Msg-Id` = message id.

The stream drops a message whose id it has seen within its duplicate window (the ack says
`duplicate`), so a re-send after a crash is not stored twice. The stream is created (file
storage, the configured duplicate window) when it does not exist. Acks are awaited together:
publishes are pipelined, not one round trip each."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any

import pyarrow as pa

from fabric.aio import LoopOwner
from fabric.config import NatsPublisher
from fabric.publish.cloudevents import events
from fabric.publish.outbox import BatchOutcome
from fabric.publish.targets.base import TransientError

MAX_PENDING = 4_000


class NatsTarget(LoopOwner):
    per_partition = False

    def __init__(self, declared: NatsPublisher, token: str | None, source: str) -> None:
        super().__init__()
        self.declared, self._token, self.source = declared, token, source
        self.label = f"{','.join(declared.servers)}#{declared.stream}/{declared.subject}"
        self._nc: Any = None
        self._js: Any = None

    def __enter__(self) -> NatsTarget:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._nc is not None:
            with contextlib.suppress(Exception):  # already broken: closing is best effort
                self.run(self._nc.close())
            self._nc = self._js = None
        self.close_loop()

    async def _open(self) -> Any:
        import nats
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        d = self.declared
        # nats-py 2.x: `max_reconnect_attempts=0` means "retry forever", even for the first
        # connect; one attempt and no wait makes a server that is down fail at once.
        self._nc = await nats.connect(
            servers=d.servers, token=self._token, connect_timeout=d.timeout_seconds,
            allow_reconnect=False, max_reconnect_attempts=1, reconnect_time_wait=0,
        )  # fmt: skip
        js = self._nc.jetstream(timeout=d.timeout_seconds, publish_async_max_pending=MAX_PENDING)
        try:
            await js.stream_info(d.stream)
        except NotFoundError:
            await js.add_stream(
                StreamConfig(
                    name=d.stream, subjects=[d.subject], storage=StorageType.FILE,
                    duplicate_window=d.duplicate_window_seconds,
                )
            )  # fmt: skip
        self._js = js
        return js

    async def _send(self, batch: pa.Table) -> BatchOutcome:
        from nats.errors import NoRespondersError
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.errors import APIError

        js = self._js or await self._open()
        d = self.declared
        ids, futures = [], []
        for message_id, body in events(batch, self.source):
            ids.append(message_id)
            futures.append(
                await js.publish_async(
                    d.subject, body.encode(), stream=d.stream, headers={"Nats-Msg-Id": message_id}
                )
            )
        acks = await asyncio.wait_for(
            asyncio.gather(*futures, return_exceptions=True), timeout=d.timeout_seconds + len(ids) / 1000
        )
        outcome = BatchOutcome()
        for message_id, ack in zip(ids, acks, strict=True):
            if isinstance(ack, NoRespondersError | NatsTimeout | asyncio.TimeoutError):
                raise TransientError(f"{self.label}: no ack ({type(ack).__name__})")
            if isinstance(ack, APIError):
                outcome.rejected[message_id] = f"{self.label}: rejected: {ack}"
            elif isinstance(ack, BaseException):
                raise TransientError(f"{self.label}: {type(ack).__name__}: {ack}")
            else:
                outcome.confirmed[message_id] = f"{ack.stream}:{ack.seq}"
        return outcome

    def send(self, batch: pa.Table, keep: pa.Table | None) -> BatchOutcome:
        from nats.errors import Error as NatsError

        try:
            return self.run(self._send(batch))
        except TransientError:
            self.__exit__(None, None, None)
            raise
        except (OSError, TimeoutError, NatsError) as exc:
            self.__exit__(None, None, None)
            raise TransientError(f"{self.label}: {type(exc).__name__}: {exc}") from None
