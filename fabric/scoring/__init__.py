"""Churn scoring: rule baseline, the file-based model registry and batch scoring.

Training lives in `fabric.scoring.train` (imported on its own: it pulls in scikit-learn).
"""

from fabric.scoring.registry import ModelCard, ModelRegistry
from fabric.scoring.rules import RuleScorer
from fabric.scoring.score import Gate, ScoringResult, score_window

__all__ = [
    "Gate",
    "ModelCard",
    "ModelRegistry",
    "RuleScorer",
    "ScoringResult",
    "score_window",
]
