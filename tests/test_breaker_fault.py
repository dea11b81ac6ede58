"""Fault test with a real server process: `fabric serve` is SIGKILLed while a scoring run sends it
batches. The breaker opens, the remaining rows are rule-scored, the run succeeds with counts by
scorer in its metadata; after a restart the next run's probe closes the breaker and the model
scores again."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from model_server import CUSTOMERS, END, FabricServer, home_config

from fabric.config import BreakerConfig, FabricConfig, RemoteScoringConfig
from fabric.partitions import Window
from fabric.scoring.score import score_window
from fabric.warehouse import Warehouse

WINDOW = Window(END - timedelta(days=2), END)
REQUEST_ROWS = 50
KILL_AFTER_REQUESTS = CUSTOMERS // REQUEST_ROWS  # one day's worth: the first day is model-scored
COOLDOWN_SECONDS = 4.0

pytestmark = pytest.mark.timeout(600)


def _open_gate(_con: duckdb.DuckDBPyConnection, _day: date) -> None:
    return None  # the synthetic estate has no validation results; the gate is tested elsewhere


def _kill_after(
    server: FabricServer, requests: int, log_file: Path, done: threading.Event
) -> threading.Thread:
    """SIGKILL `server` once its access log shows `requests` inference calls."""

    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not done.is_set():
            text = log_file.read_text(errors="replace") if log_file.is_file() else ""
            if text.count("/infer HTTP/1.1") >= requests:
                server.kill()
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _scorer_counts(config: FabricConfig, run_id: str) -> dict[str, int]:
    with duckdb.connect(str(config.resolve(config.warehouse.path)), read_only=True) as con:
        rows = con.execute(
            "SELECT scorer, count(*) FROM scores.churn_scores WHERE run_id = ? GROUP BY 1", [run_id]
        ).fetchall()
    return dict(rows)


def test_server_killed_mid_run_falls_back_to_rules_then_recovers(trained_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(trained_home, home)
    log_file = tmp_path / "serve.log"
    server = FabricServer(home, log_file=log_file).start()
    base = home_config(home)
    remote = RemoteScoringConfig(
        url=server.url,
        batch_rows=REQUEST_ROWS,
        timeout_seconds=2,
        retries=1,
        backoff_seconds=0.05,
        breaker=BreakerConfig(failure_threshold=1, cooldown_seconds=COOLDOWN_SECONDS),
    )
    config = base.model_copy(update={"scoring": base.scoring.model_copy(update={"remote": remote})})
    warehouse = Warehouse(config.resolve(config.warehouse.path))

    done = threading.Event()
    killer = _kill_after(server, KILL_AFTER_REQUESTS, log_file, done)
    try:
        first = score_window(config, warehouse, WINDOW, "run-killed", _open_gate)
    finally:
        done.set()
        killer.join(timeout=10)
        server.kill()
    assert server.process is not None and server.process.returncode == -9  # it was SIGKILLed
    opened_at = time.monotonic()

    total = CUSTOMERS * len(WINDOW)
    assert first.rows == total
    by_scorer = first.metadata()["rows_by_scorer"]
    assert by_scorer["model"] >= CUSTOMERS and by_scorer["rules"] >= CUSTOMERS
    assert by_scorer["model"] + by_scorer["rules"] == total
    assert _scorer_counts(config, "run-killed") == by_scorer
    assert first.unavailable_batches >= 2
    report = first.metadata()["backends"]["champion"]
    assert report["backend"] == "remote" and report["rejected_batches"] >= 1  # no call while open
    transitions = [(t["from_state"], t["to_state"]) for t in report["breaker"]["transitions"]]
    assert transitions[0] == ("closed", "open")
    assert report["breaker"]["state"] == "open"

    restarted = FabricServer(home, port=server.port, log_file=tmp_path / "serve-again.log").start()
    try:
        time.sleep(max(0.0, COOLDOWN_SECONDS - (time.monotonic() - opened_at)) + 0.5)
        second = score_window(config, warehouse, WINDOW, "run-recovered", _open_gate)
    finally:
        restarted.stop()
    assert second.metadata()["rows_by_scorer"] == {"model": total}
    assert _scorer_counts(config, "run-recovered") == {"model": total}
    report = second.metadata()["backends"]["champion"]
    assert [(t["from_state"], t["to_state"]) for t in report["breaker"]["transitions"]] == [
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert report["breaker"]["state"] == "closed" and report["failed_batches"] == 0
