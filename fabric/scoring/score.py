"""Batch scoring of a partition window into `scores.churn_scores`.

Per day: ask the quality gate, read that day's features in Arrow batches, score them with the
champion model (or the rule baseline when no model is registered), and replace the day's rows
atomically. A day whose gate is closed is reported and left as it was; the other days go on.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from fabric.config import FabricConfig
from fabric.errors import FabricError, QualityGateClosed
from fabric.identifiers import quote
from fabric.meta import RunRecord, record_run, utcnow
from fabric.partitions import Window
from fabric.quality.gate import require_open
from fabric.scoring.features import (
    AS_OF_COLUMN,
    CRM_KEY_COLUMN,
    check_signature,
    double_columns,
    relation,
    table_columns,
)
from fabric.scoring.registry import CHAMPION, FeatureSpec, ModelRegistry
from fabric.scoring.rules import RuleScorer
from fabric.warehouse import Warehouse, replace_partitions, table_exists

log = logging.getLogger(__name__)

Gate = Callable[[duckdb.DuckDBPyConnection, date], object]
"""Raises QualityGateClosed when a partition must not be scored or published (result ignored)."""

SCORES_TABLE = "scores.churn_scores"
SCORES_PARTITION_COLUMN = "partition_date"
SCORES_DDL = """CREATE TABLE IF NOT EXISTS scores.churn_scores (
    partition_date DATE, fabric_customer_id VARCHAR, crm_customer_id BIGINT, score DOUBLE,
    decision BOOLEAN, model_name VARCHAR, model_version INTEGER, variant VARCHAR,
    scorer VARCHAR, scored_at TIMESTAMP, run_id VARCHAR, lineage_id VARCHAR)"""
RULES_MODEL_NAME = "rules"
BATCH_ROWS = 100_000
LINEAGE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:fabric:scores.churn_scores")
_STAGED = "staged_churn_scores"


def read_scores(con: duckdb.DuckDBPyConnection, day: date) -> pa.Table:
    """All score rows of one partition, ordered by Fabric customer id (empty if none)."""
    if not table_exists(con, SCORES_TABLE):
        return pa.table({})
    return con.execute(
        f"SELECT * FROM {SCORES_TABLE} WHERE {SCORES_PARTITION_COLUMN} = ? "
        "ORDER BY fabric_customer_id",
        [day],
    ).to_arrow_table()


def lineage_id(run_id: str, partition: date, customer: str, model: str, version: int) -> str:
    """The id a score row carries to every system it is published to (deterministic)."""
    key = f"{run_id}|{partition.isoformat()}|{customer}|{model}|{version}"
    return str(uuid.uuid5(LINEAGE_NAMESPACE, key))


@dataclass(frozen=True)
class ActiveScorer:
    """What scores this run: the champion model, or the rules when there is none."""

    scorer: str
    model_name: str
    model_version: int
    features: list[FeatureSpec]
    predict: Callable[[pd.DataFrame], np.ndarray]

    @property
    def label(self) -> str:
        return f"model {self.model_name} v{self.model_version}" if self.model_version else "rules"


def quality_gate(config: FabricConfig) -> Gate:
    """The gate of `fabric.quality` over the configured governed tables."""
    tables = list(config.quality.governed_tables)
    return lambda con, day: require_open(con, day, tables)


def active_scorer(config: FabricConfig) -> ActiveScorer:
    """The champion of `scoring.model_name`, or the configured rules if none is registered."""
    scoring = config.scoring
    registry = ModelRegistry(config.resolve(scoring.registry_dir))
    if registry.has_alias(scoring.model_name, CHAMPION):
        model, card = registry.load(scoring.model_name, CHAMPION)
        names = card.feature_names
        return ActiveScorer(
            scorer="model",
            model_name=card.name,
            model_version=card.version,
            features=card.features,
            predict=lambda frame: np.asarray(model.predict_proba(frame[names])[:, 1]),
        )
    rules = RuleScorer(scoring.rules)
    log.warning("no %s champion in %s: scoring with the rules", scoring.model_name, registry.root)
    return ActiveScorer(
        scorer="rules",
        model_name=RULES_MODEL_NAME,
        model_version=0,
        features=[FeatureSpec(name=n, dtype="DOUBLE") for n in rules.features],
        predict=rules.score,
    )


@dataclass(frozen=True)
class ScoreDistribution:
    rows: int
    mean: float
    p50: float
    p90: float
    share_above_threshold: float

    @classmethod
    def of(cls, scores: np.ndarray, threshold: float) -> ScoreDistribution:
        p50, p90 = np.quantile(scores, [0.5, 0.9])
        return cls(
            rows=len(scores),
            mean=float(scores.mean()),
            p50=float(p50),
            p90=float(p90),
            share_above_threshold=float((scores >= threshold).mean()),
        )


@dataclass
class ScoringResult:
    """What `score_window` did, per day."""

    run_id: str
    window: Window
    scorer: str
    model_name: str
    model_version: int
    threshold: float
    rows_by_day: dict[date, int] = field(default_factory=dict)
    blocked: dict[date, str] = field(default_factory=dict)
    missing: list[date] = field(default_factory=list)
    distribution: ScoreDistribution | None = None
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.rows_by_day.values())

    def metadata(self) -> dict[str, Any]:
        """Plain values for Dagster asset metadata."""
        data: dict[str, Any] = {
            "scorer": self.scorer,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "rows": self.rows,
            "rows_by_day": {d.isoformat(): n for d, n in self.rows_by_day.items()},
            "blocked_days": {d.isoformat(): reason for d, reason in self.blocked.items()},
            "days_without_features": [d.isoformat() for d in self.missing],
            "decision_threshold": self.threshold,
            "seconds": round(self.seconds, 3),
        }
        if self.distribution:
            data.update(
                {
                    "score_mean": self.distribution.mean,
                    "score_p50": self.distribution.p50,
                    "score_p90": self.distribution.p90,
                    "share_above_threshold": self.distribution.share_above_threshold,
                }
            )
        return data


def score_window(
    config: FabricConfig,
    warehouse: Warehouse,
    window: Window,
    run_id: str,
    gate: Gate | None = None,
) -> ScoringResult:
    """Score every day of `window` whose gate is open; see the module docstring.

    `gate` defaults to the quality gate (`quality_gate(config)`).
    """
    gate = gate or quality_gate(config)
    started = time.perf_counter()
    scoring = config.scoring
    record = RunRecord(
        run_id=run_id,
        step="score",
        partition_start=window.start,
        partition_end=window.end,
        inputs=[scoring.features_table],
    )
    try:
        scorer = active_scorer(config)
        result = ScoringResult(
            run_id=run_id,
            window=window,
            scorer=scorer.scorer,
            model_name=scorer.model_name,
            model_version=scorer.model_version,
            threshold=scoring.decision_threshold,
        )
        with warehouse.connect() as con:
            con.execute(SCORES_DDL)
            check_signature(
                scorer.features,
                table_columns(con, scoring.features_table),
                scorer.label,
                scoring.features_table,
            )
            all_scores = _score_days(con, config, scorer, window, run_id, gate, result)
    except FabricError as exc:
        record.status, record.message = "failed", str(exc)
        with warehouse.connect() as con:
            record_run(con, record)
        raise
    if all_scores:
        result.distribution = ScoreDistribution.of(
            np.concatenate(all_scores), scoring.decision_threshold
        )
    result.seconds = time.perf_counter() - started
    record.output(SCORES_TABLE, result.rows, list(result.rows_by_day))
    problems = [f"{d}: {reason}" for d, reason in result.blocked.items()]
    problems += [f"{d}: no rows in {scoring.features_table}" for d in result.missing]
    if problems:
        record.status, record.message = "warning", "not scored: " + "; ".join(problems)
    with warehouse.connect() as con:
        record_run(con, record)
    return result


def _score_days(
    con: duckdb.DuckDBPyConnection,
    config: FabricConfig,
    scorer: ActiveScorer,
    window: Window,
    run_id: str,
    gate: Gate,
    result: ScoringResult,
) -> list[np.ndarray]:
    scored_at = utcnow()
    all_scores: list[np.ndarray] = []
    for day in window:
        try:
            gate(con, day)
        except QualityGateClosed as exc:
            result.blocked[day] = str(exc)
            continue
        staged = _score_day(con, config, scorer, day, run_id, scored_at)
        if staged.num_rows == 0:
            result.missing.append(day)
            continue
        con.register(_STAGED, staged)
        try:
            result.rows_by_day[day] = replace_partitions(
                con, SCORES_TABLE, SCORES_PARTITION_COLUMN, [day], _STAGED
            )
        finally:
            con.unregister(_STAGED)
        all_scores.append(staged.column("score").to_numpy())
    return all_scores


def _score_day(
    con: duckdb.DuckDBPyConnection,
    config: FabricConfig,
    scorer: ActiveScorer,
    day: date,
    run_id: str,
    scored_at: datetime,
) -> pa.Table:
    """The score rows for one day (an empty table when the day has no features)."""
    scoring = config.scoring
    reader = con.execute(
        f"SELECT {quote(scoring.entity_key)} AS fabric_customer_id, "
        f"CAST({quote(CRM_KEY_COLUMN)} AS BIGINT) AS crm_customer_id, "
        f"{double_columns([f.name for f in scorer.features])} "
        f"FROM {relation(scoring.features_table)} WHERE {AS_OF_COLUMN} = ?",
        [day],
    ).to_arrow_reader(BATCH_ROWS)
    tables = []
    for batch in reader:
        n = batch.num_rows
        scores = scorer.predict(batch.to_pandas()).astype(np.float64)
        customers = batch.column("fabric_customer_id").cast(pa.string())
        lineage_ids = [
            lineage_id(run_id, day, c, scorer.model_name, scorer.model_version)
            for c in customers.to_pylist()
        ]
        tables.append(
            pa.table(
                {
                    "partition_date": _repeat(day, pa.date32(), n),
                    "fabric_customer_id": customers,
                    "crm_customer_id": batch.column("crm_customer_id"),
                    "score": pa.array(scores),
                    "decision": pa.array(scores >= scoring.decision_threshold),
                    "model_name": _repeat(scorer.model_name, pa.string(), n),
                    "model_version": _repeat(scorer.model_version, pa.int32(), n),
                    "variant": _repeat(CHAMPION, pa.string(), n),
                    "scorer": _repeat(scorer.scorer, pa.string(), n),
                    "scored_at": _repeat(scored_at, pa.timestamp("us"), n),
                    "run_id": _repeat(run_id, pa.string(), n),
                    "lineage_id": pa.array(lineage_ids, pa.string()),
                }
            )
        )
    return pa.concat_tables(tables) if tables else pa.table({})


def _repeat(value: object, dtype: pa.DataType, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, dtype), n)
