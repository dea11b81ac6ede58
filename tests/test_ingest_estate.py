"""End to end: every entity of a small generated demo estate, reconciled with its manifest."""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from fabric.config import FabricConfig, load_config
from fabric.demo.generate import EstateSpec, generate_estate
from fabric.ingest import LoadResult, ingest_entity
from fabric.partitions import Window
from fabric.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]
END = date(2026, 3, 10)
CRM_DATES = {"customers": "updated_at", "contacts": "created_at", "cancellations": "cancelled_on"}


@pytest.fixture
def estate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FabricConfig, dict[str, Any]]:
    monkeypatch.setenv("FABRIC_HOME", str(tmp_path))
    config = load_config(REPO / "fabric.yaml")
    assert config.demo is not None
    manifest = generate_estate(
        config.resolve(config.demo.root),
        EstateSpec(
            customers=500, days=3, history_days=14, seed=11, end_date=END,
            faults=("malformed_rows",),
        ),
    )  # fmt: skip
    return config, manifest


def test_every_entity_reconciles_with_the_manifest(
    estate: tuple[FabricConfig, dict[str, Any]],
) -> None:
    config, manifest = estate
    window = Window(date.fromisoformat(manifest["history_start"]), END)
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    results: dict[str, list[LoadResult]] = {
        f"{source}.{entity}": ingest_entity(config, source, entity, window, "e2e", warehouse)
        for source, entity in config.source_entities()
    }

    files = manifest["files"]
    for name, prefix in (
        ("erp.accounts", "erp/accounts"),
        ("erp.invoices", "erp/invoices"),
        ("erp.payments", "erp/payments"),
        ("support.tickets", "support/tickets"),
        ("web.events", "web/events"),
    ):
        suffix = ".csv" if "support" in prefix else ".jsonl" if "web" in prefix else ".txt"
        expected = [files[f"{prefix}_{day:%Y%m%d}{suffix}"] for day in window]
        got = results[name]
        assert [r.rows_read for r in got] == [f["rows"] for f in expected], name
        assert [r.rows_quarantined for r in got] == [f["malformed"] for f in expected], name
        assert {r.status for r in got} <= {"ok", "warning"}
    assert (
        results["web.events"][-1].rows_quarantined
        >= files[f"web/events_{END:%Y%m%d}.jsonl"]["fault_malformed"]
        > 0
    )

    with sqlite3.connect(config.resolve(config.sources["crm"].path)) as crm:  # type: ignore[union-attr]
        for table, column in CRM_DATES.items():
            per_day = dict(
                crm.execute(
                    f"SELECT date({column}), count(*) FROM {table} "
                    f"WHERE date({column}) BETWEEN ? AND ? GROUP BY 1",
                    [window.start.isoformat(), END.isoformat()],
                ).fetchall()
            )
            got = results[f"crm.{table}"]
            assert [r.rows_loaded for r in got] == [per_day.get(d.isoformat(), 0) for d in window]
            assert not any(r.rows_quarantined for r in got)

    with warehouse.connect(read_only=True) as con:
        codes = dict(
            con.execute(
                "SELECT reason_code, count(*) FROM quarantine.support__tickets GROUP BY 1"
            ).fetchall()
        )
        loads = con.execute(
            "SELECT count(*), count(*) FILTER (rows_read <> rows_loaded + rows_quarantined) FROM meta.loads"
        ).fetchone()
    kinds: Counter[str] = Counter()
    for day in window:
        kinds.update(files[f"support/tickets_{day:%Y%m%d}.csv"]["malformed_by_kind"])
    assert codes == {
        code: n
        for code, n in {
            "field_count": kinds["field_count"],
            "type_cast": kinds["opened_at"] + kinds["satisfaction"],
        }.items()
        if n
    }
    assert loads == (8 * len(window), 0)
