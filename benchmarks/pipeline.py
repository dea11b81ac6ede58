"""The whole Fabric flow, stage by stage, against the same work done without Dagster.

    python benchmarks/pipeline.py --customers 20000 --days 7 [--history-days 30] [--json]

Two copies of one generated estate: in copy A the `fabric_daily` job materializes every asset for
the window in one in-process Dagster run (stage time = the step's duration from the run's
events); in copy B the same library functions are called directly, in the same order, with no
orchestration. `ratio = baseline_s / fabric_s` per stage shows what Dagster's orchestration
(events, metadata, checks as separate steps) costs. Output format: ../shared/ARCHITECTURE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402
import duckdb  # noqa: E402

from fabric.config import FabricConfig, load_config  # noqa: E402
from fabric.partitions import Window  # noqa: E402


def _peak_rss_mb() -> int:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int(max(own, children) / 1024)


def _stage_of(step_key: str) -> str:
    """Group Dagster step keys into the flow's stages."""
    if step_key.startswith("raw__"):
        return "ingest"
    if step_key.startswith("dbt_models"):
        return "integrate (dbt build)"
    if "great_expectations" in step_key or step_key.startswith("quality__"):
        return "quality (GE + gate)"
    if step_key.startswith("scores__"):
        return "scoring"
    if step_key.startswith("publish__"):
        return "publish"
    if step_key.startswith("analytics__"):
        return "analytics snapshot"
    return step_key


def _dagster_stage_seconds(result: dg.ExecuteInProcessResult) -> dict[str, float]:
    """Per-stage seconds from the run's own step durations."""
    seconds: dict[str, float] = defaultdict(float)
    for event in result.all_events:
        if event.event_type_value == "STEP_SUCCESS" and event.step_key:
            duration_ms = getattr(event.event_specific_data, "duration_ms", 0.0)
            seconds[_stage_of(event.step_key)] += duration_ms / 1000
    return dict(seconds)


def _direct_stage_seconds(cfg: FabricConfig, window: Window) -> dict[str, float]:
    """The same work, called directly (no Dagster), timed per stage."""
    from fabric.analytics import refresh_snapshot
    from fabric.ingest import ingest_entity
    from fabric.integrate.dbt import run_dbt_build
    from fabric.publish import publish as publish_target
    from fabric.quality import gate_decisions, record_gate, require_open, validate_window
    from fabric.scoring import score_window
    from fabric.warehouse import Warehouse

    warehouse = Warehouse(cfg.resolve(cfg.warehouse.path))
    tables = cfg.quality.governed_tables
    run_id = "benchmark-direct"

    def gate(con: duckdb.DuckDBPyConnection, day: date) -> None:
        require_open(con, day, tables)

    def quality() -> None:
        for table in tables:
            validate_window(cfg, warehouse, table, window, run_id)
        with warehouse.connect() as con:
            record_gate(con, gate_decisions(con, window.days(), tables), run_id)

    def publish() -> None:
        for name in cfg.publishers:
            publish_target(cfg, warehouse, name, window, run_id, gate=gate)

    stages: list[tuple[str, Callable[[], object]]] = [
        ("ingest", lambda: [
            ingest_entity(cfg, s, e, window, run_id, warehouse)
            for s, e in cfg.source_entities()
        ]),
        ("integrate (dbt build)", lambda: run_dbt_build(cfg, window)),
        ("quality (GE + gate)", quality),
        ("scoring", lambda: score_window(cfg, warehouse, window, run_id, gate=gate)),
        ("publish", publish),
        ("analytics snapshot", lambda: refresh_snapshot(cfg, warehouse)),
    ]
    seconds = {}
    for name, work in stages:
        started = time.perf_counter()
        work()
        seconds[name] = time.perf_counter() - started
    return seconds


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send fd 1 to stderr (dbt, run as a subprocess, prints there) so --json stays parseable."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _warm_up() -> None:
    """Import what both paths import, so neither pays the one-off import cost (GE alone ~4 s)."""
    import great_expectations  # noqa: F401
    import pandas  # noqa: F401
    import sklearn.ensemble  # noqa: F401

    import fabric.analytics
    import fabric.ingest
    import fabric.publish
    import fabric.quality
    import fabric.scoring  # noqa: F401


def _champion(workdir: Path, homes: Sequence[Path]) -> None:
    """Register a champion trained on synthetic features (same 12-feature signature), so both
    paths score with a real model; its accuracy does not matter here, its predict cost does."""
    from fabric.scoring.synthetic import write_synthetic_estate
    from fabric.scoring.train import train
    from fabric.warehouse import Warehouse

    home = workdir / "model"
    os.environ["FABRIC_HOME"] = str(home)
    config = load_config(REPO / "fabric.yaml")
    warehouse = Warehouse(config.resolve(config.warehouse.path))
    end = date.today()
    write_synthetic_estate(warehouse, 5_000, end - timedelta(days=99), end, 30, seed=3)
    train(config, warehouse, "benchmark-champion")
    for target in homes:
        shutil.copytree(home / "models", target / "models", dirs_exist_ok=True)


def _window_rows(manifest: dict[str, Any], window: Window) -> int:
    """Source rows in the window's daily files (the CRM database is counted by its loads)."""
    total = 0
    for name, entry in manifest["files"].items():
        stamp = name.rsplit("_", 1)[-1].split(".")[0]
        if stamp.isdigit() and window.start <= date.fromisoformat(
            f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:]}"
        ) <= window.end:
            total += int(entry["rows"])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--history-days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="one JSON object per stage")
    parser.add_argument("--workdir", type=Path, default=None, help="kept if given (default: temp)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fabric-bench-"))
    end = date.today() - timedelta(days=1)
    homes = {"dagster": workdir / "dagster", "direct": workdir / "direct"}

    from fabric.demo.generate import EstateSpec, generate_estate

    os.environ["FABRIC_HOME"] = str(homes["dagster"])
    config = load_config(REPO / "fabric.yaml")
    assert config.demo is not None
    spec = EstateSpec(customers=args.customers, days=args.days, history_days=args.history_days,
                      seed=args.seed, end_date=end)
    started = time.perf_counter()
    manifest = generate_estate(config.resolve(config.demo.root), spec)
    generate_s = time.perf_counter() - started
    estate_bytes = sum(p.stat().st_size for p in config.resolve(config.demo.root).rglob("*") if p.is_file())
    shutil.copytree(homes["dagster"] / "demo", homes["direct"] / "demo", copy_function=os.link)
    window = Window(date.fromisoformat(manifest["window_start"]), end)

    from assets.runner import run_job
    from assets.schedules import DAILY_JOB
    from fabric.integrate.dbt import prepare_project

    prepare_project(config)
    _warm_up()
    _champion(workdir, list(homes.values()))
    os.environ["FABRIC_HOME"] = str(homes["dagster"])
    started = time.perf_counter()
    with _stdout_to_stderr():
        result = run_job(config, homes["dagster"], DAILY_JOB, window, log_level="WARNING")
    dagster_total = time.perf_counter() - started
    if not result.success:
        raise SystemExit("the Dagster run failed; see the run in the instance for the failing step")
    dagster_seconds = _dagster_stage_seconds(result)

    os.environ["FABRIC_HOME"] = str(homes["direct"])
    direct_config = load_config(REPO / "fabric.yaml")
    started = time.perf_counter()
    direct_seconds = _direct_stage_seconds(direct_config, window)
    direct_total = time.perf_counter() - started

    rows = _window_rows(manifest, window)
    case = f"pipeline_{args.customers // 1000}k_x{args.days}d"
    lines = [
        {"case": f"{case}:{stage}", "rows": rows, "bytes": estate_bytes,
         "fabric_s": round(dagster_seconds.get(stage, 0.0), 3),
         "baseline": "same library calls without Dagster", "baseline_s": round(seconds, 3),
         "ratio": round(seconds / dagster_seconds[stage], 3) if dagster_seconds.get(stage) else None,
         "peak_rss_mb": _peak_rss_mb()}
        for stage, seconds in direct_seconds.items()
    ]
    lines.append({"case": f"{case}:total", "rows": rows, "bytes": estate_bytes,
                  "fabric_s": round(dagster_total, 3), "baseline": "same library calls without Dagster",
                  "baseline_s": round(direct_total, 3), "ratio": round(direct_total / dagster_total, 3),
                  "peak_rss_mb": _peak_rss_mb()})
    if args.json:
        for line in lines:
            print(json.dumps(line))
    else:
        print(f"{platform.node()}: {os.cpu_count()} cores; estate {estate_bytes / 1e6:.0f} MB "
              f"generated in {generate_s:.1f} s; window {window}")
        print(f"{'stage':45} {'dagster s':>10} {'direct s':>10} {'ratio':>7}")
        for line in lines:
            print(f"{line['case']:45} {line['fabric_s']:>10} {line['baseline_s']:>10} {line['ratio']!s:>7}")
        print(f"peak RSS {_peak_rss_mb()} MB")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
