"""OpenLineage events: the official JSON schema and facet schemas, file and HTTP transports.

`validate_event` is shared with tests/test_lineage_flow.py (events of a real materialization).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest
from referencing import Registry, Resource

from fabric.config import FabricConfig, LineageConfig, LineageHttpConfig
from fabric.lineage.events import FACET_SCHEMAS
from fabric.lineage.runs import CheckOutcome, StepOutcome, step_events
from fabric.lineage.transport import FileTransport, HttpTransport, LineageError, read_events

SPECS = Path(__file__).resolve().parents[2] / "shared" / "specs" / "openlineage"


def _registry() -> tuple[Registry, dict[str, Any]]:
    if not SPECS.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SPECS} is missing; CI needs ../shared")
        pytest.skip(f"{SPECS} is missing (the OpenLineage schemas live in ../shared)")
    documents = [
        json.loads(p.read_text()) for p in [SPECS / "OpenLineage.json", *sorted(SPECS.glob("facets/*.json"))]
    ]
    registry: Registry = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in documents
    )
    return registry, documents[0]


_VALIDATORS: dict[str, Any] = {}


def validate_event(event: dict[str, Any]) -> None:
    """Validate a RunEvent against OpenLineage.json and every facet against its own schema."""
    if not _VALIDATORS:
        registry, main = _registry()
        checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
        _VALIDATORS["event"] = jsonschema.Draft202012Validator(
            main, registry=registry, format_checker=checker
        )
        for kind, (version, definition) in FACET_SCHEMAS.items():
            ref = f"https://openlineage.io/spec/facets/{version}/{definition}.json#/$defs/{definition}"
            _VALIDATORS[kind] = jsonschema.Draft202012Validator(
                {"$ref": ref}, registry=registry, format_checker=checker
            )
    _VALIDATORS["event"].validate(event)
    facets: list[tuple[str, Any]] = []
    facets += list(event["run"].get("facets", {}).items())
    facets += list(event["job"].get("facets", {}).items())
    for dataset in [*event.get("inputs", []), *event.get("outputs", [])]:
        for key in ("facets", "inputFacets", "outputFacets"):
            facets += list(dataset.get(key, {}).items())
    for kind, value in facets:
        assert kind in _VALIDATORS, f"facet {kind} has no schema in FACET_SCHEMAS"
        _VALIDATORS[kind].validate(value)
        version, definition = FACET_SCHEMAS[kind]
        assert value["_schemaURL"].endswith(f"{version}/{definition}.json#/$defs/{definition}")


def _step(failed: bool = False) -> StepOutcome:
    """A step as the orchestrator records it: two assets planned, one check evaluated."""
    step = StepOutcome(
        run_id="3721602e-e07c-4e6b-acee-8817729522ab",
        job_name="fabric_daily",
        step_key="scores__churn_scores",
        started=1_780_000_000.0,
        finished=1_780_000_030.0,
        planned=[("scores", "churn_scores"), ("quality", "gate")],
        materialized={("quality", "gate"): 1_780_000_010.0},
        checks=[CheckOutcome(("quality", "gate"), "volume", False, "WARN", 1_780_000_011.0, "spike")],
    )
    if failed:
        step.error = "QualityGateClosed: 2026-03-10 is closed"
    else:
        step.materialized[("scores", "churn_scores")] = 1_780_000_020.0
    return step


def test_step_events_validate_and_pair(config: FabricConfig) -> None:
    events = step_events(config, _step(failed=True), con=None)
    for event in events:
        validate_event(event)
    by_run: dict[str, list[str]] = {}
    for event in events:
        by_run.setdefault(event["run"]["runId"], []).append(event["eventType"])
        parent = event["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == "3721602e-e07c-4e6b-acee-8817729522ab"
        assert parent["job"] == {"namespace": "brightwave", "name": "fabric_daily"}
    assert sorted(map(tuple, by_run.values())) == [("START", "COMPLETE")] * 2 + [("START", "FAIL")]
    failed = next(e for e in events if e["eventType"] == "FAIL")
    assert failed["job"]["name"] == "scores/churn_scores"
    assert failed["run"]["facets"]["errorMessage"]["message"] == "QualityGateClosed: 2026-03-10 is closed"
    check = next(
        e for e in events if e["job"]["name"] == "quality/gate:volume" and e["eventType"] == "COMPLETE"
    )
    assertions = check["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert assertions == [
        {
            "assertion": "volume",
            "success": False,
            "severity": "warn",
            "name": "volume",
            "description": "spike",
        }
    ]


def test_end_events_leave_out_a_start_already_sent(config: FabricConfig) -> None:
    step = _step()
    both = [(e["eventType"], e["job"]["name"]) for e in step_events(config, step, con=None)]
    ends = [(e["eventType"], e["job"]["name"]) for e in step_events(config, step, con=None, with_start=False)]
    assets = {"scores/churn_scores", "quality/gate"}
    assert [e for e in both if e[1] in assets] == [
        ("START", "scores/churn_scores"), ("COMPLETE", "scores/churn_scores"),
        ("START", "quality/gate"), ("COMPLETE", "quality/gate"),
    ]  # fmt: skip
    assert [e for e in ends if e[1] in assets] == [
        ("COMPLETE", "scores/churn_scores"),
        ("COMPLETE", "quality/gate"),
    ]
    # Check runs keep both: which checks ran is known when the step ends.
    assert [e for e in ends if e[1] not in assets] == [e for e in both if e[1] not in assets]
    assert [e[0] for e in ends if e[1] not in assets] == ["START", "COMPLETE"]


def test_a_broken_event_fails_validation(config: FabricConfig) -> None:
    """The validator is not a rubber stamp: a facet missing a required field is rejected."""
    event = step_events(config, _step(), con=None)[0]
    validate_event(event)
    del event["run"]["facets"]["parent"]["run"]["runId"]
    with pytest.raises(jsonschema.ValidationError):
        validate_event(event)
    for field, value in (("eventType", "DONE"), ("run", {"runId": "not-a-uuid"})):
        event = step_events(config, _step(), con=None)[0]
        event[field] = value
        with pytest.raises(jsonschema.ValidationError):
            validate_event(event)


def test_file_transport_appends_json_lines(tmp_path: Path, config: FabricConfig) -> None:
    transport = FileTransport(tmp_path / "lineage")
    first, second = step_events(config, _step(), con=None), step_events(config, _step(True), con=None)
    transport.emit(first)
    transport.emit(second)
    assert list(read_events(tmp_path / "lineage")) == [*first, *second]


class _Collector(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, str], dict[str, Any]]]] = []
    status = 201

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, dict(self.headers), json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"{}" if type(self).status < 400 else b"bad event")

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def lineage_server() -> Iterator[tuple[str, type[_Collector]]]:
    handler = type("Handler", (_Collector,), {"received": [], "status": 201})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_http_transport_posts_each_event_with_the_bearer_key(
    lineage_server: tuple[str, type[_Collector]], config: FabricConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = lineage_server
    monkeypatch.setenv("FABRIC_TEST_LINEAGE_KEY", "s3cret-key")
    settings = LineageHttpConfig(url=url, api_key_env="FABRIC_TEST_LINEAGE_KEY")
    http_config = config.model_copy(update={"lineage": LineageConfig(transport="http", http=settings)})
    from fabric.lineage.transport import transport_for

    transport = transport_for(http_config)
    assert isinstance(transport, HttpTransport)
    events = step_events(config, _step(), con=None)
    transport.emit(events)
    assert [body for _, _, body in handler.received] == events
    for path, headers, body in handler.received:
        assert path == "/api/v1/lineage"
        assert headers["Authorization"] == "Bearer s3cret-key"
        assert headers["Content-Type"] == "application/json"
        validate_event(body)

    handler.status = 400
    with pytest.raises(LineageError, match="HTTP 400: bad event") as failure:
        transport.emit(events[:1])
    assert "s3cret-key" not in str(failure.value)


def test_dataset_names_follow_the_naming_spec(config: FabricConfig) -> None:
    from fabric.config import parse_config
    from fabric.lineage.naming import DatasetName, publisher_dataset, source_label_dataset

    assert source_label_dataset("postgres://db.internal:5432/billing#sales.invoices") == DatasetName(
        "postgres://db.internal:5432", "billing.sales.invoices"
    )
    assert source_label_dataset("mysql://10.0.0.5:3306/erp#erp.accounts") == DatasetName(
        "mysql://10.0.0.5:3306", "erp.accounts"
    )
    assert source_label_dataset("sqlite:/data/crm.sqlite#customers") == DatasetName(
        "sqlite:///data/crm.sqlite", "customers"
    )
    assert source_label_dataset("/data/support/tickets_20260310.csv") == DatasetName(
        "file", "/data/support/tickets_20260310.csv"
    )
    declared = config.model_dump(exclude={"base_dir"}, mode="json")
    declared["publishers"] = {
        "pg": {"kind": "postgres", "host": "db", "database": "crm", "user": "u", "table": "sales.scores"},
        "mq": {"kind": "rabbitmq", "host": "mq", "exchange": "scores"},
        "nats": {"kind": "nats", "servers": ["nats://bus:4223"], "subject": "scores.churn"},
        "hook": {"kind": "webhook", "url": "https://hooks.example.com:8443/scores", "secret_env": "HOOK_KEY"},
    }
    targets = parse_config(declared, config.base_dir)
    assert {n: publisher_dataset(targets, n) for n in targets.publishers} == {
        "pg": DatasetName("postgres://db:5432", "crm.sales.scores"),
        "mq": DatasetName("rabbitmq://mq:5672", "scores"),
        "nats": DatasetName("nats://bus:4223", "scores.churn"),
        "hook": DatasetName("https://hooks.example.com:8443", "/scores"),
    }
