"""Batch scoring: rows and contract, idempotence, the gate per day, rules fallback, signature."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from scoring_support import one_openmp_thread  # noqa: F401 (autouse fixture)

from fabric.config import FabricConfig, Rule, load_config
from fabric.errors import ModelError, QualityGateClosed
from fabric.partitions import Window
from fabric.scoring import score as score_module
from fabric.scoring.rules import RuleScorer
from fabric.scoring.score import lineage_id, score_window
from fabric.scoring.synthetic import write_synthetic_estate
from fabric.scoring.train import train
from fabric.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]
END = date(2026, 3, 31)
START = END - timedelta(days=39)
CUSTOMERS = 1500
HORIZON = 7
WINDOW = Window(END - timedelta(days=2), END)
SCORE_COLUMNS = [
    "partition_date", "fabric_customer_id", "crm_customer_id", "score", "decision",
    "model_name", "model_version", "variant", "scorer", "scored_at", "run_id", "lineage_id",
]  # fmt: skip


def _short_history(config: FabricConfig) -> FabricConfig:
    """The demo config with a 7-day label horizon, so 40 days of history can train a model."""
    training = config.scoring.training.model_copy(update={"holdout_days": 7, "sample_every_days": 2})
    scoring = config.scoring.model_copy(update={"churn_horizon_days": HORIZON, "training": training})
    return config.model_copy(update={"scoring": scoring})


def _warehouse(config: FabricConfig) -> Warehouse:
    return Warehouse(config.resolve(config.warehouse.path))


def _open(_con: duckdb.DuckDBPyConnection, _day: date) -> None:
    return None


def _query(config: FabricConfig, sql: str, params: list[object] | None = None) -> list[tuple]:
    path = str(config.resolve(config.warehouse.path))
    with duckdb.connect(path, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("scoring")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FABRIC_HOME", str(home))
        config = _short_history(load_config(REPO / "fabric.yaml"))
    write_synthetic_estate(_warehouse(config), CUSTOMERS, START, END, HORIZON, seed=3)
    train(config, _warehouse(config), "run-train")
    return home


@pytest.fixture
def estate(trained_home: Path, fabric_home: Path, config: FabricConfig) -> FabricConfig:
    shutil.copytree(trained_home, fabric_home, dirs_exist_ok=True)
    return _short_history(config)


def test_scores_every_customer_per_day_and_reruns_identically(
    estate: FabricConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="fabric"):
        result = score_window(estate, _warehouse(estate), WINDOW, "run-score", _open)
    # one closing line per day for the run's log (progress lines come only every 10 s)
    closing = [r.getMessage() for r in caplog.records if "feature rows scored," in r.getMessage()]
    assert closing == [
        f"scores {day}: {CUSTOMERS:,} feature rows scored, {CUSTOMERS:,} score rows written in "
        + m.split(" written in ")[1]
        for day, m in zip(WINDOW, closing, strict=True)
    ]

    assert result.scorer == "model" and (result.model_name, result.model_version) == ("churn", 1)
    assert result.rows_by_day == {day: CUSTOMERS for day in WINDOW}
    assert not result.blocked and not result.missing
    assert result.distribution is not None
    assert 0 < result.distribution.p50 <= result.distribution.p90 < 1
    assert result.metadata()["rows"] == 3 * CUSTOMERS

    path = str(estate.resolve(estate.warehouse.path))
    with duckdb.connect(path, read_only=True) as con:
        frame = con.execute(
            "SELECT * FROM scores.churn_scores ORDER BY partition_date, fabric_customer_id"
        ).df()
    assert list(frame.columns) == SCORE_COLUMNS
    assert frame["score"].between(0, 1).all()
    assert (frame["decision"] == (frame["score"] >= estate.scoring.decision_threshold)).all()
    assert set(frame["variant"]) == {"champion"} and set(frame["scorer"]) == {"model"}
    first = frame.iloc[0]
    assert first["lineage_id"] == lineage_id(
        "run-score", first["partition_date"].date(), first["fabric_customer_id"], "churn", 1
    )

    again = score_window(estate, _warehouse(estate), WINDOW, "run-score", _open)
    assert again.rows == result.rows
    with duckdb.connect(path, read_only=True) as con:
        rerun = con.execute(
            "SELECT * FROM scores.churn_scores ORDER BY partition_date, fabric_customer_id"
        ).df()
    pd.testing.assert_frame_equal(rerun.drop(columns="scored_at"), frame.drop(columns="scored_at"))
    runs = _query(estate, "SELECT status, outputs FROM meta.runs WHERE step = 'score'")
    assert [r[0] for r in runs] == ["ok", "ok"]
    assert json.loads(runs[0][1])[0]["partitions"] == [d.isoformat() for d in WINDOW]


def test_an_insert_failing_midway_leaves_the_day_as_it_was(
    estate: FabricConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches are inserted on a writer thread; an insert that fails there (a real DuckDB error
    on one of the later batches) fails the run and leaves neither part of the new write nor a gap."""
    day = Window(END, END)
    score_window(estate, _warehouse(estate), day, "run-before", _open)
    before = _query(estate, "SELECT * FROM scores.churn_scores ORDER BY fabric_customer_id")
    ((third_batch_key,),) = _query(
        estate,
        "SELECT fabric_customer_id FROM features.customer_features WHERE as_of_date = ? "
        "ORDER BY fabric_customer_id LIMIT 1 OFFSET 1100",
        [END],
    )
    monkeypatch.setattr(score_module, "BATCH_ROWS", 500)
    failing = score_module._INSERT.replace(
        "$write_id FROM", f"CASE WHEN fabric_customer_id = '{third_batch_key}' THEN error('injected') "
        "ELSE $write_id END FROM",
    )
    monkeypatch.setattr(score_module, "_INSERT", failing)
    with pytest.raises(duckdb.Error, match="injected"):
        score_window(estate, _warehouse(estate), day, "run-failing", _open)
    assert _query(estate, "SELECT * FROM scores.churn_scores ORDER BY fabric_customer_id") == before
    counts = _query(estate, "SELECT count(*) FROM scores.churn_scores_rows WHERE partition_date = ?", [END])
    assert counts == [(CUSTOMERS,)]  # the failed write's batches were deleted


def test_closed_gate_skips_only_that_day(estate: FabricConfig) -> None:
    score_window(estate, _warehouse(estate), WINDOW, "run-before", _open)
    closed = WINDOW.start + timedelta(days=1)

    def gate(_con: duckdb.DuckDBPyConnection, day: date) -> None:
        if day == closed:
            raise QualityGateClosed(f"quality gate closed for partition {day}: test")

    result = score_window(estate, _warehouse(estate), WINDOW, "run-gated", gate)

    assert result.blocked == {closed: f"quality gate closed for partition {closed}: test"}
    assert set(result.rows_by_day) == {WINDOW.start, WINDOW.end}
    by_day = dict(
        _query(estate, "SELECT partition_date, any_value(run_id) FROM scores.churn_scores GROUP BY 1")
    )
    # the blocked day keeps what it had; the open days were replaced
    assert by_day == {WINDOW.start: "run-gated", closed: "run-before", WINDOW.end: "run-gated"}
    status, message = _query(estate, "SELECT status, message FROM meta.runs WHERE run_id = 'run-gated'")[0]
    assert status == "warning" and str(closed) in message


def test_default_gate_is_the_quality_gate(estate: FabricConfig) -> None:
    # no validation has run on this synthetic warehouse: the quality gate must refuse every day
    result = score_window(estate, _warehouse(estate), WINDOW, "run-default-gate")
    assert set(result.blocked) == set(WINDOW) and result.rows == 0
    assert all("quality gate closed" in reason for reason in result.blocked.values())


def test_rules_fallback_without_a_model(estate: FabricConfig) -> None:
    shutil.rmtree(estate.resolve(estate.scoring.registry_dir))
    result = score_window(estate, _warehouse(estate), Window(END, END), "run-rules", _open)

    assert (result.scorer, result.model_name, result.model_version) == ("rules", "rules", 0)
    features = pd.DataFrame(
        _query(
            estate,
            "SELECT fabric_customer_id, cancel_page_views_30d, days_since_last_login, "
            "low_satisfaction_tickets_90d, late_payments_90d FROM features.customer_features "
            "WHERE as_of_date = ? ORDER BY fabric_customer_id",
            [END],
        ),
        columns=["fabric_customer_id", *RuleScorer(estate.scoring.rules).features],
    )
    scores = _query(
        estate,
        "SELECT score, scorer, model_name, model_version FROM scores.churn_scores "
        "ORDER BY fabric_customer_id",
    )
    expected = RuleScorer(estate.scoring.rules).score(features)
    np.testing.assert_allclose([s[0] for s in scores], expected)
    assert {s[1:] for s in scores} == {("rules", "rules", 0)}


def test_signature_mismatch_names_the_differences(estate: FabricConfig) -> None:
    with duckdb.connect(str(estate.resolve(estate.warehouse.path))) as con:
        con.execute("ALTER TABLE features.customer_features DROP COLUMN logins_7d")
        con.execute("ALTER TABLE features.customer_features ALTER tenure_days TYPE VARCHAR")
        con.execute("ALTER TABLE features.customer_features ALTER logins_30d TYPE DOUBLE")

    with pytest.raises(ModelError) as raised:
        score_window(estate, _warehouse(estate), WINDOW, "run-mismatch", _open)

    message = str(raised.value)
    assert "model churn v1 does not match features.customer_features" in message
    assert "missing columns: logins_7d (BIGINT)" in message
    assert "incompatible types: tenure_days: INTEGER -> VARCHAR" in message
    assert "logins_30d" not in message  # BIGINT -> DOUBLE is numeric to numeric: accepted
    assert _query(estate, "SELECT count(*) FROM scores.churn_scores") == [(0,)]
    assert _query(estate, "SELECT status FROM meta.runs WHERE run_id = 'run-mismatch'") == [("failed",)]


def test_rule_scorer_is_a_weighted_share() -> None:
    scorer = RuleScorer(
        [
            Rule(feature="a", op=">=", value=1, weight=3),
            Rule(feature="b", op="<", value=2, weight=1),
            Rule(feature="a", op="!=", value=5, weight=1),
        ]
    )
    frame = pd.DataFrame({"a": [0, 1, 5, None], "b": [1.0, 3.0, 0.0, 1.0]})
    np.testing.assert_allclose(scorer.score(frame), [2 / 5, 4 / 5, 4 / 5, 1 / 5])
    assert scorer.features == ["a", "b"]
    with pytest.raises(ModelError, match="missing: \\['b'\\]"):
        scorer.score(frame[["a"]])
    with pytest.raises(ModelError, match="no scoring rules configured"):
        RuleScorer([])
