"""The `fabric` command line.

Heavy imports (Dagster, dbt, scikit-learn, GE) happen inside the commands that need them, so
`fabric --help` and `fabric sql` answer quickly.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from fabric.config import DemoConfig, FabricConfig, load_config
from fabric.copybook.cli import app as copybook_app
from fabric.errors import FabricError
from fabric.partitions import Window
from fabric.publish.cli import app as publish_app
from fabric.quality.cli import docs as quality_docs
from fabric.scoring.cli import app as models_app
from fabric.warehouse import Warehouse

if TYPE_CHECKING:
    from assets.runner import FlowResult
    from fabric.demo.generate import EstateSpec

app = typer.Typer(
    help="Fabric: integrate legacy silos, score customers, publish scores back.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
demo_app = typer.Typer(help="The demo estate (Brightwave Broadband).", no_args_is_help=True)
dbt_app = typer.Typer(help="The dbt project.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")
quality_app = typer.Typer(help="Data quality: suites, results, the gate.", no_args_is_help=True)
app.add_typer(dbt_app, name="dbt")
app.add_typer(quality_app, name="quality")
quality_app.command("docs")(quality_docs)

app.add_typer(copybook_app, name="copybook", help="COBOL copybook files (mainframe extracts).")
app.add_typer(models_app, name="models")
app.add_typer(publish_app, name="publish")

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="fabric.yaml (default: $FABRIC_CONFIG or ./fabric.yaml)"),
]


def fabric_home(config: FabricConfig) -> Path:
    """Where Fabric keeps its state (warehouse, models, Dagster instance): `$FABRIC_HOME`."""
    return config.resolve(Path(os.environ.get("FABRIC_HOME", ".fabric")))


@contextmanager
def _progress() -> Iterator[Progress]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        yield progress


@contextmanager
def _stage(name: str, timings: dict[str, float]) -> Iterator[None]:
    console.print(f"[bold]{name}[/bold] ...")
    started = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - started
    console.print(f"  done in {timings[name]:.1f} s")


@app.command("check-config")
def check_config(config: ConfigOption = None) -> None:
    """Validate fabric.yaml and list what it declares."""
    cfg = load_config(config)
    table = Table("source", "entity", "kind", title=f"{cfg.project}: sources")
    for source, entity in cfg.source_entities():
        table.add_row(source, entity, cfg.sources[source].kind)
    console.print(table)
    console.print(f"publishers: {', '.join(cfg.publishers) or '(none)'}")
    console.print(f"warehouse: {cfg.resolve(cfg.warehouse.path)}")


@demo_app.command("generate")
def demo_generate(
    customers: Annotated[int | None, typer.Option(help="real customers (default demo.customers)")] = None,
    days: Annotated[int | None, typer.Option(help="days in the demo window (default demo.days)")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed; same seed, same files")] = None,
    history_days: Annotated[int, typer.Option(help="labelled history before the window")] = 120,
    end_date: Annotated[str | None, typer.Option(help="last day, YYYY-MM-DD (default: yesterday)")] = None,
    out: Annotated[Path | None, typer.Option(help="output folder (default: demo.root)")] = None,
    fault: Annotated[list[str] | None, typer.Option(help="inject a fault (repeatable)")] = None,
    reuse: Annotated[bool, typer.Option(help="keep an existing estate made with the same settings")] = False,
    config: ConfigOption = None,
) -> None:
    """Generate the demo estate: CRM SQLite, ERP fixed-width, support CSV, web JSON lines."""
    from fabric.demo.generate import EstateSpec, generate_estate

    cfg = load_config(config)
    demo = cfg.demo or DemoConfig()
    target = out or cfg.resolve(demo.root)
    spec = EstateSpec(
        customers=customers or demo.customers,
        days=days or demo.days,
        history_days=history_days,
        seed=demo.seed if seed is None else seed,
        end_date=date.fromisoformat(end_date) if end_date else date.today() - timedelta(days=1),
        faults=tuple(fault or ()),
    )
    manifest_file = target / "manifest.json"
    if reuse and manifest_file.is_file() and _same_estate(json.loads(manifest_file.read_text()), spec):
        console.print(f"reusing the demo estate in {target} (same settings)")
        return
    with _progress() as progress:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        manifest = generate_estate(target, spec, progress=report)
    console.print(
        f"demo estate in {target}: {manifest['history_start']} .. {manifest['end_date']} "
        f"(window from {manifest['window_start']})"
    )


def _same_estate(manifest: dict[str, object], spec: EstateSpec) -> bool:
    assert spec.end_date is not None
    return (
        manifest.get("seed") == spec.seed
        and manifest.get("customers") == spec.customers
        and manifest.get("days") == spec.days
        and manifest.get("history_days") == spec.history_days
        and manifest.get("end_date") == spec.end_date.isoformat()
        and list(manifest.get("faults") or []) == list(spec.faults)  # type: ignore[call-overload]
    )


@dbt_app.command("prepare")
def dbt_prepare(config: ConfigOption = None) -> None:
    """Parse the dbt project into target/manifest.json (needed before Dagster loads)."""
    from fabric.integrate.dbt import prepare_project

    manifest = prepare_project(load_config(config))
    console.print(f"dbt manifest: {manifest}")


@app.command("train")
def train(
    window: Annotated[
        str | None, typer.Option(help="train on as-of dates A..B (YYYY-MM-DD..YYYY-MM-DD)")
    ] = None,
    alias: Annotated[
        str | None, typer.Option("--as", help="champion or challenger (default: challenger with --window)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Train the churn model on labelled history (time split) and register it.

    Without --window: the last scoring.training.history_days, registered as champion. With
    --window A..B: that window, registered as challenger (compare it, then `fabric models promote`).
    """
    from fabric.scoring.train import train as train_model

    cfg = load_config(config)
    span = None
    if window is not None:
        first, sep, last = window.partition("..")
        if not sep:
            raise typer.BadParameter("expected A..B, e.g. 2026-01-01..2026-03-31", param_hint="--window")
        span = Window.parse(first, last)
    card = train_model(cfg, Warehouse(cfg.resolve(cfg.warehouse.path)), f"train-{uuid.uuid4()}", span, alias)
    console.print_json(data=card.to_dict())


@app.command("run")
def run(
    start: Annotated[str, typer.Option("--from", help="first partition, YYYY-MM-DD")],
    end: Annotated[str | None, typer.Option("--to", help="last partition (default: --from)")] = None,
    job: Annotated[str, typer.Option(help="fabric_daily (everything) or fabric_integrate")] = (
        "fabric_daily"
    ),
    config: ConfigOption = None,
) -> None:
    """Materialize a job for a partition range in one run (a backfill), recorded in the instance."""
    from assets.runner import run_job

    cfg = load_config(config)
    window = Window.parse(start, end)
    result = run_job(cfg, fabric_home(cfg), job, window)
    console.print(f"{job} for {window}: {'succeeded' if result.success else 'FAILED'}")
    if not result.success:
        raise typer.Exit(1)


@demo_app.command("run")
def demo_run(
    days: Annotated[int | None, typer.Option(help="days to materialize (default demo.days)")] = None,
    config: ConfigOption = None,
) -> None:
    """The whole flow on the demo estate, then a summary.

    First run: backfill the labelled history (ingest + integrate), train the champion. Every run:
    materialize every asset for the last `days` partitions in one Dagster run.
    """
    from assets.runner import demo_flow

    cfg = load_config(config)
    timings: dict[str, float] = {}
    flow = demo_flow(cfg, fabric_home(cfg), days, stage=lambda n: _stage(n, timings))
    _render_summary(cfg, flow, timings)
    if not flow.succeeded:
        raise typer.Exit(1)


def _render_model(cfg: FabricConfig, warehouse: Warehouse, window: Window) -> None:
    """The champion's holdout metrics and, on the demo, its AUC against the hidden future."""
    from fabric.demo.evaluate import evaluate_against_truth
    from fabric.scoring import ModelRegistry

    registry = ModelRegistry(cfg.resolve(cfg.scoring.registry_dir))
    name = cfg.scoring.model_name
    if not registry.has_alias(name, "champion"):
        console.print("no champion model registered: scores come from the rule baseline")
        return
    card = registry.load_card(name)
    model, rules = card.metrics["model"], card.metrics["rules"]
    console.print(
        f"model {name} v{card.version}: holdout AUC {model.auc:.3f} vs rule baseline {rules.auc:.3f} "
        f"({card.holdout_start}..{card.holdout_end})"
    )
    if cfg.demo is not None:
        truth = evaluate_against_truth(
            warehouse, cfg.resolve(cfg.demo.root), window.end, cfg.scoring.churn_horizon_days
        )
        if truth is not None and truth.auc is not None:
            console.print(
                f"scores of {truth.day} against the demo's hidden future: AUC {truth.auc:.3f} "
                f"({truth.positives:,} of {truth.rows:,} customers churn within "
                f"{cfg.scoring.churn_horizon_days} days)"
            )


def _render_summary(cfg: FabricConfig, flow: FlowResult, timings: dict[str, float]) -> None:
    from fabric.summary import window_summary

    warehouse = Warehouse(cfg.resolve(cfg.warehouse.path))
    summary = window_summary(warehouse, flow.window)
    ingest = Table("source entity", "rows loaded", "rows quarantined", title=f"Ingested {flow.window}")
    for name, loaded, quarantined in summary.ingested:
        ingest.add_row(name, f"{loaded:,}", f"{quarantined:,}")
    console.print(ingest)
    if summary.missing_files:
        console.print(f"[yellow]{summary.missing_files} expected source files were missing[/yellow]")
    passed = sum(c.passed for c in flow.checks)
    console.print(f"checks: {passed} passed, {len(flow.checks) - passed} failed")
    for check in flow.checks:
        if not check.passed:
            console.print(f"  [red]failed[/red] {check.asset}:{check.check} ({check.severity})")
    if summary.days_blocked:
        console.print(f"[red]quality gate closed for {', '.join(summary.days_blocked)}[/red]")
    scorers = ", ".join(f"{n:,} by {s}" for s, n in summary.scores_by_scorer.items())
    console.print(
        f"customers scored: {summary.customers_scored:,} over {summary.days_scored} days ({scorers})"
    )
    _render_model(cfg, warehouse, flow.window)
    for target, rows in summary.published:
        console.print(f"published to {target}: {rows:,} score records")
    for step in flow.failed_steps:
        console.print(f"[red]failed step:[/red] {step}")
    console.print(f"warehouse: {warehouse.path}")
    console.print(f"analytics snapshot (read-only): {cfg.resolve(cfg.warehouse.analytics_path)}")
    console.print('query it: fabric sql "select * from churn_scores limit 10"')
    console.print("open the UI: source .venv/bin/activate && dagster dev   (http://127.0.0.1:3000)")
    for name, seconds in timings.items():
        console.print(f"  {seconds:6.1f} s  {name}")


@quality_app.command("report")
def quality_report(
    partition: Annotated[str, typer.Option(help="the day, YYYY-MM-DD")],
    config: ConfigOption = None,
) -> None:
    """Per-table results of the latest validation of a day, and the gate decision."""
    from fabric.quality import render_report

    cfg = load_config(config)
    with Warehouse(cfg.resolve(cfg.warehouse.path)).connect(read_only=True) as con:
        console.print(
            render_report(con, date.fromisoformat(partition), cfg.quality.governed_tables)
        )


@app.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default serving.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default serving.port)")] = None,
    config: ConfigOption = None,
) -> None:
    """Serve every registered model over the Open Inference Protocol (REST, /v2/...)."""
    from fabric.serving import serve as run_server

    run_server(load_config(config), host, port)


@app.command("trace")
def trace(
    lineage_id: Annotated[str | None, typer.Argument(help="the lineage id of a published record")] = None,
    target: Annotated[str | None, typer.Option(help="publisher name in fabric.yaml (with --key)")] = None,
    key: Annotated[str | None, typer.Option(help="the record's key at the target, e.g. a CRM id")] = None,
    config: ConfigOption = None,
) -> None:
    """The chain of one published record: target, score, quality gate, dbt models, raw source rows."""
    from fabric.lineage.trace import lineage_id_at_target, render_trace, trace_record

    if (lineage_id is None) == (target is None or key is None):
        raise typer.BadParameter("give a lineage id, or --target and --key (not both)")
    cfg = load_config(config)
    with Warehouse(cfg.resolve(cfg.warehouse.path)).connect(read_only=True) as con:
        found = lineage_id or lineage_id_at_target(cfg, con, str(target), str(key))
        lines = render_trace(trace_record(cfg, con, found))
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)


@app.command("sql")
def sql(
    query: Annotated[str, typer.Argument(help="SQL over the analytics snapshot")],
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    limit: Annotated[int, typer.Option(help="rows shown in table format")] = 50,
    config: ConfigOption = None,
) -> None:
    """Query the read-only analytics snapshot (safe while a run writes the warehouse)."""
    from fabric.analytics import open_snapshot

    cfg = load_config(config)
    with open_snapshot(cfg) as con:
        relation = con.sql(query)
        if fmt == "csv":
            relation.df().to_csv(sys.stdout, index=False)
            return
        if fmt == "json":
            sys.stdout.write(relation.df().to_json(orient="records", date_format="iso") + "\n")
            return
        columns = relation.columns
        rows = relation.fetchmany(limit + 1)
    table = Table(*columns)
    for row in rows[:limit]:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)
    if len(rows) > limit:
        console.print(f"(first {limit} rows; use --limit or --format csv for more)")


def main() -> None:
    """Entry point that turns Fabric's own errors into a clear message and exit code 2."""
    try:
        app()
    except FabricError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from None
