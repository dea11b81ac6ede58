"""Score quality against the demo estate's hidden future (`truth/churn.csv`).

Only the generator knows who churns after the last ingested day, so this is the one honest
out-of-time check of the demo window's scores: for a scored day D, the label is whether the
customer's true churn date falls in (D, D + horizon].
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from fabric.warehouse import Warehouse, table_exists


@dataclass(frozen=True)
class TruthEvaluation:
    day: date
    rows: int
    positives: int
    auc: float | None  # None when the day has no positives or no negatives


def evaluate_against_truth(
    warehouse: Warehouse, demo_root: Path, day: date, horizon_days: int
) -> TruthEvaluation | None:
    """AUC of `day`'s published scores against true churn in the following `horizon_days`."""
    from sklearn.metrics import roc_auc_score

    truth = demo_root / "truth" / "churn.csv"
    if not truth.is_file():
        return None
    with warehouse.connect(read_only=True) as con:
        if not table_exists(con, "scores.churn_scores"):
            return None
        frame = con.execute(
            """
            SELECT s.score,
                   coalesce(t.churn_date > ?::DATE
                            AND t.churn_date <= ?::DATE + to_days(?), false) AS churned
            FROM scores.churn_scores s
            LEFT JOIN read_csv(?, header = true, columns = {
                'entity_id': 'VARCHAR', 'crm_id': 'BIGINT', 'signup_date': 'DATE',
                'churn_date': 'DATE'}) t
              ON t.crm_id = s.crm_customer_id
            WHERE s.partition_date = ? AND s.variant <> 'shadow'
            """,
            [day, day, horizon_days, str(truth), day],
        ).df()
    positives = int(frame["churned"].sum())
    auc = (
        float(roc_auc_score(frame["churned"], frame["score"]))
        if 0 < positives < len(frame)
        else None
    )
    return TruthEvaluation(day=day, rows=len(frame), positives=positives, auc=auc)
