"""`fabric publish ...`: plan, publish and replay from the command line.

`plan` is the dry run (creates/updates/deletes per target, nothing written or sent), `run`
publishes a window outside Dagster (same code as the publish assets; `--full-resync` re-sends
every record, with the same message ids), `replay` resends a target's dead letters. Every
command honours the quality gate of each day, like the assets.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fabric.config import FabricConfig, load_config
from fabric.partitions import Window
from fabric.warehouse import Warehouse

app = typer.Typer(help="Publishing to business systems: plan, run, replay.", no_args_is_help=True)
console = Console()

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="fabric.yaml (default: $FABRIC_CONFIG or ./fabric.yaml)"),
]
TargetOption = Annotated[
    list[str] | None, typer.Option("--target", "-t", help="publisher name (repeatable; default: all)")
]
StartOption = Annotated[str, typer.Option("--from", help="first partition, YYYY-MM-DD")]
EndOption = Annotated[str | None, typer.Option("--to", help="last partition (default: --from)")]
ResyncOption = Annotated[
    bool, typer.Option("--full-resync", help="send every record again, changed or not (same ids)")
]


def _targets(cfg: FabricConfig, names: list[str] | None) -> list[str]:
    chosen = names or list(cfg.publishers)
    unknown = [n for n in chosen if n not in cfg.publishers]
    if unknown:
        raise typer.BadParameter(
            f"not in fabric.yaml publishers: {', '.join(unknown)} (known: {', '.join(cfg.publishers)})"
        )
    return chosen


@app.command("plan")
def plan_command(
    start: StartOption, end: EndOption = None, target: TargetOption = None,
    full_resync: ResyncOption = False, config: ConfigOption = None,
) -> None:  # fmt: skip
    """Dry run: what publishing the window would create, update and delete per target."""
    from fabric.publish import plan

    cfg = load_config(config)
    warehouse = Warehouse(cfg.resolve(cfg.warehouse.path))
    window = Window.parse(start, end)
    table = Table(
        "target", "creates", "updates", "deletes", "unchanged", "dead-lettered (held)",
        "older than target", "pending in outbox", "blocked days", title=f"publish plan for {window}",
    )  # fmt: skip
    for name in _targets(cfg, target):
        result = plan(cfg, warehouse, name, window, full_resync=full_resync)
        p = result.plan
        table.add_row(
            name, *(f"{n:,}" for n in (p.creates, p.updates, p.deletes, p.unchanged, p.held_dead, p.older)),
            f"{result.pending:,}", ", ".join(d.isoformat() for d in result.blocked) or "-",
        )  # fmt: skip
    console.print(table)


@app.command("run")
def run_command(
    start: StartOption, end: EndOption = None, target: TargetOption = None,
    full_resync: ResyncOption = False, config: ConfigOption = None,
) -> None:  # fmt: skip
    """Publish the window's open days to each target (stage changes, deliver the outbox)."""
    from fabric.publish import publish

    cfg = load_config(config)
    warehouse = Warehouse(cfg.resolve(cfg.warehouse.path))
    window = Window.parse(start, end)
    run_id = f"cli-publish-{uuid.uuid4()}"
    for name in _targets(cfg, target):
        result = publish(cfg, warehouse, name, window, run_id, full_resync=full_resync)
        d = result.delivery
        console.print(
            f"{name}: {d.created:,} created, {d.updated:,} updated, {d.deleted:,} deleted, "
            f"{result.plan.unchanged:,} unchanged, {d.dead_lettered:,} dead-lettered "
            f"({result.seconds:.1f} s)"
        )
        for day, reason in result.blocked.items():
            console.print(f"  not published {day}: {reason}")


@app.command("replay")
def replay_command(target: TargetOption = None, config: ConfigOption = None) -> None:
    """Move each target's dead letters back to the outbox and deliver them."""
    from fabric.publish import replay

    cfg = load_config(config)
    warehouse = Warehouse(cfg.resolve(cfg.warehouse.path))
    run_id = f"cli-replay-{uuid.uuid4()}"
    for name in _targets(cfg, target):
        moved, delivery = replay(cfg, warehouse, name, run_id)
        delivered = delivery.created + delivery.updated + delivery.deleted
        console.print(
            f"{name}: {moved:,} dead letter(s) replayed; delivered {delivered:,}, "
            f"dead-lettered again {delivery.dead_lettered:,}"
        )
