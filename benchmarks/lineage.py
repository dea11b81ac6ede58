"""Benchmark: writing OpenLineage events, Fabric's own JSON vs the `openlineage-python` client.

    python benchmarks/lineage.py [--rows N [N ...]] [--json]

N asset runs (2N events: START and COMPLETE) shaped like Fabric's dbt model runs: parent facet,
one input and one output table with a 20-column schema facet and column lineage. Each side
builds the events and appends them to a JSON lines file, in a fresh process:

- Fabric: `fabric.lineage.events.run_event` + `FileTransport`;
- baseline `openlineage-python`: the client's `event_v2` classes and facets, emitted through
  `OpenLineageClient` with its `FileTransport` (append mode, one file). Needs the `bench` extra.

Also reported per line: `fabric_import_s` / `baseline_import_s` (importing the emitting code in
a fresh interpreter), which a hook pays once per step process.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = "openlineage-python"
COLUMNS = 20

_FABRIC = """
import time
started = time.perf_counter()
from fabric.lineage.events import Dataset, ParentRun, child_run_id, facet, run_event, schema_facet
from fabric.lineage.naming import DatasetName
from fabric.lineage.transport import FileTransport
imported = time.perf_counter()
rows, out = {rows}, {out!r}
parent = ParentRun("bench", "fabric_daily", "3721602e-e07c-4e6b-acee-8817729522ab")
columns = [(f"c{{i}}", "VARCHAR") for i in range({columns})]
transport = FileTransport(__import__("pathlib").Path(out))
for n in range(rows):
    schema = {{"schema": schema_facet(columns)}}
    source = Dataset(DatasetName("duckdb:///w.duckdb", f"w.staging.t{{n}}"), dict(schema))
    target = Dataset(DatasetName("duckdb:///w.duckdb", f"w.integrated.t{{n}}"), dict(schema))
    target.facets["columnLineage"] = facet("columnLineage", fields={{
        c: {{"inputFields": [{{"namespace": "duckdb:///w.duckdb", "name": f"w.staging.t{{n}}", "field": c}}]}}
        for c, _ in columns}})
    run_id = child_run_id(parent.run_id, f"integrated/t{{n}}")
    transport.emit([
        run_event("START", 1.7e9, "bench", f"integrated/t{{n}}", run_id, parent=parent, inputs=[source]),
        run_event("COMPLETE", 1.7e9 + 1, "bench", f"integrated/t{{n}}", run_id, parent=parent,
                  inputs=[source], outputs=[target]),
    ])
print(imported - started, time.perf_counter() - imported)
"""

_BASELINE = """
import time
started = time.perf_counter()
import uuid
from datetime import datetime, timezone
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import column_lineage_dataset, parent_run, schema_dataset
from openlineage.client.transport.file import FileConfig, FileTransport
imported = time.perf_counter()
rows, out = {rows}, {out!r}
transport = FileTransport(FileConfig(log_file_path=out + "/events.jsonl", append=True))
client = OpenLineageClient(transport=transport)
parent = parent_run.ParentRunFacet(
    run=parent_run.Run(runId="3721602e-e07c-4e6b-acee-8817729522ab"),
    job=parent_run.Job(namespace="bench", name="fabric_daily"),
)
fields = [schema_dataset.SchemaDatasetFacetFields(name=f"c{{i}}", type="VARCHAR", ordinal_position=i + 1)
          for i in range({columns})]
for n in range(rows):
    schema = schema_dataset.SchemaDatasetFacet(fields=fields)
    source = InputDataset(
        namespace="duckdb:///w.duckdb", name=f"w.staging.t{{n}}", facets={{"schema": schema}}
    )
    lineage = column_lineage_dataset.ColumnLineageDatasetFacet(fields={{
        f.name: column_lineage_dataset.Fields(inputFields=[column_lineage_dataset.InputField(
            namespace="duckdb:///w.duckdb", name=f"w.staging.t{{n}}", field=f.name)]) for f in fields}})
    target = OutputDataset(namespace="duckdb:///w.duckdb", name=f"w.integrated.t{{n}}",
                           facets={{"schema": schema, "columnLineage": lineage}})
    run = Run(runId=str(uuid.uuid5(uuid.NAMESPACE_URL, f"t{{n}}")), facets={{"parent": parent}})
    job = Job(namespace="bench", name=f"integrated/t{{n}}")
    for state, outputs in ((RunState.START, []), (RunState.COMPLETE, [target])):
        client.emit(RunEvent(eventType=state, eventTime=datetime.now(timezone.utc).isoformat(), run=run,
                             job=job, producer="urn:bench", inputs=[source], outputs=outputs))
print(imported - started, time.perf_counter() - imported)
"""


def _run(script: str) -> tuple[float, float, int]:
    """Run `script` in a fresh interpreter: (import s, emit s, peak RSS MB of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    imported, emitted = (float(x) for x in done.stdout.split())
    peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return imported, emitted, peak // 1024


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1000], help="asset runs (2 events each)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as fabric_dir, tempfile.TemporaryDirectory() as client_dir:
            fabric = _run(_FABRIC.format(rows=rows, out=fabric_dir, columns=COLUMNS))
            baseline = _run(_BASELINE.format(rows=rows, out=client_dir, columns=COLUMNS))
            written = _size(Path(fabric_dir))
            events = sum(1 for p in Path(fabric_dir).iterdir() for _ in p.open())
        line = {
            "case": f"openlineage_file_{rows}",
            "rows": rows,
            "bytes": written,
            "fabric_s": round(fabric[1], 3),
            "baseline": BASELINE,
            "baseline_s": round(baseline[1], 3),
            "ratio": round(baseline[1] / fabric[1], 2),
            "peak_rss_mb": fabric[2],
            "events": events,
            "fabric_import_s": round(fabric[0], 3),
            "baseline_import_s": round(baseline[0], 3),
        }
        if args.json:
            print(json.dumps(line))
        else:
            print(
                f"{line['case']}: {events} events, {written / 1e6:.1f} MB; Fabric {line['fabric_s']} s "
                f"(import {line['fabric_import_s']} s), {BASELINE} {line['baseline_s']} s "
                f"(import {line['baseline_import_s']} s), ratio {line['ratio']}"
            )


if __name__ == "__main__":
    main()
