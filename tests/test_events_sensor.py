"""Event-driven ingestion against the real RabbitMQ server: CloudEvents in, RunRequests out.

Each test uses its own queue (and dead letter queue), deleted afterwards.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.test_utils import create_test_daemon_workspace_context
from servers import Endpoint, rabbitmq_server  # noqa: F401

from assets.definitions import build_definitions
from assets.events import SENSOR_NAME
from fabric.config import FabricConfig, SourceEventsConfig
from fabric.ingest.events import EVENT_TYPE, REASON_HEADER, InvalidEvent, parse_event

DAY = date(2026, 3, 10)


def _event(event_id: str, **data: Any) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": event_id, "source": "urn:test:exporter", "type": EVENT_TYPE,
         "datacontenttype": "application/json", "data": data}
    ).encode()  # fmt: skip


@pytest.fixture
def queue_config(
    config: FabricConfig,
    rabbitmq_server: Endpoint,  # noqa: F811
) -> Iterator[tuple[FabricConfig, Any]]:
    import pika

    name = f"fabric.test.{uuid.uuid4().hex[:10]}"
    settings = SourceEventsConfig(host=rabbitmq_server.host, port=rabbitmq_server.port, queue=name)
    connection = pika.BlockingConnection(
        pika.ConnectionParameters(rabbitmq_server.host, rabbitmq_server.port)
    )
    channel = connection.channel()
    channel.queue_declare(queue=name, durable=True)
    try:
        yield config.model_copy(update={"source_events": settings}), channel
    finally:
        channel.queue_delete(queue=name)
        channel.queue_delete(queue=f"{name}.invalid")
        connection.close()


def _publish(channel: Any, queue: str, body: bytes) -> None:
    channel.basic_publish(exchange="", routing_key=queue, body=body)


def _tick(config: FabricConfig, instance: dg.DagsterInstance) -> dg.SensorResult | Any:
    defs = build_definitions(config)
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        return sensor.evaluate_tick(context)


def test_events_request_runs_keyed_by_event_id(
    queue_config: tuple[FabricConfig, Any], dbt_manifest: Path
) -> None:
    config, channel = queue_config
    assert config.source_events is not None
    queue = config.source_events.queue
    _publish(channel, queue, _event("exp-crm-1", source="crm", entity="customers", partition=DAY.isoformat()))
    _publish(channel, queue, b"{not json")
    _publish(channel, queue, _event("exp-x", source="mainframe", partition=DAY.isoformat()))
    _publish(channel, queue, _event("exp-web-1", source="web", partition="2026-03-09"))

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
        assert channel.queue_declare(queue=queue, passive=True).method.message_count == 0
        reasons = []
        while True:
            method, properties, _ = channel.basic_get(f"{queue}.invalid", auto_ack=True)
            if method is None:
                break
            reasons.append(properties.headers[REASON_HEADER])
        assert len(reasons) == 2
        assert reasons[0].startswith("not a JSON CloudEvent")
        assert "data.source 'mainframe' is not a source of fabric.yaml" in reasons[1]

        # The exporter sends the same event again: the same run key (Dagster launches one run per key).
        _publish(
            channel, queue, _event("exp-crm-1", source="crm", entity="customers", partition=DAY.isoformat())
        )
        again = _tick(config, instance).run_requests or []
        assert [r.run_key for r in again] == ["exp-crm-1"]
        empty = _tick(config, instance)
        assert not empty.run_requests and empty.skip_message and "no new event" in empty.skip_message


def test_an_unreachable_broker_skips_the_tick(config: FabricConfig, dbt_manifest: Path) -> None:
    settings = SourceEventsConfig(host="127.0.0.1", port=1, queue="nowhere")
    with dg.instance_for_test() as instance:
        result = _tick(config.model_copy(update={"source_events": settings}), instance)
    assert not result.run_requests
    assert result.skip_message and "broker not available" in result.skip_message


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
    queue_config: tuple[FabricConfig, Any],
    dbt_manifest: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Dagster's own sensor daemon: a redelivered event is skipped by its run key, not re-run."""
    import logging
    import time

    import yaml
    from dagster._core.scheduler.instigation import TickStatus
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.sensor import execute_sensor_iteration

    config, channel = queue_config
    assert config.source_events is not None
    queue = config.source_events.queue
    repo = Path(__file__).resolve().parents[1]
    declared = yaml.safe_load((repo / "fabric.yaml").read_text())
    declared["dbt"]["project_dir"] = str(repo / "dbt_project")
    declared["quality"]["suites_dir"] = str(repo / "expectations")
    declared["source_events"] = {
        "host": config.source_events.host, "port": config.source_events.port,
        "queue": queue, "interval_seconds": 1,
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
        _publish(channel, queue, body)
        list(execute_sensor_iteration(workspace, log, None, None))
        runs = instance.get_runs()
        assert [r.tags.get("dagster/run_key") for r in runs] == ["exp-crm-7"]
        assert runs[0].tags["dagster/partition"] == DAY.isoformat()

        _publish(channel, queue, body)  # delivered again (the exporter retried)
        time.sleep(1.5)  # the sensor's minimum interval
        list(execute_sensor_iteration(workspace, log, None, None))
        assert [r.tags.get("dagster/run_key") for r in instance.get_runs()] == ["exp-crm-7"]
        ticks = [
            t for s in instance.all_instigator_state() if s.name == SENSOR_NAME
            for t in instance.get_ticks(s.instigator_origin_id, s.selector_id)
        ]  # fmt: skip
        assert len(ticks) == 2 and ticks[0].status == TickStatus.SKIPPED  # newest first
        assert any('already completed with run keys: ["exp-crm-7"]' in m for m in messages)
        assert channel.queue_declare(queue=queue, passive=True).method.message_count == 0
