"""Scores of a HistGradientBoostingClassifier computed on the model's own bins: the same bits, faster.

`predict_proba` walks every tree on the float64 features. A fitted HistGradientBoosting model
also keeps the bin edges it trained with (`_bin_mapper.bin_thresholds_`), and each split holds
its bin index beside its float threshold, the threshold being that bin's upper edge. A value
`x` lies in the first bin whose edge is >= x, so `x <= edge[b]` exactly when `bin(x) <= b`; a
missing value gets the missing-values bin, which the split sends the same way as a NaN. Binning
each value once (one byte) and walking the trees on the bins therefore gives the same leaves,
summed in the same order: bit-identical probabilities, about a quarter less time on the demo
model (docs/benchmarks.md, "Scores on the model's bins").

This reads scikit-learn internals (`_bin_mapper`, `_predictors`, `_baseline_prediction`,
`_loss`, `predict_binned`), which may change between releases. So:

- `BinnedTrees.of` returns None for anything but a fitted binary classifier on numeric features,
  fitted on an unnamed matrix (a named frame keeps scikit-learn's own column-name check), or
  when an internal it needs is missing;
- `PositiveScores` checks its first call's leading rows against `predict_proba` and, on any
  difference, logs a warning and uses `predict_proba` from then on.
"""

from __future__ import annotations

import copy
import logging
import threading
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CHECK_ROWS = 1024
"""Rows of the first batch scored both ways before the binned trees are trusted."""


class BinnedTrees:
    """The positive class's probability from a fitted binary HistGradientBoostingClassifier,
    computed on the model's bins (see the module docstring)."""

    def __init__(self, model: Any, n_threads: int) -> None:
        self._model = model
        self._mapper = copy.copy(model._bin_mapper)
        self._mapper.n_threads = n_threads  # the mapper keeps the thread count of the fit
        self._missing_bin = model._bin_mapper.missing_values_bin_idx_
        self._n_threads = n_threads

    @classmethod
    def of(cls, model: Any, n_threads: int | None = None) -> BinnedTrees | None:
        """Binned trees for `model`, or None where they do not apply (then use `predict_proba`).

        `n_threads`: OpenMP threads per call (None: OpenMP's current maximum, as scikit-learn's
        own prediction uses)."""
        try:
            from sklearn.ensemble import HistGradientBoostingClassifier
            from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
        except ImportError:
            return None
        if type(model) is not HistGradientBoostingClassifier or hasattr(model, "feature_names_in_"):
            return None
        needed = ("_bin_mapper", "_predictors", "_baseline_prediction", "_loss", "n_trees_per_iteration_")
        if not all(hasattr(model, name) for name in needed):
            return None
        if model.n_trees_per_iteration_ != 1 or model.is_categorical_ is not None:
            return None
        mapper = model._bin_mapper
        if not hasattr(mapper, "missing_values_bin_idx_") or not all(
            hasattr(p, "predict_binned") for (p,) in model._predictors
        ):
            return None
        return cls(model, _openmp_effective_n_threads(n_threads))

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Probability of the positive class per row (float64), as `predict_proba(features)[:, 1]`."""
        binned = self._mapper.transform(features)
        # The sum starts from the baseline and adds each tree in order, as scikit-learn does.
        raw = np.zeros((len(features), 1), dtype=self._model._baseline_prediction.dtype, order="F")
        raw += self._model._baseline_prediction
        for (predictor,) in self._model._predictors:
            raw[:, 0] += predictor.predict_binned(binned, self._missing_bin, self._n_threads)
        return np.asarray(self._model._loss.predict_proba(raw)[:, 1], dtype=np.float64)


class PositiveScores:
    """The positive class's probability per row for any scikit-learn style classifier: binned
    trees where they apply and agree with `predict_proba`, else `predict_proba` itself."""

    def __init__(self, model: Any, n_threads: int | None = None) -> None:
        self._model = model
        self._binned = BinnedTrees.of(model, n_threads)
        self._checked = False
        self._lock = threading.Lock()

    @property
    def method(self) -> str:
        """What computes the scores: `binned trees` or `predict_proba` (for run metadata)."""
        return "binned trees" if self._binned is not None else "predict_proba"

    def __call__(self, features: Any) -> np.ndarray:
        """Scores of `features`: a float64 matrix, or a frame for a model fitted on one."""
        if not self._checked:
            with self._lock:  # `fabric serve` calls this from several threads: one checks
                if not self._checked and self._binned is not None:
                    self._check(self._binned, features[:CHECK_ROWS])
                self._checked = True
        binned = self._binned
        if binned is None:
            return np.asarray(self._model.predict_proba(features)[:, 1], dtype=np.float64)
        return binned.predict(features)

    def _check(self, binned: BinnedTrees, sample: np.ndarray) -> None:
        expected = np.asarray(self._model.predict_proba(sample)[:, 1], dtype=np.float64)
        got = binned.predict(sample)
        if not np.array_equal(expected, got, equal_nan=True):
            log.warning(
                "binned trees disagree with predict_proba on %d of %d rows of the first batch "
                "(scikit-learn's internals may have changed): scoring with predict_proba",
                int((expected != got).sum()),
                len(sample),
            )
            self._binned = None
