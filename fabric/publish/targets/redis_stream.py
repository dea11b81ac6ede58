"""Redis Streams: CloudEvents appended with XADD, idempotent by message id.

A Lua script (atomic in Redis) looks up `<stream>:sent:<message id>`: if present, the message was
added before and its entry id is returned; otherwise it XADDs (fields `id`, `event`) and stores
the entry id under that key for `dedup_seconds`. A re-send after a crash thus returns the first
entry instead of adding a duplicate; consumers may still de-duplicate by the `id` field."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import pyarrow as pa

from fabric.config import RedisStreamPublisher
from fabric.publish.cloudevents import events
from fabric.publish.outbox import BatchOutcome
from fabric.publish.targets.base import TransientError

_IDEMPOTENT_XADD = """
local seen = redis.call('GET', KEYS[2])
if seen then return seen end
local entry = redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 'event', ARGV[2])
redis.call('SET', KEYS[2], entry, 'EX', ARGV[3])
return entry
"""
PIPELINE = 5_000


class RedisStreamTarget:
    per_partition = False

    def __init__(self, declared: RedisStreamPublisher, password: str | None, source: str) -> None:
        self.declared, self._password, self.source = declared, password, source
        self.label = f"redis://{declared.host}:{declared.port}/{declared.db}#{declared.stream}"
        self._client: Any = None
        self._script: Any = None

    def __enter__(self) -> RedisStreamTarget:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def send(self, batch: pa.Table, keep: pa.Table | None) -> BatchOutcome:
        import redis

        d = self.declared
        try:
            if self._client is None:
                self._client = redis.Redis(
                    host=d.host, port=d.port, db=d.db, password=self._password,
                    socket_timeout=d.timeout_seconds, socket_connect_timeout=d.timeout_seconds,
                )  # fmt: skip
                self._script = self._client.register_script(_IDEMPOTENT_XADD)
            outcome = BatchOutcome()
            pending = list(events(batch, self.source))
            for start in range(0, len(pending), PIPELINE):
                chunk = pending[start : start + PIPELINE]
                pipe = self._client.pipeline(transaction=False)
                for message_id, body in chunk:
                    self._script(
                        keys=[d.stream, f"{d.stream}:sent:{message_id}"],
                        args=[message_id, body, d.dedup_seconds],
                        client=pipe,
                    )
                for (message_id, _), entry in zip(chunk, pipe.execute(), strict=True):
                    outcome.confirmed[message_id] = entry.decode() if isinstance(entry, bytes) else str(entry)
            return outcome
        except redis.RedisError as exc:
            self.__exit__(None, None, None)
            raise TransientError(f"{self.label}: {type(exc).__name__}: {exc}") from None
