"""Every server target against the real servers of this machine: PostgreSQL, MariaDB, RabbitMQ,
NATS JetStream, Redis Streams, and a webhook served by a real local HTTP server. Broker messages
are CloudEvents validated against ../shared/specs/cloudevents/cloudevents.json."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import jsonschema
import pytest
import yaml
from pydantic import TypeAdapter

from fabric.config import FabricConfig, Publisher, parse_config
from fabric.errors import ConfigError, PublishError
from fabric.partitions import Window
from fabric.publish import PublishResult, publish, replay
from fabric.scoring.score import score_window
from fabric.scoring.synthetic import write_synthetic_estate
from fabric.warehouse import Warehouse
from tests.conftest import REPO, SHARED
from tests.servers import (  # noqa: F401  # noqa: F401
    Database,
    Endpoint,
    mysql_database,
    nats_server,
    postgres_database,
    private_nats_server,
    rabbitmq_server,
    redis_server,
)

DAY = date(2026, 3, 31)
WINDOW = Window(DAY, DAY)
CUSTOMERS = 60
SECRET = "webhook-test-secret"


def _open(_con: duckdb.DuckDBPyConnection, _day: date) -> None:
    return None


@pytest.fixture(scope="module")
def cloudevents_schema() -> dict[str, Any]:
    path = SHARED / "specs" / "cloudevents" / "cloudevents.json"
    if not path.is_file():
        pytest.skip(f"{path} missing (../shared not laid out)")
    return json.loads(path.read_text())


@pytest.fixture
def scored(config: FabricConfig) -> FabricConfig:
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    write_synthetic_estate(warehouse, CUSTOMERS, DAY, DAY, seed=3)
    score_window(config, warehouse, WINDOW, "run-score", _open)
    return config


def _with(config: FabricConfig, name: str, declared: dict[str, Any]) -> FabricConfig:
    publisher = TypeAdapter(Publisher).validate_python(declared)
    return config.model_copy(update={"publishers": {name: publisher}})


def _publish(config: FabricConfig, name: str, run_id: str, **options: Any) -> PublishResult:
    options.setdefault("sleep", lambda _seconds: None)
    return publish(
        config, Warehouse(config.resolve(config.warehouse.path)), name, WINDOW, run_id, _open, **options
    )


def _query(config: FabricConfig, sql: str) -> list[tuple]:
    with duckdb.connect(str(config.resolve(config.warehouse.path)), read_only=True) as con:
        return con.execute(sql).fetchall()


def _scores(config: FabricConfig) -> dict[int, float]:
    rows = _query(
        config, f"SELECT crm_customer_id, score FROM scores.churn_scores WHERE partition_date = '{DAY}'"
    )
    return dict(rows)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _aware(stamp: datetime) -> datetime:
    """A timestamp read back from a target (MariaDB's have no zone: they are UTC)."""
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _db_target(database: Database, table: str, **extra: Any) -> dict[str, Any]:
    server = database.server
    return {
        "kind": database.engine, "host": server.host, "port": server.port, "user": server.user,
        "database": database.name, "table": table, **extra,
    }  # fmt: skip


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_database_upsert_is_idempotent_and_newest_wins(
    scored: FabricConfig, engine: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    database: Database = request.getfixturevalue(f"{engine}_database")
    table = f"crm_scores_{uuid.uuid4().hex[:8]}"
    config = _with(scored, "crm_db", _db_target(database, table, batch_size=25))
    caplog.set_level(logging.INFO, "fabric.publish.targets")
    before_first = datetime.now(UTC)
    first = _publish(config, "crm_db", "run-1")
    assert (first.delivery.created, first.delivery.batches) == (CUSTOMERS, 3)
    # PostgreSQL: batches of new keys only went by the binary COPY (no fallback logged)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("fabric.publish.targets")] == []
    [(earliest, latest)] = database.query(f"SELECT min(published_at), max(published_at) FROM {table}")
    assert before_first - timedelta(seconds=1) <= _aware(earliest) <= _aware(latest) <= datetime.now(UTC)
    rows = database.query(
        f"SELECT crm_id, churn_score, scored_for, message_id, lineage_id FROM {table} ORDER BY crm_id"
    )
    expected = _scores(config)
    assert {r[0]: r[1] for r in rows} == pytest.approx(expected)
    assert {str(r[2]) for r in rows} == {DAY.isoformat()}
    published = dict(_query(config, "SELECT entity_key::BIGINT, message_id FROM publish.published"))
    assert {r[0]: r[3] for r in rows} == published

    # a full resync re-sends the same ids: the table is unchanged (published_at included)
    before = database.query(f"SELECT * FROM {table} ORDER BY crm_id")
    again = _publish(config, "crm_db", "run-2", full_resync=True)
    assert again.delivery.updated == CUSTOMERS
    assert database.query(f"SELECT * FROM {table} ORDER BY crm_id") == before

    # a row already holding a newer day is not overwritten by an older one
    crm_id = rows[0][0]
    database.execute(
        f"UPDATE {table} SET scored_for = '2026-04-05', churn_score = 0.5 WHERE crm_id = {crm_id}"
    )
    with Warehouse(config.resolve(config.warehouse.path)).connect() as con:
        con.execute("UPDATE scores.churn_scores_rows SET score = 0.01 WHERE crm_customer_id = ?", [crm_id])
    assert _publish(config, "crm_db", "run-3").delivery.updated == 1
    assert database.query(f"SELECT churn_score FROM {table} WHERE crm_id = {crm_id}") == [(0.5,)]

    # opt-in deletes: a customer without a score any more is removed (the row of the deleted day)
    gone = rows[1][0]
    with Warehouse(config.resolve(config.warehouse.path)).connect() as con:
        con.execute("DELETE FROM scores.churn_scores_rows WHERE crm_customer_id = ?", [gone])
    deleting = _with(scored, "crm_db", _db_target(database, table, batch_size=25, deletes=True))
    assert _publish(deleting, "crm_db", "run-4").delivery.deleted == 1
    assert database.query(f"SELECT count(*) FROM {table} WHERE crm_id = {gone}") == [(0,)]
    assert database.query(f"SELECT count(*) FROM {table}") == [(CUSTOMERS - 1,)]


def test_postgres_new_keys_already_in_the_table_fall_back_to_the_upsert(
    scored: FabricConfig,
    postgres_database: Database,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """New keys are copied straight into the table; when one is there after all (written by
    someone else, or by a batch whose confirmation was lost), its batch takes the upsert path
    and the newest day still wins."""
    table = f"crm_scores_{uuid.uuid4().hex[:8]}"
    config = _with(scored, "crm_db", _db_target(postgres_database, table, batch_size=25))
    expected = _scores(config)
    older, newer = sorted(expected)[:2]  # both in the first batch
    postgres_database.execute(
        f"CREATE TABLE {table} (crm_id BIGINT PRIMARY KEY, churn_score DOUBLE PRECISION, "
        "churn_decision BOOLEAN, model_name TEXT, model_version INTEGER, scored_for DATE, "
        "lineage_id TEXT, message_id TEXT, published_at TIMESTAMPTZ)"
    )
    postgres_database.execute(
        f"INSERT INTO {table} (crm_id, churn_score, scored_for) VALUES "
        f"({older}, 0.25, '2026-03-01'), ({newer}, 0.75, '2026-04-30')"
    )
    caplog.set_level(logging.INFO, "fabric.publish.targets")
    result = _publish(config, "crm_db", "run-1")
    assert (result.delivery.created, result.delivery.batches, result.pending) == (CUSTOMERS, 3, 0)
    # the first batch's binary COPY met the existing keys and rolled back; the others went through
    fallbacks = [r.getMessage() for r in caplog.records if r.name.startswith("fabric.publish.targets")]
    assert len(fallbacks) == 1 and "already in the table; upserting it" in fallbacks[0]
    rows = dict(postgres_database.query(f"SELECT crm_id, churn_score FROM {table}"))
    assert rows == pytest.approx({**expected, newer: 0.75})
    published = dict(_query(config, "SELECT entity_key::BIGINT, message_id FROM publish.published"))
    ids = dict(postgres_database.query(f"SELECT crm_id, message_id FROM {table} WHERE crm_id <> {newer}"))
    assert ids == {k: v for k, v in published.items() if k != newer}


def test_database_down_fails_after_retries_then_delivers(
    scored: FabricConfig,
    postgres_database: Database,  # noqa: F811
) -> None:
    table = f"crm_scores_{uuid.uuid4().hex[:8]}"
    declared = _db_target(postgres_database, table)
    down = _with(scored, "crm_db", {**declared, "port": _closed_port(), "retry": {"attempts": 3}})
    waits: list[float] = []
    with pytest.raises(PublishError, match=r"publishers\.crm_db .*after 3 attempt.*60 record"):
        _publish(down, "crm_db", "run-down", sleep=waits.append)
    assert waits == [0.5, 1.0]
    assert _query(scored, "SELECT count(*) FROM publish.outbox") == [(CUSTOMERS,)]
    up = _publish(_with(scored, "crm_db", declared), "crm_db", "run-up")
    assert up.delivery.created == CUSTOMERS and up.pending == 0
    assert postgres_database.query(f"SELECT count(*) FROM {table}") == [(CUSTOMERS,)]


def test_postgres_by_dsn_copies_new_keys_and_never_shows_the_password(
    scored: FabricConfig,
    postgres_database: Database,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A DSN from the environment reaches both write paths (the binary COPY of new keys and
    psycopg); its password shows in no log line and no error, also when the server is down."""
    server, secret = postgres_database.server, "s3cret-dsn-pw"
    table = f"crm_scores_{uuid.uuid4().hex[:8]}"
    dsn = f"postgresql://{server.user}:{secret}@{server.host}:{server.port}/{postgres_database.name}"
    monkeypatch.setenv("CRM_DSN", dsn)
    declared = {"kind": "postgres", "dsn_env": "CRM_DSN", "table": table, "batch_size": 25}
    caplog.set_level(logging.INFO, "fabric")
    first = _publish(_with(scored, "crm_db", declared), "crm_db", "run-1")
    assert (first.delivery.created, first.pending) == (CUSTOMERS, 0)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("fabric.publish.targets")] == []
    assert postgres_database.query(f"SELECT count(*) FROM {table}") == [(CUSTOMERS,)]

    # another target (all its records new) whose server is down
    monkeypatch.setenv("CRM_DSN", dsn.replace(f":{server.port}/", f":{_closed_port()}/"))
    with pytest.raises(PublishError, match="after 2 attempt") as failed:
        _publish(_with(scored, "crm_down", {**declared, "retry": {"attempts": 2}}), "crm_down", "run-2")
    assert secret not in str(failed.value)
    assert "binary COPY unavailable" in caplog.text  # the DuckDB path was tried, and said why
    assert secret not in caplog.text


def _consume_rabbitmq(endpoint: Endpoint, queue: str) -> list[Any]:
    import pika

    params = pika.ConnectionParameters(host=endpoint.host, port=endpoint.port)
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        messages = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return messages
            messages.append((properties.message_id, json.loads(body)))
    finally:
        connection.close()


def test_rabbitmq_cloudevents_confirms_and_dead_letters(
    scored: FabricConfig,
    rabbitmq_server: Endpoint,  # noqa: F811
    cloudevents_schema: dict[str, Any],
) -> None:
    suffix = uuid.uuid4().hex[:8]
    declared = {
        "kind": "rabbitmq", "host": rabbitmq_server.host, "port": rabbitmq_server.port,
        "exchange": f"fabric.test.{suffix}", "routing_key": "scores", "queue": f"fabric_test_{suffix}",
        "dead_letter_exchange": f"fabric.test.{suffix}.dlx",
    }  # fmt: skip
    config = _with(scored, "bus", declared)
    result = _publish(config, "bus", "run-1")
    assert result.delivery.created == CUSTOMERS
    messages = _consume_rabbitmq(rabbitmq_server, declared["queue"])
    assert len(messages) == CUSTOMERS
    for message_id, event in messages:
        jsonschema.validate(event, cloudevents_schema)
        assert event["id"] == message_id and len(message_id) == 32 and event["specversion"] == "1.0"
    assert {e["data"]["crm_customer_id"]: e["data"]["score"] for _, e in messages} == pytest.approx(
        _scores(config)
    )
    lineage = dict(_query(config, "SELECT message_id, lineage_id FROM publish.published"))
    assert {m: e["lineageid"] for m, e in messages} == lineage
    refs = _query(config, "SELECT count(*) FROM publish.published WHERE target_ref = message_id")
    assert refs == [(CUSTOMERS,)]

    # a routing key no queue is bound for: the broker returns the messages -> dead letter table
    unroutable = _with(scored, "bus", {**declared, "routing_key": "nobody.listens", "queue": None})
    dead = _publish(unroutable, "bus", "run-2", full_resync=True)
    assert dead.delivery.dead_lettered == CUSTOMERS
    assert _query(config, "SELECT count(*), min(error) LIKE '%unroutable%' FROM publish.dead_letter") == [
        (CUSTOMERS, True)
    ]
    # replay to the routable key: delivered again with the same ids, the outbox is empty
    moved, delivery = replay(config, Warehouse(config.resolve(config.warehouse.path)), "bus", "run-replay")
    assert moved == CUSTOMERS and delivery.updated == CUSTOMERS
    again = _consume_rabbitmq(rabbitmq_server, declared["queue"])
    assert sorted(m for m, _ in again) == sorted(m for m, _ in messages)


def test_nats_jetstream_drops_a_resend_by_msg_id(
    scored: FabricConfig,
    nats_server: Endpoint,  # noqa: F811
    cloudevents_schema: dict[str, Any],
) -> None:
    import nats

    stream = f"FABRIC_TEST_{uuid.uuid4().hex[:8].upper()}"
    declared = {
        "kind": "nats", "servers": [f"nats://{nats_server.host}:{nats_server.port}"],
        "stream": stream, "subject": f"fabric.test.{stream.lower()}",
    }  # fmt: skip
    config = _with(scored, "events", declared)
    _publish(config, "events", "run-1")
    _publish(config, "events", "run-2", full_resync=True)  # same ids again

    async def read() -> tuple[int, list[Any]]:
        nc = await nats.connect(declared["servers"])
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            events = []
            for seq in range(1, info.state.messages + 1):
                message = await js.get_msg(stream, seq)
                assert message.headers is not None
                events.append((message.headers["Nats-Msg-Id"], json.loads(message.data)))
            await js.delete_stream(stream)
            return info.state.messages, events
        finally:
            await nc.close()

    count, events = asyncio.run(read())
    assert count == CUSTOMERS
    for message_id, event in events:
        jsonschema.validate(event, cloudevents_schema)
        assert event["id"] == message_id
    refs = _query(config, "SELECT min(target_ref), count(DISTINCT target_ref) FROM publish.published")
    assert refs[0][0].startswith(f"{stream}:") and refs[0][1] == CUSTOMERS


def test_nats_token_comes_from_the_environment_and_never_shows_in_errors(
    scored: FabricConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NATS server that requires a token: delivered with the token from `token_env`; with a
    wrong token the run fails naming the target, the records stay in the outbox, and neither
    token appears in the error."""
    import nats

    token, wrong = "nats-test-token-8d1f", "wrong-token-77aa"
    with private_nats_server(tmp_path, "--auth", token) as server:
        url = f"nats://{server.host}:{server.port}"
        declared = {
            "kind": "nats", "servers": [url], "stream": "FABRIC_AUTH", "subject": "fabric.auth.scores",
            "token_env": "FABRIC_TEST_NATS_TOKEN", "retry": {"attempts": 2}, "timeout_seconds": 5,
        }  # fmt: skip
        config = _with(scored, "events", declared)

        monkeypatch.setenv("FABRIC_TEST_NATS_TOKEN", wrong)
        with pytest.raises(PublishError, match=r"publishers\.events .*delivery failed") as failed:
            _publish(config, "events", "run-wrong")
        assert token not in str(failed.value) and wrong not in str(failed.value)
        assert "uthoriz" in str(failed.value)  # the server's 'Authorization Violation'
        assert _query(config, "SELECT count(*) FROM publish.outbox") == [(CUSTOMERS,)]

        monkeypatch.setenv("FABRIC_TEST_NATS_TOKEN", token)
        delivered = _publish(config, "events", "run-right")
        assert delivered.delivered == CUSTOMERS and delivered.pending == 0

        async def stored() -> int:
            nc = await nats.connect([url], token=token)
            try:
                return int((await nc.jetstream().stream_info("FABRIC_AUTH")).state.messages)
            finally:
                await nc.close()

        assert asyncio.run(stored()) == CUSTOMERS


def test_redis_stream_resend_returns_the_first_entry(
    scored: FabricConfig,
    redis_server: Endpoint,  # noqa: F811
    cloudevents_schema: dict[str, Any],
) -> None:
    import redis

    stream = f"fabric:test:{uuid.uuid4().hex[:8]}"
    declared = {
        "kind": "redis_stream",
        "host": redis_server.host,
        "port": redis_server.port,
        "stream": stream,
    }
    config = _with(scored, "stream", declared)
    _publish(config, "stream", "run-1")
    first = dict(_query(config, "SELECT message_id, target_ref FROM publish.published"))
    _publish(config, "stream", "run-2", full_resync=True)
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    try:
        entries = client.xrange(stream)
        assert len(entries) == CUSTOMERS
        for entry_id, fields in entries:
            event = json.loads(fields[b"event"])
            jsonschema.validate(event, cloudevents_schema)
            assert (
                first[fields[b"id"].decode()] == entry_id.decode() and event["id"] == fields[b"id"].decode()
            )
        assert dict(_query(config, "SELECT message_id, target_ref FROM publish.published")) == first
    finally:
        client.delete(stream, *client.keys(f"{stream}:sent:*"))
        client.close()


class _Hook(BaseHTTPRequestHandler):
    """Verifies the signature, then answers from the server's script (default 200)."""

    def do_POST(self) -> None:
        server: Any = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(self.headers.get("X-Fabric-Signature", ""), expected):
            status, headers = 401, {}
        else:
            status, headers = server.script.pop(0) if server.script else (200, {})
        server.requests.append((status, self.headers["Content-Type"], json.loads(body)))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(b'{"error": "scripted"}' if status >= 400 else b"{}")

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def webhook() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.script, server.requests = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_signed_batches_retry_after_and_4xx_dead_letter(
    scored: FabricConfig,
    webhook: Any,
    cloudevents_schema: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FABRIC_TEST_WEBHOOK_SECRET", SECRET)
    url = f"http://127.0.0.1:{webhook.server_address[1]}/scores"
    config = _with(
        scored,
        "hook",
        {"kind": "webhook", "url": url, "secret_env": "FABRIC_TEST_WEBHOOK_SECRET", "batch_size": 20},
    )
    webhook.script = [(429, {"Retry-After": "7"}), (500, {})]
    waits: list[float] = []
    result = _publish(config, "hook", "run-1", sleep=waits.append)
    assert waits == [7.0, 1.0]  # Retry-After honoured, then the backoff (second wait: doubled)
    assert result.delivery.created == CUSTOMERS and result.delivery.batches == 3
    delivered = [r for r in webhook.requests if r[0] == 200]
    assert len(delivered) == 3 and {r[1] for r in delivered} == {"application/cloudevents-batch+json"}
    events = [e for r in delivered for e in r[2]]
    for event in events:
        jsonschema.validate(event, cloudevents_schema)
    assert len({e["id"] for e in events}) == CUSTOMERS

    # a 400 is not retried: the batch goes to the dead letter table; replay delivers it
    with Warehouse(config.resolve(config.warehouse.path)).connect() as con:
        con.execute("UPDATE scores.churn_scores_rows SET score = score / 2 + 0.001")
    webhook.script = [(400, {})] * 3
    rejected = _publish(config, "hook", "run-2")
    assert rejected.delivery.dead_lettered == CUSTOMERS and rejected.pending == 0
    assert _query(
        config, "SELECT count(*), min(attempts), min(error) LIKE '%HTTP 400%' FROM publish.dead_letter"
    ) == [(CUSTOMERS, 1, True)]
    # dead-lettered content is not staged again by the next run...
    assert _publish(config, "hook", "run-3").plan.held_dead == CUSTOMERS
    # ...until it is replayed
    moved, delivery = replay(config, Warehouse(config.resolve(config.warehouse.path)), "hook", "run-replay")
    assert moved == CUSTOMERS and delivery.updated == CUSTOMERS
    statuses = dict(_query(config, "SELECT status, count(*) FROM publish.sync_log GROUP BY 1"))
    assert statuses == {
        "created": CUSTOMERS,
        "dead_lettered": CUSTOMERS,
        "replayed": CUSTOMERS,
        "updated": CUSTOMERS,
    }


def test_webhook_unreachable_keeps_the_outbox(scored: FabricConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FABRIC_TEST_WEBHOOK_SECRET", SECRET)
    url = f"http://127.0.0.1:{_closed_port()}/scores"
    config = _with(
        scored,
        "hook",
        {"kind": "webhook", "url": url, "secret_env": "FABRIC_TEST_WEBHOOK_SECRET", "retry": {"attempts": 2}},
    )
    with pytest.raises(PublishError, match=r"after 2 attempt.*ConnectError"):
        _publish(config, "hook", "run-1")
    assert _query(config, "SELECT count(*) FROM publish.outbox") == [(CUSTOMERS,)]


def test_secrets_are_refused_in_fabric_yaml(fabric_home: Path) -> None:
    data = yaml.safe_load((REPO / "fabric.yaml").read_text())
    data["publishers"]["hook"] = {"kind": "webhook", "url": "http://127.0.0.1:9/x", "secret": "s3cr3t-value"}
    with pytest.raises(ConfigError, match=r"publishers\.hook: .*secrets are never written") as info:
        parse_config(data, REPO)
    assert "s3cr3t-value" not in str(info.value)
