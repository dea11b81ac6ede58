"""Drift: how far a scored day's features and scores have moved from the model's training window.

At training time each feature's distribution (and the model's scores on its training rows) is
summarised as a `Histogram` in the model card: edges at the deciles of the training values,
the share of rows per bin, and the share of NULLs. A scored day is binned with the same edges
and compared by the population stability index,

    PSI = sum over bins of (current - reference) * ln(current / reference)

(shares floored at 1e-4 so an empty bin does not give infinity; NULLs count as one more bin).
Common reading: below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25 a major one. The checks
are warnings: drift is a reason to look and maybe retrain, not to stop publishing.

The day's values are streamed from DuckDB in Arrow batches and counted per bin, so memory stays
bounded. Plots are PNG files (matplotlib, Agg backend) under `$FABRIC_HOME/reports/`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from fabric.config import FabricConfig
from fabric.errors import ModelError
from fabric.scoring.features import AS_OF_COLUMN, double_columns, relation
from fabric.scoring.registry import Histogram, ModelCard, ModelRegistry
from fabric.scoring.score import SCORES_TABLE
from fabric.warehouse import Warehouse, table_exists

PSI_WARN = 0.2
_FLOOR = 1e-4
_QUANTILES = np.linspace(0.1, 0.9, 9)
_BATCH_ROWS = 200_000


def reference_histogram(values: np.ndarray) -> Histogram:
    """The training distribution of one column (NaN = NULL), binned at its deciles."""
    finite = values[~np.isnan(values)]
    null_share = float(1 - len(finite) / len(values)) if len(values) else 0.0
    if len(finite) == 0:
        return Histogram(edges=[], shares=[1.0], null_share=null_share)
    edges = np.unique(np.quantile(finite, _QUANTILES))
    counts = np.bincount(np.searchsorted(edges, finite, side="left"), minlength=len(edges) + 1)
    return Histogram(
        edges=[float(e) for e in edges],
        shares=[float(c) for c in counts / len(finite)],
        null_share=null_share,
    )


@dataclass
class BinCounter:
    """Counts values into a reference histogram's bins, batch by batch."""

    reference: Histogram
    counts: np.ndarray = field(init=False)
    nulls: int = 0

    def __post_init__(self) -> None:
        self.counts = np.zeros(len(self.reference.edges) + 1, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        missing = np.isnan(values)
        self.nulls += int(missing.sum())
        bins = np.searchsorted(np.asarray(self.reference.edges), values[~missing], side="left")
        self.counts += np.bincount(bins, minlength=len(self.counts))

    @property
    def rows(self) -> int:
        return int(self.counts.sum()) + self.nulls

    def shares(self) -> tuple[np.ndarray, float]:
        """(share per bin among non-NULL values, share of NULLs)."""
        finite = self.counts.sum()
        per_bin = self.counts / finite if finite else np.zeros(len(self.counts))
        return per_bin, (self.nulls / self.rows if self.rows else 0.0)


def psi(reference: Histogram, counter: BinCounter) -> float:
    """Population stability index of the counted values against `reference` (NULLs a bin)."""
    current, current_nulls = counter.shares()
    ref = np.append(np.asarray(reference.shares) * (1 - reference.null_share), reference.null_share)
    cur = np.append(current * (1 - current_nulls), current_nulls)
    ref, cur = np.maximum(ref, _FLOOR), np.maximum(cur, _FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


@dataclass
class DriftReport:
    """PSI of each feature and of the scores for one day, against one model version's training."""

    day: date
    model_name: str
    model_version: int
    rows: int
    feature_psi: dict[str, float]
    score_psi: float | None
    counters: dict[str, BinCounter]
    references: dict[str, Histogram]
    plot: Path | None = None

    @property
    def drifted_features(self) -> dict[str, float]:
        return {n: v for n, v in self.feature_psi.items() if v > PSI_WARN}

    def metadata(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "model": f"{self.model_name} v{self.model_version}",
            "rows": self.rows,
            "psi_threshold": PSI_WARN,
            "feature_psi": {n: round(v, 4) for n, v in self.feature_psi.items()},
            "max_feature_psi": round(max(self.feature_psi.values(), default=0.0), 4),
            "drifted_features": sorted(self.drifted_features),
            "score_psi": None if self.score_psi is None else round(self.score_psi, 4),
        }


def _champion_scored(con: duckdb.DuckDBPyConnection, day: date) -> tuple[str, int] | None:
    """(model, version) that scored the day's champion rows, the latest run's."""
    row = con.execute(
        f"SELECT model_name, model_version FROM {SCORES_TABLE} WHERE partition_date = ? "
        "AND variant = 'champion' AND scorer = 'model' ORDER BY scored_at DESC LIMIT 1",
        [day],
    ).fetchone()
    return (str(row[0]), int(row[1])) if row else None


def measure_drift(config: FabricConfig, warehouse: Warehouse, day: date) -> DriftReport | None:
    """Drift of `day` against the training window of the model that scored its champion rows.

    None when the day has no model-scored champion rows (rules only, or not scored). Raises
    ModelError when that model's card has no reference distributions (trained before drift
    references were recorded: retrain it).
    """
    scoring = config.scoring
    with warehouse.connect(read_only=True) as con:
        if not table_exists(con, SCORES_TABLE):
            return None
        scored = _champion_scored(con, day)
        if scored is None:
            return None
        card = ModelRegistry(config.resolve(scoring.registry_dir)).load_card(*scored)
        _require_references(card)
        names = [n for n in card.feature_names if n in card.feature_reference]
        features = {n: BinCounter(card.feature_reference[n]) for n in names}
        reader = con.execute(
            f"SELECT {double_columns(names)} FROM {relation(scoring.features_table)} "
            f"WHERE {AS_OF_COLUMN} = ?",
            [day],
        ).to_arrow_reader(_BATCH_ROWS)
        for batch in reader:
            for name in names:
                features[name].add(batch.column(name).to_numpy(zero_copy_only=False))
        score_counter = BinCounter(card.score_reference) if card.score_reference else None
        if score_counter:
            reader = con.execute(
                f"SELECT score FROM {SCORES_TABLE} WHERE partition_date = ? AND variant = "
                "'champion' AND scorer = 'model' AND model_version = ?",
                [day, card.version],
            ).to_arrow_reader(_BATCH_ROWS)
            for batch in reader:
                score_counter.add(batch.column("score").to_numpy(zero_copy_only=False))
    counters: dict[str, BinCounter] = dict(features)
    references = {n: card.feature_reference[n] for n in names}
    if score_counter and card.score_reference:
        counters["score"], references["score"] = score_counter, card.score_reference
    return DriftReport(
        day=day,
        model_name=card.name,
        model_version=card.version,
        rows=next(iter(features.values())).rows if features else 0,
        feature_psi={n: psi(card.feature_reference[n], c) for n, c in features.items()},
        score_psi=psi(card.score_reference, score_counter)
        if score_counter and card.score_reference
        else None,
        counters=counters,
        references=references,
    )


def _require_references(card: ModelCard) -> None:
    if not card.feature_reference:
        raise ModelError(
            f"model {card.name} v{card.version} has no training distributions in its model card "
            "(trained before drift references were recorded); retrain it with `fabric train`"
        )


def plot_drift(report: DriftReport, directory: Path) -> Path:
    """A PNG: PSI per feature (bars, warning line) and the score distribution vs training."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"drift_{report.model_name}_v{report.model_version}_{report.day}.png"
    figure, (bars, scores) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = list(report.feature_psi)
    values = [report.feature_psi[n] for n in names]
    bars.barh(names, values, color=["tab:red" if v > PSI_WARN else "tab:blue" for v in values])
    bars.axvline(PSI_WARN, color="tab:red", linestyle="--", linewidth=1)
    bars.set_xlabel("population stability index")
    bars.set_title(f"feature drift {report.day} vs training window")
    if "score" in report.counters:
        reference = report.references["score"]
        current, _ = report.counters["score"].shares()
        positions = np.arange(len(current))
        bars_width = 0.4
        scores.bar(positions - bars_width / 2, reference.shares, bars_width, label="training")
        scores.bar(positions + bars_width / 2, current, bars_width, label=str(report.day))
        scores.set_xticks(positions, _bin_labels(reference.edges), rotation=45, fontsize=7)
        scores.set_ylabel("share of rows")
        scores.set_title(f"score distribution (PSI {report.score_psi:.3f})")
        scores.legend()
    else:
        scores.set_axis_off()
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def _bin_labels(edges: Sequence[float]) -> list[str]:
    bounds = ["-inf", *(f"{e:.2f}" for e in edges), "inf"]
    return [f"{low}..{high}" for low, high in pairwise(bounds)]


def reports_dir(config: FabricConfig) -> Path:
    """Where drift and evaluation reports go: `$FABRIC_HOME/reports` (next to the warehouse)."""
    return config.resolve(config.warehouse.path).parent / "reports"
