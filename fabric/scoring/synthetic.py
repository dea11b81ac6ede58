"""Synthetic features, labels and customers with a planted churn signal.

For tests and benchmarks of scoring, publishing and the analytics snapshot without building a
demo estate and running dbt. The tables follow the contracts in docs/architecture.md
(`features.customer_features`, `features.churn_labels`, `integrated.customers`).

Each customer has a latent risk that drives every behavioural feature (with noise); the label
depends on that risk and on things the rule baseline does not look at (tenure, fee), so a model
that combines all features should beat the rules. Output is a pure function of the arguments.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow as pa

from fabric.warehouse import Warehouse

_FIRST = ["Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hans", "Ida", "Jonas"]
_LAST = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker"]
_FEES = np.array([19.99, 34.99, 54.99])
_PLANS = np.array(["basic", "plus", "pro"])


def write_synthetic_estate(
    warehouse: Warehouse,
    customers: int,
    start: date,
    end: date,
    horizon_days: int = 30,
    seed: int = 0,
) -> int:
    """(Re)create the features, labels and customers tables for as-of dates start..end.

    Labels are known for as-of dates at least `horizon_days` before `end`. Returns the number of
    feature rows written.
    """
    rng = np.random.default_rng(seed)
    risk = rng.beta(1.2, 6.0, customers)
    plan = rng.integers(0, 3, customers)
    signup_age = rng.integers(10, 1500, customers)
    ids = np.array([f"FC{i:08d}" for i in range(customers)])
    crm_ids = np.arange(100_000, 100_000 + customers, dtype=np.int64)
    with warehouse.connect() as con:
        for table in ("features.customer_features", "features.churn_labels"):
            con.execute(f"DROP TABLE IF EXISTS {table}")
        con.execute("DROP TABLE IF EXISTS integrated.customers")
        con.register("synthetic_customers", _customers(rng, ids, crm_ids, plan, signup_age, start))
        con.execute("CREATE TABLE integrated.customers AS SELECT * FROM synthetic_customers")
        con.unregister("synthetic_customers")
        rows = 0
        day = start
        while day <= end:
            day_rng = np.random.default_rng([seed, day.toordinal()])
            tenure = signup_age + (day - start).days
            features, labels = _day(day_rng, day, ids, crm_ids, risk, plan, tenure)
            labels = labels.append_column(
                "label_known", pa.array(np.full(customers, day + timedelta(horizon_days) <= end))
            )
            for table, data in (("customer_features", features), ("churn_labels", labels)):
                con.register("synthetic_day", data)
                con.execute(
                    f"CREATE TABLE IF NOT EXISTS features.{table} AS SELECT * FROM synthetic_day LIMIT 0"
                )
                con.execute(f"INSERT INTO features.{table} SELECT * FROM synthetic_day")
                con.unregister("synthetic_day")
            rows += features.num_rows
            day += timedelta(days=1)
    return rows


def _day(
    rng: np.random.Generator,
    day: date,
    ids: np.ndarray,
    crm_ids: np.ndarray,
    risk: np.ndarray,
    plan: np.ndarray,
    tenure: np.ndarray,
) -> tuple[pa.Table, pa.Table]:
    n = len(ids)
    r = np.clip(risk + rng.normal(0, 0.05, n), 0, 1)
    late = rng.poisson(0.1 + 2.0 * r)
    logins_7d = rng.poisson(6.0 * (1 - r) ** 2)
    since_login = np.where(
        logins_7d > 0, rng.integers(0, 7, n), 7 + rng.exponential(4 + 40 * r).astype(np.int64)
    )
    cancel_views = rng.poisson(2.5 * r**2)
    low_sat = rng.poisson(1.5 * r**2)
    fee = _FEES[plan]
    logit = -5.0 + 9.0 * r + 2.0 * (tenure < 180) + 1.0 * (plan == 0) + 0.8 * (cancel_views > 1)
    churned = rng.random(n) < 1 / (1 + np.exp(-logit))
    as_of = pa.array(np.full(n, day), pa.date32())
    features = pa.table(
        {
            "as_of_date": as_of,
            "fabric_customer_id": pa.array(ids),
            "crm_customer_id": pa.array(crm_ids),
            "tenure_days": pa.array(tenure.astype(np.int32)),
            "monthly_fee": pa.array(fee).cast(pa.decimal128(10, 2)),
            "invoices_90d": pa.array(np.full(n, 3, np.int64)),
            "late_payments_90d": pa.array(late.astype(np.int64)),
            "days_since_last_payment": pa.array(
                rng.integers(0, 31, n) + 30 * (late > 1), mask=rng.random(n) < 0.01
            ),
            "open_balance": pa.array(np.round(fee * late * rng.random(n), 2)),
            "tickets_30d": pa.array(rng.poisson(0.2 + 1.5 * r).astype(np.int64)),
            "low_satisfaction_tickets_90d": pa.array(low_sat.astype(np.int64)),
            "logins_7d": pa.array(logins_7d.astype(np.int64)),
            "logins_30d": pa.array((logins_7d * 4 + rng.poisson(1.0, n)).astype(np.int64)),
            "days_since_last_login": pa.array(since_login.astype(np.int64)),
            "cancel_page_views_30d": pa.array(cancel_views.astype(np.int64)),
        }
    )
    labels = pa.table(
        {
            "as_of_date": as_of,
            "fabric_customer_id": pa.array(ids),
            "churned_within_horizon": pa.array(churned),
        }
    )
    return features, labels


def _customers(
    rng: np.random.Generator,
    ids: np.ndarray,
    crm_ids: np.ndarray,
    plan: np.ndarray,
    signup_age: np.ndarray,
    start: date,
) -> pa.Table:
    n = len(ids)
    first = np.array(_FIRST)[rng.integers(0, len(_FIRST), n)]
    last = np.array(_LAST)[rng.integers(0, len(_LAST), n)]
    return pa.table(
        {
            "fabric_customer_id": pa.array(ids),
            "crm_customer_id": pa.array(crm_ids),
            "first_name": pa.array(first),
            "last_name": pa.array(last),
            "email": pa.array([f"{f.lower()}.{i}@example.de" for f, i in zip(first, crm_ids, strict=True)]),
            "phone": pa.array([f"+49 30 {i:07d}" for i in crm_ids]),
            "street": pa.array([f"Hauptstraße {i % 200 + 1}" for i in range(n)]),
            "postal_code": pa.array([f"{10000 + i % 900:05d}" for i in range(n)]),
            "city": pa.array(np.where(np.arange(n) % 3 == 0, "Berlin", "Hamburg")),
            "country_code": pa.array(np.full(n, "DE")),
            "plan": pa.array(_PLANS[plan]),
            "signup_date": pa.array([start - timedelta(days=int(a)) for a in signup_age]),
            "systems": pa.array([["crm", "erp"]] * n),
            "updated_partition": pa.array(np.full(n, start), pa.date32()),
        }
    )
