"""Batch scoring of a partition window into `scores.churn_scores`.

Once per run the registry aliases are resolved to explicit versions (`champion`, and
`challenger` when one is registered and the configuration gives it traffic or a shadow), and
each model gets a scoring backend (`fabric.scoring.backend.open_backend`). Then per day: ask the
quality gate, stream the day's features from DuckDB in Arrow batches, assign each entity its
variant by a stable hash of its key (`fabric.scoring.variants`), score each batch through the
backends and append it to the scores table as one write of the day, committed batch by batch and
made visible at once when complete (`fabric.scoring.scores_table`). The day is replaced
atomically and only one batch is in memory at a time, whatever the day's size. A batch a backend
cannot score (`ModelUnavailable`: server down, breaker open) is scored by the rules
(`scorer = 'rules'`) and the run goes on. NULL and out-of-range feature values are handled as
the model card declares (`fabric.scoring.inputs`). A day whose gate is closed is reported and
left as it was; so is a day without features.

Without a registered champion the rules score every champion row (model `rules`, version 0).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from fabric.config import FabricConfig
from fabric.errors import FabricError, ModelError, QualityGateClosed
from fabric.identifiers import quote
from fabric.meta import RunRecord, record_run, utcnow
from fabric.partitions import Window
from fabric.progress import ProgressClock
from fabric.quality.gate import require_open
from fabric.scoring.backend import ModelUnavailable, ScoringBackend, open_backend
from fabric.scoring.features import (
    AS_OF_COLUMN,
    CRM_KEY_COLUMN,
    check_signature,
    double_columns,
    relation,
    table_columns,
)
from fabric.scoring.inputs import InputCounts, InputPolicy
from fabric.scoring.registry import CHALLENGER, CHAMPION, ModelCard, ModelRegistry
from fabric.scoring.rules import RuleScorer
from fabric.scoring.scores_table import (
    BY_CHALLENGER,
    BY_CHAMPION,
    BY_RULES,
    RULES_MODEL,
    SCORES_PARTITION_COLUMN,
    SCORES_ROWS,
    SCORES_SCHEMA,
    SCORES_TABLE,
    WriteInfo,
    begin_write,
    discard_write,
    ensure_scores,
    finish_write,
)
from fabric.scoring.variants import (
    CHALLENGER_VARIANT,
    CHAMPION_VARIANT,
    SHADOW_VARIANT,
    VARIANTS,
    bucket_sql,
)
from fabric.warehouse import Warehouse, table_exists

log = logging.getLogger(__name__)

Gate = Callable[[duckdb.DuckDBPyConnection, date], object]
"""Raises QualityGateClosed when a partition must not be scored or published (result ignored)."""

RULES_MODEL_NAME = RULES_MODEL[0]
# Two DuckDB row groups per batch: big enough to amortise per-batch calls and let DuckDB write in
# parallel, small enough to keep a run's memory flat (~100 MB at 12 features; each batch is
# committed, see `scores_table`).
BATCH_ROWS = 245_760
_BATCH_VIEW = "scored_batch"
# One scored batch into the compact rows: `scored_by` and `variant` stay codes (the view decodes).
_INSERT = (
    f"INSERT INTO {SCORES_ROWS} SELECT CAST($day AS DATE), fabric_customer_id, crm_customer_id, "
    f"score, score >= $threshold, scored_by, variant, $write_id FROM {_BATCH_VIEW}"
)
_HISTOGRAM_BINS = 1000


def read_scores(con: duckdb.DuckDBPyConnection, day: date) -> pa.Table:
    """All score rows of one partition (every variant), ordered by Fabric customer id."""
    if not table_exists(con, SCORES_TABLE):
        return pa.table({})
    return con.execute(
        f"SELECT * FROM {SCORES_TABLE} WHERE {SCORES_PARTITION_COLUMN} = ? "
        "ORDER BY fabric_customer_id, variant",
        [day],
    ).to_arrow_table()


def publishable_scores(con: duckdb.DuckDBPyConnection, config: FabricConfig, day: date) -> pa.Table:
    """The score rows of `day` a publisher may send, ordered by entity key.

    Exactly one row per entity: the variant assigned to it (`champion` or `challenger`), never a
    `shadow` row. Rule-scored rows (`scorer = 'rules'`) are included, marked as such, unless
    `scoring.publish_rule_scored` is `hold`. Empty (with the scores table's columns) when the
    day, or the table, has no rows.
    """
    if not table_exists(con, SCORES_TABLE):
        return SCORES_SCHEMA.empty_table()
    return con.execute(
        f"SELECT * FROM {SCORES_TABLE} WHERE {publishable_filter(config, [day])} ORDER BY fabric_customer_id"
    ).to_arrow_table()


def publishable_filter(config: FabricConfig, days: Sequence[date]) -> str:
    """SQL condition on `scores.churn_scores` selecting the rows of `days` a publisher may send
    (see `publishable_scores`). The days are literals: a constant filter DuckDB pushes into the
    scan of the day's rows."""
    in_days = ", ".join(f"DATE '{day.isoformat()}'" for day in days)
    hold = " AND scorer <> 'rules'" if config.scoring.publish_rule_scored == "hold" else ""
    return f"{SCORES_PARTITION_COLUMN} IN ({in_days}) AND variant <> '{SHADOW_VARIANT}'{hold}"


def lineage_id(run_id: str, partition: date, customer: str, model: str, version: int) -> str:
    """The id a score row carries to every system it is published to (deterministic).

    The MD5 of `run|partition|customer|model|version` in UUID form; the scores view derives the
    same for every row (`fabric.scoring.scores_table`).
    """
    key = f"{run_id}|{partition.isoformat()}|{customer}|{model}|{version}"
    return str(uuid.UUID(hex=hashlib.md5(key.encode("utf-8"), usedforsecurity=False).hexdigest()))


def quality_gate(config: FabricConfig) -> Gate:
    """The gate of `fabric.quality` over the configured governed tables."""
    tables = list(config.quality.governed_tables)
    return lambda con, day: require_open(con, day, tables)


@dataclass
class ResolvedModel:
    """One explicit model version this run scores with, behind its backend."""

    alias: str
    card: ModelCard
    backend: ScoringBackend
    policy: InputPolicy

    @property
    def label(self) -> str:
        return f"model {self.card.name} v{self.card.version}"


@dataclass
class ScoringPlan:
    """Everything resolved once per run: the models, the traffic split and the rules."""

    champion: ResolvedModel | None
    challenger: ResolvedModel | None
    challenger_percent: int
    shadow: bool
    rules: RuleScorer | None

    @property
    def models(self) -> list[ResolvedModel]:
        return [m for m in (self.champion, self.challenger) if m is not None]

    @property
    def splits_traffic(self) -> bool:
        return self.challenger is not None and self.challenger_percent > 0

    @property
    def shadows(self) -> bool:
        return self.challenger is not None and self.shadow and self.challenger_percent < 100

    def feature_names(self) -> list[str]:
        """Every column a model or rule reads, each once, in first-use order."""
        names = [n for m in self.models for n in m.card.feature_names]
        names += self.rules.features if self.rules else []
        return list(dict.fromkeys(names))

    def close(self) -> None:
        for model in self.models:
            model.backend.close()


def _open_model(
    config: FabricConfig, registry: ModelRegistry, name: str, alias: str, version: int
) -> ResolvedModel:
    model, card = registry.load(name, version)
    backend = open_backend(model, config, card.version)
    return ResolvedModel(alias=alias, card=card, backend=backend, policy=InputPolicy(card))


def resolve_plan(config: FabricConfig) -> ScoringPlan:
    """Resolve `champion` and `challenger` to versions once, and open their backends."""
    scoring = config.scoring
    registry = ModelRegistry(config.resolve(scoring.registry_dir))
    aliases = registry.aliases(scoring.model_name)
    rules = RuleScorer(scoring.rules) if scoring.rules else None
    champion = None
    if CHAMPION in aliases:
        champion = _open_model(config, registry, scoring.model_name, CHAMPION, aliases[CHAMPION])
    else:
        if rules is None:
            RuleScorer(scoring.rules)  # raises the "no scoring rules configured" error
        log.warning("no %s champion in %s: scoring with the rules", scoring.model_name, registry.root)
    challenger = None
    wanted = scoring.challenger_percent > 0 or scoring.shadow
    version = aliases.get(CHALLENGER)
    if wanted and version is None:
        log.warning(
            "scoring.challenger_percent/shadow are set but %s has no challenger: the champion "
            "scores everyone",
            scoring.model_name,
        )
    elif wanted and version is not None and version != aliases.get(CHAMPION):
        challenger = _open_model(config, registry, scoring.model_name, CHALLENGER, version)
    return ScoringPlan(champion, challenger, scoring.challenger_percent, scoring.shadow, rules)


class ScoreHistogram:
    """A fixed 1000-bin histogram of scores in [0, 1]: summary statistics in bounded memory."""

    def __init__(self) -> None:
        self.counts = np.zeros(_HISTOGRAM_BINS, dtype=np.int64)
        self.total = 0.0

    def add(self, scores: np.ndarray) -> None:
        bins = np.clip((scores * _HISTOGRAM_BINS).astype(np.int64), 0, _HISTOGRAM_BINS - 1)
        self.counts += np.bincount(bins, minlength=_HISTOGRAM_BINS)
        self.total += float(scores.sum())

    @property
    def rows(self) -> int:
        return int(self.counts.sum())

    def quantile(self, q: float) -> float:
        """The upper edge of the bin holding quantile `q` (within 0.001 of the exact value)."""
        position = int(np.searchsorted(np.cumsum(self.counts), q * self.rows, side="left"))
        return (min(position, _HISTOGRAM_BINS - 1) + 1) / _HISTOGRAM_BINS

    def share_at_or_above(self, threshold: float) -> float:
        # Bins are [k/1000, (k+1)/1000): exact for thresholds on the grid (0.5 by default).
        first = int(np.ceil(threshold * _HISTOGRAM_BINS - 1e-9))
        return float(self.counts[first:].sum() / self.rows)


@dataclass(frozen=True)
class ScoreDistribution:
    rows: int
    mean: float
    p50: float
    p90: float
    share_above_threshold: float

    @classmethod
    def of(cls, histogram: ScoreHistogram, threshold: float) -> ScoreDistribution:
        return cls(
            rows=histogram.rows,
            mean=histogram.total / histogram.rows,
            p50=histogram.quantile(0.5),
            p90=histogram.quantile(0.9),
            share_above_threshold=histogram.share_at_or_above(threshold),
        )


@dataclass
class ScoringResult:
    """What `score_window` did, per day and per variant and scorer."""

    run_id: str
    window: Window
    scorer: str
    model_name: str
    model_version: int
    threshold: float
    challenger_version: int | None = None
    challenger_percent: int = 0
    shadow: bool = False
    rows_by_day: dict[date, int] = field(default_factory=dict)
    rows_by_variant: dict[str, dict[str, int]] = field(default_factory=dict)
    shadow_rows_skipped: int = 0
    unavailable_batches: int = 0
    inputs: InputCounts = field(default_factory=InputCounts)
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    blocked: dict[date, str] = field(default_factory=dict)
    missing: list[date] = field(default_factory=list)
    distribution: ScoreDistribution | None = None
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        """Rows written (every variant, shadow included)."""
        return sum(self.rows_by_day.values())

    def count(self, variant: str, scorer: str, rows: int) -> None:
        if not rows:
            return
        by_scorer = self.rows_by_variant.setdefault(variant, {})
        by_scorer[scorer] = by_scorer.get(scorer, 0) + rows

    def metadata(self) -> dict[str, Any]:
        """Plain values for Dagster asset metadata."""
        data: dict[str, Any] = {
            "scorer": self.scorer,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "challenger_version": self.challenger_version,
            "challenger_percent": self.challenger_percent,
            "shadow": self.shadow,
            "rows": self.rows,
            "rows_by_day": {d.isoformat(): n for d, n in self.rows_by_day.items()},
            "rows_by_variant_and_scorer": self.rows_by_variant,
            "rows_by_scorer": self.rows_by_scorer(),
            "shadow_rows_skipped": self.shadow_rows_skipped,
            "unavailable_batches": self.unavailable_batches,
            "input_handling": self.inputs.as_dict(),
            "backends": self.backends,
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

    def rows_by_scorer(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for by_scorer in self.rows_by_variant.values():
            for scorer, n in by_scorer.items():
                totals[scorer] = totals.get(scorer, 0) + n
        return totals


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
        plan = resolve_plan(config)
        try:
            result = _new_result(config, plan, run_id, window)
            histogram = ScoreHistogram()
            with warehouse.connect() as con:
                con.execute(f"SET memory_limit = '{config.warehouse.scoring_memory_limit}'")  # validated
                ensure_scores(con)
                _check_inputs(con, config, plan)
                for day in window:
                    try:
                        gate(con, day)
                    except QualityGateClosed as exc:
                        result.blocked[day] = str(exc)
                        continue
                    _score_day(con, config, plan, day, run_id, result, histogram)
        finally:
            backends = {m.alias: m.backend.report() for m in plan.models}
            plan.close()
    except FabricError as exc:
        record.status, record.message = "failed", str(exc)
        with warehouse.connect() as con:
            record_run(con, record)
        raise
    result.backends = backends
    if histogram.rows:
        result.distribution = ScoreDistribution.of(histogram, scoring.decision_threshold)
    result.seconds = time.perf_counter() - started
    record.output(SCORES_TABLE, result.rows, list(result.rows_by_day))
    problems = [f"{d}: {reason}" for d, reason in result.blocked.items()]
    problems += [f"{d}: no rows in {scoring.features_table}" for d in result.missing]
    if result.unavailable_batches:
        problems.append(f"{result.unavailable_batches} batches scored by the rules (model unavailable)")
    if problems:
        record.status, record.message = "warning", "; ".join(problems)
    with warehouse.connect() as con:
        record_run(con, record)
    return result


def _new_result(config: FabricConfig, plan: ScoringPlan, run_id: str, window: Window) -> ScoringResult:
    champion = plan.champion
    return ScoringResult(
        run_id=run_id,
        window=window,
        scorer="model" if champion else "rules",
        model_name=champion.card.name if champion else RULES_MODEL_NAME,
        model_version=champion.card.version if champion else 0,
        threshold=config.scoring.decision_threshold,
        challenger_version=plan.challenger.card.version if plan.challenger else None,
        challenger_percent=plan.challenger_percent if plan.challenger else 0,
        shadow=plan.shadows,
    )


def _check_inputs(con: duckdb.DuckDBPyConnection, config: FabricConfig, plan: ScoringPlan) -> None:
    """Refuse a model (or rule) whose features the table does not have, naming every difference."""
    table = config.scoring.features_table
    columns = table_columns(con, table)
    for model in plan.models:
        check_signature(model.card.features, columns, f"{model.alias} {model.label}", table)
    missing = [n for n in (plan.rules.features if plan.rules else []) if n not in columns]
    if missing:
        raise ModelError(
            f"scoring.rules in fabric.yaml read columns that {table} does not have: {', '.join(missing)}"
        )


def _score_day(
    con: duckdb.DuckDBPyConnection,
    config: FabricConfig,
    plan: ScoringPlan,
    day: date,
    run_id: str,
    result: ScoringResult,
    histogram: ScoreHistogram,
) -> None:
    """Replace the day's score rows, one Arrow batch in memory at a time: the batches are
    committed as one write, which readers see only once it is complete (`scores_table`)."""
    scoring = config.scoring
    names = plan.feature_names()
    key = quote(scoring.entity_key)
    bucket = f", {bucket_sql(key)} AS bucket" if plan.splits_traffic else ""
    # A second connection to the same database streams the features while `con` writes.
    reader_con = con.cursor()
    write_id = begin_write(con, day)
    info = WriteInfo(
        run_id=run_id,
        scored_at=utcnow(),
        champion=(plan.champion.card.name, plan.champion.card.version) if plan.champion else None,
        challenger=(plan.challenger.card.name, plan.challenger.card.version) if plan.challenger else None,
    )
    params = {"day": day, "threshold": scoring.decision_threshold, "write_id": write_id}
    rows = read = 0
    started, progress = time.perf_counter(), ProgressClock()
    writer = _BatchWriter(con, params)
    try:
        ((total,),) = reader_con.execute(
            f"SELECT count(*) FROM {relation(scoring.features_table)} WHERE {AS_OF_COLUMN} = ?", [day]
        ).fetchall()
        reader = reader_con.execute(
            f"SELECT CAST({key} AS VARCHAR) AS fabric_customer_id, "
            f"CAST({quote(CRM_KEY_COLUMN)} AS BIGINT) AS crm_customer_id{bucket}, "
            f"{double_columns(names)} FROM {relation(scoring.features_table)} "
            f"WHERE {AS_OF_COLUMN} = ?",
            [day],
        ).to_arrow_reader(batch_rows(config))
        for batch in reader:
            for scored in _score_batch(batch, names, plan, result, histogram):
                writer.write(scored)
                rows += scored.num_rows
            read += batch.num_rows
            if progress.due():
                log.info("scores %s: %s of %s feature rows scored (%.0f%%)", day, f"{read:,}", f"{total:,}",
                         100 * read / total)  # fmt: skip
        writer.close()
    except BaseException:
        writer.close(raise_error=False)
        discard_write(con, day, write_id)  # the next write of the day would delete them too
        raise
    finally:
        reader_con.close()
    if rows == 0:  # no features for the day: keep what it had
        result.missing.append(day)
        return
    finish_write(con, day, write_id, info)
    result.rows_by_day[day] = rows
    seconds = time.perf_counter() - started
    log.info("scores %s: %s feature rows scored, %s score rows written in %.1f s", day, f"{read:,}",
             f"{rows:,}", seconds)  # fmt: skip


class _BatchWriter:
    """Inserts scored batches into the day's write on a thread of its own, one batch at a time,
    so that a batch is written while the next one is predicted.

    Prediction leaves part of the machine idle (the benchmark's model keeps 2 cores about 1.7
    busy), and DuckDB's insert releases the GIL; overlapping them took the median of 1M rows
    from 2.80 to 2.62 s (docs/benchmarks.md). At most one batch waits, so memory stays bounded.
    An insert's error is raised by the next `write` or by `close`.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, params: dict[str, Any]) -> None:
        self._con = con
        self._params = params
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fabric-scores-writer")
        self._pending: Future[None] | None = None

    def write(self, scored: pa.Table) -> None:
        self._wait()
        self._pending = self._pool.submit(self._insert, scored)

    def close(self, raise_error: bool = True) -> None:
        """Wait for the last insert (raising its error unless `raise_error` is False)."""
        try:
            self._wait()
        except Exception:
            if raise_error:
                raise
        finally:
            self._pool.shutdown(wait=True)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _insert(self, scored: pa.Table) -> None:
        self._con.register(_BATCH_VIEW, scored)
        try:
            self._con.execute(_INSERT, self._params)
        finally:
            self._con.unregister(_BATCH_VIEW)


def batch_rows(config: FabricConfig) -> int:
    """Rows per batch: `BATCH_ROWS`, or what one round of remote requests carries
    (`scoring.remote.batch_rows` x `concurrency`) if smaller."""
    remote = config.scoring.remote
    return min(BATCH_ROWS, remote.batch_rows * remote.concurrency) if remote is not None else BATCH_ROWS


def _score_batch(
    batch: pa.RecordBatch,
    names: list[str],
    plan: ScoringPlan,
    result: ScoringResult,
    histogram: ScoreHistogram,
) -> Iterator[pa.Table]:
    """The scored rows of one batch: the assigned variant's rows, then any shadow rows."""
    n = batch.num_rows
    columns = {
        name: batch.column(name).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        for name in names
    }
    to_challenger = np.zeros(n, dtype=bool)
    if plan.splits_traffic:
        to_challenger = batch.column("bucket").to_numpy() < plan.challenger_percent
    scores = np.empty(n, dtype=np.float64)
    by = np.empty(n, dtype=np.int8)
    for model, code, rows in (
        (plan.champion, BY_CHAMPION, np.flatnonzero(~to_challenger)),
        (plan.challenger, BY_CHALLENGER, np.flatnonzero(to_challenger)),
    ):
        if len(rows):
            scores[rows], by[rows] = _score_rows(model, code, columns, rows, n, plan, result)
    variant = np.where(
        to_challenger, VARIANTS.index(CHALLENGER_VARIANT), VARIANTS.index(CHAMPION_VARIANT)
    ).astype(np.int8)
    for code, name in enumerate(VARIANTS[:2]):
        chosen = by[variant == code]
        result.count(name, "rules", int((chosen == BY_RULES).sum()))
        result.count(name, "model", int((chosen != BY_RULES).sum()))
    histogram.add(scores)
    yield _scored_table(batch, None, scores, by, variant)

    if plan.shadows and plan.challenger is not None:
        rows = np.flatnonzero(~to_challenger)
        shadow_scores, shadow_by = _score_rows(
            plan.challenger, BY_CHALLENGER, columns, rows, n, plan, result, fallback=False
        )
        scored = shadow_by != BY_RULES
        result.shadow_rows_skipped += int((~scored).sum())
        result.count(SHADOW_VARIANT, "model", int(scored.sum()))
        if scored.any():
            kept = rows[scored]
            shadow_variant = np.full(len(kept), VARIANTS.index(SHADOW_VARIANT), dtype=np.int8)
            yield _scored_table(batch, kept, shadow_scores[scored], shadow_by[scored], shadow_variant)


def _score_rows(
    model: ResolvedModel | None,
    code: int,
    columns: dict[str, np.ndarray],
    rows: np.ndarray,
    n: int,
    plan: ScoringPlan,
    result: ScoringResult,
    fallback: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and scorer codes for `rows` of a batch: the model's, the rules' where it cannot.

    With `fallback=False` (shadow rows) rows the model cannot score get NaN and `BY_RULES`, and
    the caller drops them: a rule score says nothing about the challenger.
    """
    everything = len(rows) == n
    by = np.full(len(rows), code, dtype=np.int8)
    if model is None:
        return _rules(plan, columns, rows, everything), np.full(len(rows), BY_RULES, np.int8)
    matrix = np.column_stack(
        [columns[f] if everything else columns[f][rows] for f in model.card.feature_names]
    )
    prepared, to_rules, counts = model.policy.prepare(matrix)
    result.inputs.add(counts)
    scores = np.empty(len(rows), dtype=np.float64)
    modelled = np.ones(len(rows), dtype=bool) if to_rules is None else ~to_rules
    try:
        if len(prepared):
            scores[modelled] = model.backend.predict(prepared)
    except ModelUnavailable as exc:
        result.unavailable_batches += 1
        log.warning("%s unavailable for a batch of %d rows: %s", model.label, len(rows), exc)
        modelled[:] = False
    if modelled.all():
        return scores, by
    by[~modelled] = BY_RULES
    if fallback:
        scores[~modelled] = _rules(plan, columns, rows[~modelled], False)
    else:
        scores[~modelled] = np.nan
    return scores, by


def _rules(
    plan: ScoringPlan, columns: dict[str, np.ndarray], rows: np.ndarray, everything: bool
) -> np.ndarray:
    if plan.rules is None:
        raise ModelError(
            "the model could not score some rows and no scoring rules are configured to fall "
            "back on (scoring.rules in fabric.yaml)"
        )
    selected = {f: columns[f] if everything else columns[f][rows] for f in plan.rules.features}
    return plan.rules.score_columns(selected, len(rows))


def _scored_table(
    batch: pa.RecordBatch,
    rows: np.ndarray | None,
    scores: np.ndarray,
    by: np.ndarray,
    variant: np.ndarray,
) -> pa.Table:
    keys = batch.select(["fabric_customer_id", "crm_customer_id"])
    if rows is not None:
        keys = keys.take(pa.array(rows))
    return (
        pa.Table.from_batches([keys])
        .append_column("score", pa.array(scores))
        .append_column("scored_by", pa.array(by))
        .append_column("variant", pa.array(variant))
    )
