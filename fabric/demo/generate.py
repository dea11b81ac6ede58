"""Generate the Brightwave Broadband demo estate (see fabric/demo/README.md for the contract).

Output is a pure function of the EstateSpec: every random draw comes from generators spawned
from ``spec.seed`` (one per silo, so a change in one silo's draws never shifts another's), the
fault generators are separate again (an estate with a fault differs from the clean one only
where the fault acts), and files are written in a fixed order.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from fabric.demo.churn import ChurnPlan, simulate_churn
from fabric.demo.crm import break_countries, build_crm, write_crm
from fabric.demo.erp import ErpSystem, layout_yaml
from fabric.demo.population import NEVER, Population, Timeline, build_population
from fabric.demo.support import SupportDesk
from fabric.demo.truth import write_churn, write_identity
from fabric.demo.web import WebTracker

FAULTS: tuple[str, ...] = ("bad_country", "malformed_rows")
#: Days simulated past end_date so churn labels exist for the whole demo window.
FUTURE_DAYS = 60
FORMAT_VERSION = 1

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class EstateSpec:
    customers: int = 20_000
    days: int = 7  # demo window length
    history_days: int = 120  # labelled history before the window
    seed: int = 42
    end_date: date | None = None  # None = yesterday (UTC)
    churn_horizon_days: int = 30
    faults: tuple[str, ...] = ()  # 'bad_country', 'malformed_rows'

    def validate(self) -> None:
        """Raise ValueError naming the offending field and what is allowed."""
        unknown = sorted(set(self.faults) - set(FAULTS))
        if unknown:
            raise ValueError(
                f"unknown fault(s) {', '.join(map(repr, unknown))}; "
                f"valid faults are: {', '.join(FAULTS)}"
            )
        for name, value, minimum in (
            ("customers", self.customers, 1),
            ("days", self.days, 1),
            ("history_days", self.history_days, 0),
            ("churn_horizon_days", self.churn_horizon_days, 1),
        ):
            if value < minimum:
                raise ValueError(f"EstateSpec.{name} must be >= {minimum}, got {value}")

    def resolved_end_date(self) -> date:
        return self.end_date or datetime.now(UTC).date() - timedelta(days=1)


def _timeline(spec: EstateSpec) -> Timeline:
    file_days = spec.history_days + spec.days
    end = spec.resolved_end_date()
    return Timeline(
        history_start=end - timedelta(days=file_days - 1),
        window_days=spec.days,
        file_days=file_days,
        sim_days=file_days + max(FUTURE_DAYS, spec.churn_horizon_days),
    )


def generate_estate(
    out_dir: Path, spec: EstateSpec, progress: Progress | None = None
) -> dict[str, Any]:
    """Write the estate to `out_dir` (replacing it) and return the manifest.

    The estate is built in ``<out_dir>.tmp`` and renamed into place at the end, so a crash
    never leaves a directory with a manifest that does not match its files.
    `progress(stage, done, total)` is called as stages advance; stages are ``population``,
    ``crm``, ``days`` (once per file day) and ``truth``.
    """
    spec.validate()
    report = progress or (lambda stage, done, total: None)
    timeline = _timeline(spec)
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    for sub in ("crm", "erp", "support", "web", "truth"):
        (tmp / sub).mkdir(parents=True)

    # One stream per component: population, churn, crm, erp, support, web.
    rng = [np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(6)]
    fault_rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0xFA17]))

    report("population", 0, 1)
    pop = build_population(spec.customers, timeline, rng[0])
    churn = simulate_churn(pop, timeline, rng[1])
    report("population", 1, 1)

    files: dict[str, dict[str, Any]] = {}
    report("crm", 0, 1)
    tables = build_crm(pop, churn, timeline, rng[2])
    bad_country_rows = 0
    if "bad_country" in spec.faults:
        bad_country_rows = break_countries(tables, f"{timeline.end_date}", fault_rng)
    write_crm(tmp / "crm" / "crm.sqlite", tables)
    files["crm/crm.sqlite"] = {
        "tables": {
            "customers": len(tables.customers),
            "contacts": len(tables.contacts),
            "cancellations": len(tables.cancellations),
        },
        "bad_country_rows": bad_country_rows,
    }
    report("crm", 1, 1)

    (tmp / "erp" / "layout.yaml").write_text(layout_yaml(), encoding="ascii")
    erp = ErpSystem(pop, churn, timeline, rng[3])
    desk = SupportDesk(pop, churn, timeline, rng[4])
    web = WebTracker(pop, churn, timeline, rng[5])
    inject = "malformed_rows" in spec.faults
    for day in range(timeline.file_days):
        stamp = f"{timeline.date(day):%Y%m%d}"
        extract = erp.day(day)
        for entity, text in (
            ("accounts", extract.accounts),
            ("invoices", extract.invoices),
            ("payments", extract.payments),
        ):
            name = f"erp/{entity}_{stamp}.txt"
            (tmp / name).write_bytes(text.encode("ascii"))
            files[name] = {"rows": extract.counts[entity], "malformed": 0}

        fault = fault_rng if inject and day == timeline.last_day else None
        tickets = desk.day(day, fault)
        name = f"support/tickets_{stamp}.csv"
        (tmp / name).write_bytes(tickets.text.encode("cp1252"))
        files[name] = {
            "rows": tickets.rows,
            "lines": tickets.lines,
            "malformed": sum(tickets.malformed.values()),
            "malformed_by_kind": tickets.malformed,
            "fault_malformed": tickets.fault_malformed,
        }
        events = web.day(day, fault)
        name = f"web/events_{stamp}.jsonl"
        (tmp / name).write_bytes(events.text.encode("utf-8"))
        files[name] = {
            "rows": events.rows,
            "malformed": sum(events.malformed.values()),
            "malformed_by_kind": events.malformed,
            "fault_malformed": events.fault_malformed,
        }
        report("days", day + 1, timeline.file_days)

    report("truth", 0, 1)
    files["truth/identity.csv"] = {
        "rows": write_identity(
            tmp / "truth" / "identity.csv",
            pop,
            erp.accounts,
            desk.valid_requester_keys(),
            web.valid_users,
        )
    }
    files["truth/churn.csv"] = {
        "rows": write_churn(tmp / "truth" / "churn.csv", pop, churn, timeline)
    }
    report("truth", 1, 1)

    manifest = _manifest(spec, timeline, pop, churn, files)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return manifest


def _manifest(
    spec: EstateSpec,
    timeline: Timeline,
    pop: Population,
    churn: ChurnPlan,
    files: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    crm = pop.crm_id > 0
    churn_day = churn.churn_day[crm]
    return {
        "format_version": FORMAT_VERSION,
        "seed": spec.seed,
        "customers": spec.customers,
        "days": spec.days,
        "history_days": spec.history_days,
        "end_date": f"{timeline.end_date}",
        "window_start": f"{timeline.window_start}",
        "history_start": f"{timeline.history_start}",
        "simulated_until": f"{timeline.date(timeline.sim_days - 1)}",
        "churn_horizon_days": spec.churn_horizon_days,
        "faults": list(spec.faults),
        "entities": {
            "crm_customers": int(crm.sum()),
            "prospects": int(pop.is_prospect.sum()),
            "converted_prospects": int((pop.is_prospect & crm).sum()),
            "household_members": int((pop.household_of >= 0).sum()),
            "churned_by_end_date": int((churn_day <= timeline.last_day).sum()),
            "churned_after_end_date": int(
                ((churn_day > timeline.last_day) & (churn_day < NEVER)).sum()
            ),
        },
        "totals": _totals(files),
        "files": {name: files[name] for name in sorted(files)},
    }


def _totals(files: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Rows and malformed rows per daily-file entity (e.g. ``support/tickets``) over all days."""
    totals: dict[str, dict[str, int]] = {}
    for name in sorted(files):
        if "malformed" not in files[name]:
            continue
        entity = name.rsplit("_", 1)[0]
        total = totals.setdefault(entity, {"files": 0, "rows": 0, "malformed": 0})
        total["files"] += 1
        total["rows"] += files[name]["rows"]
        total["malformed"] += files[name]["malformed"]
    return totals
