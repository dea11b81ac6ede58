"""A/B evaluation: scores joined with the churn outcomes that became known later, per variant.

A score of day D is judged once its label is known (`features.churn_labels.label_known`: the
horizon after D has been ingested), so the evaluation of a run looks back over
`scoring.evaluation_days` of scored partitions and uses those with known outcomes. Rows are
grouped by variant and by the model version (or `rules`) that scored them, so a champion row the
rules scored while the model was unavailable is not counted as the model's.

Per group: AUC, precision and recall at the decision threshold, calibration (10 equal-width score
bins: mean score vs observed churn rate, and the expected calibration error), lift of the top
decile (churn rate among the 10% highest scores over the overall rate), each with a 95%
bootstrap interval (resampling rows, fixed seed, so a re-run gives the same report). When a
challenger (or shadow) group exists, the AUC difference to the champion on the same days is
reported too. Scores here are risk scores (the model is trained with balanced class weights),
so calibration is expected to be off; it is reported so that a change is visible.

The report goes to `$FABRIC_HOME/reports/evaluation_<through>.{json,md,png}` and its metrics to
`scores.churn_evaluation` (one row per group, partition `evaluated_through`, replaced on re-run).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fabric.config import FabricConfig
from fabric.identifiers import quote
from fabric.meta import utcnow
from fabric.scoring.drift import reports_dir
from fabric.scoring.features import AS_OF_COLUMN, LABEL_COLUMN, relation
from fabric.scoring.score import SCORES_TABLE
from fabric.scoring.variants import CHAMPION_VARIANT, SHADOW_VARIANT, VARIANTS
from fabric.warehouse import Warehouse, replace_partitions, table_exists

EVALUATION_TABLE = "scores.churn_evaluation"
BOOTSTRAP_RESAMPLES = 200
CALIBRATION_BINS = 10
_SEED = 20260
_STAGED = "staged_churn_evaluation"


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties averaged; NaN without both classes."""
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average ranks over runs of equal scores
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(scores)]])
    average = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(average, ends - starts)
    rank_sum = ranks[labels == 1].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def top_decile_lift(labels: np.ndarray, scores: np.ndarray) -> float:
    """Churn rate among the highest-scored 10% of rows over the overall churn rate."""
    base = labels.mean()
    if base == 0:
        return float("nan")
    top = max(1, int(np.ceil(len(scores) * 0.1)))
    highest = np.argsort(-scores, kind="mergesort")[:top]
    return float(labels[highest].mean() / base)


def precision_recall(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    flagged = scores >= threshold
    true_positives = float((flagged & (labels == 1)).sum())
    precision = true_positives / flagged.sum() if flagged.any() else float("nan")
    recall = true_positives / labels.sum() if labels.any() else float("nan")
    return float(precision), float(recall)


def calibration(labels: np.ndarray, scores: np.ndarray) -> tuple[list[dict[str, float]], float]:
    """Per score bin (rows, mean score, churn rate), and the expected calibration error."""
    bins = np.clip((scores * CALIBRATION_BINS).astype(np.int64), 0, CALIBRATION_BINS - 1)
    table = []
    error = 0.0
    for b in range(CALIBRATION_BINS):
        inside = bins == b
        n = int(inside.sum())
        if not n:
            continue
        mean_score, rate = float(scores[inside].mean()), float(labels[inside].mean())
        table.append({"bin": b / CALIBRATION_BINS, "rows": n, "mean_score": mean_score, "churn_rate": rate})
        error += n / len(scores) * abs(mean_score - rate)
    return table, float(error)


@dataclass
class Interval:
    value: float
    low: float
    high: float


def _interval(value: float, samples: list[float]) -> Interval:
    finite = np.asarray([s for s in samples if np.isfinite(s)])
    if not len(finite):
        return Interval(value, float("nan"), float("nan"))
    low, high = np.quantile(finite, [0.025, 0.975])
    return Interval(value, float(low), float(high))


@dataclass
class GroupMetrics:
    """One (variant, model version) group's quality against the known outcomes."""

    variant: str
    model_name: str
    model_version: int
    rows: int
    positives: int
    days: int
    auc: Interval
    precision: Interval
    recall: Interval
    lift_top_decile: Interval
    calibration_error: float
    calibration: list[dict[str, float]]
    auc_minus_champion: Interval | None = None

    @property
    def label(self) -> str:
        version = "rules" if self.model_name == "rules" else f"{self.model_name} v{self.model_version}"
        return f"{self.variant} ({version})"


@dataclass
class EvaluationReport:
    through: date
    first_day: date | None
    threshold: float
    groups: list[GroupMetrics] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "evaluated_through": self.through.isoformat(),
            "first_scored_day": self.first_day.isoformat() if self.first_day else None,
            "decision_threshold": self.threshold,
            "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
            "groups": [asdict(g) for g in self.groups],
        }

    def markdown(self) -> str:
        if not self.groups:
            return (
                f"# A/B evaluation through {self.through}\n\nNo scored day with known outcomes yet "
                "(a label is known once the churn horizon after the scored day has been ingested).\n"
            )
        lines = [
            f"# A/B evaluation through {self.through}",
            "",
            f"Scored days {self.first_day}..{self.through} with known outcomes; decision threshold "
            f"{self.threshold:g}; 95% bootstrap intervals ({BOOTSTRAP_RESAMPLES} resamples).",
            "",
            "| group | rows | churners | AUC | precision | recall | lift top 10% | ECE | AUC - champion |",
            "| --- | ---: | ---: | --- | --- | --- | --- | ---: | --- |",
        ]
        for g in self.groups:
            delta = _fmt(g.auc_minus_champion) if g.auc_minus_champion else ""
            lines.append(
                f"| {g.label} | {g.rows:,} | {g.positives:,} | {_fmt(g.auc)} | {_fmt(g.precision)} | "
                f"{_fmt(g.recall)} | {_fmt(g.lift_top_decile)} | {g.calibration_error:.3f} | {delta} |"
            )
        if self.files.get("plot"):
            lines += ["", f"![score distributions and lift]({self.files['plot'].name})"]
        return "\n".join(lines) + "\n"


def _fmt(interval: Interval) -> str:
    return f"{interval.value:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def _labelled_scores(con: Any, config: FabricConfig, first: date, through: date) -> pa.Table:
    scoring = config.scoring
    key = quote(scoring.entity_key)
    return con.execute(
        f"SELECT s.variant, s.model_name, s.model_version, s.partition_date, s.fabric_customer_id, "
        f"s.score, CAST(l.{quote(LABEL_COLUMN)} AS INTEGER) AS label "
        f"FROM {SCORES_TABLE} s JOIN {relation(scoring.labels_table)} l "
        f"ON l.{AS_OF_COLUMN} = s.partition_date AND l.{key} = s.fabric_customer_id "
        "WHERE l.label_known AND s.partition_date BETWEEN ? AND ? "
        "ORDER BY s.variant, s.model_name, s.model_version, s.partition_date, s.fabric_customer_id",
        [first, through],
    ).to_arrow_table()


def evaluate_variants(config: FabricConfig, warehouse: Warehouse, through: date) -> EvaluationReport:
    """Metrics per variant and model version over the scored days up to `through` (see above)."""
    scoring = config.scoring
    first = through - timedelta(days=scoring.evaluation_days - 1)
    report = EvaluationReport(through=through, first_day=None, threshold=scoring.decision_threshold)
    with warehouse.connect(read_only=True) as con:
        if not (table_exists(con, SCORES_TABLE) and table_exists(con, scoring.labels_table)):
            return report
        data = _labelled_scores(con, config, first, through)
    if data.num_rows == 0:
        return report
    frame = data.to_pandas()
    report.first_day = min(frame["partition_date"])
    groups = frame.groupby(["variant", "model_name", "model_version"], sort=False)
    rng = np.random.default_rng(_SEED)
    champion = None
    for (variant, model_name, version), rows in sorted(
        groups, key=lambda item: (VARIANTS.index(item[0][0]) if item[0][0] in VARIANTS else 9, item[0])
    ):
        metrics = _group_metrics(
            str(variant), str(model_name), int(version), rows, scoring.decision_threshold, rng
        )
        if variant == CHAMPION_VARIANT and model_name != "rules" and champion is None:
            champion = rows
        elif champion is not None and model_name != "rules":
            metrics.auc_minus_champion = _auc_difference(rows, champion, variant == SHADOW_VARIANT, rng)
        report.groups.append(metrics)
    return report


def _group_metrics(
    variant: str, model_name: str, version: int, rows: Any, threshold: float, rng: np.random.Generator
) -> GroupMetrics:
    labels = rows["label"].to_numpy(dtype=np.int64)
    scores = rows["score"].to_numpy(dtype=np.float64)
    samples: dict[str, list[float]] = {"auc": [], "precision": [], "recall": [], "lift": []}
    for _ in range(BOOTSTRAP_RESAMPLES):
        pick = rng.integers(0, len(labels), len(labels))
        y, s = labels[pick], scores[pick]
        p, r = precision_recall(y, s, threshold)
        samples["auc"].append(auc(y, s))
        samples["precision"].append(p)
        samples["recall"].append(r)
        samples["lift"].append(top_decile_lift(y, s))
    precision, recall = precision_recall(labels, scores, threshold)
    bins, error = calibration(labels, scores)
    return GroupMetrics(
        variant=variant,
        model_name=model_name,
        model_version=version,
        rows=len(labels),
        positives=int(labels.sum()),
        days=int(rows["partition_date"].nunique()),
        auc=_interval(auc(labels, scores), samples["auc"]),
        precision=_interval(precision, samples["precision"]),
        recall=_interval(recall, samples["recall"]),
        lift_top_decile=_interval(top_decile_lift(labels, scores), samples["lift"]),
        calibration_error=error,
        calibration=bins,
    )


def _auc_difference(rows: Any, champion: Any, paired: bool, rng: np.random.Generator) -> Interval:
    """AUC of `rows` minus the champion's.

    Shadow rows score the champion's own entities: the bootstrap resamples the pairs (a much
    tighter interval). A challenger scores other entities: both sides resample independently.
    """
    if paired:
        keys = ["partition_date", "fabric_customer_id"]
        both = rows.merge(champion, on=keys, suffixes=("", "_champion"))
        rows = both[["label", "score"]]
        champion = both[["label_champion", "score_champion"]].set_axis(["label", "score"], axis=1)
    y1, s1 = rows["label"].to_numpy(), rows["score"].to_numpy()
    y0, s0 = champion["label"].to_numpy(), champion["score"].to_numpy()
    samples = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        a = rng.integers(0, len(y1), len(y1))
        b = a if paired else rng.integers(0, len(y0), len(y0))
        samples.append(auc(y1[a], s1[a]) - auc(y0[b], s0[b]))
    return _interval(auc(y1, s1) - auc(y0, s0), samples)


def write_report(config: FabricConfig, report: EvaluationReport) -> None:
    """JSON, Markdown and (with groups) a PNG under the reports directory; paths in `report.files`."""
    directory = reports_dir(config)
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"evaluation_{report.through.isoformat()}"
    if report.groups:
        report.files["plot"] = _plot(report, directory / f"{stem}.png")
    report.files["json"] = directory / f"{stem}.json"
    report.files["json"].write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
    report.files["markdown"] = directory / f"{stem}.md"
    report.files["markdown"].write_text(report.markdown())


def _plot(report: EvaluationReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (distributions, lift) = plt.subplots(1, 2, figsize=(12, 4.5))
    for group in report.groups:
        reliability = group.calibration
        centers = [b["bin"] + 0.5 / CALIBRATION_BINS for b in reliability]
        shares = np.array([b["rows"] for b in reliability], dtype=np.float64) / group.rows
        distributions.plot(centers, shares, marker="o", label=group.label)
        lift.bar(group.label, group.lift_top_decile.value)
        lift.errorbar(
            group.label,
            group.lift_top_decile.value,
            yerr=[
                [group.lift_top_decile.value - group.lift_top_decile.low],
                [group.lift_top_decile.high - group.lift_top_decile.value],
            ],
            color="black",
            capsize=4,
        )
    distributions.set_xticks(np.linspace(0, 1, 6))
    distributions.set_xlabel("score (10 bins)")
    distributions.set_ylabel("share of rows")
    distributions.set_title(f"score distribution by variant, {report.first_day}..{report.through}")
    distributions.legend(fontsize=8)
    lift.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    lift.set_ylabel("lift of the top 10% (95% CI)")
    lift.set_title("lift by variant")
    lift.tick_params(axis="x", labelsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def record_evaluation(warehouse: Warehouse, report: EvaluationReport, run_id: str) -> int:
    """Replace the `evaluated_through` partition of `scores.churn_evaluation`; rows written."""
    evaluated_at = utcnow()
    rows = [
        {
            "evaluated_through": report.through,
            "variant": g.variant,
            "model_name": g.model_name,
            "model_version": g.model_version,
            "rows": g.rows,
            "positives": g.positives,
            "days": g.days,
            "auc": g.auc.value,
            "auc_low": g.auc.low,
            "auc_high": g.auc.high,
            "precision": g.precision.value,
            "recall": g.recall.value,
            "lift_top_decile": g.lift_top_decile.value,
            "calibration_error": g.calibration_error,
            "auc_minus_champion": g.auc_minus_champion.value if g.auc_minus_champion else None,
            "report_path": str(report.files.get("json", "")),
            "run_id": run_id,
            "evaluated_at": evaluated_at,
        }
        for g in report.groups
    ]
    schema = pa.schema(
        [
            ("evaluated_through", pa.date32()),
            ("variant", pa.string()),
            ("model_name", pa.string()),
            ("model_version", pa.int32()),
            ("rows", pa.int64()),
            ("positives", pa.int64()),
            ("days", pa.int32()),
            ("auc", pa.float64()),
            ("auc_low", pa.float64()),
            ("auc_high", pa.float64()),
            ("precision", pa.float64()),
            ("recall", pa.float64()),
            ("lift_top_decile", pa.float64()),
            ("calibration_error", pa.float64()),
            ("auc_minus_champion", pa.float64()),
            ("report_path", pa.string()),
            ("run_id", pa.string()),
            ("evaluated_at", pa.timestamp("us")),
        ]
    )
    staged = pa.Table.from_pylist(rows, schema=schema)
    with warehouse.connect() as con:
        con.register(_STAGED, staged)
        try:
            return replace_partitions(con, EVALUATION_TABLE, "evaluated_through", [report.through], _STAGED)
        finally:
            con.unregister(_STAGED)
