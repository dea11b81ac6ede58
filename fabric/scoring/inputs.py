"""What a model is fed: NULL and out-of-range feature values, handled as its card declares.

At training time every feature gets its training median (`impute`) and range (`min`, `max`)
recorded in the model card, and the card records the policy (`scoring.training.invalid_input`):

- `impute`: a NULL becomes the training median and a value outside the training range is clipped
  to it. Training imputes NULLs the same way, so the model sees at scoring time what it learned
  from. (Tree models treat values beyond the training range like its edge anyway; clipping makes
  that explicit for any model and also catches +-inf.)
- `rules`: a row with any NULL or out-of-range value is not given to the model at all; the rule
  baseline scores it (`scorer = 'rules'`).

Either way a bad value never crashes a run, and the counts are reported in run metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fabric.scoring.registry import FeatureSpec, ModelCard


def fit_specs(specs: Sequence[FeatureSpec], matrix: np.ndarray) -> list[FeatureSpec]:
    """`specs` with the median and range of each column of the training `matrix` filled in."""
    fitted = []
    for i, spec in enumerate(specs):
        column = matrix[:, i]
        finite = column[np.isfinite(column)]
        if len(finite) == 0:
            fitted.append(spec)
            continue
        fitted.append(
            spec.model_copy(
                update={
                    "impute": float(np.median(finite)),
                    "min": float(finite.min()),
                    "max": float(finite.max()),
                }
            )
        )
    return fitted


def impute_nulls(specs: Sequence[FeatureSpec], matrix: np.ndarray) -> np.ndarray:
    """A copy of `matrix` with NaN replaced by each column's declared `impute` value."""
    fill = np.array([np.nan if s.impute is None else s.impute for s in specs], dtype=np.float64)
    return np.where(np.isnan(matrix), fill, matrix)


@dataclass
class InputCounts:
    """How many feature values (or rows) a run had to repair or route to the rules."""

    nulls_imputed: int = 0
    values_clipped: int = 0
    rows_to_rules: int = 0
    by_feature: dict[str, int] = field(default_factory=dict)

    def add(self, other: InputCounts) -> None:
        self.nulls_imputed += other.nulls_imputed
        self.values_clipped += other.values_clipped
        self.rows_to_rules += other.rows_to_rules
        for name, n in other.by_feature.items():
            self.by_feature[name] = self.by_feature.get(name, 0) + n

    def as_dict(self) -> dict[str, object]:
        return {
            "nulls_imputed": self.nulls_imputed,
            "values_clipped": self.values_clipped,
            "rows_to_rules": self.rows_to_rules,
            "invalid_values_by_feature": dict(sorted(self.by_feature.items())),
        }


class InputPolicy:
    """Applies a model card's input handling to float64 feature matrices (columns in card order)."""

    def __init__(self, card: ModelCard) -> None:
        self.mode = card.invalid_input
        self.names = card.feature_names
        self._fill = np.array(
            [np.nan if f.impute is None else f.impute for f in card.features], dtype=np.float64
        )
        self._low = np.array([-np.inf if f.min is None else f.min for f in card.features])
        self._high = np.array([np.inf if f.max is None else f.max for f in card.features])
        # Old cards without recorded ranges still refuse infinities.
        self._low = np.where(np.isinf(self._low), np.finfo(np.float64).min, self._low)
        self._high = np.where(np.isinf(self._high), np.finfo(np.float64).max, self._high)
        self._can_impute = ~np.isnan(self._fill)

    def prepare(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, InputCounts]:
        """(the matrix the model gets, rows for the rules or None, counts).

        In `impute` mode every row goes to the model; in `rules` mode the model gets only the
        rows that are complete and in range, and the mask names the others.
        """
        counts = InputCounts()
        nulls = np.isnan(matrix)
        outside = (matrix < self._low) | (matrix > self._high)
        if not nulls.any() and not outside.any():
            return matrix, None, counts
        invalid = nulls | outside
        per_feature = invalid.sum(axis=0)
        counts.by_feature = {name: int(n) for name, n in zip(self.names, per_feature, strict=True) if n}
        if self.mode == "rules":
            to_rules = invalid.any(axis=1)
            counts.rows_to_rules = int(to_rules.sum())
            return matrix[~to_rules], to_rules, counts
        imputable = nulls & self._can_impute
        counts.nulls_imputed = int(imputable.sum())
        counts.values_clipped = int(outside.sum())
        repaired = np.where(imputable, self._fill, matrix)
        return np.clip(repaired, self._low, self._high), None, counts
