"""The hidden truth: which record belongs to which entity, and who churns when."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fabric.demo.churn import ChurnPlan
from fabric.demo.population import NEVER, Population, Timeline


def write_identity(
    path: Path,
    pop: Population,
    accounts: np.ndarray,
    requesters: list[tuple[str, int]],
    web_users: np.ndarray,
) -> int:
    """Write truth/identity.csv (system, source_key, entity_id); return the row count.

    Only keys that occur in at least one well-formed record are listed: a key seen only in a
    deliberately malformed row never reaches the integrated layer.
    """
    rows = ["system,source_key,entity_id"]
    crm = np.flatnonzero(pop.crm_id > 0)
    rows += [f"crm,{pop.crm_id[i]},{pop.entity_id[i]}" for i in crm[np.argsort(pop.crm_id[crm])]]
    accounts = accounts[np.argsort(pop.account_no[accounts], kind="stable")]
    rows += [f"erp,{pop.account_no[i]},{pop.entity_id[i]}" for i in accounts.tolist()]
    rows += [f"support,{key},{pop.entity_id[i]}" for key, i in sorted(requesters)]
    users = np.flatnonzero(web_users)
    users = users[np.argsort(pop.web_user_id[users], kind="stable")]
    rows += [f"web,{pop.web_user_id[i]},{pop.entity_id[i]}" for i in users.tolist()]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return len(rows) - 1


def write_churn(path: Path, pop: Population, churn: ChurnPlan, timeline: Timeline) -> int:
    """Write truth/churn.csv for every CRM customer; churn_date is empty if none was simulated."""
    crm = np.flatnonzero(pop.crm_id > 0)
    crm = crm[np.argsort(pop.crm_id[crm])]
    rows = ["entity_id,crm_id,signup_date,churn_date"]
    for i in crm.tolist():
        day = int(churn.churn_day[i])
        churned = "" if day >= NEVER else f"{timeline.date(day)}"
        rows.append(
            f"{pop.entity_id[i]},{pop.crm_id[i]},{timeline.date(int(pop.signup_day[i]))},{churned}"
        )
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return len(rows) - 1
