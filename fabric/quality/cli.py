"""`fabric quality docs`: build the Data Docs site from the stored validation results.

A typer sub-app (a command group, also with a single command); `fabric/cli.py` mounts its
commands under `fabric quality`.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Data quality: suites, results, the gate.", no_args_is_help=True)
console = Console()

RECENT_PARTITIONS = 14


@app.callback()
def quality() -> None:
    """Data quality: suites, results, the gate."""


@app.command("docs")
def docs(
    partition: Annotated[
        list[str] | None,
        typer.Option(help="a day to render, YYYY-MM-DD (repeatable; default: the latest 14)"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="fabric.yaml (default: $FABRIC_CONFIG or ./fabric.yaml)"),
    ] = None,
) -> None:
    """Render GE Data Docs for the latest validation of each governed table and day."""
    from fabric.config import load_config
    from fabric.quality.docs import build_data_docs, quality_docs_dir, recent_partitions
    from fabric.quality.suites import load_suites
    from fabric.warehouse import Warehouse

    cfg = load_config(config)
    suites = {t: s for t, s in load_suites(cfg).items() if t in cfg.quality.governed_tables}
    with Warehouse(cfg.resolve(cfg.warehouse.path)).connect(read_only=True) as con:
        try:
            days = (
                [date.fromisoformat(p) for p in partition]
                if partition
                else recent_partitions(con, list(suites), RECENT_PARTITIONS)
            )
        except ValueError as exc:
            raise typer.BadParameter(f"--partition must be YYYY-MM-DD ({exc})") from None
        index = build_data_docs(con, suites, quality_docs_dir(cfg), days)
    shown = ", ".join(d.isoformat() for d in days) if days else "none validated yet"
    console.print(f"Data Docs for {len(suites)} suite(s), partitions: {shown}")
    console.print(f"open: {index.as_uri()}")
