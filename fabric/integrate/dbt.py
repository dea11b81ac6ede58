"""Running Fabric's dbt project: the command line, its variables and its environment.

The decisions (which partition window, which selection, full refresh or not) are pure
functions, unit-tested without dbt; the Dagster assets pass their results to dagster-dbt's
`DbtCliResource`, and `run_dbt_build` runs the same command for library and CLI use.

dbt always runs as a subprocess: DuckDB allows one writer per file, and a separate process
that exits releases the warehouse as soon as dbt is done.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabric.config import FabricConfig
from fabric.errors import FabricError
from fabric.partitions import Window

#: The dbt project's vars, set from the run's partition window and the churn horizon.
VAR_START_DATE = "start_date"
VAR_END_DATE = "end_date"
VAR_CHURN_HORIZON_DAYS = "churn_horizon_days"

_FAILED_STATUSES = frozenset({"error", "fail", "runtime error"})


def dbt_vars(window: Window, churn_horizon_days: int) -> dict[str, str | int]:
    """The `--vars` of a dbt run over `window` (inclusive partition keys `YYYY-MM-DD`)."""
    if churn_horizon_days < 1:
        raise FabricError(f"churn_horizon_days must be at least 1, got {churn_horizon_days}")
    return {
        VAR_START_DATE: window.start.isoformat(),
        VAR_END_DATE: window.end.isoformat(),
        VAR_CHURN_HORIZON_DAYS: churn_horizon_days,
    }


def dbt_build_args(
    window: Window,
    churn_horizon_days: int,
    select: str | None = None,
    full_refresh: bool = False,
) -> list[str]:
    """`dbt build` arguments for a partition window, e.g. `['build', '--vars', '{...}']`.

    `select` is a dbt selection (`--select`); `full_refresh` rebuilds incremental models, except
    the identity tables (`customer_xref`, `customer_id_aliases`), which are configured never to
    refresh so that Fabric ids stay stable.
    """
    args = ["build", "--vars", json.dumps(dbt_vars(window, churn_horizon_days), sort_keys=True)]
    if select:
        args += ["--select", select]
    if full_refresh:
        args.append("--full-refresh")
    return args


def project_dir(config: FabricConfig) -> Path:
    """The dbt project directory (also its profiles directory)."""
    return config.resolve(config.dbt.project_dir)


def target_dir(config: FabricConfig) -> Path:
    """Where dbt writes manifest.json, run_results.json and (in `logs/`) its log; a relative
    `dbt.target_path` is inside the project directory."""
    target = config.dbt.target_path
    return target if target.is_absolute() else project_dir(config) / target


# dagster-dbt gives every invocation its own target folder: `<op name>-<run id[:7]>-<uuid[:7]>`.
_INVOCATION_FOLDER = re.compile(r"^[A-Za-z0-9_]+-[0-9a-f]{7}-[0-9a-f]{7}$")


@dataclass(frozen=True)
class Pruned:
    folders: int
    bytes: int


def prune_invocations(config: FabricConfig, now: float | None = None) -> Pruned:
    """Delete the per-invocation target folders last written more than
    `dbt.keep_invocations_days` ago (a nightly schedule adds one a day, a backfill one per run,
    each a few MB that nothing else removes). Only folders named as dagster-dbt names them are
    touched; the project's own `manifest.json` and `logs/` stay. A run's lineage events read its
    folder when the run ends, long before it expires."""
    target = target_dir(config)
    if not target.is_dir():
        return Pruned(0, 0)
    cutoff = (time.time() if now is None else now) - config.dbt.keep_invocations_days * 86_400
    folders = size = 0
    for folder in target.iterdir():
        if not (folder.is_dir() and not folder.is_symlink() and _INVOCATION_FOLDER.match(folder.name)):
            continue
        if folder.stat().st_mtime >= cutoff:
            continue
        size += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
        shutil.rmtree(folder)
        folders += 1
    return Pruned(folders, size)


def dbt_env(config: FabricConfig) -> dict[str, str]:
    """Environment variables a dbt run needs: the warehouse path for the profile and where the
    project and profile are. Callers merge it over their own environment."""
    directory = str(project_dir(config))
    return {
        "FABRIC_WAREHOUSE": str(config.resolve(config.warehouse.path)),
        "DBT_PROJECT_DIR": directory,
        "DBT_PROFILES_DIR": directory,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def dbt_executable() -> str:
    """The `dbt` command of this interpreter's environment, else the one on PATH."""
    beside_python = Path(sys.executable).parent / "dbt"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("dbt")
    if found is None:
        raise FabricError(
            "the dbt command line is not installed: install the project (pip install -e .) so "
            "that dbt-core and dbt-duckdb are available"
        )
    return found


def _run(config: FabricConfig, args: list[str], target: Path) -> subprocess.CompletedProcess[str]:
    directory = project_dir(config)
    if not (directory / "dbt_project.yml").is_file():
        raise FabricError(f"{directory}: no dbt_project.yml (check dbt.project_dir in fabric.yaml)")
    command = [
        dbt_executable(),
        *args,
        "--project-dir",
        str(directory),
        "--profiles-dir",
        str(directory),
        "--target-path",
        str(target),
        "--log-path",
        str(target / "logs"),
    ]
    env = {**os.environ, **dbt_env(config)}
    return subprocess.run(
        command, cwd=directory, env=env, capture_output=True, text=True, check=False
    )


def prepare_project(config: FabricConfig) -> Path:
    """Parse the dbt project (`dbt parse`) and return the path of its manifest.json.

    Called at set-up and test time (the Dagster definitions load the manifest), never at
    import. Parsing does not open the warehouse.
    """
    target = target_dir(config)
    result = _run(config, ["parse", "--no-partial-parse"], target)
    manifest = target / "manifest.json"
    if result.returncode != 0 or not manifest.is_file():
        raise FabricError(
            f"dbt parse failed for {project_dir(config)}:\n{_tail(result.stdout + result.stderr)}"
        )
    return manifest


def failed_nodes(run_results: Mapping[str, Any]) -> list[str]:
    """`unique_id (status): message` of every node that errored or failed in run_results.json."""
    failures = []
    for result in run_results.get("results", []):
        status = str(result.get("status", "")).lower()
        if status in _FAILED_STATUSES:
            message = " ".join(str(result.get("message") or "").split())
            failures.append(f"{result.get('unique_id')} ({status}): {message[:300]}")
    return failures


def run_dbt_build(
    config: FabricConfig,
    window: Window,
    *,
    select: str | None = None,
    full_refresh: bool = False,
) -> None:
    """Run `dbt build` for `window` against the configured warehouse.

    Raises FabricError naming dbt's failing nodes (models, tests) when the build fails. Hold
    no warehouse connection while calling this: dbt needs the file lock.
    """
    target = target_dir(config)
    args = dbt_build_args(window, config.scoring.churn_horizon_days, select, full_refresh)
    run_results_file = target / "run_results.json"
    run_results_file.unlink(missing_ok=True)
    result = _run(config, args, target)
    if result.returncode == 0:
        return
    failures: list[str] = []
    skipped = 0
    if run_results_file.is_file():
        run_results = json.loads(run_results_file.read_text(encoding="utf-8"))
        failures = failed_nodes(run_results)
        skipped = sum(r.get("status") == "skipped" for r in run_results.get("results", []))
    if not failures:
        detail = _tail(result.stdout + result.stderr)
    else:
        detail = "failing nodes:\n  " + "\n  ".join(failures)
        if skipped:
            detail += f"\n({skipped} downstream nodes skipped)"
    raise FabricError(f"dbt build failed for partitions {window}: {detail}")


def _tail(output: str, lines: int = 30) -> str:
    return "\n".join(output.strip().splitlines()[-lines:])
