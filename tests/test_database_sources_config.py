"""Database sources without a server: configuration, secrets and redaction, cursor arithmetic."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fabric.config import MysqlSource, PostgresSource, parse_config
from fabric.errors import ConfigError
from fabric.ingest.connections import Server
from fabric.ingest.cursors import Cursor, lower_bound

COLUMNS: list[dict[str, Any]] = [
    {"name": "id", "type": "bigint", "nullable": False},
    {"name": "version", "type": "decimal", "precision": 38, "scale": 10},
    {"name": "updated_at", "type": "timestamp"},
    {"name": "name"},
]


def source(**settings: Any) -> dict[str, Any]:
    entity = {"table": "sales.orders", "mode": "merge", "primary_key": ["id"],
              "cursor_column": "updated_at", "columns": COLUMNS, **settings.pop("entity", {})}  # fmt: skip
    return {
        "kind": "postgres",
        "user": "reader",
        "database": "erp",
        **settings,
        "entities": {"orders": entity},
    }


def config(tmp_path: Path, block: dict[str, Any]) -> Any:
    data = {"project": "t", "partitions": {"start_date": "2026-01-01"}, "sources": {"erp": block}}
    return parse_config(data, tmp_path)


def test_a_server_source_and_a_merge_entity(tmp_path: Path) -> None:
    declared = config(tmp_path, source(password_env="ERP_PASSWORD", entity={"lookback": "90 seconds"}))
    erp = declared.sources["erp"]
    assert isinstance(erp, PostgresSource)
    assert erp.entities["orders"].table == "sales.orders"
    assert erp.entities["orders"].lookback_amount == timedelta(seconds=90)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (source(password="hunter2-secret"), "password: secrets are never written in fabric.yaml"),
        (source(user=None), "give dsn_env, or database and user"),
        (source(dsn_env="ERP_DSN"), "either dsn_env or database/user/password_env"),
        (source(password_env="not a name"), "is not an environment variable name"),
        (source(entity={"cursor_column": None}), "mode 'merge' needs cursor_column"),
        (source(entity={"cursor_column": "name"}), "a merge cursor must be an integer"),
        (source(entity={"lookback": 5}), "a timestamp cursor needs a duration"),
        (source(entity={"cursor_column": "version", "lookback": "1 hour"}), "needs a non-negative number"),
        (source(entity={"table": "orders; DROP TABLE x"}), "invalid table name"),
    ],
)
def test_bad_declarations_are_refused(tmp_path: Path, block: dict[str, Any], message: str) -> None:
    block = {k: v for k, v in block.items() if v is not None}
    block["entities"]["orders"] = {k: v for k, v in block["entities"]["orders"].items() if v is not None}
    with pytest.raises(ConfigError, match=message) as refused:
        config(tmp_path, block)
    assert "hunter2" not in str(refused.value)


def test_merge_keys_must_be_declared_not_nullable(tmp_path: Path) -> None:
    columns = [{**COLUMNS[0], "nullable": True}, *COLUMNS[1:]]
    with pytest.raises(ConfigError, match=r"declare \['id'\] with nullable: false"):
        config(tmp_path, source(entity={"columns": columns}))


def test_credentials_come_from_the_environment_and_are_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ERP_DSN", "mysql://reader:p%40ss-w0rd@db.internal:3307/erp?ssl_mode=REQUIRED")
    block = {**source(dsn_env="ERP_DSN"), "kind": "mysql"}
    del block["user"], block["database"]
    declared = config(tmp_path, block).sources["erp"]
    assert isinstance(declared, MysqlSource)
    server = Server.from_config("erp", declared)

    assert (server.label, server.default_schema) == ("mysql://db.internal:3307/erp", "erp")
    error = (
        'Failed to connect with "mysql://reader:p%40ss-w0rd@db.internal:3307/erp?ssl_mode=REQUIRED": '
        "denied for p@ss-w0rd; retry with host=x password=p@ss-w0rd or password='other secret'"
    )
    redacted = server.redact(error)
    assert "w0rd" not in redacted and "other secret" not in redacted
    assert "password=***" in redacted

    monkeypatch.delenv("ERP_DSN")
    with pytest.raises(ConfigError, match="environment variable ERP_DSN is not set"):
        Server.from_config("erp", declared)


def test_key_value_connection_strings_are_read_for_the_label() -> None:
    declared = PostgresSource.model_validate(
        {"kind": "postgres", "dsn_env": "X", "entities": source()["entities"]}
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("X", "host=10.1.2.3 port=6432 dbname=erp user=u password='a b\\'c'")
        server = Server.from_config("erp", declared)
    assert server.label == "postgres://10.1.2.3:6432/erp"
    assert (
        server.redact("at host=10.1.2.3 password='a b\\'c' failed") == "at host=10.1.2.3 password=*** failed"
    )


@pytest.mark.parametrize(
    ("cursor", "lookback", "bound"),
    [
        (Cursor("c", "2026-03-01 00:00:00.000001", "TIMESTAMP"), timedelta(minutes=1),
         "2026-02-28 23:59:00.000001"),
        (Cursor("c", "2026-03-01 08:00:00", "TIMESTAMP"), timedelta(0), "2026-03-01 08:00:00.000000"),
        (Cursor("c", "2026-03-01", "DATE"), timedelta(hours=1), "2026-02-28"),
        (Cursor("c", "10.0000000002", "DECIMAL(38,10)"), Decimal("0.0000000001"), "10.0000000001"),
        (Cursor("c", "100", "BIGINT"), Decimal("2.5"), "97"),
        (None, timedelta(0), None),
    ],
)  # fmt: skip
def test_the_lower_bound_keeps_full_precision(
    cursor: Cursor | None, lookback: timedelta | Decimal, bound: str | None
) -> None:
    assert lower_bound(cursor, lookback) == bound
