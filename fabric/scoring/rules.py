"""The declarative rule baseline: the fallback scorer and the yardstick a model must beat."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from fabric.config import Rule
from fabric.errors import ModelError

_OPERATORS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


class RuleScorer:
    """Score = total weight of the rules that hold / total weight of all rules, in [0, 1].

    A missing (NULL) feature value makes its rule not hold, including for `!=`: unknown is not
    evidence of risk.
    """

    def __init__(self, rules: Sequence[Rule]) -> None:
        if not rules:
            raise ModelError(
                "no scoring rules configured (scoring.rules in fabric.yaml): the rule "
                "baseline needs at least one"
            )
        self.rules = list(rules)
        self.total_weight = float(sum(rule.weight for rule in self.rules))

    @property
    def features(self) -> list[str]:
        """The feature columns the rules read, in first-use order."""
        return list(dict.fromkeys(rule.feature for rule in self.rules))

    def score(self, features: pd.DataFrame) -> np.ndarray:
        """One score per row of `features` (float64, in [0, 1])."""
        missing = [name for name in self.features if name not in features.columns]
        if missing:
            raise ModelError(f"scoring rules need feature columns that are missing: {missing}")
        return self.score_columns(
            {n: features[n].to_numpy(dtype=np.float64, na_value=np.nan) for n in self.features},
            len(features),
        )

    def score_columns(self, columns: Mapping[str, np.ndarray], rows: int) -> np.ndarray:
        """Like `score`, from float64 arrays by feature name (NaN = NULL), `rows` long."""
        total = np.zeros(rows, dtype=np.float64)
        for rule in self.rules:
            values = columns[rule.feature]
            holds = _OPERATORS[rule.op](values, rule.value) & ~np.isnan(values)
            total += np.where(holds, rule.weight, 0.0)
        return total / self.total_weight
