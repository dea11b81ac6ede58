"""OpenLineage run events (spec 2-0-2) as plain JSON-ready dicts.

Fabric writes the JSON itself instead of using the `openlineage-python` client: the events are
small dicts, every one is validated against the official schema in the tests, and the client
would add three packages (httpx2, httpcore2, truststore) for what is a JSON line or one POST.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from fabric import __version__
from fabric.lineage.naming import DatasetName

PRODUCER = f"urn:fabric:fabric-integration:{__version__}"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_FACETS = "https://openlineage.io/spec/facets"
# Facet -> (schema file version, definition name), as in ../shared/specs/openlineage/facets.
FACET_SCHEMAS: dict[str, tuple[str, str]] = {
    "schema": ("1-2-0", "SchemaDatasetFacet"),
    "columnLineage": ("1-2-0", "ColumnLineageDatasetFacet"),
    "dataQualityAssertions": ("1-1-0", "DataQualityAssertionsDatasetFacet"),
    "dataSource": ("1-0-1", "DatasourceDatasetFacet"),
    "documentation": ("1-1-0", "DocumentationDatasetFacet"),
    "outputStatistics": ("1-0-2", "OutputStatisticsOutputDatasetFacet"),
    "inputStatistics": ("1-0-0", "InputStatisticsInputDatasetFacet"),
    "parent": ("1-2-0", "ParentRunFacet"),
    "errorMessage": ("1-0-1", "ErrorMessageRunFacet"),
    "nominalTime": ("1-0-1", "NominalTimeRunFacet"),
    "processing_engine": ("1-1-1", "ProcessingEngineRunFacet"),
    "jobType": ("2-0-4", "JobTypeJobFacet"),
    "sql": ("1-1-0", "SQLJobFacet"),
}
# Asset runs are keyed by the orchestrator's run and the asset, so START and COMPLETE agree.
RUN_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:fabric:openlineage:run")

EventType = Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]


def facet(kind: str, **fields: Any) -> dict[str, Any]:
    """A facet of `kind` with the producer and its schema URL."""
    version, definition = FACET_SCHEMAS[kind]
    return {
        "_producer": PRODUCER,
        "_schemaURL": f"{_FACETS}/{version}/{definition}.json#/$defs/{definition}",
        **fields,
    }


def child_run_id(parent_run_id: str, job_name: str) -> str:
    """The OpenLineage run id of one job inside an orchestrator run (deterministic)."""
    return str(uuid.uuid5(RUN_NAMESPACE, f"{parent_run_id}/{job_name}"))


def iso(moment: datetime | float) -> str:
    """An RFC 3339 timestamp (UTC) from a datetime or a Unix time."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Dataset:
    """A dataset of a run event with its facets (dataset, input or output facets)."""

    dataset: DatasetName
    facets: dict[str, Any] = field(default_factory=dict)
    io_facets: dict[str, Any] = field(default_factory=dict)

    def as_input(self) -> dict[str, Any]:
        return self._render("inputFacets")

    def as_output(self) -> dict[str, Any]:
        return self._render("outputFacets")

    def _render(self, io_key: str) -> dict[str, Any]:
        out: dict[str, Any] = {"namespace": self.dataset.namespace, "name": self.dataset.name}
        if self.facets:
            out["facets"] = self.facets
        if self.io_facets:
            out[io_key] = self.io_facets
        return out


@dataclass(frozen=True)
class ParentRun:
    """The orchestrator run (and job) an asset's run belongs to."""

    namespace: str
    job_name: str
    run_id: str

    def facet(self) -> dict[str, Any]:
        return facet(
            "parent",
            run={"runId": self.run_id},
            job={"namespace": self.namespace, "name": self.job_name},
        )


def run_event(
    event_type: EventType,
    event_time: datetime | float,
    namespace: str,
    job_name: str,
    run_id: str,
    *,
    parent: ParentRun | None = None,
    inputs: Sequence[Dataset] = (),
    outputs: Sequence[Dataset] = (),
    job_facets: Mapping[str, Any] | None = None,
    run_facets: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """One OpenLineage RunEvent."""
    run: dict[str, Any] = {"runId": run_id}
    facets: dict[str, Any] = dict(run_facets or {})
    if parent is not None:
        facets["parent"] = parent.facet()
    if error is not None:
        facets["errorMessage"] = facet("errorMessage", message=error, programmingLanguage="python")
    facets.setdefault(
        "processing_engine",
        facet("processing_engine", version=__version__, name="fabric", openlineageAdapterVersion=__version__),
    )
    run["facets"] = facets
    job: dict[str, Any] = {"namespace": namespace, "name": job_name}
    if job_facets:
        job["facets"] = dict(job_facets)
    return {
        "eventType": event_type,
        "eventTime": iso(event_time),
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
        "run": run,
        "job": job,
        "inputs": [d.as_input() for d in inputs],
        "outputs": [d.as_output() for d in outputs],
    }


def schema_facet(columns: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The schema facet of a table: (name, type) per column, in table order."""
    return facet(
        "schema",
        fields=[
            {"name": name, "type": type_, "ordinal_position": i}
            for i, (name, type_) in enumerate(columns, start=1)
        ],
    )


def job_type_facet(job_type: str, integration: str = "FABRIC") -> dict[str, Any]:
    return facet("jobType", processingType="BATCH", integration=integration, jobType=job_type)
