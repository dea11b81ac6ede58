"""Training the churn model on labelled history with an honest time split.

Dates, not rows, are split. Of the labelled as-of dates (label known, features present) the
latest `training.holdout_days` are held out for evaluation. Training dates end
`churn_horizon_days` before the holdout starts: a label at as-of date t looks `horizon` days into
the future, so later training labels would overlap the outcomes the holdout is judged on (an
embargo, as in purged time-series cross-validation). Within `training.history_days` of the
latest labelled date, every `training.sample_every_days`-th date is used, counting back from the
latest training date, since consecutive days of the same customers are near duplicates. With an
explicit window (`fabric train --window A..B`) the training dates are those of A..B instead,
still ending before the embargo; the result is registered as the `challenger`, to be compared
with the champion on live traffic before `fabric models promote`.

The model card records, per feature, the training median and range (for NULL and out-of-range
values at scoring time, `fabric.scoring.inputs`) and the training distributions of the features
and of the model's scores (for the drift checks, `fabric.scoring.drift`).

The model is a HistGradientBoostingClassifier with balanced class weights: churn is rare, and
with balanced weights the configured decision threshold (0.5 by default) sits where a missed
churner and a false alarm weigh the same. Scores are therefore risk scores, not calibrated
probabilities. The rule baseline is evaluated on the same held-out rows.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

from fabric.config import FabricConfig, ScoringConfig, TrainingConfig
from fabric.errors import ModelError
from fabric.identifiers import quote
from fabric.meta import RunRecord, record_run, utcnow
from fabric.partitions import Window
from fabric.scoring.drift import reference_histogram
from fabric.scoring.features import (
    AS_OF_COLUMN,
    LABEL_COLUMN,
    double_columns,
    feature_specs,
    relation,
    table_columns,
)
from fabric.scoring.inputs import fit_specs, impute_nulls
from fabric.scoring.registry import ALIASES, CHALLENGER, CHAMPION, EvaluationMetrics, ModelCard, ModelRegistry
from fabric.scoring.rules import RuleScorer
from fabric.warehouse import Warehouse

log = logging.getLogger(__name__)

MIN_TRAINING_ROWS = 1_000
MIN_TRAINING_POSITIVES = 50
MIN_HOLDOUT_POSITIVES = 10
MODEL_PARAMS: dict[str, Any] = {
    "max_iter": 150,
    "learning_rate": 0.1,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 50,
    "l2_regularization": 1.0,
    "class_weight": "balanced",
    "early_stopping": False,
    "random_state": 42,
}


@dataclass(frozen=True)
class TimeSplit:
    """Which labelled as-of dates train the model and which evaluate it."""

    training_dates: list[date]
    holdout_dates: list[date]


def split_dates(
    labelled: Sequence[date],
    training: TrainingConfig,
    horizon_days: int,
    window: Window | None = None,
) -> TimeSplit:
    """The time split described in the module docstring (pure; `labelled` in any order).

    `window` replaces the default training range (the last `history_days`); dates of it that
    fall into the embargo before the holdout are not used.
    """
    dates = sorted(set(labelled))
    if not dates:
        raise ModelError(
            "no labelled history: no as-of date has both features and known labels "
            "(backfill the features over at least history_days first)"
        )
    latest = dates[-1]
    holdout_start = latest - timedelta(days=training.holdout_days - 1)
    training_end = holdout_start - timedelta(days=horizon_days)
    history_start = latest - timedelta(days=training.history_days - 1)
    if window is not None:
        history_start, training_end = window.start, min(window.end, training_end)
    candidates = [d for d in dates if history_start <= d <= training_end]
    if not candidates and window is not None:
        raise ModelError(
            f"training window {window} has no labelled as-of date on or before {training_end} "
            f"(labelled dates run from {dates[0]} to {latest}; the holdout "
            f"{holdout_start}..{latest} and the {horizon_days}-day label horizon before it are "
            "never trained on). Choose an earlier window."
        )
    if not candidates:
        raise ModelError(
            f"labelled as-of dates run from {dates[0]} to {latest}; training needs dates on or "
            f"before {training_end} (holdout {training.holdout_days} days + "
            f"{horizon_days}-day label horizon before {latest}). Backfill more history."
        )
    step = training.sample_every_days
    newest = candidates[-1]
    return TimeSplit(
        training_dates=[d for d in candidates if (newest - d).days % step == 0],
        holdout_dates=[d for d in dates if d >= holdout_start],
    )


def evaluate(labels: np.ndarray, scores: np.ndarray, threshold: float) -> EvaluationMetrics:
    """AUC, PR-AUC and precision/recall of `scores >= threshold` against 0/1 `labels`."""
    decisions = scores >= threshold
    return EvaluationMetrics(
        auc=float(roc_auc_score(labels, scores)),
        pr_auc=float(average_precision_score(labels, scores)),
        precision=float(precision_score(labels, decisions, zero_division=0)),
        recall=float(recall_score(labels, decisions, zero_division=0)),
        threshold=threshold,
        rows=len(labels),
        positives=int(labels.sum()),
    )


def _labelled_dates(con: duckdb.DuckDBPyConnection, scoring: ScoringConfig) -> list[date]:
    rows = con.execute(
        f"SELECT DISTINCT {AS_OF_COLUMN} FROM {relation(scoring.labels_table)} WHERE label_known "
        f"INTERSECT SELECT DISTINCT {AS_OF_COLUMN} FROM {relation(scoring.features_table)}"
    ).fetchall()
    return [row[0] for row in rows]


def _read_labelled(
    con: duckdb.DuckDBPyConnection,
    scoring: ScoringConfig,
    features: Sequence[str],
    dates: Sequence[date],
) -> pd.DataFrame:
    key = quote(scoring.entity_key)
    return con.execute(
        f"SELECT {AS_OF_COLUMN}, {key}, {double_columns(features)}, "
        f"CAST({LABEL_COLUMN} AS INTEGER) AS {LABEL_COLUMN} "
        f"FROM {relation(scoring.features_table)} JOIN {relation(scoring.labels_table)} "
        f"USING ({AS_OF_COLUMN}, {key}) "
        f"WHERE label_known AND {LABEL_COLUMN} IS NOT NULL "
        f"AND {AS_OF_COLUMN} IN (SELECT unnest(?::DATE[])) ORDER BY {AS_OF_COLUMN}, {key}",
        [list(dates)],
    ).df()


def _frame_sha256(frame: pd.DataFrame) -> str:
    """A content hash of the training rows (values and column names, in row order)."""
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _require_enough(frame: pd.DataFrame, what: str, min_rows: int, min_positives: int) -> None:
    positives = int(frame[LABEL_COLUMN].sum())
    negatives = len(frame) - positives
    if len(frame) < min_rows or positives < min_positives or negatives < min_positives:
        raise ModelError(
            f"too little labelled data to {what}: {len(frame)} rows, {positives} churners, "
            f"{negatives} non-churners (need at least {min_rows} rows and {min_positives} of "
            "each class). Backfill more history or lower scoring.training.sample_every_days."
        )


def train(
    config: FabricConfig,
    warehouse: Warehouse,
    run_id: str,
    window: Window | None = None,
    alias: str | None = None,
) -> ModelCard:
    """Train on labelled history, evaluate against the rules, register and point `alias` at it.

    `alias` defaults to `challenger` when a training `window` is given, else `champion`.
    """
    alias = alias or (CHALLENGER if window else CHAMPION)
    if alias not in ALIASES:
        raise ModelError(f"unknown alias {alias!r}: use one of {', '.join(ALIASES)}")
    scoring = config.scoring
    record = RunRecord(run_id=run_id, step="train", inputs=[scoring.features_table, scoring.labels_table])
    try:
        card = _train(config, warehouse, run_id, record, window, alias)
    except ModelError as exc:
        record.status, record.message = "failed", str(exc)
        with warehouse.connect() as con:
            record_run(con, record)
        raise
    with warehouse.connect() as con:
        record_run(con, record)
    return card


def _train(
    config: FabricConfig,
    warehouse: Warehouse,
    run_id: str,
    record: RunRecord,
    window: Window | None,
    alias: str,
) -> ModelCard:
    scoring = config.scoring
    with warehouse.connect(read_only=True) as con:
        table_columns(con, scoring.labels_table)
        specs = feature_specs(table_columns(con, scoring.features_table), scoring)
        if not specs:
            raise ModelError(f"{scoring.features_table} has no numeric feature columns")
        split = split_dates(
            _labelled_dates(con, scoring), scoring.training, scoring.churn_horizon_days, window
        )
        names = [s.name for s in specs]
        training = _read_labelled(con, scoring, names, split.training_dates)
        holdout = _read_labelled(con, scoring, names, split.holdout_dates)
    record.partition_start, record.partition_end = split.training_dates[0], split.holdout_dates[-1]
    _require_enough(training, "train", MIN_TRAINING_ROWS, MIN_TRAINING_POSITIVES)
    _require_enough(holdout, "evaluate on the holdout", 1, MIN_HOLDOUT_POSITIVES)

    raw = training[names].to_numpy(dtype=np.float64, na_value=np.nan)
    specs = fit_specs(specs, raw)
    policy = scoring.training.invalid_input
    # Fit on plain arrays: scoring backends pass float64 matrices in card order, not frames.
    model_input = impute_nulls(specs, raw) if policy == "impute" else raw
    model = HistGradientBoostingClassifier(**MODEL_PARAMS)
    model.fit(model_input, training[LABEL_COLUMN].to_numpy())

    truth = holdout[LABEL_COLUMN].to_numpy()
    threshold = scoring.decision_threshold
    holdout_raw = holdout[names].to_numpy(dtype=np.float64, na_value=np.nan)
    holdout_input = impute_nulls(specs, holdout_raw) if policy == "impute" else holdout_raw
    metrics = {"model": evaluate(truth, model.predict_proba(holdout_input)[:, 1], threshold)}
    if scoring.rules:
        metrics["rules"] = evaluate(truth, RuleScorer(scoring.rules).score(holdout), threshold)

    card = ModelCard(
        name=scoring.model_name,
        algorithm=type(model).__name__,
        params=MODEL_PARAMS,
        features=specs,
        label=LABEL_COLUMN,
        horizon_days=scoring.churn_horizon_days,
        training_as_of_dates=split.training_dates,
        training_window_start=split.training_dates[0],
        training_window_end=split.training_dates[-1],
        holdout_start=split.holdout_dates[0],
        holdout_end=split.holdout_dates[-1],
        training_rows=len(training),
        training_positives=int(training[LABEL_COLUMN].sum()),
        training_data_sha256=_frame_sha256(training),
        metrics=metrics,
        created_at=utcnow(),
        created_by_run=run_id,
        sklearn_version=sklearn.__version__,
        invalid_input=policy,
        feature_reference={n: reference_histogram(raw[:, i]) for i, n in enumerate(names)},
        score_reference=reference_histogram(model.predict_proba(model_input)[:, 1]),
    )
    registry = ModelRegistry(config.resolve(scoring.registry_dir))
    version = registry.register(model, card)
    registry.set_alias(card.name, alias, version, run_id)
    record.output(f"registry:{card.name}/v{version}", len(training))
    log.info(
        "trained %s v%d (%s) on %d rows (%d dates); holdout %s..%s: %s",
        card.name,
        version,
        alias,
        len(training),
        len(split.training_dates),
        card.holdout_start,
        card.holdout_end,
        ", ".join(f"{k} AUC {m.auc:.3f} PR-AUC {m.pr_auc:.3f}" for k, m in metrics.items()),
    )
    return registry.load_card(card.name, version)
