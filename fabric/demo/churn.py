"""Churn: who cancels when, and the behavioural signal that precedes it.

The hazard is a function of latent and observable drivers with non-linear interactions
(financial stress only bites on the dearer plans; risk only bites early in the tenure; an
outage hurts `pro` customers most), so a gradient-boosted model beats a single-threshold rule.
Behaviour on day D uses the latent drivers, the service state on D and the approaching
cancellation (the signal a model is meant to learn) but nothing else from after D.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fabric.demo.population import NEVER, Population, Timeline

#: Target average monthly churn among active customers.
MONTHLY_CHURN = 0.025
_DAYS_PER_MONTH = 30.44
_SILENT_SHARE = 0.25  # churners who leave without a visible run-up (moved house, died, ...)
_OUTAGE_SHARE = 0.15
_OUTAGE_AFTERMATH_DAYS = 30

CANCELLATION_REASONS: tuple[str, ...] = (
    "price",
    "service quality",
    "moving",
    "competitor offer",
    "no longer needed",
    "other",
)


@dataclass(frozen=True)
class ChurnPlan:
    """Per-entity churn outcome and the episodes that shape behaviour."""

    churn_day: np.ndarray  # first day no longer a customer; NEVER = no churn in the simulation
    warning_days: np.ndarray  # length of the visible run-up before churn (0 = silent)
    wobble_day: np.ndarray  # a near-miss: run-up behaviour that ends without a cancellation
    wobble_days: np.ndarray
    outage_start: np.ndarray  # service-degradation episode [start, end)
    outage_end: np.ndarray
    reason: np.ndarray  # index into CANCELLATION_REASONS

    def signal(self, idx: np.ndarray, day: int) -> np.ndarray:
        """Run-up strength in [0, 1] on `day`: 1 on the eve of a cancellation (or near-miss)."""
        to_churn = self.churn_day[idx] - day
        run_up = np.where(
            (to_churn > 0) & (self.warning_days[idx] > 0),
            np.clip(1.0 - to_churn / np.maximum(self.warning_days[idx], 1), 0.0, 1.0),
            0.0,
        )
        to_wobble = self.wobble_day[idx] - day
        wobble = np.where(
            to_wobble > 0,
            0.6 * np.clip(1.0 - to_wobble / np.maximum(self.wobble_days[idx], 1), 0.0, 1.0),
            0.0,
        )
        return np.maximum(run_up, wobble)

    def degraded(self, idx: np.ndarray, day: int) -> np.ndarray:
        return (self.outage_start[idx] <= day) & (day < self.outage_end[idx])

    def recently_degraded(self, idx: np.ndarray, day: int) -> np.ndarray:
        """In an outage, or within its aftermath window (credit notes, lingering anger)."""
        return (self.outage_start[idx] <= day) & (
            day < self.outage_end[idx] + _OUTAGE_AFTERMATH_DAYS
        )


def _log_hazard(
    pop: Population, plan: ChurnPlan, idx: np.ndarray, day: int
) -> np.ndarray:
    risk = pop.risk[idx]
    tenure = day - pop.signup_day[idx]
    dear = pop.plan[idx] >= 1
    pro = pop.plan[idx] == 2
    hurt = plan.recently_degraded(idx, day)
    return (
        0.7 * risk
        + 1.7 * (pop.stress[idx] & dear)
        + 1.2 * ((tenure < 180) & (risk > 0.5))
        + 1.3 * ((tenure >= 690) & (tenure < 760))  # the 24-month minimum term runs out
        - 0.3 * (tenure >= 760)
        + 0.3 * hurt
        + 1.4 * (hurt & pro)
    )


def simulate_churn(pop: Population, timeline: Timeline, rng: np.random.Generator) -> ChurnPlan:
    """Simulate daily cancellations for every CRM customer up to the end of the hidden future."""
    n = pop.size
    has_outage = pop.in_crm & (rng.random(n) < _OUTAGE_SHARE)
    outage_start = np.full(n, NEVER, dtype=np.int64)
    outage_start[has_outage] = rng.integers(-20, timeline.sim_days, size=int(has_outage.sum()))
    outage_end = outage_start + rng.integers(3, 22, size=n)
    plan = ChurnPlan(
        churn_day=np.full(n, NEVER, dtype=np.int64),
        warning_days=np.where(rng.random(n) < _SILENT_SHARE, 0, rng.integers(21, 57, size=n)),
        wobble_day=np.where(
            pop.in_crm & (rng.random(n) < 0.15 / (1 + np.exp(-pop.risk))),
            rng.integers(0, timeline.sim_days, size=n),
            NEVER,
        ),
        wobble_days=rng.integers(10, 31, size=n),
        outage_start=outage_start,
        outage_end=outage_end,
        reason=np.zeros(n, dtype=np.int64),
    )
    customers = np.flatnonzero(pop.in_crm)
    # Calibrate the base hazard on the customers of day 0 so the average lands near the target
    # (later signups add some short-tenure risk, high-risk customers leave first: it evens out).
    reference = _log_hazard(pop, plan, customers[pop.signup_day[customers] < 0], 0)
    base = MONTHLY_CHURN / _DAYS_PER_MONTH / float(np.mean(np.exp(reference)))
    for day in range(timeline.sim_days):
        alive = customers[
            (pop.signup_day[customers] < day) & (plan.churn_day[customers] == NEVER)
        ]
        hazard = base * np.exp(_log_hazard(pop, plan, alive, day))
        plan.churn_day[alive[rng.random(len(alive)) < hazard]] = day
    churned = plan.churn_day < NEVER
    hurt = churned & (plan.outage_start <= plan.churn_day) & (
        plan.churn_day < plan.outage_end + _OUTAGE_AFTERMATH_DAYS
    )
    reason = rng.choice(len(CANCELLATION_REASONS), size=n, p=[0.2, 0.1, 0.25, 0.25, 0.1, 0.1])
    reason[pop.stress & (rng.random(n) < 0.7)] = 0
    reason[hurt & (rng.random(n) < 0.8)] = 1
    plan.reason[:] = np.where(churned, reason, 0)
    return plan
