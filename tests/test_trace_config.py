"""`fabric trace`: which raw tables hold a system's records comes from `customer_key` in fabric.yaml.

The demo's mapping is checked against the estate's dbt identity model; a made-up estate (other
sources, other kinds, other key columns) is traced on a real DuckDB warehouse built by the test.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from fabric.config import FabricConfig, parse_config
from fabric.errors import ConfigError
from fabric.lineage.trace import render_trace, system_tables, trace_record
from fabric.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]
DAY = date(2026, 5, 4)


def test_demo_mapping_is_the_key_each_identity_record_is_built_from(config: FabricConfig) -> None:
    assert system_tables(config) == {
        "crm": [("crm__customers", "crm_id"), ("crm__contacts", "crm_id"), ("crm__cancellations", "crm_id")],
        "erp": [("erp__accounts", "account_no"), ("erp__invoices", "account_no"),
                ("erp__payments", "account_no")],
        "support": [("support__tickets", "requester_id")],
        "web": [("web__events", "user_id")],
    }  # fmt: skip
    # The systems are named after the sources in dbt's identity records.
    records = (REPO / "dbt_project/models/integrated/identity_records.sql").read_text()
    assert all(f"'{system}' as system" in records for system in system_tables(config))


def _estate(tmp_path: Path) -> dict[str, Any]:
    return {
        "project": "acme",
        "warehouse": {"path": str(tmp_path / "warehouse.duckdb")},
        "partitions": {"start_date": "2026-05-01"},
        "sources": {
            "shop": {
                "kind": "jsonl",
                "root": "shop",
                "entities": {
                    "orders": {
                        "pattern": "orders_{date:%Y%m%d}.jsonl",
                        "customer_key": "buyer_ref",
                        "columns": [{"name": "order_id"}, {"name": "buyer_ref", "path": "buyer.ref"}],
                    },
                    "carts": {"pattern": "carts_{date:%Y%m%d}.jsonl", "columns": [{"name": "buyer_ref"}]},
                },
            },
            "billing": {
                "kind": "postgres",
                "database": "billing",
                "user": "reader",
                "entities": {
                    "invoices": {
                        "table": "invoices",
                        "mode": "snapshot",
                        "primary_key": ["invoice_id"],
                        "customer_key": "account",
                        "columns": [{"name": "invoice_id"}, {"name": "account"}],
                    }
                },
            },
            "helpdesk": {
                "kind": "csv",
                "root": "helpdesk",
                "entities": {"tickets": {"pattern": "t_{date:%Y%m%d}.csv", "columns": [{"name": "caller"}]}},
            },
            "ledger": {
                "kind": "fixed_width",
                "root": "ledger",
                "layout": "ledger/layout.yaml",
                "entities": {"entries": {"pattern": "e_{date:%Y%m%d}.txt", "customer_key": "acct_no"}},
            },
        },
    }


def _raw(con: Any, table: str, key_column: str, rows: list[tuple[str, str]]) -> None:
    """A raw table as ingest writes it: the key column and the `_fabric_*` columns."""
    con.execute(
        f"CREATE TABLE raw.{table} ({key_column} VARCHAR, _fabric_partition DATE, _fabric_source VARCHAR, "
        "_fabric_position VARCHAR, _fabric_load_id VARCHAR)"
    )
    con.executemany(
        f"INSERT INTO raw.{table} VALUES (?, ?, ?, ?, 'load-1')",
        [[key, DAY, f"{table}.src", position] for key, position in rows],
    )


def _warehouse(config: FabricConfig) -> None:
    with Warehouse(config.resolve(config.warehouse.path)).connect() as con:
        for schema in ("raw", "scores", "integrated"):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        con.execute(
            "CREATE TABLE scores.churn_scores AS SELECT 'L-1' AS lineage_id, "
            "DATE '2026-05-04' AS partition_date, 'FC-1' AS fabric_customer_id, "
            "NULL::BIGINT AS crm_customer_id, 0.9 AS score, 1 AS decision, "
            "'model' AS scorer, 'churn' AS model_name, 3 AS model_version, 'champion' AS variant, "
            "'run-1' AS run_id, TIMESTAMP '2026-05-05 02:00:00' AS scored_at"
        )
        con.execute(
            "CREATE TABLE integrated.customer_xref (system VARCHAR, source_key VARCHAR, "
            "fabric_customer_id VARCHAR, match_rule VARCHAR)"
        )
        con.executemany(
            "INSERT INTO integrated.customer_xref VALUES (?, ?, ?, 'email')",
            [("shop", "B-7", "FC-1"), ("billing", "A-9", "FC-1"), ("helpdesk", "H-1", "FC-1"),
             ("ledger", "L-4", "FC-1"), ("pos", "P-2", "FC-1"), ("shop", "B-8", "FC-2")],
        )  # fmt: skip
        _raw(con, "shop__orders", "buyer_ref", [("B-7", "line 3"), ("B-8", "line 4"), (" B-7 ", "line 9")])
        _raw(con, "shop__carts", "buyer_ref", [("B-7", "line 1")])  # no customer_key: not read
        _raw(con, "billing__invoices", "account", [("A-9", "invoice_id=12")])
        _raw(con, "ledger__entries", "account_number", [("L-4", "line 1")])  # not the configured name


def test_trace_reads_the_raw_tables_fabric_yaml_names(tmp_path: Path) -> None:
    config = parse_config(_estate(tmp_path), tmp_path)
    assert system_tables(config) == {
        "shop": [("shop__orders", "buyer_ref")],
        "billing": [("billing__invoices", "account")],
        "ledger": [("ledger__entries", "acct_no")],
    }
    _warehouse(config)
    with Warehouse(config.resolve(config.warehouse.path)).connect(read_only=True) as con:
        trace = trace_record(config, con, "L-1")
    assert [(r.table, r.system, r.key, r.position) for r in trace.raw_rows] == [
        ("raw.billing__invoices", "billing", "A-9", "invoice_id=12"),
        ("raw.shop__orders", "shop", "B-7", "line 3"),
        ("raw.shop__orders", "shop", "B-7", "line 9"),
    ]
    lines = render_trace(trace)
    assert "    raw.shop__orders [2026-05-04] shop__orders.src line 3 (load load-1)" in lines
    # Systems whose raw rows cannot be read are named, with the reason.
    assert [line for line in lines if line.startswith("  raw rows not traced: ")] == [
        "  raw rows not traced: system helpdesk: no entity of source helpdesk declares customer_key "
        "in fabric.yaml",
        "  raw rows not traced: system pos: fabric.yaml has no source named pos",
        "  raw rows not traced: system ledger: raw.ledger__entries has no column acct_no "
        "(its customer_key in fabric.yaml)",
    ]


def test_a_raw_table_not_loaded_yet_is_named(tmp_path: Path) -> None:
    data = _estate(tmp_path)
    data["sources"]["helpdesk"]["entities"]["tickets"]["customer_key"] = "caller"
    config = parse_config(data, tmp_path)
    _warehouse(config)
    with Warehouse(config.resolve(config.warehouse.path)).connect(read_only=True) as con:
        lines = render_trace(trace_record(config, con, "L-1"))
    assert (
        "  raw rows not traced: system helpdesk: raw.helpdesk__tickets does not exist (not loaded yet)"
    ) in lines


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("shop", "orders"), "buyer ref", r"entities\.orders\.customer_key: .*invalid customer_key column"),
        (("shop", "orders"), "buyer", r"entities\.orders: .*'buyer' is not one of the declared columns"),
        (("billing", "invoices"), "acct", r"sources\.billing\.entities\.invoices: .*'acct' is not one"),
    ],
)
def test_customer_key_is_validated(tmp_path: Path, path: tuple[str, str], value: str, message: str) -> None:
    data = _estate(tmp_path)
    data["sources"][path[0]]["entities"][path[1]]["customer_key"] = value
    with pytest.raises(ConfigError, match=message):
        parse_config(data, tmp_path, "fabric.yaml")


def test_every_source_kind_takes_customer_key(tmp_path: Path) -> None:
    """The key is declared once for all entity kinds (copybook and excel included)."""
    data = _estate(tmp_path)
    data["sources"]["mainframe"] = {
        "kind": "copybook", "root": "mf", "copybook": "mf/ACCT.cpy",
        "entities": {"accounts": {"pattern": "A.D{date:%Y%m%d}", "customer_key": "ACCT_ID"}},
    }  # fmt: skip
    data["sources"]["sheets"] = {
        "kind": "excel", "root": "xl",
        "entities": {"leads": {"pattern": "l_{date:%Y%m%d}.xlsx", "customer_key": "lead_id"}},
    }  # fmt: skip
    mapping = system_tables(parse_config(data, tmp_path))
    assert mapping["mainframe"] == [("mainframe__accounts", "ACCT_ID")]
    assert mapping["sheets"] == [("sheets__leads", "lead_id")]
