"""Scores walked on a HistGradientBoosting model's bins equal `predict_proba` bit for bit, on
awkward values too; models it does not apply to, and a disagreement, fall back to
`predict_proba`."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from fabric.scoring.backend import InProcessBackend
from fabric.scoring.binned import CHECK_ROWS, BinnedTrees, PositiveScores


def _training(seed: int, rows: int = 5_000, with_nan: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [
            rng.normal(size=rows),
            rng.integers(0, 4, size=rows).astype(np.float64),  # few distinct values: few bins
            rng.exponential(50.0, size=rows).round(2),
            rng.integers(0, 3000, size=rows).astype(np.float64),
        ]
    )
    if with_nan:
        x[rng.random(x.shape) < 0.05] = np.nan
    logit = x[:, 0] + 0.5 * np.nan_to_num(x[:, 1]) - 0.01 * np.nan_to_num(x[:, 2])
    return x, rng.random(rows) < 1 / (1 + np.exp(-logit))


def _awkward(train: np.ndarray, seed: int) -> np.ndarray:
    """Rows with training values exactly (bin edges lie between them), values outside the
    training range, infinities and NaNs."""
    rng = np.random.default_rng(seed)
    rows = np.concatenate([train[:2_000], rng.normal(size=(2_000, train.shape[1])) * 1e4])
    rows[rng.random(rows.shape) < 0.03] = np.nan
    rows[rng.random(rows.shape) < 0.01] = np.inf
    rows[rng.random(rows.shape) < 0.01] = -np.inf
    return rows


@pytest.mark.parametrize("with_nan", [False, True])
@pytest.mark.parametrize("params", [{"max_iter": 30}, {"max_iter": 60, "max_leaf_nodes": 63, "max_bins": 31}])
def test_binned_trees_equal_predict_proba_exactly(with_nan: bool, params: dict[str, int]) -> None:
    x, y = _training(1, with_nan=with_nan)
    model = HistGradientBoostingClassifier(random_state=0, **params).fit(x, y)
    binned = BinnedTrees.of(model)
    assert binned is not None
    for seed in range(3):
        rows = _awkward(x, seed)
        expected = model.predict_proba(rows)[:, 1]
        assert np.array_equal(binned.predict(rows), expected)
    scores = PositiveScores(model)
    assert scores.method == "binned trees"
    assert np.array_equal(scores(rows), expected)
    assert scores.method == "binned trees"  # the first call's check agreed


def test_models_it_does_not_apply_to_use_predict_proba() -> None:
    x, y = _training(2)
    three_classes = (x[:, 0] > 0).astype(int) + (x[:, 0] > 1).astype(int)
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    categorical = HistGradientBoostingClassifier(max_iter=10, categorical_features=[1]).fit(x, y)
    others = {
        "logistic regression": LogisticRegression().fit(x, y),
        "multiclass": HistGradientBoostingClassifier(max_iter=10).fit(x, three_classes),
        "fitted on a named frame": HistGradientBoostingClassifier(max_iter=10).fit(frame, y),
        "categorical feature": categorical,
    }
    for what, model in others.items():
        assert BinnedTrees.of(model) is None, what
        scores = PositiveScores(model)
        assert scores.method == "predict_proba", what
        features = frame if what == "fitted on a named frame" else x
        assert np.array_equal(scores(features), model.predict_proba(features)[:, 1]), what


def test_a_disagreement_on_the_first_batch_falls_back_to_predict_proba(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Should scikit-learn's internals change meaning, the first batch's check catches it."""
    x, y = _training(3)
    model = HistGradientBoostingClassifier(max_iter=20).fit(x, y)
    honest = BinnedTrees.predict
    monkeypatch.setattr(BinnedTrees, "predict", lambda self, f: np.nextafter(honest(self, f), 2.0))
    backend = InProcessBackend(model)
    assert backend.report()["method"] == "binned trees"
    with caplog.at_level(logging.WARNING, logger="fabric.scoring.binned"):
        first = backend.predict(x)
        second = backend.predict(x[:100])
    assert np.array_equal(first, model.predict_proba(x)[:, 1])
    assert np.array_equal(second, model.predict_proba(x[:100])[:, 1])
    assert backend.report() == {"backend": "in_process", "batches": 2, "method": "predict_proba"}
    assert f"disagree with predict_proba on {CHECK_ROWS} of {CHECK_ROWS} rows" in caplog.text
