"""Where a batch of feature rows becomes model scores: in this process, or on an OIP server.

The scoring loop (`fabric.scoring.score`) hands each batch to a `ScoringBackend`. A backend
that cannot score a batch (server down, circuit breaker open) raises `ModelUnavailable`, and
the loop scores that batch with the configured rules instead (`scorer = rules`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from fabric.errors import FabricError
from fabric.scoring.binned import PositiveScores

if TYPE_CHECKING:
    from fabric.config import FabricConfig


class ModelUnavailable(FabricError):
    """The model could not score this batch; the caller falls back to the rules."""


class ScoringBackend(Protocol):
    """Scores float64 feature matrices whose columns are the model card's features, in order."""

    @property
    def batch_rows(self) -> int | None:
        """The most rows `predict` should get at once (None: no limit)."""
        ...

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Probability of the positive class, one float64 per row (raises ModelUnavailable)."""
        ...

    def report(self) -> dict[str, Any]:
        """Run metadata: backend kind, calls, failures, breaker transitions (JSON-able)."""
        ...

    def close(self) -> None:
        """Release connections; called once when the run's scoring is done."""
        ...


class InProcessBackend:
    """The registered model object itself, called in this process (the default); a
    HistGradientBoosting model is walked on its own bins (`fabric.scoring.binned`)."""

    batch_rows: int | None = None  # any batch size

    def __init__(self, model: Any) -> None:
        self._scores = PositiveScores(model)
        self._batches = 0

    def predict(self, features: np.ndarray) -> np.ndarray:
        self._batches += 1
        return self._scores(features)

    def report(self) -> dict[str, Any]:
        return {"backend": "in_process", "batches": self._batches, "method": self._scores.method}

    def close(self) -> None:
        return None


def open_backend(
    model: Any, config: FabricConfig | None = None, version: int | None = None
) -> ScoringBackend:
    """The backend this run scores `model` with: the OIP server of `scoring.remote` when
    configured (through its circuit breaker), else `model` in this process.

    `version` is the registry version the run resolved for this model: the remote backend asks
    the server for that version (`/v2/models/<name>/versions/<version>/infer`), so a champion
    and a challenger each reach their own, unless `scoring.remote.version` pins one. Give a
    remote backend batches of at most its `batch_rows` rows: a batch it cannot score is
    rule-scored whole.
    """
    remote = config.scoring.remote if config is not None else None
    if config is None or remote is None:
        return InProcessBackend(model)
    from fabric.scoring.breaker import CircuitBreaker, open_store
    from fabric.scoring.remote import RemoteBackend, remote_token

    model_name = remote.model or config.scoring.model_name
    server_version = remote.version or (str(version) if version is not None else None)
    store = open_store(remote.breaker, config.resolve(config.warehouse.path).parent)
    breaker = CircuitBreaker(
        f"{remote.url}|{model_name}|{server_version or ''}",
        remote.breaker,
        store,
        # a probe is one request with its retries; after that its process must have died
        probe_timeout_seconds=(remote.retries + 1) * (remote.timeout_seconds + 1) + 30,
    )
    return RemoteBackend(remote, model_name, breaker, remote_token(remote), server_version)
