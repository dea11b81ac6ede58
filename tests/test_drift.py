"""Drift: PSI arithmetic, and a scored day against the champion's training window, with a plot."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from scoring_support import (  # noqa: F401 (one_openmp_thread: an autouse fixture)
    END,
    one_openmp_thread,
    open_gate,
    short_history,
    trained_estate,
    warehouse,
)

from fabric.config import FabricConfig
from fabric.partitions import Window
from fabric.scoring.drift import PSI_WARN, BinCounter, measure_drift, plot_drift, psi, reference_histogram
from fabric.scoring.score import score_window

trained_home = trained_estate(challenger=False)


@pytest.fixture
def estate(trained_home: Path, fabric_home: Path, config: FabricConfig) -> FabricConfig:
    shutil.copytree(trained_home, fabric_home, dirs_exist_ok=True)
    return short_history(config)


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(1)
    training = rng.normal(0, 1, 50_000)
    training[:500] = np.nan
    reference = reference_histogram(training)
    assert len(reference.edges) == 9 and reference.null_share == pytest.approx(0.01)

    same, shifted = BinCounter(reference), BinCounter(reference)
    same.add(rng.normal(0, 1, 20_000))
    shifted.add(rng.normal(1, 1, 20_000))
    assert psi(reference, same) < 0.05  # sampling noise plus the missing NULLs
    assert psi(reference, shifted) > PSI_WARN
    nulls = BinCounter(reference)
    nulls.add(np.where(rng.random(20_000) < 0.5, np.nan, rng.normal(0, 1, 20_000)))
    assert psi(reference, nulls) > PSI_WARN  # half NULL where training had 1%


def test_a_scored_day_drifts_only_in_the_feature_that_moved(estate: FabricConfig, tmp_path: Path) -> None:
    score_window(estate, warehouse(estate), Window(END, END), "run-before", open_gate)
    steady = measure_drift(estate, warehouse(estate), END)
    assert steady is not None and steady.rows == 1500
    assert not steady.drifted_features and steady.score_psi is not None and steady.score_psi < PSI_WARN

    with duckdb.connect(str(estate.resolve(estate.warehouse.path))) as con:
        con.execute(
            "UPDATE features.customer_features SET cancel_page_views_30d = cancel_page_views_30d + 3 "
            "WHERE as_of_date = ?",
            [END],
        )
    score_window(estate, warehouse(estate), Window(END, END), "run-after", open_gate)
    moved = measure_drift(estate, warehouse(estate), END)
    assert moved is not None and list(moved.drifted_features) == ["cancel_page_views_30d"]
    assert moved.score_psi is not None and moved.score_psi > PSI_WARN  # the model reacts to it
    assert moved.metadata()["drifted_features"] == ["cancel_page_views_30d"]

    plot = plot_drift(moved, tmp_path / "reports")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_a_day_without_model_scores_has_no_drift_report(estate: FabricConfig) -> None:
    assert measure_drift(estate, warehouse(estate), END) is None
