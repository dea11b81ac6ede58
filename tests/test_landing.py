"""Landing zone: each dropped file ingested once, duplicates reported, unsafe paths refused."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg

from assets.sensors import landing_sensors
from fabric.config import FabricConfig, parse_config
from fabric.ingest import landing
from fabric.warehouse import Warehouse


def make_config(tmp_path: Path) -> FabricConfig:
    return parse_config(
        {
            "project": "test",
            "warehouse": {"path": "warehouse.duckdb"},
            "partitions": {"start_date": "2026-01-01"},
            "sources": {
                "desk": {
                    "kind": "csv",
                    "root": "desk",
                    "landing": {"folder": "inbox"},
                    "entities": {
                        "tickets": {"pattern": "tickets_{date:%Y%m%d}.csv", "columns": [{"name": "id"}]}
                    },
                }
            },
        },
        tmp_path,
    )


def drop(tmp_path: Path, name: str, content: bytes = b"id\n1\n") -> Path:
    path = tmp_path / "inbox" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    return path


def scan(config: FabricConfig) -> list[landing.Landed]:
    with Warehouse(config.resolve(config.warehouse.path)).connect() as con:
        return landing.scan(con, config, "desk")


def rows(config: FabricConfig, sql: str) -> list[tuple[Any, ...]]:
    with Warehouse(config.resolve(config.warehouse.path)).connect(read_only=True) as con:
        return con.execute(sql).fetchall()


def test_a_new_file_is_queued_and_an_identical_redrop_is_a_duplicate(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    drop(tmp_path, "tickets_20260301.csv")

    [queued] = scan(config)
    drop(tmp_path, "tickets_20260301.csv")
    [duplicate] = scan(config)

    assert (queued.status, queued.entity, str(queued.day)) == ("queued", "tickets", "2026-03-01")
    assert queued.run_key == f"tickets_20260301.csv:{queued.sha256[:16]}"  # type: ignore[index]
    assert (tmp_path / "desk" / "tickets_20260301.csv").read_bytes() == b"id\n1\n"
    assert duplicate.status == "duplicate" and "identical to tickets_20260301.csv" in duplicate.reason
    moved = Path(duplicate.stored_path or "")
    assert moved.parent == tmp_path / "inbox" / "duplicates" and moved.is_file()
    assert "identical" in moved.with_name(moved.name + ".reason.txt").read_text()
    assert rows(config, "SELECT status FROM meta.landing_files ORDER BY detected_at") == [
        ("queued",), ("duplicate",)
    ]  # fmt: skip
    assert list((tmp_path / "inbox").glob("*.csv")) == []


def test_changed_content_under_the_same_name_is_a_new_file(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    drop(tmp_path, "tickets_20260301.csv")
    scan(config)
    drop(tmp_path, "tickets_20260301.csv", b"id\n1\n2\n")

    [again] = scan(config)

    assert again.status == "queued" and "replacing the earlier file" in again.reason


def test_links_out_of_the_folder_and_unknown_names_are_refused(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    secret = tmp_path / "secret.csv"
    secret.write_text("id\nsecret\n")
    drop(tmp_path, "notes.txt")
    os.symlink(secret, tmp_path / "inbox" / "tickets_20260302.csv")

    outcomes = {o.name: o for o in scan(config)}

    assert outcomes["tickets_20260302.csv"].status == "refused"
    assert "outside the landing folder" in outcomes["tickets_20260302.csv"].reason
    assert outcomes["notes.txt"].status == "refused"
    assert "matches no entity pattern" in outcomes["notes.txt"].reason
    assert secret.read_text() == "id\nsecret\n"  # the target is never touched
    assert not (tmp_path / "desk" / "tickets_20260302.csv").exists()


def test_a_failed_run_moves_the_file_aside_with_the_reason(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    drop(tmp_path, "tickets_20260301.csv")
    [queued] = scan(config)

    with Warehouse(config.resolve(config.warehouse.path)).connect() as con:
        landing.settle(con, config, "desk", queued.run_key or "", "r1", False, "header mismatch")

    [(status, reason, stored)] = rows(config, "SELECT status, reason, stored_path FROM meta.landing_files")
    assert (status, reason) == ("failed", "header mismatch")
    assert Path(stored).parent == tmp_path / "inbox" / "failed"
    assert not (tmp_path / "desk" / "tickets_20260301.csv").exists()


def test_the_sensor_requests_one_run_per_new_file_and_logs_duplicates(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    [sensor] = landing_sensors(config)
    drop(tmp_path, "tickets_20260301.csv")

    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        [request] = list(sensor(context))  # type: ignore[arg-type]
        drop(tmp_path, "tickets_20260301.csv")
        [skipped] = list(sensor(dg.build_sensor_context(instance=instance)))  # type: ignore[arg-type]

    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == "2026-03-01"
    assert request.run_key is not None and request.run_key.startswith("tickets_20260301.csv:")
    assert request.asset_selection == [dg.AssetKey(["raw", "desk__tickets"])]
    assert isinstance(skipped, dg.SkipReason)
    assert rows(config, "SELECT status FROM meta.landing_files ORDER BY detected_at") == [
        ("queued",), ("duplicate",)
    ]  # fmt: skip
