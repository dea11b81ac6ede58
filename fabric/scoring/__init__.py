"""Churn scoring: rule baseline, the file-based model registry and batch scoring.

Training lives in `fabric.scoring.train` (imported on its own: it pulls in scikit-learn). The
names below are imported on first use, so `fabric models ...` does not load pandas and DuckDB.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# scikit-learn's prediction runs on OpenMP, whose idle threads spin by default (libgomp) after
# each parallel region. Between batches DuckDB reads features and writes scores on the same
# cores, and a Dagster run's other steps run beside it: spinning threads take their CPU. Passive
# waiting was 1.5-2x faster for a scoring run of 1M rows with other work on the machine, and
# also for raw `predict_proba` (docs/benchmarks.md). Set before scikit-learn is loaded (its
# OpenMP runtime reads it once); an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if TYPE_CHECKING:
    from fabric.scoring.registry import ModelCard, ModelRegistry
    from fabric.scoring.rules import RuleScorer
    from fabric.scoring.score import Gate, ScoringResult, score_window

_EXPORTS = {
    "Gate": "fabric.scoring.score",
    "ModelCard": "fabric.scoring.registry",
    "ModelRegistry": "fabric.scoring.registry",
    "RuleScorer": "fabric.scoring.rules",
    "ScoringResult": "fabric.scoring.score",
    "score_window": "fabric.scoring.score",
}

__all__ = [
    "Gate",
    "ModelCard",
    "ModelRegistry",
    "RuleScorer",
    "ScoringResult",
    "score_window",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fabric.scoring' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
