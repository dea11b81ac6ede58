"""The models `fabric serve` offers: every model of the registry, by version or alias.

A request names a model and optionally a version: a number (`3`, `v3`) or an alias (`champion`,
`challenger`). Without one the server picks the champion, or the latest version when no
champion is set. Aliases are resolved on every request, so `fabric models promote` takes effect
without a restart; loaded versions are cached (versions are immutable).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController

from fabric.errors import ModelError
from fabric.scoring.binned import PositiveScores
from fabric.scoring.registry import CHAMPION, ModelCard, ModelRegistry

log = logging.getLogger(__name__)


class UnknownModel(LookupError):
    """No such model or version in the registry: answered with 404."""


@dataclass(frozen=True)
class ServedModel:
    """One loaded model version."""

    name: str
    version: int
    card: ModelCard
    model: Any
    scores: PositiveScores
    threads: ThreadpoolController | None = None
    threads_per_request: int = 1

    @property
    def feature_names(self) -> list[str]:
        return self.card.feature_names

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Probability of the positive class per row (float64)."""
        if hasattr(self.model, "feature_names_in_"):
            # Fitted on a named frame: name the columns too, so the estimator checks the order.
            features = pd.DataFrame(features, columns=self.feature_names, copy=False)
        if self.threads is None:
            return self.scores(features)
        # OpenMP's limit is per calling thread: this request's worker thread only. With all cores
        # per request, OpenMP's start-up and spin-waiting dominate 10k-row batches on a busy
        # machine (7x slower measured here than one thread).
        with self.threads.limit(limits=self.threads_per_request, user_api="openmp"):
            return self.scores(features)


class ModelCatalog:
    """The registry under `root`, loaded lazily and thread-safely."""

    def __init__(self, root: Path, threads_per_request: int | None = None) -> None:
        """`threads_per_request`: OpenMP threads a prediction may use (None: the library's default)."""
        self.registry = ModelRegistry(root)
        self._threads_per_request = threads_per_request
        self._loaded: dict[tuple[str, int], ServedModel] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Names of the models that have at least one registered version."""
        root = self.registry.root
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if p.is_dir() and self._versions(p.name))

    def versions(self, name: str) -> list[int]:
        """The registered versions of `name` (raises UnknownModel when there are none)."""
        found = self._versions(name)
        if not found:
            raise UnknownModel(f"model {name!r} is not served here")
        return found

    def _versions(self, name: str) -> list[int]:
        try:
            return self.registry.list_versions(name)
        except ModelError:  # not a valid model name: no such model
            return []

    def resolve(self, name: str, version: str | None = None) -> int:
        """The version number a request means (see the module docstring)."""
        versions = self.versions(name)
        if version is None:
            return self.registry.aliases(name).get(CHAMPION, versions[-1])
        try:
            return self.registry.resolve(name, version)
        except ModelError:  # its message names the registry's directory: not for clients
            raise UnknownModel(
                f"model {name!r} has no version or alias {version!r} (versions: "
                f"{', '.join(map(str, versions))})"
            ) from None

    def get(self, name: str, version: str | None = None) -> ServedModel:
        """The loaded model version a request names (loads it on first use)."""
        number = self.resolve(name, version)
        key = (name, number)
        served = self._loaded.get(key)
        if served is not None:
            return served
        with self._lock:
            served = self._loaded.get(key)
            if served is None:
                model, card = self.registry.load(name, number)
                served = ServedModel(
                    name=name,
                    version=number,
                    card=card,
                    model=model,
                    scores=PositiveScores(model, self._threads_per_request),
                    # after loading: the model's OpenMP runtime must be loaded to be found
                    threads=ThreadpoolController() if self._threads_per_request else None,
                    threads_per_request=self._threads_per_request or 1,
                )
                self._loaded[key] = served
                log.info("loaded model %s v%d (%d features)", name, number, len(card.features))
        return served

    def load_defaults(self) -> dict[str, str]:
        """Load each model's default version; returns model -> problem for those that failed."""
        problems: dict[str, str] = {}
        for name in self.names():
            try:
                self.get(name)
            except (ModelError, UnknownModel, OSError, ValueError) as exc:
                problems[name] = str(exc)
                log.error("model %s cannot be served: %s", name, exc)
        return problems
