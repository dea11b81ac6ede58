"""Scoring on any Open Inference Protocol server (Fabric's own `fabric serve`, KServe, Triton,
MLServer, Seldon), in batches, through a circuit breaker.

Each batch of `scoring.remote.batch_rows` rows is one `POST <url>/v2/models/<model>
[/versions/<version>]/infer` with one FP64 tensor `[rows, features]` (columns in the model card's
order; NaN travels as `null`, which Fabric and MLServer read as a missing value) asking for the
`predict_proba` output. The positive class is taken from a `[rows]` or `[rows, 1]` output as is,
and from column 1 of a `[rows, 2]` output (what MLServer's sklearn runtime returns).

With `binary_data` (by default when the server's metadata lists `binary_tensor_data`, as
`fabric serve` and Triton do) the tensor travels as little-endian FP64 bytes after the JSON
request (Triton's binary tensor data extension, `Inference-Header-Content-Length`): the server
then parses no numbers, which was most of a 10k-row request's work besides the model
(docs/benchmarks.md). Servers without the extension (MLServer) get JSON numbers.

Timeouts, connection errors and 5xx answers are retried with exponential backoff; when the retries
are spent the batch counts as a failure for the breaker and `ModelUnavailable` is raised, so the
scoring loop scores that batch with the rules. A 4xx is the request's fault, not the server's: it
fails at once with the server's own error message (`ModelError`). While the breaker is open,
`predict` raises `ModelUnavailable` without any network call.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import orjson

from fabric.config import RemoteScoringConfig
from fabric.errors import ConfigError, ModelError
from fabric.scoring.backend import ModelUnavailable
from fabric.scoring.breaker import BreakerStoreError, CircuitBreaker
from fabric.serving.protocol import BINARY_EXTENSION, BINARY_HEADER, MATRIX_INPUT_NAME, OUTPUT_NAME

log = logging.getLogger(__name__)


class _ServerUnavailable(Exception):
    """A failure worth retrying: timeout, connection error, 5xx."""


def remote_token(remote: RemoteScoringConfig) -> str | None:
    """The bearer token of `scoring.remote.token_env`, if configured."""
    if remote.token_env is None:
        return None
    token = os.environ.get(remote.token_env, "")
    if not token:
        raise ConfigError(
            f"scoring.remote.token_env: environment variable {remote.token_env} is not set or empty"
        )
    return token


class RemoteBackend:
    """A `ScoringBackend` calling an OIP server; see the module docstring."""

    def __init__(
        self,
        remote: RemoteScoringConfig,
        model_name: str,
        breaker: CircuitBreaker,
        token: str | None = None,
        version: str | None = None,
    ) -> None:
        self.remote = remote
        self.model_name = model_name
        self.breaker = breaker
        versioned = f"/versions/{version}" if version else ""
        self.endpoint = f"{remote.url}/v2/models/{model_name}{versioned}/infer"
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(remote.timeout_seconds),
            limits=httpx.Limits(max_connections=remote.concurrency),
        )
        # the first request of a round runs on the caller's thread, the others here
        self._pool = ThreadPoolExecutor(max(1, remote.concurrency - 1), thread_name_prefix="fabric-oip")
        self._lock = threading.Lock()
        self._counts = {"batches": 0, "rows": 0, "failed_batches": 0, "rejected_batches": 0, "retries": 0}
        self._server_versions: set[str] = set()
        self._latencies: list[float] = []
        self._binary = remote.binary_data  # None: not known yet (`_takes_binary`)

    @property
    def batch_rows(self) -> int:
        """What one round of requests carries (`batch_rows` x `concurrency`); give `predict` no
        more to keep fallback fine-grained."""
        return self.remote.batch_rows * self.remote.concurrency

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Probability of the positive class per row; ModelUnavailable if any request cannot be made."""
        features = np.ascontiguousarray(features, dtype=np.float64)
        scores = np.empty(len(features), dtype=np.float64)
        step = self.remote.batch_rows
        group = step * self.remote.concurrency
        for start in range(0, len(features), group):
            chunks = [features[s : s + step] for s in range(start, min(start + group, len(features)), step)]
            scores[start : start + group] = np.concatenate(self._guarded(chunks))
        return scores

    def _guarded(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        """The chunks' scores, requested at once (on the pool's threads when there are several).

        The breaker is asked and told on this thread only (its store's connection belongs to
        it); while it is half-open only one request goes out, as its probe."""
        if not self.breaker.allow():
            self._counts["rejected_batches"] += len(chunks)
            raise ModelUnavailable(
                f"circuit breaker {self.breaker.name} is open: not calling {self.endpoint}"
            )
        if self._binary is None:
            self._binary = self._takes_binary()
        rest: list[np.ndarray] = []
        if self.breaker.probing:  # the probe alone; the rest once it has closed the breaker
            chunks, rest = chunks[:1], chunks[1:]
        pending = [self._pool.submit(self._call_with_retries, chunk) for chunk in chunks[1:]]
        results: list[np.ndarray] = []
        failure: str | None = None
        for index, chunk in enumerate(chunks):
            try:
                results.append(self._call_with_retries(chunk) if index == 0 else pending[index - 1].result())
            except _ServerUnavailable as exc:
                self._counts["failed_batches"] += 1
                self.breaker.record_failure(str(exc))
                failure = failure or str(exc)
                continue
            except ModelError:
                for future in pending:
                    future.cancel()
                self.breaker.record_success()  # the server answered: it is up, the request was wrong
                raise
            self.breaker.record_success()
            self._counts["batches"] += 1
            self._counts["rows"] += len(chunk)
        if failure is not None:
            raise ModelUnavailable(f"{self.endpoint}: {failure}")
        return results + (self._guarded(rest) if rest else [])

    def _takes_binary(self) -> bool | None:
        """Whether the server's metadata lists the binary tensor data extension; None (JSON for
        now, ask again next round) when the metadata cannot be read."""
        try:
            response = self._client.get(f"{self.remote.url}/v2")
            if response.status_code != 200:
                return False if response.status_code < 500 else None
            extensions = orjson.loads(response.content).get("extensions") or []
        except (httpx.HTTPError, orjson.JSONDecodeError, AttributeError):
            return None
        return BINARY_EXTENSION in extensions

    def _request(self, batch: np.ndarray) -> tuple[bytes, dict[str, str]]:
        """The body and extra headers of an inference request for `batch`."""
        tensor: dict[str, Any] = {"name": MATRIX_INPUT_NAME, "shape": list(batch.shape), "datatype": "FP64"}
        request = {"inputs": [tensor], "outputs": [{"name": OUTPUT_NAME}]}
        if not self._binary:
            tensor["data"] = batch.ravel()
            return orjson.dumps(request, option=orjson.OPT_SERIALIZE_NUMPY), {}
        data = batch.astype("<f8", copy=False).tobytes()
        tensor["parameters"] = {"binary_data_size": len(data)}
        header = orjson.dumps(request)
        return header + data, {
            "Content-Type": "application/octet-stream",
            BINARY_HEADER: str(len(header)),
        }

    def _call_with_retries(self, batch: np.ndarray) -> np.ndarray:
        body, headers = self._request(batch)
        attempts = self.remote.retries + 1
        for attempt in range(attempts):
            try:
                return self._call(body, len(batch), headers)
            except _ServerUnavailable as exc:
                if attempt + 1 == attempts:
                    raise _ServerUnavailable(f"{exc} (after {attempts} attempts)") from None
                delay = self.remote.backoff_seconds * 2**attempt
                log.info("remote scoring: %s; retry %d in %.2f s", exc, attempt + 1, delay)
                with self._lock:  # requests of a round retry on several threads
                    self._counts["retries"] += 1
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, body: bytes, rows: int, headers: dict[str, str]) -> np.ndarray:
        started = time.perf_counter()
        try:
            response = self._client.post(self.endpoint, content=body, headers=headers)
        except httpx.TimeoutException:
            raise _ServerUnavailable(f"no answer within {self.remote.timeout_seconds:g} s") from None
        except httpx.TransportError as exc:
            raise _ServerUnavailable(f"connection failed: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 500:
            raise _ServerUnavailable(f"HTTP {response.status_code}: {_error_text(response)}")
        if response.status_code >= 400:
            raise ModelError(
                f"{self.endpoint} refused the request with HTTP {response.status_code}: "
                f"{_error_text(response)}"
            )
        self._latencies.append(time.perf_counter() - started)
        return self._scores(response, rows)

    def _scores(self, response: httpx.Response, rows: int) -> np.ndarray:
        try:
            payload = orjson.loads(response.content)
            outputs = payload["outputs"]
            output = next((o for o in outputs if o.get("name") == OUTPUT_NAME), None) or outputs[0]
            values = np.asarray(output["data"], dtype=np.float64)
            shape = [int(d) for d in output.get("shape", [values.size])]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise ModelError(f"{self.endpoint}: not an OIP inference response ({exc})") from None
        if "model_version" in payload:
            self._server_versions.add(str(payload["model_version"]))
        if shape in ([rows], [rows, 1]) and values.size == rows:
            return values.ravel()
        if shape == [rows, 2] and values.size == 2 * rows:
            return values.reshape(rows, 2)[:, 1]
        raise ModelError(
            f"{self.endpoint}: output {output.get('name')!r} has shape {shape} for {rows} rows; "
            f"expected [{rows}], [{rows}, 1] or [{rows}, 2] (class probabilities)"
        )

    def report(self) -> dict[str, Any]:
        latencies = np.array(self._latencies) if self._latencies else None
        try:
            state = self.breaker.state
        except BreakerStoreError as exc:  # the report must not fail the run's bookkeeping
            state = f"unknown ({exc})"
        return {
            "backend": "remote",
            "endpoint": self.endpoint,
            **self._counts,
            "server_model_versions": sorted(self._server_versions),
            "features_as": {True: "binary tensor data", False: "JSON numbers", None: None}[self._binary],
            "latency_p50_s": round(float(np.quantile(latencies, 0.5)), 4) if latencies is not None else None,
            "latency_p95_s": round(float(np.quantile(latencies, 0.95)), 4) if latencies is not None else None,
            "breaker": {
                "name": self.breaker.name,
                "store": self.breaker.store.description,
                "state": state,
                "transitions": [t.to_dict() for t in self.breaker.transitions],
            },
        }

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()


def _error_text(response: httpx.Response) -> str:
    """The server's `error` (OIP), or the start of its body."""
    try:
        payload = response.json()
        if isinstance(payload, dict) and "error" in payload:
            return str(payload["error"])
    except ValueError:
        pass
    return response.text[:500] or response.reason_phrase
