"""What a publish target is: something that takes a batch of records and says which it confirmed.

A target is opened once per delivery (`with target:`), then `send` is called per batch. `send`
returns a `BatchOutcome` naming every record of the batch as confirmed (with the target's own id
of it) or rejected (a permanent refusal: dead-lettered, not retried), or raises `TransientError`
when trying again may help (connection refused, timeout, 5xx, 429); the delivery retries those
with backoff. A target never touches the warehouse.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol

import pyarrow as pa

from fabric.publish.outbox import BatchOutcome


class TransientError(Exception):
    """Sending failed in a way that may pass; `retry_after` (seconds) when the target said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Target(Protocol):
    """A business system records are delivered to."""

    per_partition: bool
    """File drops: a batch is one whole partition, and `keep` holds that day's other records."""

    label: str
    """Where it is, without credentials (for messages)."""

    def __enter__(self) -> Target: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def send(self, batch: pa.Table, keep: pa.Table | None) -> BatchOutcome:
        """Deliver `batch` (outbox columns + the payload fields, see `outbox.read_batch`)."""
        ...


def confirm_all(batch: pa.Table, refs: Sequence[str] | pa.Array | pa.ChunkedArray) -> BatchOutcome:
    """Every record of `batch` confirmed, with `refs` as their target ids (same order)."""
    if len(refs) != batch.num_rows:
        raise ValueError(f"{len(refs)} target refs for a batch of {batch.num_rows} records")
    return BatchOutcome(
        refs=refs if isinstance(refs, pa.Array | pa.ChunkedArray) else pa.array(refs, pa.string())
    )


def reject_all(batch: pa.Table, error: str) -> BatchOutcome:
    """Every record of `batch` rejected with `error`."""
    return BatchOutcome(rejected=dict.fromkeys(batch.column("message_id").to_pylist(), error))
