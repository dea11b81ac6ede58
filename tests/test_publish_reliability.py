"""Exactly-once effect under crashes, against the real PostgreSQL and RabbitMQ servers.

A worker process imports Fabric once and forks one publishing process per run. For each trial
the test gives every customer a new score (new content, new message ids), starts a publish, and
SIGKILLs the publishing process at a seeded random moment within the publish time measured in
a calibration run; then it publishes again to completion. Afterwards the CRM table holds exactly
the expected row per customer, and a consumer de-duplicating by message id has received every
expected record, none missing. A server that is down fails the publish after its retries, the
outbox keeps everything and the next run delivers it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import IO, Any

import duckdb
import pytest
import yaml
from pydantic import TypeAdapter

from fabric.config import FabricConfig, Publisher, load_config
from fabric.errors import PublishError
from fabric.partitions import Window
from fabric.publish import publish
from fabric.scoring.score import score_window
from fabric.scoring.synthetic import write_synthetic_estate
from fabric.warehouse import Warehouse
from tests.conftest import REPO
from tests.servers import Database, Endpoint, nats_server, postgres_database, rabbitmq_server  # noqa: F401

DAY = date(2026, 3, 31)
CUSTOMERS = 600
BATCH = 200  # several batches per publish, so kills land between confirmed batches too
TRIALS = 20
SEED = 20261126

# Imports Fabric once, then per line `<target> <run id>` on stdin forks a child that publishes
# DAY to that target; prints the child's pid, then its wait status and wall time (JSON).
_WORKER = """
import json, os, sys, time, traceback
from datetime import date
from fabric.config import load_config
from fabric.partitions import Window
from fabric.publish import publish
from fabric.warehouse import Warehouse
config = load_config(sys.argv[1])
day = date.fromisoformat(sys.argv[2])
warehouse = Warehouse(config.resolve(config.warehouse.path))
print("ready", flush=True)
for line in sys.stdin:
    target, run_id = line.split()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            publish(config, warehouse, target, Window(day, day), run_id, gate=lambda con, d: None)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        os._exit(code)
    print(pid, flush=True)
    started = time.perf_counter()
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": status, "seconds": time.perf_counter() - started}), flush=True)
"""


class Worker:
    """The forking publisher (see `_WORKER`)."""

    def __init__(self, config_file: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(config_file), DAY.isoformat()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )  # fmt: skip
        assert self._line() == "ready"

    def _line(self) -> str:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        line = stdout.readline()
        assert line, f"the worker died (exit {self.process.poll()})"
        return line.strip()

    def start(self, target: str, run_id: str) -> int:
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        stdin.write(f"{target} {run_id}\n")
        stdin.flush()
        return int(self._line())

    def wait(self) -> dict[str, Any]:
        return json.loads(self._line())

    def run(self, target: str, run_id: str) -> float:
        """One publish to completion; its wall time."""
        self.start(target, run_id)
        done = self.wait()
        assert done["status"] == 0, f"publish {run_id} failed (status {done['status']}; see stderr)"
        return float(done["seconds"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def _config_file(fabric_home: Path, publishers: dict[str, Any]) -> Path:
    data = yaml.safe_load((REPO / "fabric.yaml").read_text())
    data["publishers"] = publishers
    path = fabric_home / "fabric.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _warehouse(config: FabricConfig) -> Warehouse:
    return Warehouse(config.resolve(config.warehouse.path))


def _rescore(config: FabricConfig, trial: int) -> None:
    """New content for every customer (new message ids), deterministic per trial."""
    with _warehouse(config).connect() as con:
        con.execute(
            "UPDATE scores.churn_scores_rows "
            "SET score = round(((crm_customer_id * 7919 + ?) % 10007) / 10007.0, 6)",
            [trial * 104729],
        )


def _expected(config: FabricConfig, target: str) -> dict[int, tuple[float, str]]:
    """crm id -> (score, message id) that the target must hold after a complete publish."""
    with duckdb.connect(str(config.resolve(config.warehouse.path)), read_only=True) as con:
        rows = con.execute(
            "SELECT crm_customer_id, score, entity_key, message_id FROM scores.churn_scores s "
            "JOIN publish.published p ON p.target = ? AND p.entity_key = s.crm_customer_id::VARCHAR "
            "WHERE s.partition_date = ?",
            [target, DAY],
        ).fetchall()
        pending = con.execute("SELECT count(*) FROM publish.outbox").fetchone()
    assert pending == (0,)
    return {crm_id: (score, message_id) for crm_id, score, _, message_id in rows}


@pytest.fixture
def scored(config: FabricConfig) -> FabricConfig:
    write_synthetic_estate(_warehouse(config), CUSTOMERS, DAY, DAY, seed=11)
    score_window(config, _warehouse(config), Window(DAY, DAY), "run-score", lambda con, d: None)
    return config


@pytest.fixture
def worker_factory() -> Iterator[Any]:
    started: list[Worker] = []

    def make(config_file: Path) -> Worker:
        started.append(Worker(config_file))
        return started[-1]

    yield make
    for worker in started:
        worker.close()


def _kill_trials(
    config: FabricConfig, worker: Worker, target: str, check: Any, rng: random.Random
) -> list[str]:
    """Calibrate, then TRIALS kill-and-rerun trials; `check(trial)` verifies each. Returns how
    each trial's kill landed ('killed' or 'finished before the kill')."""
    _rescore(config, 0)
    measured = worker.run(target, "calibrate")
    check(0)
    outcomes = []
    for trial in range(1, TRIALS + 1):
        _rescore(config, trial)
        pid = worker.start(target, f"trial-{trial}-killed")
        time.sleep(rng.uniform(0, measured))
        with contextlib.suppress(ProcessLookupError):  # it finished first
            os.kill(pid, signal.SIGKILL)
        status = worker.wait()["status"]
        outcomes.append("killed" if os.WIFSIGNALED(status) else "finished before the kill")
        worker.run(target, f"trial-{trial}-rerun")
        check(trial)
    return outcomes


def test_sigkill_during_postgres_publish_converges(
    scored: FabricConfig,
    fabric_home: Path,
    postgres_database: Database,  # noqa: F811
    worker_factory: Any,
) -> None:
    table = f"crm_scores_{uuid.uuid4().hex[:8]}"
    server = postgres_database.server
    config_file = _config_file(fabric_home, {"crm_pg": {
        "kind": "postgres", "host": server.host, "port": server.port, "user": server.user,
        "database": postgres_database.name, "table": table, "batch_size": BATCH,
    }})  # fmt: skip
    config = load_config(config_file)
    worker = worker_factory(config_file)

    def check(trial: int) -> None:
        expected = _expected(config, "crm_pg")
        rows = postgres_database.query(f"SELECT crm_id, churn_score, message_id FROM {table}")
        assert len(rows) == CUSTOMERS == len(expected), f"trial {trial}"
        assert {r[0]: (r[1], r[2]) for r in rows} == expected, f"trial {trial}"

    outcomes = _kill_trials(config, worker, "crm_pg", check, random.Random(SEED))
    assert outcomes.count("killed") >= TRIALS // 2, outcomes  # the kills did land mid-publish


def test_sigkill_during_rabbitmq_publish_loses_nothing(
    scored: FabricConfig,
    fabric_home: Path,
    rabbitmq_server: Endpoint,  # noqa: F811
    worker_factory: Any,
) -> None:
    import pika

    suffix = uuid.uuid4().hex[:8]
    queue = f"fabric_test_{suffix}"
    config_file = _config_file(fabric_home, {"bus": {
        "kind": "rabbitmq", "host": rabbitmq_server.host, "port": rabbitmq_server.port,
        "exchange": f"fabric.test.{suffix}", "routing_key": "scores", "queue": queue,
        "dead_letter_exchange": f"fabric.test.{suffix}.dlx", "batch_size": BATCH,
    }})  # fmt: skip
    config = load_config(config_file)
    worker = worker_factory(config_file)
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(rabbitmq_server.host, rabbitmq_server.port)
    )
    channel = connection.channel()
    received: set[str] = set()
    duplicates = 0

    def check(trial: int) -> None:
        nonlocal duplicates
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            event = json.loads(body)
            assert event["id"] == properties.message_id
            if event["id"] in received:
                duplicates += 1
            received.add(event["id"])
        expected = {message_id for _, message_id in _expected(config, "bus").values()}
        assert len(expected) == CUSTOMERS
        missing = expected - received
        assert not missing, f"trial {trial}: {len(missing)} record(s) never received"

    try:
        outcomes = _kill_trials(config, worker, "bus", check, random.Random(SEED + 1))
    finally:
        channel.queue_delete(queue)
        connection.close()
    assert outcomes.count("killed") >= TRIALS // 2, outcomes
    # at-least-once: re-sends after a kill arrive twice and are dropped by the consumer's de-dup
    assert duplicates > 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("broker", ["rabbitmq", "nats"])
def test_broker_down_fails_clearly_keeps_the_outbox_and_delivers_next_run(
    scored: FabricConfig, broker: str, request: pytest.FixtureRequest
) -> None:
    server: Endpoint = request.getfixturevalue(f"{broker}_server")
    suffix = uuid.uuid4().hex[:8]
    retry = {"attempts": 3, "initial_seconds": 0.05}
    declared: dict[str, Any] = {
        "kind": "rabbitmq", "host": server.host, "exchange": f"fabric.test.{suffix}",
        "routing_key": "scores", "queue": f"fabric_test_{suffix}",
        "dead_letter_exchange": f"fabric.test.{suffix}.dlx", "retry": retry,
    }  # fmt: skip
    if broker == "nats":
        declared = {
            "kind": "nats", "stream": f"FABRIC_TEST_{suffix}", "subject": f"fabric.test.{suffix}",
            "retry": retry, "timeout_seconds": 5,
        }  # fmt: skip

    def with_port(port: int) -> FabricConfig:
        address = {"port": port} if broker == "rabbitmq" else {"servers": [f"nats://{server.host}:{port}"]}
        publisher = TypeAdapter(Publisher).validate_python({**declared, **address})
        return scored.model_copy(update={"publishers": {"bus": publisher}})

    started = time.monotonic()
    with pytest.raises(
        PublishError, match=r"publishers\.bus .*after 3 attempt.*600 record\(s\) stay in publish\.outbox"
    ):
        publish(
            with_port(_closed_port()),
            _warehouse(scored),
            "bus",
            Window(DAY, DAY),
            "run-down",
            lambda c, d: None,
        )
    # Fails after its retries, not after waiting on the server (nats-py retried forever once).
    assert time.monotonic() - started < 60
    with duckdb.connect(str(scored.resolve(scored.warehouse.path)), read_only=True) as con:
        assert con.execute("SELECT count(*), min(attempts) FROM publish.outbox").fetchone() == (CUSTOMERS, 3)
    result = publish(
        with_port(server.port),
        _warehouse(scored),
        "bus",
        Window(DAY, DAY),
        "run-up",
        lambda c, d: None,
    )
    assert result.delivery.created == CUSTOMERS and result.pending == 0
    assert _delivered_and_removed(broker, server, declared) == CUSTOMERS


def _delivered_and_removed(broker: str, server: Endpoint, declared: dict[str, Any]) -> int:
    """Messages waiting in the test's queue (RabbitMQ) or stream (NATS), which is then deleted."""
    if broker == "rabbitmq":
        import pika

        connection = pika.BlockingConnection(pika.ConnectionParameters(server.host, server.port))
        try:
            channel = connection.channel()
            count = int(channel.queue_declare(declared["queue"], passive=True).method.message_count)
            channel.queue_delete(declared["queue"])
            return count
        finally:
            connection.close()
    import asyncio

    import nats

    async def stored() -> int:
        nc = await nats.connect(f"nats://{server.host}:{server.port}")
        try:
            js = nc.jetstream()
            info = await js.stream_info(declared["stream"])
            await js.delete_stream(declared["stream"])
            return int(info.state.messages)
        finally:
            await nc.close()

    return asyncio.run(stored())
