"""The project's own Dagster instance: `DAGSTER_HOME` under `.fabric/` with Fabric's dagster.yaml."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

TEMPLATE = Path(__file__).with_name("dagster.yaml")


def default_dagster_home(fabric_home: Path) -> Path:
    return fabric_home / "dagster_home"


def ensure_dagster_home(fabric_home: Path) -> Path:
    """Point `DAGSTER_HOME` at the project's instance (unless set) and install its dagster.yaml.

    Fabric owns the default home under `.fabric/` and keeps its dagster.yaml current; a home the
    operator chose (`DAGSTER_HOME` set elsewhere) only gets the file if it has none, so their
    own settings (e.g. PostgreSQL storage) are never overwritten.
    """
    managed = default_dagster_home(fabric_home).resolve()
    home = Path(os.environ.get("DAGSTER_HOME") or managed).resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    stale = home == managed and target.exists() and target.read_bytes() != TEMPLATE.read_bytes()
    if not target.exists() or stale:
        shutil.copyfile(TEMPLATE, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def project_instance(fabric_home: Path) -> dg.DagsterInstance:
    """The persistent instance runs are recorded in, so `dagster dev` shows them."""
    ensure_dagster_home(fabric_home)
    return dg.DagsterInstance.get()
