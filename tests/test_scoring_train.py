"""Training and the model registry, on synthetic features with a planted churn signal."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from fabric.config import FabricConfig, TrainingConfig, load_config
from fabric.errors import ModelError
from fabric.scoring.registry import CHAMPION, ModelCard, ModelRegistry
from fabric.scoring.synthetic import write_synthetic_estate
from fabric.scoring.train import split_dates, train
from fabric.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]
END = date(2026, 3, 31)
START = END - timedelta(days=99)
CUSTOMERS = 3000


def _warehouse(config: FabricConfig) -> Warehouse:
    return Warehouse(config.resolve(config.warehouse.path))


def _registry(config: FabricConfig) -> ModelRegistry:
    return ModelRegistry(config.resolve(config.scoring.registry_dir))


@pytest.fixture(scope="module", autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    """HistGradientBoosting's OpenMP threads spin-wait badly on a busy shared machine."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelCard]:
    """100 days of synthetic features and labels and one training run, once per module."""
    home = tmp_path_factory.mktemp("estate")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FABRIC_HOME", str(home))
        config = load_config(REPO / "fabric.yaml")
    write_synthetic_estate(_warehouse(config), CUSTOMERS, START, END, 30, seed=7)
    return home, train(config, _warehouse(config), "run-train-1")


@pytest.fixture
def estate(trained: tuple[Path, ModelCard], fabric_home: Path, config: FabricConfig) -> FabricConfig:
    """The trained estate, copied into this test's FABRIC_HOME."""
    shutil.copytree(trained[0], fabric_home, dirs_exist_ok=True)
    return config


def test_split_holds_out_latest_days_with_an_embargo() -> None:
    labelled = [date(2026, 1, 1) + timedelta(days=i) for i in range(70)]  # .. 2026-03-11
    split = split_dates(labelled, TrainingConfig(sample_every_days=7, holdout_days=14), 30)
    assert split.holdout_dates == labelled[-14:]
    # a training label looks 30 days ahead: it must end before the holdout starts
    assert max(split.training_dates) + timedelta(days=30) <= split.holdout_dates[0]
    assert split.training_dates == [date(2026, 1, d) for d in (6, 13, 20, 27)]
    with pytest.raises(ModelError, match="Backfill more history"):
        split_dates(labelled[:40], TrainingConfig(holdout_days=14), 30)


def test_train_beats_rules_and_registers_champion(
    estate: FabricConfig, trained: tuple[Path, ModelCard]
) -> None:
    card = trained[1]

    assert card.version == 1 and card.name == "churn"
    model, rules = card.metrics["model"], card.metrics["rules"]
    assert model.auc > rules.auc + 0.03, (model, rules)
    assert model.pr_auc > rules.pr_auc
    assert model.rows == rules.rows == 14 * CUSTOMERS and model.positives > 0
    assert card.holdout_end == END - timedelta(days=30)
    assert card.training_rows == len(card.training_as_of_dates) * CUSTOMERS
    assert "logins_7d" in card.feature_names and "crm_customer_id" not in card.feature_names
    assert {f.name: f.dtype for f in card.features}["monthly_fee"] == "DECIMAL(10,2)"

    registry = _registry(estate)
    loaded, loaded_card = registry.load("churn")
    assert loaded_card == card and registry.aliases("churn") == {CHAMPION: 1}
    zeros = np.zeros((1, len(card.features)))
    assert np.isfinite(loaded.predict_proba(zeros)).all()

    with duckdb.connect(str(estate.resolve(estate.warehouse.path)), read_only=True) as con:
        row = con.execute("SELECT status, outputs FROM meta.runs WHERE run_id = 'run-train-1'").fetchone()
    assert row is not None and row[0] == "ok"
    assert json.loads(row[1]) == [{"table": "registry:churn/v1", "rows": card.training_rows}]

    # Same data, same seed: same training rows, a new version that becomes champion.
    second = train(estate, _warehouse(estate), "run-train-2")
    assert second.version == 2 and second.training_data_sha256 == card.training_data_sha256
    assert registry.list_versions("churn") == [1, 2] and registry.resolve("churn") == 2


def test_train_refuses_too_few_labelled_rows(estate: FabricConfig) -> None:
    with duckdb.connect(str(estate.resolve(estate.warehouse.path))) as con:
        con.execute("UPDATE features.churn_labels SET churned_within_horizon = false")
    with pytest.raises(ModelError, match=r"too little labelled data to train: .* 0 churners"):
        train(estate, _warehouse(estate), "run-too-few")
    assert _registry(estate).list_versions("churn") == [1]
    with duckdb.connect(str(estate.resolve(estate.warehouse.path)), read_only=True) as con:
        status = con.execute("SELECT status FROM meta.runs WHERE run_id = 'run-too-few'").fetchone()
    assert status == ("failed",)


def test_registry_versions_aliases_and_tamper_check(tmp_path: Path, trained: tuple[Path, ModelCard]) -> None:
    card = trained[1]
    registry = ModelRegistry(tmp_path / "models")
    assert registry.list_versions("churn") == [] and not registry.has_alias("churn", CHAMPION)
    with pytest.raises(ModelError, match="no alias 'champion'"):
        registry.load("churn")

    first = registry.register({"weights": [1, 2]}, card)
    second = registry.register({"weights": [3]}, card)
    assert (first, second) == (1, 2)
    registry.set_alias("churn", CHAMPION, 1, run_id="r1")
    registry.set_alias("churn", CHAMPION, 2, run_id="r2")
    assert registry.load("churn")[0] == {"weights": [3]}
    assert registry.load("churn", "v1")[0] == {"weights": [1, 2]}
    assert registry.load("churn", 1)[1].version == 1
    history = json.loads((tmp_path / "models/churn/aliases.json").read_text())["history"]
    assert [(h["version"], h["previous"]) for h in history] == [(1, None), (2, 1)]
    with pytest.raises(ModelError, match="no version 3"):
        registry.set_alias("churn", CHAMPION, 3)
    assert not list((tmp_path / "models/churn").glob(".staging-*"))

    (tmp_path / "models/churn/v2/model.joblib").write_bytes(b"not the registered model")
    with pytest.raises(ModelError, match="SHA-256 does not match"):
        registry.load("churn")
