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
    """Point `DAGSTER_HOME` at the project's instance (unless set) and install its dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or default_dagster_home(fabric_home)).resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() or target.read_bytes() != TEMPLATE.read_bytes():
        shutil.copyfile(TEMPLATE, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def project_instance(fabric_home: Path) -> dg.DagsterInstance:
    """The persistent instance runs are recorded in, so `dagster dev` shows them."""
    ensure_dagster_home(fabric_home)
    return dg.DagsterInstance.get()
