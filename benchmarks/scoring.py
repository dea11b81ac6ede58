"""Benchmark: batch scoring through Fabric vs the same model's raw `predict_proba`.

    python benchmarks/scoring.py [--rows N [N ...]] [--json] [--cases in_process,remote]

For each size, N rows of the 12-feature demo shape (`features.customer_features`, one as-of
date, seeded hashes) are generated in a DuckDB file, and a 100-iteration HistGradientBoosting
model (the demo's parameters otherwise) is trained on 200k rows of the same shape and registered
as champion with its model card. Each case runs in a fresh process, so peak RSS is its own:

- `in_process` (Fabric): `fabric.scoring.score.score_window` for that day, the function the
  scoring asset calls: resolve the champion, stream the features from DuckDB in Arrow batches,
  input handling per the model card, predict, write the day's score rows (compact rows committed
  per batch, the day swapped in at the end; `fabric.scoring.scores_table`);
- baseline `sklearn predict_proba (in-memory numpy)`: the same model file, `predict_proba` on the
  same rows already in a float64 NumPy array (loading them is not timed);
- baseline `binned trees alone (in-memory numpy)`: what Fabric predicts with for this model,
  `fabric.scoring.binned.BinnedTrees` (the trees walked on the model's bins, bit-identical to
  `predict_proba` and faster), on the same in-memory array: Fabric's cost beyond prediction;
- baseline `hand-written duckdb read + predict_proba + insert`: the same job written by hand with
  no Fabric code: load the model, read the day's features into NumPy, `predict_proba`, insert the
  same score columns (lineage id included) into a table of the same shape in one transaction. It
  is the floor for what writing the scores costs on this machine.

All use the default thread pools (OpenMP over all cores), and every measured process runs with
`OMP_WAIT_POLICY=PASSIVE`, Fabric's default (see `fabric/scoring/__init__.py`), unless the
environment sets it: the baselines get the same OpenMP behaviour as Fabric. With `--json` one JSON object per
(case, baseline) line: case, rows, bytes (the DuckDB file), fabric_s, baseline, baseline_s,
ratio = baseline_s / fabric_s, peak_rss_mb (Fabric's process), baseline_peak_rss_mb, and the CPU
seconds of both timed spans (all threads) with cpu_ratio, steadier than wall time on a busy machine.

Cases are listed in `CASES` (name -> function run in the measuring process); another case (e.g.
a remote model server) is one more entry there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
from harness import REPO, cpu_seconds, measure, peak_rss_mb, rows_label

DAY = date(2026, 3, 31)
TRAINING_ROWS = 200_000
BASELINE = "sklearn predict_proba (in-memory numpy)"
BINNED = "binned trees alone (in-memory numpy)"
HAND_WRITTEN = "hand-written duckdb read + predict_proba + insert"
FEATURES = """
CREATE OR REPLACE TABLE features.customer_features AS
SELECT DATE '{day}' AS as_of_date,
       'FC' || lpad(CAST(i AS VARCHAR), 10, '0') AS fabric_customer_id,
       CAST(100000 + i AS BIGINT) AS crm_customer_id,
       CAST(hash(i, {seed}, 1) % 3000 AS INTEGER) AS tenure_days,
       CAST([19.99, 34.99, 54.99][CAST(1 + hash(i, {seed}, 2) % 3 AS BIGINT)] AS DECIMAL(10, 2))
           AS monthly_fee,
       CAST(hash(i, {seed}, 3) % 4 AS BIGINT) AS invoices_90d,
       CAST(hash(i, {seed}, 4) % 100 // 70 + hash(i, {seed}, 5) % 100 // 90 AS BIGINT) AS late_payments_90d,
       CAST(hash(i, {seed}, 6) % 60 AS BIGINT) AS days_since_last_payment,
       CAST(hash(i, {seed}, 7) % 10000 AS DOUBLE) / 100 AS open_balance,
       CAST(hash(i, {seed}, 8) % 100 // 80 AS BIGINT) AS tickets_30d,
       CAST(hash(i, {seed}, 9) % 100 // 85 AS BIGINT) AS low_satisfaction_tickets_90d,
       CAST(hash(i, {seed}, 10) % 8 AS BIGINT) AS logins_7d,
       CAST(hash(i, {seed}, 10) % 8 * 4 + hash(i, {seed}, 11) % 3 AS BIGINT) AS logins_30d,
       CAST(hash(i, {seed}, 12) % 45 AS BIGINT) AS days_since_last_login,
       CAST(hash(i, {seed}, 13) % 100 // 75 + hash(i, {seed}, 14) % 100 // 95 AS BIGINT)
           AS cancel_page_views_30d
FROM range({rows}) t(i)
"""


def _config(scratch: Path) -> Any:
    from fabric.config import load_config

    config = load_config(REPO / "fabric.yaml")
    return config.model_copy(
        update={
            "warehouse": config.warehouse.model_copy(update={"path": scratch / "warehouse.duckdb"}),
            "scoring": config.scoring.model_copy(update={"registry_dir": scratch / "models"}),
        }
    )


def prepare(scratch: Path, rows: int) -> Path:
    """The features table (N rows) and a registered 100-iteration champion; the DuckDB file."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from fabric.meta import utcnow
    from fabric.scoring.drift import reference_histogram
    from fabric.scoring.features import feature_specs, table_columns
    from fabric.scoring.inputs import fit_specs
    from fabric.scoring.registry import CHAMPION, EvaluationMetrics, ModelCard, ModelRegistry
    from fabric.scoring.train import MODEL_PARAMS
    from fabric.warehouse import Warehouse

    config = _config(scratch)
    database = Path(config.warehouse.path)
    with Warehouse(database).connect() as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(FEATURES.format(day=DAY, rows=TRAINING_ROWS, seed=7))
        specs = feature_specs(table_columns(con, "features.customer_features"), config.scoring)
        names = [s.name for s in specs]
        training = _matrix(con, names)
        con.execute(FEATURES.format(day=DAY, rows=rows, seed=1))
        con.execute("CHECKPOINT")
    logit = (
        -3.0
        + 0.8 * training[:, names.index("cancel_page_views_30d")]
        + 0.05 * training[:, names.index("days_since_last_login")]
        - 0.3 * training[:, names.index("logins_7d")]
        + 0.7 * training[:, names.index("late_payments_90d")]
        - 0.0005 * training[:, names.index("tenure_days")]
    )
    labels = np.random.default_rng(0).random(len(training)) < 1 / (1 + np.exp(-logit))
    model = HistGradientBoostingClassifier(**{**MODEL_PARAMS, "max_iter": 100})
    model.fit(training, labels)
    metrics = EvaluationMetrics(
        auc=0.0, pr_auc=0.0, precision=0.0, recall=0.0, threshold=0.5, rows=0, positives=0
    )
    card = ModelCard(
        name=config.scoring.model_name,
        algorithm=type(model).__name__,
        params={**MODEL_PARAMS, "max_iter": 100},
        features=fit_specs(specs, training),
        label="churned_within_horizon",
        horizon_days=30,
        training_as_of_dates=[DAY],
        holdout_start=DAY,
        holdout_end=DAY,
        training_rows=len(training),
        training_positives=int(labels.sum()),
        training_data_sha256="benchmark",
        metrics={"model": metrics},
        created_at=utcnow(),
        created_by_run="benchmark",
        sklearn_version="benchmark",
        feature_reference={n: reference_histogram(training[:, i]) for i, n in enumerate(names)},
    )
    registry = ModelRegistry(Path(config.scoring.registry_dir))
    registry.set_alias(card.name, CHAMPION, registry.register(model, card))
    return database


def _matrix(con: duckdb.DuckDBPyConnection, names: list[str]) -> np.ndarray:
    from fabric.scoring.features import double_columns

    columns = con.execute(f"SELECT {double_columns(names)} FROM features.customer_features").fetchnumpy()
    return np.column_stack([np.asarray(columns[n], dtype=np.float64) for n in names])


def in_process(scratch: Path) -> dict[str, Any]:
    """Fabric: the scoring asset's function on the benchmark day."""
    # Imports are not timed (the baseline has scikit-learn loaded before timing too); loading
    # the model file from the registry is timed, as a scoring step does it.
    import sklearn.ensemble  # noqa: F401

    from fabric.partitions import Window
    from fabric.scoring.score import score_window
    from fabric.warehouse import Warehouse

    config = _config(scratch)
    warehouse = Warehouse(Path(config.warehouse.path))
    started, cpu = time.perf_counter(), cpu_seconds()
    result = score_window(config, warehouse, Window(DAY, DAY), "benchmark", gate=lambda _c, _d: None)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return {"seconds": seconds, "cpu_s": cpu, "rows": result.rows, "scorers": result.rows_by_scorer()}


def raw_predict(scratch: Path) -> dict[str, Any]:
    """Baseline: the registered model's predict_proba on the rows, already in memory."""
    from fabric.scoring.registry import ModelRegistry
    from fabric.warehouse import Warehouse

    config = _config(scratch)
    model, card = ModelRegistry(Path(config.scoring.registry_dir)).load(config.scoring.model_name)
    with Warehouse(Path(config.warehouse.path)).connect(read_only=True) as con:
        matrix = _matrix(con, card.feature_names)
    started, cpu = time.perf_counter(), cpu_seconds()
    scores = model.predict_proba(matrix)[:, 1]
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return {"seconds": seconds, "cpu_s": cpu, "rows": len(scores), "scorers": {"model": len(scores)}}


def binned_alone(scratch: Path) -> dict[str, Any]:
    """Baseline: Fabric's predictor for this model (`BinnedTrees`) on the rows, already in memory."""
    from fabric.scoring.binned import BinnedTrees
    from fabric.scoring.registry import ModelRegistry
    from fabric.warehouse import Warehouse

    config = _config(scratch)
    model, card = ModelRegistry(Path(config.scoring.registry_dir)).load(config.scoring.model_name)
    binned = BinnedTrees.of(model)
    if binned is None:
        raise SystemExit("the benchmark model does not take binned trees")
    with Warehouse(Path(config.warehouse.path)).connect(read_only=True) as con:
        matrix = _matrix(con, card.feature_names)
    started, cpu = time.perf_counter(), cpu_seconds()
    scores = binned.predict(matrix)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return {"seconds": seconds, "cpu_s": cpu, "rows": len(scores), "scorers": {"model": len(scores)}}


def hand_written(scratch: Path) -> dict[str, Any]:
    """Baseline: the same job by hand, no Fabric code in the timed span (see the docstring)."""
    import pyarrow as pa
    import sklearn.ensemble  # noqa: F401  (imports are not timed on either side)

    from fabric.scoring.features import double_columns
    from fabric.scoring.registry import ModelRegistry
    from fabric.scoring.scores_table import SCORES_TABLE, ensure_scores

    config = _config(scratch)
    database = str(config.warehouse.path)
    with duckdb.connect(database) as con:  # an empty table of the scores' shape, not timed
        ensure_scores(con)
        con.execute(f"CREATE OR REPLACE TABLE scores.hand_scores AS FROM {SCORES_TABLE} LIMIT 0")
    started, cpu = time.perf_counter(), cpu_seconds()
    model, card = ModelRegistry(Path(config.scoring.registry_dir)).load(config.scoring.model_name)
    names = card.feature_names
    with duckdb.connect(database) as con:
        features = con.execute(
            f"SELECT fabric_customer_id, crm_customer_id, {double_columns(names)} "
            "FROM features.customer_features WHERE as_of_date = ?",
            [DAY],
        ).to_arrow_table()
        matrix = np.column_stack([features.column(n).to_numpy() for n in names])
        scores = model.predict_proba(matrix)[:, 1]
        keys = features.select(["fabric_customer_id", "crm_customer_id"])
        con.register("scored", keys.append_column("score", pa.array(scores)))
        suffix = f"|{card.name}|{card.version}"
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM scores.hand_scores WHERE partition_date = ?", [DAY])
        con.execute(
            "INSERT INTO scores.hand_scores SELECT $day, fabric_customer_id, crm_customer_id, score, "
            "score >= 0.5, $name, $version, 'champion', 'model', now()::TIMESTAMP, 'benchmark', "
            "CAST(CAST(md5($prefix || fabric_customer_id || $suffix) AS UUID) AS VARCHAR) FROM scored",
            {"day": DAY, "name": card.name, "version": card.version, "prefix": f"benchmark|{DAY}|",
             "suffix": suffix},
        )  # fmt: skip
        con.execute("COMMIT")
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return {"seconds": seconds, "cpu_s": cpu, "rows": len(scores), "scorers": {"model": len(scores)}}


def remote(scratch: Path) -> dict[str, Any]:
    """Fabric through `fabric serve` on loopback: the same function with `scoring.remote` set
    (batches of 10k rows over HTTP/JSON, breaker on). The server starts before timing."""
    import socket
    import urllib.request

    import sklearn.ensemble  # noqa: F401  (imports are not timed, as in `in_process`)

    from fabric.config import BreakerConfig, RemoteScoringConfig
    from fabric.partitions import Window
    from fabric.scoring.score import score_window
    from fabric.warehouse import Warehouse

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).parent / "fabric"), "serve", "--config", str(REPO / "fabric.yaml"),
               "--port", str(port)]  # fmt: skip
    with (scratch / "serve.log").open("wb") as log:
        env = {**os.environ, "FABRIC_HOME": str(scratch)}
        server = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v2/models/churn/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    log_text = (scratch / "serve.log").read_text()
                    raise SystemExit(f"fabric serve did not start:\n{log_text}") from None
                time.sleep(0.2)
        config = _config(scratch)
        breaker = BreakerConfig(path=scratch / "breaker.sqlite")
        remote_config = RemoteScoringConfig(url=url, batch_rows=10_000, timeout_seconds=120, breaker=breaker)
        scoring = config.scoring.model_copy(update={"remote": remote_config})
        config = config.model_copy(update={"scoring": scoring})
        warehouse = Warehouse(Path(config.warehouse.path))
        started, cpu = time.perf_counter(), cpu_seconds()
        result = score_window(config, warehouse, Window(DAY, DAY), "benchmark", gate=lambda _c, _d: None)
        seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        report = result.backends["champion"]
        if report.get("backend") != "remote":
            raise SystemExit(f"the remote backend was not used (backend report: {report})")
        status = Path(f"/proc/{server.pid}/status").read_text()
        peak_kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
        server_rss = int(peak_kb) // 1024
    finally:
        server.terminate()
        server.wait(timeout=30)
    extra = {
        "requests": report["batches"],
        "rows_per_s": round(result.rows / seconds),
        "latency_p50_s": report["latency_p50_s"],
        "latency_p95_s": report["latency_p95_s"],
        "server_peak_rss_mb": server_rss,
    }
    return {
        "seconds": seconds, "cpu_s": cpu, "rows": result.rows, "scorers": result.rows_by_scorer(),
        "extra": extra,
    }  # fmt: skip


CASES: dict[str, Callable[[Path], dict[str, Any]]] = {"in_process": in_process, "remote": remote}
BASELINES: dict[str, Callable[[Path], dict[str, Any]]] = {
    BASELINE: raw_predict, BINNED: binned_alone, HAND_WRITTEN: hand_written
}


def _measure(name: str, scratch: Path) -> dict[str, Any]:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # inherited by the measured process
    return measure(__file__, ["--measure", name, "--scratch", str(scratch)], name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)} (default: all)"
    )
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        run = {**CASES, **BASELINES}[args.measure]
        print(json.dumps({**run(args.scratch), "peak_rss_mb": peak_rss_mb()}))
        return

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    if not args.json:
        print(f"{'case':<16}{'rows':>12}{'MB':>7}{'fabric s':>10}  {'baseline':<42}{'s':>8}{'ratio':>7}"
              f"{'RSS MB':>8}{'base RSS':>9}")  # fmt: skip
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="fabric-scoring-bench-") as directory:
            scratch = Path(directory)
            database = prepare(scratch, rows)
            size = database.stat().st_size
            baselines = {name: _measure(name, scratch) for name in BASELINES}
            for case in cases:
                fabric = _measure(case, scratch)
                if fabric["rows"] != rows:
                    raise SystemExit(f"{case} scored {fabric['rows']} rows, expected {rows}")
                for name, other in baselines.items():
                    line = {
                        "case": f"{case}_{rows_label(rows)}",
                        "rows": rows,
                        "bytes": size,
                        "fabric_s": round(fabric["seconds"], 3),
                        "baseline": name,
                        "baseline_s": round(other["seconds"], 3),
                        "ratio": round(other["seconds"] / fabric["seconds"], 3),
                        "peak_rss_mb": fabric["peak_rss_mb"],
                        "baseline_peak_rss_mb": other["peak_rss_mb"],
                        "fabric_cpu_s": round(fabric["cpu_s"], 2),
                        "baseline_cpu_s": round(other["cpu_s"], 2),
                        "cpu_ratio": round(other["cpu_s"] / fabric["cpu_s"], 3),
                        "scorers": fabric["scorers"],
                        **fabric.get("extra", {}),
                    }
                    if args.json:
                        print(json.dumps(line), flush=True)
                    else:
                        print(f"{line['case']:<16}{rows:>12,}{size / 1e6:>7.0f}{line['fabric_s']:>10.3f}  "
                              f"{name:<42}{line['baseline_s']:>8.3f}{line['ratio']:>7.2f}"
                              f"{line['peak_rss_mb']:>8}{line['baseline_peak_rss_mb']:>9}",
                              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
