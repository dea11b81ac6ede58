"""`fabric models ...`: the model registry from the command line.

`list` shows every version with its aliases and holdout metrics, `show` one version's model
card, `promote` makes the challenger the champion, `rollback` returns the champion to the one
before it. Alias changes are recorded in the registry's alias history with the CLI run id.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fabric.config import FabricConfig, load_config
from fabric.scoring.registry import ModelCard, ModelRegistry

app = typer.Typer(help="The model registry: versions, aliases, promotion.", no_args_is_help=True)
console = Console()

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="fabric.yaml (default: $FABRIC_CONFIG or ./fabric.yaml)"),
]
ModelOption = Annotated[str | None, typer.Option("--model", help="model name (default scoring.model_name)")]


def _registry(config: Path | None, model: str | None) -> tuple[FabricConfig, ModelRegistry, str]:
    cfg = load_config(config)
    return cfg, ModelRegistry(cfg.resolve(cfg.scoring.registry_dir)), model or cfg.scoring.model_name


def _metric(card: ModelCard, scorer: str, name: str) -> str:
    metrics = card.metrics.get(scorer)
    return f"{getattr(metrics, name):.3f}" if metrics else "-"


@app.command("list")
def list_models(model: ModelOption = None, config: ConfigOption = None) -> None:
    """Every registered version, newest first, with aliases and holdout AUC."""
    _, registry, name = _registry(config, model)
    versions = registry.list_versions(name)
    if not versions:
        console.print(f"no versions of {name!r} in {registry.root} (train one with `fabric train`)")
        return
    by_version: dict[int, list[str]] = {}
    for alias, version in registry.aliases(name).items():
        by_version.setdefault(version, []).append(alias)
    table = Table(
        "version", "aliases", "created", "training window", "rows", "AUC", "rules AUC", "run",
        title=f"model {name} ({registry.root})",
    )  # fmt: skip
    for version in reversed(versions):
        card = registry.load_card(name, version)
        window = f"{card.training_as_of_dates[0]}..{card.training_as_of_dates[-1]}"
        table.add_row(
            f"v{version}",
            ", ".join(sorted(by_version.get(version, []))),
            card.created_at.strftime("%Y-%m-%d %H:%M"),
            window,
            f"{card.training_rows:,}",
            _metric(card, "model", "auc"),
            _metric(card, "rules", "auc"),
            card.created_by_run,
        )
    console.print(table)


@app.command("show")
def show(
    version: Annotated[str, typer.Argument(help="version (3 or v3) or alias")] = "champion",
    model: ModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="the whole model card as JSON")] = False,
    config: ConfigOption = None,
) -> None:
    """One version's model card: signature, training window and data, metrics."""
    _, registry, name = _registry(config, model)
    card = registry.load_card(name, version)
    if as_json:
        console.print_json(data=card.to_dict())
        return
    aliases = sorted(a for a, v in registry.aliases(name).items() if v == card.version)
    console.print(
        f"[bold]{card.name} v{card.version}[/bold] {', '.join(aliases)}\n"
        f"  {card.algorithm}, created {card.created_at:%Y-%m-%d %H:%M} by run {card.created_by_run}\n"
        f"  trained on {card.training_rows:,} rows ({card.training_positives:,} positive) of "
        f"{len(card.training_as_of_dates)} as-of dates {card.training_as_of_dates[0]}.."
        f"{card.training_as_of_dates[-1]}; data SHA-256 {card.training_data_sha256[:16]}...\n"
        f"  holdout {card.holdout_start}..{card.holdout_end}; label {card.label} within "
        f"{card.horizon_days} days; invalid input: {card.invalid_input}"
    )
    signature = Table("feature", "type", "impute", "training range", title="signature")
    for spec in card.features:
        span = "-" if spec.min is None else f"{spec.min:g} .. {spec.max:g}"
        signature.add_row(spec.name, spec.dtype, "-" if spec.impute is None else f"{spec.impute:g}", span)
    console.print(signature)
    metrics = Table("scorer", "AUC", "PR-AUC", "precision", "recall", "threshold", "rows", title="holdout")
    for scorer, m in card.metrics.items():
        metrics.add_row(
            scorer, f"{m.auc:.3f}", f"{m.pr_auc:.3f}", f"{m.precision:.3f}", f"{m.recall:.3f}",
            f"{m.threshold:g}", f"{m.rows:,}",
        )  # fmt: skip
    console.print(metrics)


@app.command("promote")
def promote(model: ModelOption = None, config: ConfigOption = None) -> None:
    """Make the challenger the champion (the challenger alias is cleared)."""
    _, registry, name = _registry(config, model)
    previous = registry.aliases(name).get("champion")
    version = registry.promote(name, run_id=f"cli-promote-{uuid.uuid4()}")
    console.print(f"{name}: champion is now v{version} (was {_version(previous)})")


@app.command("rollback")
def rollback(model: ModelOption = None, config: ConfigOption = None) -> None:
    """Point the champion back at the champion before it (from the alias history)."""
    _, registry, name = _registry(config, model)
    previous = registry.aliases(name).get("champion")
    version = registry.rollback(name, run_id=f"cli-rollback-{uuid.uuid4()}")
    console.print(f"{name}: champion rolled back to v{version} (was {_version(previous)})")


@app.command("history")
def history(model: ModelOption = None, config: ConfigOption = None) -> None:
    """Every alias change, oldest first."""
    _, registry, name = _registry(config, model)
    table = Table("when", "alias", "action", "version", "previous", "run", title=f"{name} aliases")
    for change in registry.history(name):
        table.add_row(
            str(change.get("set_at", "")),
            str(change["alias"]),
            str(change.get("action", "set")),
            _version(change.get("version")),
            _version(change.get("previous")),
            str(change.get("run_id") or ""),
        )
    console.print(table)


def _version(version: object) -> str:
    return "-" if version is None else f"v{version}"
