"""Publishing through the outbox to the demo CRM (SQLite): only changes are sent, message ids are
deterministic, an older day never overwrites a newer score, the gate holds per day, a target
that is down keeps everything in the outbox until the next run, plan is a dry run, deletes."""

from __future__ import annotations

import logging
import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from fabric.config import FabricConfig, SqlitePublisher
from fabric.errors import ConfigError, PublishError, QualityGateClosed
from fabric.partitions import Window
from fabric.publish import PublishResult, plan, publish
from fabric.publish.outbox import batch_rows
from fabric.publish.payload import as_json
from fabric.scoring.score import Gate, score_window
from fabric.scoring.synthetic import write_synthetic_estate
from fabric.warehouse import Warehouse

END = date(2026, 3, 31)
WINDOW = Window(END - timedelta(days=2), END)
CUSTOMERS = 400


def _open(_con: duckdb.DuckDBPyConnection, _day: date) -> None:
    return None


def _crm_path(config: FabricConfig) -> Path:
    publisher = config.publishers["crm"]
    assert isinstance(publisher, SqlitePublisher)
    return config.resolve(publisher.path)


def _crm_rows(config: FabricConfig) -> list[tuple]:
    with sqlite3.connect(_crm_path(config)) as con:
        return con.execute("SELECT * FROM crm_scores ORDER BY crm_id").fetchall()


def _query(config: FabricConfig, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(config.resolve(config.warehouse.path)), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture
def scored(config: FabricConfig) -> FabricConfig:
    """Rule scores for three days and an existing CRM database without a scores table."""
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    write_synthetic_estate(warehouse, CUSTOMERS, WINDOW.start, WINDOW.end, seed=5)
    score_window(config, warehouse, WINDOW, "run-score", _open)
    crm = _crm_path(config)
    crm.parent.mkdir(parents=True)
    with sqlite3.connect(crm) as con:
        con.execute("CREATE TABLE customers (crm_id INTEGER PRIMARY KEY, first_name TEXT)")
    return config


def _publish(
    config: FabricConfig, window: Window, run_id: str, gate: Gate = _open, **options: object
) -> PublishResult:
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    options.setdefault("sleep", lambda _seconds: None)
    return publish(config, warehouse, "crm", window, run_id, gate, **options)  # type: ignore[arg-type]


def test_publish_twice_sends_only_once_and_logs_every_record(
    scored: FabricConfig, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="fabric"):
        first = _publish(scored, WINDOW, "run-pub-1")
    assert any(
        r.getMessage().startswith("publishers.crm (") and r.getMessage().endswith(
            f"delivered: {first.delivery.batches} batch(es) recorded, {CUSTOMERS:,} records confirmed, "
            "0 dead-lettered"
        )
        for r in caplog.records
    )
    assert (first.plan.creates, first.delivery.created, first.pending) == (CUSTOMERS, CUSTOMERS, 0)
    rows = _crm_rows(scored)
    assert len(rows) == CUSTOMERS == len({r[0] for r in rows})
    assert {r[5] for r in rows} == {END.isoformat()}  # scored_for: the newest day of the window
    crm_id, score, decision, model, version, _, lineage, message_id, published_at = rows[0]
    assert (model, version) == ("rules", 0) and decision == int(score >= 0.5)
    assert len(lineage) == 36 and len(message_id) == 32 and published_at.endswith("+00:00")

    second = _publish(scored, WINDOW, "run-pub-2")
    assert _crm_rows(scored) == rows  # published_at included: nothing sent, nothing written
    assert (second.plan.unchanged, second.plan.changed, second.delivery.batches) == (CUSTOMERS, 0, 0)

    log = _query(
        scored,
        "SELECT run_id, status, count(*), count(DISTINCT entity_key) FROM publish.sync_log "
        "GROUP BY ALL ORDER BY 1",
    )
    assert log == [("run-pub-1", "created", CUSTOMERS, CUSTOMERS)]
    counts = _query(scored, 'SELECT run_id, "partition", staged, unchanged FROM publish.sync_runs ORDER BY 1')
    assert counts == [("run-pub-1", END, CUSTOMERS, 0), ("run-pub-2", END, 0, CUSTOMERS)]

    # per-record `unchanged` rows on request
    publisher = scored.publishers["crm"].model_copy(update={"log_unchanged": True})
    _publish(scored.model_copy(update={"publishers": {"crm": publisher}}), WINDOW, "run-pub-3")
    assert _query(
        scored, "SELECT status, count(*) FROM publish.sync_log WHERE run_id = 'run-pub-3' GROUP BY 1"
    ) == [("unchanged", CUSTOMERS)]
    snapshot = _query(
        scored,
        "SELECT entity_key, message_id, target_ref, lineage_id FROM publish.published "
        "WHERE target = 'crm' ORDER BY entity_key::BIGINT",
    )
    assert [(int(k), m, lin) for k, m, _, lin in snapshot] == [(r[0], r[7], r[6]) for r in rows]
    assert snapshot[0][2] == f"crm_id={crm_id}"
    assert _query(scored, "SELECT count(*) FROM publish.outbox") == [(0,)]
    runs = _query(scored, "SELECT step, status FROM meta.runs WHERE step LIKE 'publish%'")
    assert runs == [("publish:crm", "ok")] * 3
    # run 1 was recorded on the connection that recorded its last batch, run 2 (nothing sent)
    # on one of its own: both with what they delivered
    delivered = _query(
        scored,
        "SELECT run_id, outputs->0->>'rows' FROM meta.runs WHERE step = 'publish:crm' ORDER BY run_id",
    )
    assert delivered == [("run-pub-1", str(CUSTOMERS)), ("run-pub-2", "0"), ("run-pub-3", "0")]


def test_message_id_is_content_only_and_a_corrected_score_is_new(scored: FabricConfig) -> None:
    _publish(scored, Window(END, END), "run-1")
    before = _crm_rows(scored)
    warehouse = Warehouse(scored.resolve(scored.warehouse.path))
    # A re-score with new lineage ids but the same content: nothing to send, ids kept.
    score_window(scored, warehouse, Window(END, END), "run-rescore", _open)
    again = _publish(scored, Window(END, END), "run-2")
    assert again.plan.unchanged == CUSTOMERS and _crm_rows(scored) == before

    # A corrected score (one customer) is new content: one update with a new message id.
    with warehouse.connect() as con:
        con.execute(
            "UPDATE scores.churn_scores_rows SET score = 0.999 "
            "WHERE partition_date = ? AND crm_customer_id = ?",
            [END, before[0][0]],
        )
    corrected = _publish(scored, Window(END, END), "run-3")
    assert (corrected.plan.updates, corrected.plan.unchanged) == (1, CUSTOMERS - 1)
    after = _crm_rows(scored)
    assert after[0][1] == pytest.approx(0.999) and after[0][7] != before[0][7]
    assert after[1:] == before[1:]


def test_an_older_partition_never_overwrites_a_newer_score(scored: FabricConfig) -> None:
    _publish(scored, Window(END, END), "run-newest")
    newest = _crm_rows(scored)
    backfill = _publish(scored, Window(WINDOW.start, WINDOW.start), "run-backfill")
    assert backfill.plan.older == CUSTOMERS and backfill.plan.changed == 0
    assert _crm_rows(scored) == newest


def test_closed_gate_publishes_nothing_for_that_day(scored: FabricConfig) -> None:
    def gate(_con: duckdb.DuckDBPyConnection, day: date) -> None:
        if day == END:
            raise QualityGateClosed(f"quality gate closed for partition {day}")

    result = _publish(scored, WINDOW, "run-gated", gate)
    assert set(result.blocked) == {END} and result.open_days == [WINDOW.start, END - timedelta(days=1)]
    assert {r[5] for r in _crm_rows(scored)} == {(END - timedelta(days=1)).isoformat()}
    assert _query(scored, "SELECT status, message FROM meta.runs WHERE run_id = 'run-gated'") == [
        ("warning", f"not published: {END}")
    ]


def test_target_down_keeps_the_outbox_and_the_next_run_delivers(scored: FabricConfig) -> None:
    crm = _crm_path(scored)
    hidden = crm.with_suffix(".away")
    crm.rename(hidden)
    waits: list[float] = []
    with pytest.raises(
        PublishError, match=rf"publishers\.crm .*after 4 attempt.*CRM database not found.*{CUSTOMERS} record"
    ):
        _publish(scored, WINDOW, "run-down", sleep=waits.append)
    assert waits == [0.5, 1.0, 2.0]  # exponential backoff between the 4 attempts
    assert not crm.exists()
    assert _query(
        scored, "SELECT count(*), max(attempts), min(last_error) IS NOT NULL FROM publish.outbox"
    ) == [(CUSTOMERS, 4, True)]
    assert _query(scored, "SELECT status, count(*) FROM publish.sync_log GROUP BY 1") == [
        ("failed", CUSTOMERS)
    ]
    assert _query(scored, "SELECT status FROM meta.runs WHERE run_id = 'run-down'") == [("failed",)]

    hidden.rename(crm)
    again = _publish(scored, WINDOW, "run-up")
    assert again.delivery.created == CUSTOMERS and again.pending == 0
    assert len(_crm_rows(scored)) == CUSTOMERS


def test_plan_is_a_dry_run(scored: FabricConfig) -> None:
    warehouse = Warehouse(scored.resolve(scored.warehouse.path))
    dry = plan(scored, warehouse, "crm", WINDOW, _open)
    assert (dry.plan.creates, dry.plan.updates, dry.plan.deletes) == (CUSTOMERS, 0, 0)
    assert not _crm_path(scored).with_name("x").exists()
    assert _query(scored, "SELECT count(*) FROM publish.outbox") == [(0,)]
    with sqlite3.connect(_crm_path(scored)) as con:
        assert con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'crm_scores'").fetchone() == (0,)


def test_deletes_are_opt_in_and_scoped_to_open_days_of_the_window(scored: FabricConfig) -> None:
    _publish(scored, Window(END, END), "run-1")
    warehouse = Warehouse(scored.resolve(scored.warehouse.path))
    gone = _crm_rows(scored)[0][0]
    with warehouse.connect() as con:
        con.execute("DELETE FROM scores.churn_scores_rows WHERE crm_customer_id = ?", [gone])
    assert _publish(scored, Window(END, END), "run-2").plan.deletes == 0  # not opted in
    assert len(_crm_rows(scored)) == CUSTOMERS

    publisher = scored.publishers["crm"]
    opted = scored.model_copy(update={"publishers": {"crm": publisher.model_copy(update={"deletes": True})}})
    # a window not holding the record's day deletes nothing
    assert _publish(opted, Window(WINDOW.start, WINDOW.start), "run-3").plan.deletes == 0
    result = _publish(opted, Window(END, END), "run-4")
    assert (result.plan.deletes, result.delivery.deleted) == (1, 1)
    assert gone not in {r[0] for r in _crm_rows(scored)}
    assert _query(scored, "SELECT count(*) FROM publish.published WHERE entity_key = ?", [str(gone)]) == [
        (0,)
    ]


def test_unknown_publisher_is_a_config_error(scored: FabricConfig) -> None:
    with pytest.raises(ConfigError, match=r"publishers\.nope is not defined"):
        publish(scored, Warehouse(scored.resolve(scored.warehouse.path)), "nope", WINDOW, "run-x", _open)


def test_cli_honours_the_gate_plan_writes_nothing_and_replay_reports(scored: FabricConfig) -> None:
    from typer.testing import CliRunner

    from fabric.publish.cli import app
    from tests.conftest import REPO

    runner = CliRunner()
    config = ["--config", str(REPO / "fabric.yaml")]
    # No validation results are recorded here, so the quality gate is closed for every day.
    planned = runner.invoke(app, ["plan", "--from", str(END), "--target", "crm", *config], terminal_width=200)
    assert planned.exit_code == 0, planned.output
    assert "crm" in planned.output and str(END) in planned.output  # the blocked day is listed
    ran = runner.invoke(app, ["run", "--from", str(END), "--target", "crm", *config], terminal_width=200)
    assert ran.exit_code == 0, ran.output
    assert "crm: 0 created" in ran.output and f"not published {END}: quality gate closed" in ran.output
    assert not _query(scored, "SELECT * FROM publish.outbox")
    replayed = runner.invoke(app, ["replay", "--target", "crm", *config])
    assert replayed.exit_code == 0 and "crm: 0 dead letter(s) replayed" in replayed.output
    unknown = runner.invoke(app, ["plan", "--from", str(END), "--target", "nope", *config])
    assert unknown.exit_code != 0 and "not in fabric.yaml publishers: nope" in unknown.output


def test_batches_are_pipelined_and_every_record_is_delivered_once(scored: FabricConfig) -> None:
    # 400 records in batches of 150: each batch is recorded while the next one is sent
    publisher = scored.publishers["crm"].model_copy(update={"batch_size": 150})
    config = scored.model_copy(update={"publishers": {"crm": publisher}})
    result = _publish(config, Window(END, END), "run-small")
    assert (result.delivery.created, result.delivery.batches, result.pending) == (CUSTOMERS, 3, 0)
    assert _query(
        scored, "SELECT status, count(*), count(DISTINCT entity_key) FROM publish.sync_log GROUP BY 1"
    ) == [("created", CUSTOMERS, CUSTOMERS)]
    assert len(_crm_rows(scored)) == CUSTOMERS
    # the lineage id travelling with each record is the one its score row carries
    assert _query(
        scored,
        "SELECT count(*), count(*) FILTER (WHERE p.lineage_id = s.lineage_id) FROM publish.published p "
        'JOIN scores.churn_scores s ON s.partition_date = p."partition" '
        "AND s.crm_customer_id::VARCHAR = p.entity_key AND s.variant <> 'shadow'",
    ) == [(CUSTOMERS, CUSTOMERS)]


def test_batches_are_whole_duckdb_row_groups() -> None:
    assert [batch_rows(n) for n in (150, 100_000, 122_880, 250_000, 3 * 122_880 + 5)] == [
        150, 100_000, 122_880, 245_760, 3 * 122_880,
    ]  # fmt: skip


def test_an_outbox_of_the_json_layout_is_converted_and_delivered(scored: FabricConfig) -> None:
    """A record left pending by the earlier layout (payload as JSON text, no `seq`) keeps its
    message id and attempts, and is delivered by the next run."""
    warehouse = Warehouse(scored.resolve(scored.warehouse.path))
    with warehouse.connect() as con:
        con.execute(
            """CREATE TABLE publish.outbox (
                target VARCHAR, entity_key VARCHAR, message_id VARCHAR, operation VARCHAR,
                "partition" DATE, payload VARCHAR, lineage_id VARCHAR, run_id VARCHAR,
                enqueued_at TIMESTAMP, attempts INTEGER, last_error VARCHAR, content_hash UBIGINT)"""
        )
        con.execute(
            f"""INSERT INTO publish.outbox
                SELECT 'crm', crm_customer_id::VARCHAR,
                       md5('crm|' || crm_customer_id::VARCHAR || '|' || payload), 'create',
                       partition_date, payload, lineage_id, 'run-old', TIMESTAMP '2026-03-31 04:00', 2,
                       'CRM database not found', NULL
                FROM (SELECT *, {as_json()} AS payload FROM scores.churn_scores
                      WHERE partition_date = ? AND variant <> 'shadow' ORDER BY crm_customer_id LIMIT 1)""",
            [END],
        )
        (crm_id, message_id) = con.execute("SELECT entity_key, message_id FROM publish.outbox").fetchone()  # type: ignore[misc]
    result = _publish(scored, Window(END, END), "run-new")
    assert (result.delivery.created, result.pending) == (CUSTOMERS, 0)
    assert {r[0]: r[7] for r in _crm_rows(scored)}[int(crm_id)] == message_id
    assert _query(
        scored, "SELECT attempts, enqueued_at FROM publish.sync_log WHERE entity_key = ?", [crm_id]
    ) == [(3, datetime(2026, 3, 31, 4))]  # two failed attempts before, one now
    columns = _query(
        scored,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'publish' AND table_name = 'outbox'",
    )
    assert ("seq",) in columns and ("payload",) not in columns
