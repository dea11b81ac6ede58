"""Event-driven ingestion against the real RabbitMQ and NATS JetStream servers: CloudEvents in,
RunRequests out.

Tests taking `broker` run once per broker. Each uses its own queue (RabbitMQ, with its dead
letter queue) or stream, subject and durable consumer (NATS), deleted afterwards.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.test_utils import create_test_daemon_workspace_context
from servers import Endpoint, nats_server, private_nats_server, rabbitmq_server  # noqa: F401

from assets.definitions import build_definitions
from assets.events import SENSOR_NAME
from fabric.aio import LoopOwner
from fabric.config import (
    FabricConfig,
    NatsSourceEvents,
    RabbitmqSourceEvents,
    SourceEventsConfig,
    parse_config,
)
from fabric.errors import ConfigError
from fabric.ingest.events import (
    EVENT_TYPE,
    REASON_HEADER,
    BrokerUnavailable,
    InvalidEvent,
    open_queue,
    parse_event,
)

REPO = Path(__file__).resolve().parents[1]

DAY = date(2026, 3, 10)


def _event(event_id: str, **data: Any) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": event_id, "source": "urn:test:exporter", "type": EVENT_TYPE,
         "datacontenttype": "application/json", "data": data}
    ).encode()  # fmt: skip


class _Rabbit:
    """A queue of the test's own on the RabbitMQ server, seen from the exporter's side."""

    def __init__(self, endpoint: Endpoint) -> None:
        import pika

        name = f"fabric.test.{uuid.uuid4().hex[:10]}"
        self.settings: SourceEventsConfig = RabbitmqSourceEvents(
            host=endpoint.host, port=endpoint.port, queue=name
        )
        self._queue = name
        self._connection = pika.BlockingConnection(pika.ConnectionParameters(endpoint.host, endpoint.port))
        self._channel = self._connection.channel()
        self._channel.queue_declare(queue=name, durable=True)

    def publish(self, body: bytes) -> None:
        self._channel.basic_publish(exchange="", routing_key=self._queue, body=body)

    def waiting(self) -> int:
        """Messages on the queue not acknowledged yet."""
        return int(self._channel.queue_declare(queue=self._queue, passive=True).method.message_count)

    def dead_letter_reasons(self) -> list[str]:
        reasons: list[str] = []
        while True:
            method, properties, _ = self._channel.basic_get(f"{self._queue}.invalid", auto_ack=True)
            if method is None:
                return reasons
            reasons.append(properties.headers[REASON_HEADER])

    def close(self) -> None:
        self._channel.queue_delete(queue=self._queue)
        self._channel.queue_delete(queue=f"{self._queue}.invalid")
        self._connection.close()


class _Nats(LoopOwner):
    """A stream, subject and durable consumer of the test's own on the NATS server, seen from the
    exporter's side. The stream and consumer are created as the sensor creates them."""

    def __init__(self, endpoint: Endpoint, **settings: Any) -> None:
        import nats

        super().__init__()
        name = uuid.uuid4().hex[:10]
        self.nats = NatsSourceEvents(
            kind="nats", servers=[f"nats://{endpoint.host}:{endpoint.port}"], stream=f"FABRIC_TEST_{name}",
            subject=f"fabric.test.{name}", durable=f"fabric_test_{name}", **settings,
        )  # fmt: skip
        self.settings: SourceEventsConfig = self.nats
        self._nc = self.run(nats.connect(servers=self.nats.servers))
        self._js = self._nc.jetstream()
        with open_queue(self.settings):
            pass

    def publish(self, body: bytes) -> None:
        self.run(self._js.publish(self.nats.subject, body, stream=self.nats.stream))

    def waiting(self) -> int:
        """Messages of the subject not acknowledged yet (not delivered, or delivered and pending)."""
        info = self.run(self._js.consumer_info(self.nats.stream, self.nats.durable))
        return int(info.num_pending + info.num_ack_pending)

    def dead_letter_reasons(self) -> list[str]:
        from nats.js.errors import NotFoundError

        reasons: list[str] = []
        seq = 0
        while True:
            try:
                msg = self.run(
                    self._js.get_msg(self.nats.stream, seq=seq + 1, subject=self.nats.dead_letters, next=True)
                )
            except NotFoundError:
                return reasons
            assert msg.headers is not None and msg.seq is not None
            reasons.append(msg.headers[REASON_HEADER])
            seq = msg.seq

    def close(self) -> None:
        self.run(self._js.delete_stream(self.nats.stream))
        self.run(self._nc.close())
        self.close_loop()


Broker = _Rabbit | _Nats


@pytest.fixture(params=["rabbitmq", "nats"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """The test's queue on the broker of the parameter (its server fixture skips or, in CI, fails)."""
    endpoint = request.getfixturevalue(f"{request.param}_server")
    made: Broker = _Rabbit(endpoint) if request.param == "rabbitmq" else _Nats(endpoint)
    try:
        yield made
    finally:
        made.close()


def _take_without_ack(settings: SourceEventsConfig) -> bytes:
    """Take the next message and close without settling it (it goes back, marked redelivered)."""
    with open_queue(settings) as queue:
        delivery = queue.get()
        assert delivery is not None and not delivery.redelivered
        return delivery.body


def _tick(config: FabricConfig, instance: dg.DagsterInstance) -> dg.SensorResult | Any:
    defs = build_definitions(config)
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        return sensor.evaluate_tick(context)


def test_events_request_runs_keyed_by_event_id(
    broker: Broker, config: FabricConfig, dbt_manifest: Path
) -> None:
    config = config.model_copy(update={"source_events": broker.settings})
    broker.publish(_event("exp-crm-1", source="crm", entity="customers", partition=DAY.isoformat()))
    broker.publish(b"{not json")
    broker.publish(_event("exp-x", source="mainframe", partition=DAY.isoformat()))
    broker.publish(_event("exp-web-1", source="web", partition="2026-03-09"))

    with dg.instance_for_test() as instance:
        result = _tick(config, instance)
        requests = result.run_requests or []
        assert [(r.run_key, r.partition_key) for r in requests] == [
            ("exp-crm-1", "2026-03-10"), ("exp-web-1", "2026-03-09"),
        ]  # fmt: skip
        assert requests[0].asset_selection == [dg.AssetKey(["raw", "crm__customers"])]
        assert requests[1].asset_selection == [dg.AssetKey(["raw", "web__events"])]
        assert requests[0].tags["fabric/event_id"] == "exp-crm-1"

        # Valid events were acknowledged, invalid ones dead-lettered with the reason.
        assert broker.waiting() == 0
        reasons = broker.dead_letter_reasons()
        assert len(reasons) == 2
        assert reasons[0].startswith("not a JSON CloudEvent")
        assert "data.source 'mainframe' is not a source of fabric.yaml" in reasons[1]

        # The exporter sends the same event again, and a consumer takes it but stops before the
        # ack: redelivered, it gets the same run key (Dagster launches one run per key).
        broker.publish(_event("exp-crm-1", source="crm", entity="customers", partition=DAY.isoformat()))
        _take_without_ack(broker.settings)
        assert broker.waiting() == 1
        again = _tick(config, instance).run_requests or []
        assert [r.run_key for r in again] == ["exp-crm-1"]
        assert broker.waiting() == 0
        empty = _tick(config, instance)
        assert not empty.run_requests and empty.skip_message and "no new event" in empty.skip_message
        assert broker.settings.label in empty.skip_message


@pytest.mark.parametrize(
    "settings",
    [
        RabbitmqSourceEvents(host="127.0.0.1", port=1, queue="nowhere", password_env="FABRIC_TEST_SECRET"),
        NatsSourceEvents(kind="nats", servers=["nats://127.0.0.1:1"], token_env="FABRIC_TEST_SECRET"),
    ],
    ids=["rabbitmq", "nats"],
)
def test_an_unreachable_broker_skips_the_tick(
    settings: SourceEventsConfig, config: FabricConfig, dbt_manifest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FABRIC_TEST_SECRET", "s3cret-value")
    with dg.instance_for_test() as instance:
        result = _tick(config.model_copy(update={"source_events": settings}), instance)
    assert not result.run_requests
    assert result.skip_message and "broker not available" in result.skip_message
    assert "127.0.0.1:1" in result.skip_message and "s3cret-value" not in result.skip_message


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_event("a", source="crm", partition="2026-13-01"), "is not a date"),
        (_event("a", source="crm", entity="orders", partition="2026-03-10"), "not an entity of source crm"),
        (_event("a", source="crm", partition="2025-12-31"), "outside the partitions"),
        (
            json.dumps({"specversion": "0.3", "id": "a", "source": "s", "type": EVENT_TYPE}).encode(),
            "only CloudEvents 1.0",
        ),
        (json.dumps({"specversion": "1.0", "source": "s", "type": EVENT_TYPE}).encode(), "'id' is missing"),
    ],
)
def test_invalid_events_name_the_reason(config: FabricConfig, body: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        parse_event(config, body, today=date(2026, 11, 26))


def test_the_daemon_launches_one_run_per_event_id(
    broker: Broker,
    config: FabricConfig,
    dbt_manifest: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dagster's own sensor daemon: a re-sent, redelivered event is skipped by its run key, not re-run."""
    import logging

    from dagster._core.scheduler.instigation import TickStatus
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.sensor import execute_sensor_iteration

    repo = REPO
    declared = yaml.safe_load((repo / "fabric.yaml").read_text())
    declared["dbt"]["project_dir"] = str(repo / "dbt_project")
    declared["quality"]["suites_dir"] = str(repo / "expectations")
    declared["source_events"] = {
        **broker.settings.model_dump(mode="json", exclude_none=True), "interval_seconds": 1,
    }  # fmt: skip
    (tmp_path / "fabric.yaml").write_text(yaml.safe_dump(declared))
    monkeypatch.setenv("FABRIC_CONFIG", str(tmp_path / "fabric.yaml"))

    body = _event("exp-crm-7", source="crm", entity="customers", partition=DAY.isoformat())
    target = ModuleTarget(
        module_name="assets.definitions",
        attribute="defs",
        working_directory=str(repo),
        location_name="fabric",
    )
    launcher = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}
    log = logging.getLogger("test_events_sensor")
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    with (
        dg.instance_for_test(overrides={"run_launcher": launcher}) as instance,
        create_test_daemon_workspace_context(target, instance) as workspace,
    ):
        broker.publish(body)
        list(execute_sensor_iteration(workspace, log, None, None))
        runs = instance.get_runs()
        assert [r.tags.get("dagster/run_key") for r in runs] == ["exp-crm-7"]
        assert runs[0].tags["dagster/partition"] == DAY.isoformat()

        broker.publish(body)  # delivered again (the exporter retried) ...
        _take_without_ack(broker.settings)  # ... and taken by a consumer that stopped before the ack
        time.sleep(1.5)  # the sensor's minimum interval
        list(execute_sensor_iteration(workspace, log, None, None))
        assert [r.tags.get("dagster/run_key") for r in instance.get_runs()] == ["exp-crm-7"]
        ticks = [
            t for s in instance.all_instigator_state() if s.name == SENSOR_NAME
            for t in instance.get_ticks(s.instigator_origin_id, s.selector_id)
        ]  # fmt: skip
        assert len(ticks) == 2 and ticks[0].status == TickStatus.SKIPPED  # newest first
        assert any('already completed with run keys: ["exp-crm-7"]' in m for m in messages)
        assert broker.waiting() == 0


def test_a_message_taken_but_not_acknowledged_comes_back_redelivered(broker: Broker) -> None:
    body = _event("exp-crm-9", source="crm", partition=DAY.isoformat())
    broker.publish(body)
    assert _take_without_ack(broker.settings) == body
    with open_queue(broker.settings) as queue:
        delivery = queue.get()
        assert delivery is not None and delivery.body == body and delivery.redelivered
        queue.ack(delivery)
        assert queue.get() is None
    assert broker.waiting() == 0


def test_a_crashed_nats_consumer_s_message_is_redelivered_after_the_ack_wait(
    nats_server: Endpoint,  # noqa: F811
) -> None:
    """A consumer that dies holding a message never naks it: the server redelivers it after
    `ack_wait_seconds`, flagged redelivered."""
    import nats

    broker = _Nats(nats_server, ack_wait_seconds=1)
    try:
        body = _event("exp-crm-11", source="crm", partition=DAY.isoformat())
        broker.publish(body)

        async def crash() -> None:  # take it on a connection of its own, then drop that connection
            nc = await nats.connect(servers=broker.nats.servers)
            pull = await nc.jetstream().pull_subscribe_bind(
                durable=broker.nats.durable, stream=broker.nats.stream
            )
            assert [m.data for m in await pull.fetch(1, timeout=5)] == [body]
            await nc.close()

        broker.run(crash())
        deadline = time.monotonic() + 30  # a bound for a wedged server, not a timing assertion
        while True:
            with open_queue(broker.settings) as queue:
                delivery = queue.get()
                if delivery is not None:
                    queue.ack(delivery)
                    break
            assert time.monotonic() < deadline, "the message was never redelivered"
            time.sleep(0.2)
        assert delivery.body == body and delivery.redelivered
        assert broker.waiting() == 0
    finally:
        broker.close()


def test_a_nats_stream_or_consumer_contradicting_fabric_yaml_is_a_clear_error(
    nats_server: Endpoint,  # noqa: F811
) -> None:
    broker = _Nats(nats_server)
    try:
        other_subject = broker.nats.model_copy(update={"subject": f"{broker.nats.subject}.other"})
        with (
            pytest.raises(ConfigError, match=r"exists with subjects .* which do not take"),
            open_queue(other_subject),
        ):
            pass
        other_stream = broker.nats.model_copy(update={"stream": f"{broker.nats.stream}_2"})
        with (
            pytest.raises(ConfigError, match="cannot create the stream: subjects overlap"),
            open_queue(other_stream),
        ):
            pass
    finally:
        broker.close()


def test_nats_credentials_come_from_the_environment_only(
    nats_server: Endpoint,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = NatsSourceEvents(
        kind="nats",
        servers=[f"nats://{nats_server.host}:{nats_server.port}"],
        token_env="FABRIC_TEST_NATS_TOKEN",
    )
    monkeypatch.delenv("FABRIC_TEST_NATS_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="FABRIC_TEST_NATS_TOKEN, which is not set"), open_queue(settings):
        pass
    # A wrong port: the error names the server, never the token.
    monkeypatch.setenv("FABRIC_TEST_NATS_TOKEN", "t0ken-value")
    down = settings.model_copy(update={"servers": ["nats://127.0.0.1:1"]})
    with pytest.raises(BrokerUnavailable, match="cannot connect") as raised, open_queue(down):
        pass
    assert "t0ken-value" not in str(raised.value)


def test_nats_user_and_password_from_the_environment_open_a_server_that_requires_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NATS server with user/password authentication: a wrong password is refused with an
    error that names the server but neither credential; the right one reads the event."""
    import nats

    password, wrong = "nats-pw-5c2e", "nats-wrong-91b0"
    with private_nats_server(tmp_path, "--user", "fabric_ingest", "--pass", password) as server:
        settings = NatsSourceEvents(
            kind="nats", servers=[f"nats://{server.host}:{server.port}"],
            user_env="FABRIC_TEST_NATS_USER", password_env="FABRIC_TEST_NATS_PASSWORD",
        )  # fmt: skip
        monkeypatch.setenv("FABRIC_TEST_NATS_USER", "fabric_ingest")
        monkeypatch.setenv("FABRIC_TEST_NATS_PASSWORD", wrong)
        where = f"127.0.0.1:{server.port}"
        with pytest.raises(BrokerUnavailable, match=where) as refused, open_queue(settings):
            pass
        assert "Authorization Violation" in str(refused.value)  # the server's reason, not only a class
        assert wrong not in str(refused.value) and password not in str(refused.value)

        monkeypatch.setenv("FABRIC_TEST_NATS_PASSWORD", password)
        body = _event("exp-auth-1", source="crm", partition=DAY.isoformat())
        with open_queue(settings) as queue:  # creates the stream and the consumer

            async def publish() -> None:
                nc = await nats.connect(settings.servers, user="fabric_ingest", password=password)
                try:
                    await nc.jetstream().publish(settings.subject, body, stream=settings.stream)
                finally:
                    await nc.close()

            asyncio.run(publish())
            delivery = queue.get()
            assert delivery is not None and delivery.body == body
            queue.ack(delivery)


def _source_events(section: dict[str, Any]) -> SourceEventsConfig | None:
    declared = yaml.safe_load((REPO / "fabric.yaml").read_text())
    return parse_config({**declared, "source_events": section}, REPO).source_events


def test_source_events_config_reads_both_brokers() -> None:
    # Written before NATS: no kind means RabbitMQ.
    rabbit = _source_events({"queue": "exports", "user_env": "RABBIT_USER"})
    assert isinstance(rabbit, RabbitmqSourceEvents) and rabbit.queue == "exports"
    assert rabbit.label == "RabbitMQ queue exports"
    nats = _source_events({"kind": "nats", "subject": "exports.crm", "stream": "EXPORTS"})
    assert isinstance(nats, NatsSourceEvents)
    assert nats.servers == ["nats://127.0.0.1:4222"] and nats.durable == "fabric_ingest"
    assert nats.dead_letters == "exports.crm.invalid"
    assert nats.label == "NATS subject exports.crm (stream EXPORTS)"
    wildcard = _source_events(
        {"kind": "nats", "subject": "exports.>", "dead_letter_subject": "invalid.exports"}
    )
    assert isinstance(wildcard, NatsSourceEvents) and wildcard.dead_letters == "invalid.exports"


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ({"kind": "kafka"}, "source_events: kind must be rabbitmq (the default) or nats"),
        ({"kind": "nats", "token": "abc123"}, "token: secrets are never written in fabric.yaml"),
        ({"kind": "nats", "servers": ["nats://u:abc123@h:4222"]}, "servers must not hold credentials"),
        ({"kind": "nats", "token_env": "not a name"}, "is not an environment variable name"),
        ({"kind": "nats", "token_env": "T", "user_env": "U", "password_env": "P"}, "not both"),
        ({"kind": "nats", "user_env": "U"}, "user_env and password_env go together"),
        ({"kind": "nats", "stream": "a.b"}, "source_events.stream: "),
        ({"kind": "nats", "subject": "a.>"}, "needs an explicit dead_letter_subject"),
        ({"kind": "nats", "subject": "a.*", "dead_letter_subject": "a.bad"}, "would be consumed again"),
        ({"kind": "nats", "dead_letter_subject": "bad.*"}, "cannot hold wildcards"),
        ({"kind": "nats", "subject": "a..b"}, "is not a NATS subject"),
    ],
)
def test_source_events_config_errors(section: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)) as raised:
        _source_events(section)
    assert "abc123" not in str(raised.value)
