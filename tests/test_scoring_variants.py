"""Champion/challenger/shadow scoring, publishable rows, rule fallback and bad feature values."""

from __future__ import annotations

import hashlib
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from scoring_support import (  # noqa: F401 (one_openmp_thread: autouse fixture)
    CUSTOMERS,
    END,
    one_openmp_thread,
    open_gate,
    query,
    short_history,
    trained_estate,
    warehouse,
)

from fabric.config import FabricConfig
from fabric.errors import ModelError
from fabric.partitions import Window
from fabric.scoring import score as score_module
from fabric.scoring.backend import InProcessBackend, ModelUnavailable
from fabric.scoring.registry import ModelRegistry
from fabric.scoring.score import lineage_id, publishable_scores, score_window
from fabric.scoring.train import train
from fabric.scoring.variants import bucket, bucket_sql

WINDOW = Window(END - timedelta(days=1), END)


trained_home = trained_estate()


@pytest.fixture
def home(trained_home: Path, fabric_home: Path) -> Path:
    shutil.copytree(trained_home, fabric_home, dirs_exist_ok=True)
    return fabric_home


def _scores(config: FabricConfig) -> list[tuple[Any, ...]]:
    return query(
        config,
        "SELECT partition_date, fabric_customer_id, variant, scorer, model_name, model_version, "
        "score, run_id, lineage_id FROM scores.churn_scores ORDER BY ALL",
    )


def test_bucket_is_the_same_in_python_and_duckdb() -> None:
    keys = [f"FC{i:08d}" for i in range(2000)] + ["", "ü-ß", "a'b"]
    with duckdb.connect() as con:
        con.execute("CREATE TABLE k (key VARCHAR)")
        con.executemany("INSERT INTO k VALUES (?)", [[k] for k in keys])
        in_sql = dict(con.execute(f"SELECT key, {bucket_sql('key')} FROM k").fetchall())
    assert in_sql == {k: bucket(k) for k in keys}
    digest = hashlib.md5(b"FC00000001").digest()
    assert bucket("FC00000001") == int.from_bytes(digest[8:], "little") % 100
    counts = np.bincount([bucket(k) for k in keys[:2000]], minlength=100)
    assert counts.min() > 5 and counts.max() < 40  # ~20 per bucket: no bucket empty or hogging


def test_challenger_share_is_stable_by_entity(home: Path, config: FabricConfig) -> None:
    cfg = short_history(config, challenger_percent=30)
    result = score_window(cfg, warehouse(cfg), WINDOW, "run-split", open_gate)

    assert (result.model_version, result.challenger_version) == (1, 2)
    rows = _scores(cfg)
    assert len(rows) == 2 * CUSTOMERS  # one row per entity and day: no shadow
    for _day, key, variant, scorer, name, version, _score, _run, _lineage in rows:
        expected = "challenger" if bucket(key) < 30 else "champion"
        assert (variant, scorer, name, version) == (
            expected,
            "model",
            "churn",
            1 if expected == "champion" else 2,
        )
    challengers = sum(1 for r in rows if r[2] == "challenger") / len(rows)
    assert 0.25 < challengers < 0.35
    by_variant = result.metadata()["rows_by_variant_and_scorer"]
    assert by_variant["challenger"]["model"] + by_variant["champion"]["model"] == 2 * CUSTOMERS
    assert set(result.backends) == {"champion", "challenger"}
    day, key, _, _, name, version, _, run, stored = rows[0]
    assert stored == lineage_id(run, day, key, name, version)

    # the same entity keeps its variant on the next run
    score_window(cfg, warehouse(cfg), WINDOW, "run-split-2", open_gate)
    assert [r[:6] for r in _scores(cfg)] == [r[:6] for r in rows]


def test_shadow_scores_everyone_but_is_never_published(home: Path, config: FabricConfig) -> None:
    cfg = short_history(config, shadow=True)
    result = score_window(cfg, warehouse(cfg), WINDOW, "run-shadow", open_gate)

    counts = dict(
        ((v, s, m), n)
        for v, s, m, n in query(
            cfg, "SELECT variant, scorer, model_version, count(*) FROM scores.churn_scores GROUP BY ALL"
        )
    )
    assert counts == {("champion", "model", 1): 2 * CUSTOMERS, ("shadow", "model", 2): 2 * CUSTOMERS}
    assert result.rows == 4 * CUSTOMERS and result.rows_by_day == {d: 2 * CUSTOMERS for d in WINDOW}
    assert result.distribution is not None and result.distribution.rows == 2 * CUSTOMERS

    with duckdb.connect(str(cfg.resolve(cfg.warehouse.path)), read_only=True) as con:
        published = publishable_scores(con, cfg, END)
    assert published.num_rows == CUSTOMERS
    assert len(set(published.column("fabric_customer_id").to_pylist())) == CUSTOMERS
    assert set(published.column("variant").to_pylist()) == {"champion"}


def test_no_challenger_registered_means_champion_for_everyone(home: Path, config: FabricConfig) -> None:
    ModelRegistry(config.resolve(config.scoring.registry_dir)).remove_alias("churn", "challenger")
    cfg = short_history(config, challenger_percent=50, shadow=True)
    result = score_window(cfg, warehouse(cfg), WINDOW, "run-no-challenger", open_gate)
    assert result.challenger_version is None and not result.shadow
    assert query(cfg, "SELECT DISTINCT variant, model_version FROM scores.churn_scores") == [("champion", 1)]


class _FailsEveryOtherBatch(InProcessBackend):
    """Fault injection: the real model, unavailable on every second call (like a flaky server)."""

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self._batches % 2 == 1:  # the call being made is an even one
            self._batches += 1
            raise ModelUnavailable("injected outage")
        return super().predict(features)


def test_unavailable_batches_fall_back_to_rules_and_the_run_goes_on(
    home: Path, config: FabricConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(score_module, "BATCH_ROWS", 500)
    monkeypatch.setattr(score_module, "open_backend", lambda model, *_: _FailsEveryOtherBatch(model))
    cfg = short_history(config, shadow=True)
    result = score_window(cfg, warehouse(cfg), Window(END, END), "run-outage", open_gate)

    champion = result.rows_by_variant["champion"]
    assert champion["model"] == 1000 and champion["rules"] == 500  # batches 1, 3 model; 2 rules
    assert result.unavailable_batches == 2  # the second call of each backend
    assert result.metadata()["rows_by_scorer"]["rules"] == 500
    rules_rows = query(
        cfg,
        "SELECT DISTINCT model_name, model_version, variant FROM scores.churn_scores WHERE scorer = 'rules'",
    )
    assert rules_rows == [("rules", 0, "champion")]
    # shadow rows of the batches the challenger could not score are left out, not rule-scored
    assert result.shadow_rows_skipped == 500 and result.rows_by_variant["shadow"] == {"model": 1000}
    status, message = query(cfg, "SELECT status, message FROM meta.runs WHERE run_id = 'run-outage'")[0]
    assert status == "warning" and "scored by the rules" in message

    with duckdb.connect(str(cfg.resolve(cfg.warehouse.path)), read_only=True) as con:
        sent = publishable_scores(con, cfg, END)
        held = publishable_scores(con, short_history(config, publish_rule_scored="hold"), END)
    assert sent.num_rows == CUSTOMERS and "rules" in sent.column("scorer").to_pylist()
    assert held.num_rows == 1000 and set(held.column("scorer").to_pylist()) == {"model"}


def test_null_and_out_of_range_values_are_imputed_per_model_card(home: Path, config: FabricConfig) -> None:
    cfg = short_history(config)
    card = ModelRegistry(cfg.resolve(cfg.scoring.registry_dir)).load_card("churn")
    logins = next(f for f in card.features if f.name == "logins_7d")
    assert card.invalid_input == "impute" and logins.impute is not None and logins.max is not None
    with duckdb.connect(str(cfg.resolve(cfg.warehouse.path))) as con:
        con.execute(
            "UPDATE features.customer_features SET logins_7d = NULL "
            "WHERE as_of_date = ? AND fabric_customer_id IN ('FC00000001', 'FC00000002')",
            [END],
        )
        con.execute(
            "UPDATE features.customer_features SET logins_7d = 10 * ? "
            "WHERE as_of_date = ? AND fabric_customer_id = 'FC00000003'",
            [int(logins.max), END],
        )
    result = score_window(cfg, warehouse(cfg), Window(END, END), "run-bad-values", open_gate)

    inputs = result.metadata()["input_handling"]
    assert inputs["nulls_imputed"] >= 2 and inputs["values_clipped"] >= 1
    assert inputs["invalid_values_by_feature"]["logins_7d"] == 3 and inputs["rows_to_rules"] == 0
    assert result.rows_by_variant == {"champion": {"model": CUSTOMERS}}


def test_rules_policy_routes_bad_rows_to_the_rules(home: Path, config: FabricConfig) -> None:
    training = config.scoring.training.model_copy(update={"invalid_input": "rules"})
    cfg = short_history(
        config, training=training.model_copy(update={"holdout_days": 7, "sample_every_days": 2})
    )
    card = train(cfg, warehouse(cfg), "run-train-rules-policy")
    assert card.invalid_input == "rules"
    with duckdb.connect(str(cfg.resolve(cfg.warehouse.path))) as con:
        con.execute(
            "UPDATE features.customer_features SET cancel_page_views_30d = NULL "
            "WHERE as_of_date = ? AND fabric_customer_id = 'FC00000007'",
            [END],
        )
    result = score_window(cfg, warehouse(cfg), Window(END, END), "run-rules-policy", open_gate)

    routed = query(
        cfg,
        "SELECT fabric_customer_id FROM scores.churn_scores WHERE scorer = 'rules' ORDER BY 1",
    )
    assert ("FC00000007",) in routed
    assert result.inputs.rows_to_rules == len(routed)  # also rows beyond the training range
    assert result.rows_by_variant["champion"]["model"] == CUSTOMERS - len(routed)


def test_models_with_a_mismatching_signature_are_refused(home: Path, config: FabricConfig) -> None:
    with duckdb.connect(str(config.resolve(config.warehouse.path))) as con:
        con.execute("ALTER TABLE features.customer_features DROP COLUMN tickets_30d")
    cfg = short_history(config, challenger_percent=10)
    expected = r"(?s)champion model churn v1 does not match .*missing columns: tickets_30d"
    with pytest.raises(ModelError, match=expected):
        score_window(cfg, warehouse(cfg), WINDOW, "run-mismatch", open_gate)
