"""A small trained estate for the scoring tests: synthetic features and labels, real models.

`build_estate` writes 40 days of synthetic features for 1,500 customers (7-day label horizon),
trains the champion on the default window and a challenger on an earlier window, into a Fabric
home that tests copy (training takes a few seconds; copying a directory does not).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from threadpoolctl import threadpool_limits

from fabric.config import FabricConfig, load_config
from fabric.partitions import Window
from fabric.scoring.synthetic import write_synthetic_estate
from fabric.scoring.train import train
from fabric.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]
END = date(2026, 3, 31)
START = END - timedelta(days=39)
CUSTOMERS = 1500
HORIZON = 7
CHALLENGER_WINDOW = Window(START, START + timedelta(days=14))


def short_history(config: FabricConfig, **scoring: object) -> FabricConfig:
    """`config` with a 7-day label horizon (so 40 days of history can train) and overrides."""
    training = config.scoring.training.model_copy(update={"holdout_days": 7, "sample_every_days": 2})
    updated = config.scoring.model_copy(
        update={"churn_horizon_days": HORIZON, "training": training, **scoring}
    )
    return config.model_copy(update={"scoring": updated})


def warehouse(config: FabricConfig) -> Warehouse:
    return Warehouse(config.resolve(config.warehouse.path))


def query(config: FabricConfig, sql: str, params: list[object] | None = None) -> list[tuple]:
    with duckdb.connect(str(config.resolve(config.warehouse.path)), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def open_gate(_con: duckdb.DuckDBPyConnection, _day: date) -> None:
    return None


def build_estate(home: Path, challenger: bool = True) -> None:
    """Features, labels, champion v1 and (optionally) challenger v2 under `home`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FABRIC_HOME", str(home))
        config = short_history(load_config(REPO / "fabric.yaml"))
    write_synthetic_estate(warehouse(config), CUSTOMERS, START, END, HORIZON, seed=3)
    train(config, warehouse(config), "run-train-champion")
    if challenger:
        train(config, warehouse(config), "run-train-challenger", CHALLENGER_WINDOW)


@pytest.fixture(scope="module", autouse=True)
def one_openmp_thread() -> Iterator[None]:
    """HistGradientBoosting's OpenMP threads spin-wait badly on a busy shared machine
    (autouse in every module that imports it)."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def trained_estate(challenger: bool = True) -> Callable[[pytest.TempPathFactory], Path]:
    """A module fixture `trained_home`: `build_estate` once per test module."""

    @pytest.fixture(scope="module")
    def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
        home = tmp_path_factory.mktemp("trained")
        build_estate(home, challenger=challenger)
        return home

    return trained_home
