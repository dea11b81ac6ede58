"""Webhooks: each batch is one HTTP POST of a JSON array of CloudEvents (batched content mode),
signed with HMAC-SHA256 of the exact body under the secret from the environment, in the header
`<signature_header>: sha256=<hex>`.

2xx confirms the batch (the target's id of each record is its CloudEvent id). 429 and 503 are
retried after the response's `Retry-After` (seconds or an HTTP date), other 5xx, timeouts and
connection errors with backoff; any other 4xx is a rejection: the batch is dead-lettered with the
status and the start of the response body."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import pyarrow as pa

from fabric.config import WebhookPublisher
from fabric.publish.cloudevents import BATCH_CONTENT_TYPE, events
from fabric.publish.outbox import BatchOutcome
from fabric.publish.targets.base import TransientError, confirm_all, reject_all

_BODY_IN_ERROR = 200


def signature(secret: bytes, body: bytes) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date), if any."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class WebhookTarget:
    per_partition = False

    def __init__(self, declared: WebhookPublisher, secret: str, source: str) -> None:
        self.declared, self._secret, self.source = declared, secret.encode(), source
        self.label = declared.url
        self._client: Any = None

    def __enter__(self) -> WebhookTarget:
        import httpx

        self._client = httpx.Client(timeout=self.declared.timeout_seconds)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def send(self, batch: pa.Table, keep: pa.Table | None) -> BatchOutcome:
        import httpx

        sent = list(events(batch, self.source))
        body = ("[" + ",".join(event for _, event in sent) + "]").encode()
        headers = {
            "Content-Type": BATCH_CONTENT_TYPE,
            self.declared.signature_header: signature(self._secret, body),
        }
        try:
            response = self._client.post(self.declared.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientError(
                f"{self.label}: timed out after {self.declared.timeout_seconds} s ({exc})"
            ) from None
        except httpx.TransportError as exc:
            raise TransientError(f"{self.label}: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if 200 <= status < 300:
            return confirm_all(batch, [message_id for message_id, _ in sent])
        text = response.text[:_BODY_IN_ERROR].replace("\n", " ")
        if status in (429, 503):
            raise TransientError(
                f"{self.label}: HTTP {status} {text}", retry_after(response.headers.get("Retry-After"))
            )
        if status >= 500 or status in (408,):
            raise TransientError(f"{self.label}: HTTP {status} {text}")
        return reject_all(batch, f"{self.label}: HTTP {status} {text}")
