"""Where a batch of feature rows becomes model scores: in this process, or on an OIP server.

The scoring loop (`fabric.scoring.score`) hands each batch to a `ScoringBackend`. A backend
that cannot score a batch (server down, circuit breaker open) raises `ModelUnavailable`, and
the loop scores that batch with the configured rules instead (`scorer = rules`).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from fabric.errors import FabricError


class ModelUnavailable(FabricError):
    """The model could not score this batch; the caller falls back to the rules."""


class ScoringBackend(Protocol):
    """Scores float64 feature matrices whose columns are the model card's features, in order."""

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
    """The registered model object itself, called in this process (the default)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._batches = 0

    def predict(self, features: np.ndarray) -> np.ndarray:
        self._batches += 1
        return np.asarray(self._model.predict_proba(features)[:, 1], dtype=np.float64)

    def report(self) -> dict[str, Any]:
        return {"backend": "in_process", "batches": self._batches}

    def close(self) -> None:
        return None


def open_backend(model: Any) -> ScoringBackend:
    """The backend this run scores with (in-process until a remote server is configured)."""
    return InProcessBackend(model)
