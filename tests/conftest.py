"""Shared fixtures: an isolated Fabric home per test, the parsed dbt project once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Session fixtures of the serving tests: one trained model and one `fabric serve` for all modules.
from model_server import fabric_server, trained_home  # noqa: F401

from fabric.config import FabricConfig, load_config

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def dbt_manifest() -> Path:
    """Parse the dbt project once per session (what `make` does before Dagster loads)."""
    from fabric.integrate.dbt import prepare_project

    return prepare_project(load_config(REPO / "fabric.yaml"))


@pytest.fixture
def fabric_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh FABRIC_HOME (warehouse, estate, models, Dagster instance) for one test."""
    home = tmp_path / "fabric_home"
    home.mkdir()
    monkeypatch.setenv("FABRIC_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster_home"))
    monkeypatch.delenv("FABRIC_CONFIG", raising=False)
    yield home


@pytest.fixture
def config(fabric_home: Path) -> FabricConfig:
    """The repository's fabric.yaml, pointed at the test's FABRIC_HOME."""
    assert os.environ["FABRIC_HOME"] == str(fabric_home)
    return load_config(REPO / "fabric.yaml")
