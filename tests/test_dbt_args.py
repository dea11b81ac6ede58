"""The dbt command line Fabric builds: pure functions, no dbt run."""

from __future__ import annotations

import json
import os
import time
from datetime import date
from pathlib import Path

import pytest

from fabric.config import FabricConfig, parse_config
from fabric.errors import FabricError
from fabric.integrate.dbt import (
    dbt_build_args,
    dbt_env,
    dbt_vars,
    failed_nodes,
    prepare_project,
    prune_invocations,
    target_dir,
)
from fabric.partitions import Window


def _vars_of(args: list[str]) -> dict[str, object]:
    return json.loads(args[args.index("--vars") + 1])


def _config(tmp_path: Path, **overrides: object) -> FabricConfig:
    data: dict[str, object] = {
        "project": "test",
        "partitions": {"start_date": "2026-01-01"},
        "warehouse": {"path": "state/warehouse.duckdb"},
        "sources": {
            "crm": {
                "kind": "sqlite",
                "path": "crm.sqlite",
                "entities": {
                    "customers": {
                        "table": "customers",
                        "mode": "snapshot",
                        "primary_key": ["crm_id"],
                        "columns": [{"name": "crm_id", "type": "bigint"}],
                    }
                },
            }
        },
        **overrides,
    }
    return parse_config(data, tmp_path)


def test_vars_for_a_single_day() -> None:
    assert dbt_vars(Window.parse("2026-03-05"), 30) == {
        "start_date": "2026-03-05",
        "end_date": "2026-03-05",
        "churn_horizon_days": 30,
    }


def test_vars_for_a_range() -> None:
    window = Window(date(2026, 2, 27), date(2026, 3, 2))
    assert dbt_vars(window, 14) == {
        "start_date": "2026-02-27",
        "end_date": "2026-03-02",
        "churn_horizon_days": 14,
    }


def test_vars_reject_a_non_positive_horizon() -> None:
    with pytest.raises(FabricError, match="churn_horizon_days"):
        dbt_vars(Window.parse("2026-03-05"), 0)


def test_build_args_for_a_single_day() -> None:
    args = dbt_build_args(Window.parse("2026-03-05"), 30)
    assert args[0] == "build"
    assert _vars_of(args) == {
        "start_date": "2026-03-05",
        "end_date": "2026-03-05",
        "churn_horizon_days": 30,
    }
    assert "--select" not in args
    assert "--full-refresh" not in args


def test_build_args_for_a_range_with_selection() -> None:
    args = dbt_build_args(Window.parse("2026-03-01", "2026-03-07"), 30, select="+customers")
    assert _vars_of(args)["start_date"] == "2026-03-01"
    assert _vars_of(args)["end_date"] == "2026-03-07"
    assert args[args.index("--select") + 1] == "+customers"


def test_build_args_with_full_refresh() -> None:
    args = dbt_build_args(Window.parse("2026-03-05"), 30, full_refresh=True)
    assert args[-1] == "--full-refresh"


def test_build_args_are_deterministic() -> None:
    window = Window.parse("2026-03-01", "2026-03-07")
    assert dbt_build_args(window, 30) == dbt_build_args(window, 30)


def test_env_points_dbt_at_the_configured_warehouse_and_project(tmp_path: Path) -> None:
    env = dbt_env(_config(tmp_path))
    assert env["FABRIC_WAREHOUSE"] == str(tmp_path.resolve() / "state" / "warehouse.duckdb")
    assert env["DBT_PROJECT_DIR"] == str(tmp_path.resolve() / "dbt_project")
    assert env["DBT_PROFILES_DIR"] == env["DBT_PROJECT_DIR"]
    assert all(isinstance(v, str) for v in env.values())


def test_target_dir_is_inside_the_project_unless_absolute(tmp_path: Path) -> None:
    assert target_dir(_config(tmp_path)) == tmp_path.resolve() / "dbt_project" / "target"
    elsewhere = tmp_path / "elsewhere"
    config = _config(tmp_path, dbt={"project_dir": "dbt_project", "target_path": str(elsewhere)})
    assert target_dir(config) == elsewhere


def test_old_invocation_folders_are_pruned_and_nothing_else(tmp_path: Path) -> None:
    config = _config(tmp_path, dbt={"project_dir": "dbt_project", "keep_invocations_days": 3})
    target = target_dir(config)
    now = time.time()
    day = 86_400.0

    def folder(name: str, age_days: float) -> Path:
        path = target / name
        (path / "compiled").mkdir(parents=True)
        (path / "manifest.json").write_text("{}" * 500)
        (path / "compiled" / "model.sql").write_text("select 1")
        os.utime(path, (now - age_days * day, now - age_days * day))
        return path

    old = [folder("dbt_models-1a2b3c4-9f8e7d6", 10), folder("dbt_models-5d6e7f8-0a1b2c3", 3.5)]
    kept = [
        folder("dbt_models-0f1e2d3-4c5b6a7", 1),  # young
        folder("compiled", 30),  # dbt's own folders and anything not named as an invocation
        folder("my-notes", 30),
        folder("dbt_models-1a2b3c4-XYZ", 30),
    ]
    (target / "manifest.json").write_text("{}")

    pruned = prune_invocations(config, now=now)
    assert pruned.folders == 2
    assert pruned.bytes == 2 * (1000 + len("select 1"))
    assert not any(p.exists() for p in old)
    assert all(p.is_dir() for p in kept)
    assert (target / "manifest.json").is_file()
    assert prune_invocations(config, now=now).folders == 0  # converges
    assert prune_invocations(_config(tmp_path / "no-project")).folders == 0  # no target folder yet


def test_failed_nodes_names_errors_and_failing_tests_only() -> None:
    run_results = {
        "results": [
            {"unique_id": "model.fabric.customers", "status": "success", "message": "OK"},
            {
                "unique_id": "model.fabric.customer_xref",
                "status": "error",
                "message": "Binder\n  Error",
            },
            {"unique_id": "test.fabric.unique_customers_id", "status": "fail", "message": "Got 3"},
            {
                "unique_id": "test.fabric.not_null_customers_cc",
                "status": "warn",
                "message": "Got 1",
            },
            {"unique_id": "model.fabric.churn_labels", "status": "skipped", "message": None},
        ]
    }
    assert failed_nodes(run_results) == [
        "model.fabric.customer_xref (error): Binder Error",
        "test.fabric.unique_customers_id (fail): Got 3",
    ]


def test_project_parses_into_a_manifest(tmp_path: Path) -> None:
    """`prepare_project` runs `dbt parse` (a few seconds; the warehouse is not opened)."""
    repo = Path(__file__).resolve().parents[1]
    config = _config(
        tmp_path, dbt={"project_dir": str(repo / "dbt_project"), "target_path": str(tmp_path)}
    )
    manifest_path = prepare_project(config)
    assert manifest_path == tmp_path / "manifest.json"
    nodes = json.loads(manifest_path.read_text())["nodes"]
    schemas = {n["name"]: n["schema"] for n in nodes.values() if n["resource_type"] == "model"}
    assert schemas["stg_crm__customers"] == "staging"
    assert schemas["customer_xref"] == "integrated"
    assert schemas["customers"] == "integrated"
    assert schemas["customer_features"] == "features"
    assert schemas["churn_labels"] == "features"
    assert not (tmp_path / "state").exists()
