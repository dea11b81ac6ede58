"""Publish records as CloudEvents 1.0 in structured JSON mode.

`id` is the record's message id (a re-send keeps it, so brokers and consumers drop the
duplicate), `subject` the entity key, `time` when the record was staged, `data` the payload, and
the lineage id is the extension attribute `lineageid` (extension names are lower-case letters and
digits only). The payload JSON is spliced in as it is stored, not parsed and re-encoded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import quote

import pyarrow as pa

SPEC_VERSION = "1.0"
EVENT_TYPE = "io.fabric.churn_score.published"
DELETE_EVENT_TYPE = "io.fabric.churn_score.deleted"
CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"


def event_source(project: str, target: str) -> str:
    """The CloudEvent `source` of a target: `urn:fabric:<project>:publish:<target>`."""
    return f"urn:fabric:{quote(project, safe='')}:publish:{quote(target, safe='')}"


def _time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def events(batch: pa.Table, source: str) -> Iterator[tuple[str, str]]:
    """(message id, CloudEvent JSON text) for each record of `batch`, in order."""
    prefix = '{"specversion":"1.0","source":' + json.dumps(source)
    for message_id, entity_key, operation, enqueued_at, lineage_id, payload in zip(
        batch.column("message_id").to_pylist(),
        batch.column("entity_key").to_pylist(),
        batch.column("operation").to_pylist(),
        batch.column("enqueued_at").to_pylist(),
        batch.column("lineage_id").to_pylist(),
        batch.column("payload").to_pylist(),
        strict=True,
    ):
        kind = DELETE_EVENT_TYPE if operation == "delete" else EVENT_TYPE
        yield (
            message_id,
            f'{prefix},"id":"{message_id}","type":"{kind}","subject":{json.dumps(entity_key)},'
            f'"time":"{_time(enqueued_at)}","datacontenttype":"application/json",'
            f'"lineageid":{json.dumps(lineage_id)},"data":{payload}}}',
        )
