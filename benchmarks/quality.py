"""Benchmark: the demo expectation suites, Fabric's in-database checks vs GE pandas vs hand SQL.

    python benchmarks/quality.py [--rows N [N ...]] [--days D] [--repeat R] [--json] [--no-ge]

For each size and each demo suite (`integrated.customers`, 12 expectations, and
`features.customer_features`, 32) a table of N rows over D daily partitions is generated in
DuckDB (seeded hashes, with a few violations so failures, examples and quarantine are
exercised) and validated for all D partitions three ways, each in a fresh process:

- Fabric: `validate_partitions` (SQL engine, results written to `meta.validation_results`,
  failing rows quarantined), the median of R runs;
- baseline `duckdb hand-written single-scan sql`: one query per suite computing the same facts
  (counts per partition and expectation, uniqueness by GROUP BY), the median of R runs;
- baseline `great_expectations pandas`: what Fabric did before, per partition `SELECT *` into
  pandas and GE's pandas engine (GE imported before timing), one run.

With `--json` one JSON object per (case, baseline) line: case, rows, bytes (the DuckDB file),
fabric_s, baseline, baseline_s, ratio = baseline_s / fabric_s, peak_rss_mb (Fabric's process),
plus baseline_peak_rss_mb, expectations and fallback_expectations (how many expectations of the
suite ran through GE's pandas engine: 0 for the demo suites).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import harness
from harness import REPO, peak_rss_mb, rows_label

FIRST_DAY = date(2026, 1, 1)
SQL_BASELINE = "duckdb hand-written single-scan sql"
GE_BASELINE = "great_expectations pandas"

# Violations: ~0.02% NULL country (critical), ~0.1% upper-case e-mails, ~0.05% an unsold plan,
# ~0.1% zero fees, ~3% negative balances (all warnings).
CUSTOMERS = """
CREATE TABLE integrated.customers AS
SELECT 'FC-' || lpad(printf('%x', i), 12, '0') AS fabric_customer_id,
       i + 1 AS crm_customer_id,
       'Anna' AS first_name, 'Müller' AS last_name,
       CASE WHEN hash(i, 1) % 1000 = 0 THEN 'USER' || i || '@EXAMPLE.DE'
            ELSE 'user' || i || '@example.de' END AS email,
       '030' || (hash(i, 2) % 10000000) AS phone, 'Hauptstraße ' || (i % 200) AS street,
       lpad((hash(i, 3) % 99999)::VARCHAR, 5, '0') AS postal_code, 'Berlin' AS city,
       CASE WHEN hash(i, 4) % 5000 = 0 THEN NULL ELSE ['DE', 'AT', 'CH'][(1 + hash(i, 5) % 3)::BIGINT] END
           AS country_code,
       CASE WHEN hash(i, 6) % 2000 = 0 THEN 'gold'
            ELSE ['basic', 'plus', 'pro'][(1 + hash(i, 7) % 3)::BIGINT] END AS plan,
       round(5 + (hash(i, 8) % 19500) / 100.0, 2)::DECIMAL(10, 2) AS monthly_fee,
       DATE '2020-01-01' + (hash(i, 9) % 2000)::INTEGER AS signup_date,
       ['crm', 'crm,erp', 'crm,erp,web', 'crm,support', 'crm,web'][(1 + hash(i, 10) % 5)::BIGINT] AS systems,
       DATE '{first}' + (i % {days})::INTEGER AS updated_partition
FROM range({rows}) t(i)
"""
FEATURES = """
CREATE TABLE features.customer_features AS
SELECT DATE '{first}' + (i % {days})::INTEGER AS as_of_date,
       'FC-' || lpad(printf('%x', i // {days}), 12, '0') AS fabric_customer_id,
       (i // {days} + 1)::BIGINT AS crm_customer_id,
       (hash(i, 1) % 5000)::BIGINT AS tenure_days,
       CASE WHEN hash(i, 2) % 1000 = 0 THEN 0 ELSE round(5 + (hash(i, 3) % 19500) / 100.0, 2) END::DOUBLE
           AS monthly_fee,
       (hash(i, 4) % 4)::BIGINT AS invoices_90d, (hash(i, 5) % 3)::BIGINT AS late_payments_90d,
       (hash(i, 6) % 90)::BIGINT AS days_since_last_payment,
       CASE WHEN hash(i, 7) % 100 < 3 THEN -10.5 ELSE (hash(i, 8) % 10000) / 100.0 END::DOUBLE
           AS open_balance,
       (hash(i, 9) % 3)::BIGINT AS tickets_30d, (hash(i, 10) % 2)::BIGINT AS low_satisfaction_tickets_90d,
       (hash(i, 11) % 8)::BIGINT AS logins_7d,
       (hash(i, 11) % 8 + hash(i, 12) % 20)::BIGINT AS logins_30d,
       (hash(i, 13) % 60)::BIGINT AS days_since_last_login,
       (hash(i, 14) % 3)::BIGINT AS cancel_page_views_30d
FROM range({rows}) t(i)
"""
TABLES = {"integrated.customers": CUSTOMERS, "features.customer_features": FEATURES}

# The same facts as the suites, written by hand: per partition, the counts every expectation
# needs (row count, NULLs, unexpected values) in one scan, and uniqueness by GROUP BY.
HAND_SQL = {
    "integrated.customers": r"""
WITH scan AS (
    SELECT updated_partition AS p, count(*) AS n,
        count(*) FILTER (WHERE fabric_customer_id IS NULL) AS id_nulls,
        count(*) FILTER (WHERE crm_customer_id IS NULL) AS crm_nulls,
        count(*) FILTER (WHERE country_code IS NULL) AS country_nulls,
        count(*) FILTER (WHERE country_code NOT IN ('DE', 'AT', 'CH')) AS country_bad,
        count(*) FILTER (WHERE NOT regexp_matches(fabric_customer_id, '^FC-[0-9a-f]{12}$')) AS id_bad,
        count(*) FILTER (WHERE NOT regexp_matches(email, '^[^@\s]+@[^@\s]+\.[a-z]{2,}$')) AS email_bad,
        count(email) AS emails,
        count(*) FILTER (WHERE plan NOT IN ('basic', 'plus', 'pro')) AS plan_bad,
        count(*) FILTER (WHERE signup_date IS NULL) AS signup_nulls,
        count(*) FILTER (WHERE NOT regexp_matches(systems, '(^|,)crm(,|$)')) AS systems_bad
    FROM integrated.customers WHERE updated_partition BETWEEN $1 AND $2 GROUP BY 1
), ids AS (
    SELECT p, sum(k) FILTER (WHERE k > 1) AS id_dups FROM (
        SELECT updated_partition AS p, count(*) AS k FROM integrated.customers
        WHERE updated_partition BETWEEN $1 AND $2 AND fabric_customer_id IS NOT NULL
        GROUP BY 1, fabric_customer_id
    ) GROUP BY 1
), crm AS (
    SELECT p, sum(k) FILTER (WHERE k > 1) AS crm_dups FROM (
        SELECT updated_partition AS p, count(*) AS k FROM integrated.customers
        WHERE updated_partition BETWEEN $1 AND $2 AND crm_customer_id IS NOT NULL GROUP BY 1, crm_customer_id
    ) GROUP BY 1
)
SELECT * FROM scan LEFT JOIN ids USING (p) LEFT JOIN crm USING (p)
""",
    "features.customer_features": """
WITH scan AS (
    SELECT as_of_date AS p, count(*) AS n,
        count(*) FILTER (WHERE fabric_customer_id IS NULL) AS c1,
        count(*) FILTER (WHERE crm_customer_id IS NULL) AS c2,
        count(*) FILTER (WHERE tenure_days IS NULL) AS c3, count(*) FILTER (WHERE monthly_fee IS NULL) AS c4,
        count(*) FILTER (WHERE invoices_90d IS NULL) AS c5,
        count(*) FILTER (WHERE late_payments_90d IS NULL) AS c6,
        count(*) FILTER (WHERE days_since_last_payment IS NULL) AS c7,
        count(*) FILTER (WHERE open_balance IS NULL) AS c8, count(*) FILTER (WHERE tickets_30d IS NULL) AS c9,
        count(*) FILTER (WHERE low_satisfaction_tickets_90d IS NULL) AS c10,
        count(*) FILTER (WHERE logins_7d IS NULL) AS c11, count(*) FILTER (WHERE logins_30d IS NULL) AS c12,
        count(*) FILTER (WHERE days_since_last_login IS NULL) AS c13,
        count(*) FILTER (WHERE cancel_page_views_30d IS NULL) AS c14,
        count(*) FILTER (WHERE tenure_days < 0) AS b1, count(*) FILTER (WHERE monthly_fee < 0) AS b2,
        count(*) FILTER (WHERE invoices_90d < 0) AS b3, count(*) FILTER (WHERE late_payments_90d < 0) AS b4,
        count(*) FILTER (WHERE days_since_last_payment < 0) AS b5,
        count(*) FILTER (WHERE tickets_30d < 0) AS b6,
        count(*) FILTER (WHERE low_satisfaction_tickets_90d < 0) AS b7,
        count(*) FILTER (WHERE logins_7d < 0) AS b8, count(*) FILTER (WHERE logins_30d < 0) AS b9,
        count(*) FILTER (WHERE days_since_last_login < 0) AS b10,
        count(*) FILTER (WHERE cancel_page_views_30d < 0) AS b11,
        count(*) FILTER (WHERE monthly_fee NOT BETWEEN 5 AND 200) AS w1,
        count(*) FILTER (WHERE tenure_days > 10950) AS w2, count(*) FILTER (WHERE open_balance < 0) AS w3,
        count(*) FILTER (WHERE (logins_30d IS NOT NULL OR logins_7d IS NOT NULL)
                         AND NOT coalesce(logins_30d >= logins_7d, false)) AS w4
    FROM features.customer_features WHERE as_of_date BETWEEN $1 AND $2 GROUP BY 1
), by_fabric AS (
    SELECT p, sum(k) FILTER (WHERE k > 1) AS d1 FROM (
        SELECT as_of_date AS p, count(*) AS k FROM features.customer_features
        WHERE as_of_date BETWEEN $1 AND $2 GROUP BY as_of_date, fabric_customer_id
    ) GROUP BY 1
), by_crm AS (
    SELECT p, sum(k) FILTER (WHERE k > 1) AS d2 FROM (
        SELECT as_of_date AS p, count(*) AS k FROM features.customer_features
        WHERE as_of_date BETWEEN $1 AND $2 GROUP BY as_of_date, crm_customer_id
    ) GROUP BY 1
)
SELECT * FROM scan LEFT JOIN by_fabric USING (p) LEFT JOIN by_crm USING (p)
""",
}


def _days(count: int) -> list[date]:
    return [FIRST_DAY + timedelta(days=n) for n in range(count)]


def generate(directory: Path, table: str, rows: int, days: int) -> Path:
    """A DuckDB file holding `table` only; its size is the case's `bytes`."""
    path = directory / f"bench_{table.replace('.', '_')}_{rows}.duckdb"
    path.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    con.execute(f"CREATE SCHEMA {table.split('.')[0]}")
    con.execute(TABLES[table].format(rows=rows, days=days, first=FIRST_DAY))
    con.execute("CHECKPOINT")
    con.close()
    return path


def measure(engine: str, database: Path, table: str, days: int, repeat: int) -> dict[str, Any]:
    """Run in a fresh process: time `engine` on every partition, `repeat` times.

    Fabric and the hand SQL run once untimed first: the first query binding Python parameters
    imports numpy and pandas inside DuckDB (about a second), which is no part of either.
    """
    from fabric.quality import load_suite

    suite = load_suite(REPO / "expectations" / f"{table}.json")
    partitions = _days(days)
    seconds: list[float] = []
    extra: dict[str, Any] = {}
    if engine == "fabric":
        from fabric.quality import validate_partitions
        from fabric.warehouse import Warehouse

        with Warehouse(database).connect() as con:
            validations = validate_partitions(con, suite, partitions, "benchmark-warm-up")
            for attempt in range(repeat):
                started = time.perf_counter()
                validations = validate_partitions(con, suite, partitions, f"benchmark-{attempt}")
                seconds.append(time.perf_counter() - started)
        extra = {
            "expectations": len(suite.expectations),
            "fallback_expectations": len(
                {o.expectation_id for v in validations for o in v.outcomes if o.engine != "sql"}
            ),
            "failed": sorted({o.label for v in validations for o in v.failures}),
            "quarantined_rows": sum(v.quarantined_rows for v in validations),
        }
    elif engine == "sql":
        with duckdb.connect(str(database), read_only=True) as con:
            con.execute(HAND_SQL[table], [partitions[0], partitions[-1]]).fetchall()
            for _ in range(repeat):
                started = time.perf_counter()
                con.execute(HAND_SQL[table], [partitions[0], partitions[-1]]).fetchall()
                seconds.append(time.perf_counter() - started)
    else:
        seconds.append(_great_expectations(database, suite, partitions))
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb(), **extra}


def _great_expectations(database: Path, suite: Any, partitions: list[date]) -> float:
    """Fabric's previous engine: each partition `SELECT *` into pandas, GE's pandas engine."""
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    from fabric.quality import check_suite

    context = gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            progress_bars=ProgressBarsConfig(globally=False),
            analytics_enabled=False,
        ),
    )
    batches = context.data_sources.add_pandas("bench").add_dataframe_asset("t")
    definition = batches.add_batch_definition_whole_dataframe("partition")
    ge_suite = ExpectationSuite(name=suite.name, expectations=check_suite(suite))
    started = time.perf_counter()
    with duckdb.connect(str(database), read_only=True) as con:
        for day in partitions:
            frame = con.execute(
                f'SELECT * FROM {suite.table} WHERE "{suite.partition_column}" = ?', [day]
            ).df()
            batch = definition.get_batch(batch_parameters={"dataframe": frame})
            batch.validate(
                ge_suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": 10}
            )
            del frame, batch
    return time.perf_counter() - started


def _run_measure(engine: str, database: Path, table: str, days: int, repeat: int) -> dict[str, Any]:
    args = ["--measure", engine, "--database", str(database), "--table", table, "--days", str(days),
            "--repeat", str(repeat)]  # fmt: skip
    return harness.measure(__file__, args, f"{engine} on {table}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--days", type=int, default=7, help="daily partitions validated at once")
    parser.add_argument("--repeat", type=int, default=3, help="runs of Fabric and hand SQL (median)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-ge", action="store_true", help="skip the (slow) GE pandas baseline")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--database", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.database, args.table, args.days, args.repeat)))
        return

    if not args.json:
        print(f"{'case':<16}{'rows':>11}{'MB':>7}{'fabric s':>10}  {'baseline':<36}{'s':>8}{'ratio':>7}"
              f"{'RSS MB':>8}{'base RSS':>9}{'fallbacks':>10}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fabric-quality-bench-") as scratch:
        for rows in args.rows:
            for table in TABLES:
                database = generate(Path(scratch), table, rows, args.days)
                size = database.stat().st_size
                fabric = _run_measure("fabric", database, table, args.days, args.repeat)
                fabric_s = statistics.median(fabric["seconds"])
                baselines = [(SQL_BASELINE, "sql", args.repeat)]
                if not args.no_ge:
                    baselines.append((GE_BASELINE, "ge", 1))
                for name, engine, repeat in baselines:
                    other = _run_measure(engine, database, table, args.days, repeat)
                    baseline_s = statistics.median(other["seconds"])
                    line = {
                        "case": f"{table.split('.')[1]}_{rows_label(rows)}",
                        "rows": rows,
                        "bytes": size,
                        "fabric_s": round(fabric_s, 3),
                        "baseline": name,
                        "baseline_s": round(baseline_s, 3),
                        "ratio": round(baseline_s / fabric_s, 3),
                        "peak_rss_mb": fabric["peak_rss_mb"],
                        "baseline_peak_rss_mb": other["peak_rss_mb"],
                        "expectations": fabric["expectations"],
                        "fallback_expectations": fabric["fallback_expectations"],
                    }
                    if args.json:
                        print(json.dumps(line), flush=True)
                    else:
                        print(f"{line['case']:<16}{rows:>11,}{size / 1e6:>7.0f}{fabric_s:>10.3f}  {name:<36}"
                              f"{baseline_s:>8.3f}{line['ratio']:>7.2f}{line['peak_rss_mb']:>8}"
                              f"{line['baseline_peak_rss_mb']:>9}{line['fallback_expectations']:>10}",
                              flush=True)  # fmt: skip
                if not args.json:
                    print(f"  {table}: {fabric['fallback_expectations']} of {fabric['expectations']} "
                          f"expectations fell back to GE's pandas engine; failed: {fabric['failed']}; "
                          f"quarantined rows: {fabric['quarantined_rows']:,}")  # fmt: skip
                database.unlink()


if __name__ == "__main__":
    main()
