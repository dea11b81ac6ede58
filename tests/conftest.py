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

#: Where the tests' temporary directories (tmp_path, tmp_path_factory) go when it has room: a RAM
#: file system. Dagster's SQLite run storage commits once per event and DuckDB syncs at every
#: checkpoint; on a disk each sync waits for the device (8-15 ms here, thousands per pipeline run:
#: a third of a run's time in a profile). The files, databases and processes are the same; only
#: the wait for the disk is gone. `--basetemp` or PYTEST_DEBUG_TEMPROOT override it.
RAM_TEMP_ROOT = Path("/dev/shm")
#: Free space RAM_TEMP_ROOT must have to be used: directories of module and session fixtures stay
#: until the session ends (test_identity.py and test_pipeline.py together peak at about 1 GiB).
RAM_TEMP_MIN_FREE = 8 * 2**30


def pytest_configure(config: pytest.Config) -> None:
    """Put the temporary directories on RAM_TEMP_ROOT, unless told where or it lacks room."""
    if config.option.basetemp or "PYTEST_DEBUG_TEMPROOT" in os.environ:
        return
    try:
        stats = os.statvfs(RAM_TEMP_ROOT)
    except OSError:
        return
    if stats.f_bavail * stats.f_frsize >= RAM_TEMP_MIN_FREE and os.access(RAM_TEMP_ROOT, os.W_OK):
        # pytest reads it when the first temporary directory is made (documented in its
        # environment variables reference).
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(RAM_TEMP_ROOT)


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
