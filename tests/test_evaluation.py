"""A/B evaluation: metric arithmetic, and per-variant reports on scores with known outcomes."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from scoring_support import (  # noqa: F401 (one_openmp_thread: an autouse fixture)
    END,
    HORIZON,
    one_openmp_thread,
    open_gate,
    query,
    short_history,
    trained_estate,
    warehouse,
)
from sklearn.metrics import roc_auc_score

from fabric.config import FabricConfig
from fabric.partitions import Window
from fabric.scoring.evaluation import (
    auc,
    calibration,
    evaluate_variants,
    record_evaluation,
    top_decile_lift,
    write_report,
)
from fabric.scoring.score import score_window

# labels are known for as-of dates up to END - HORIZON
LABELLED = Window(END - timedelta(days=HORIZON + 6), END - timedelta(days=HORIZON))


trained_home = trained_estate()


@pytest.fixture
def estate(trained_home: Path, fabric_home: Path, config: FabricConfig) -> FabricConfig:
    shutil.copytree(trained_home, fabric_home, dirs_exist_ok=True)
    return short_history(config, challenger_percent=40, shadow=True)


def test_metrics_match_their_definitions() -> None:
    rng = np.random.default_rng(5)
    labels = (rng.random(5000) < 0.2).astype(np.int64)
    scores = np.round(rng.random(5000) * 0.5 + labels * 0.3, 2)  # many ties
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert np.isnan(auc(np.zeros(10, dtype=np.int64), rng.random(10)))

    perfect = np.arange(100) >= 90
    assert top_decile_lift(perfect.astype(np.int64), np.arange(100.0)) == pytest.approx(10.0)
    bins, error = calibration(np.array([0, 1, 1, 0]), np.array([0.05, 0.95, 0.95, 0.05]))
    assert [b["rows"] for b in bins] == [2, 2] and error == pytest.approx(0.05)


def test_report_per_variant_with_intervals(estate: FabricConfig) -> None:
    score_window(estate, warehouse(estate), LABELLED, "run-ab", open_gate)
    # a scored day whose outcome is not known yet is not evaluated
    score_window(estate, warehouse(estate), Window(END, END), "run-ab-today", open_gate)

    report = evaluate_variants(estate, warehouse(estate), END)
    groups = {(g.variant, g.model_version): g for g in report.groups}
    assert set(groups) == {("champion", 1), ("challenger", 2), ("shadow", 2)}
    assert report.first_day == LABELLED.start
    champion, challenger, shadow = groups["champion", 1], groups["challenger", 2], groups["shadow", 2]
    assert champion.rows + challenger.rows == len(LABELLED) * 1500 and shadow.rows == champion.rows
    assert champion.days == len(LABELLED)
    for group in report.groups:
        assert group.auc.value > 0.65, group
        assert group.auc.low <= group.auc.value <= group.auc.high
        assert group.lift_top_decile.low <= group.lift_top_decile.value <= group.lift_top_decile.high
        assert group.lift_top_decile.value > 1.5
    assert champion.auc_minus_champion is None
    assert shadow.auc_minus_champion is not None and challenger.auc_minus_champion is not None
    # paired on the same entities, the shadow comparison is tighter than the unpaired one
    width = {g.variant: g.auc_minus_champion.high - g.auc_minus_champion.low for g in report.groups[1:]}
    assert width["shadow"] < width["challenger"]

    write_report(estate, report)
    assert report.files["plot"].read_bytes()[:4] == b"\x89PNG"
    stored = json.loads(report.files["json"].read_text())
    assert [g["variant"] for g in stored["groups"]] == ["champion", "challenger", "shadow"]
    assert "| challenger (churn v2) |" in report.files["markdown"].read_text()

    assert record_evaluation(warehouse(estate), report, "run-eval") == 3
    assert record_evaluation(warehouse(estate), report, "run-eval-again") == 3
    rows = query(estate, "SELECT variant, run_id FROM scores.churn_evaluation ORDER BY variant")
    assert rows == [
        ("challenger", "run-eval-again"),
        ("champion", "run-eval-again"),
        ("shadow", "run-eval-again"),
    ]


def test_nothing_to_evaluate_before_outcomes_are_known(estate: FabricConfig) -> None:
    score_window(estate, warehouse(estate), Window(END, END), "run-today", open_gate)
    report = evaluate_variants(estate, warehouse(estate), END)
    assert report.groups == [] and "No scored day with known outcomes" in report.markdown()
    write_report(estate, report)
    assert "plot" not in report.files and report.files["markdown"].is_file()
    assert record_evaluation(warehouse(estate), report, "run-empty") == 0
