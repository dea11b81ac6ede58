"""The CRM: a SQLite file with customers, contacts and cancellations as of end_date.

The CRM went live on history_start (migrated from a legacy tool): rows of customers who
signed up earlier carry their original ``created_at`` but an ``updated_at`` no earlier than the
migration, and their contacts carry the migration timestamp. So every row falls into a daily
partition that has files.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path

import numpy as np

from fabric.demo import names
from fabric.demo.churn import CANCELLATION_REASONS, ChurnPlan
from fabric.demo.noise import PHONE_STYLES, format_phones, pick, style_emails
from fabric.demo.population import PLANS, Population, Timeline

DDL = """
CREATE TABLE customers (
    crm_id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT, email TEXT, phone TEXT,
    street TEXT, postal_code TEXT, city TEXT, country TEXT, plan TEXT, monthly_fee REAL,
    created_at TEXT, updated_at TEXT
);
CREATE TABLE contacts (
    contact_id INTEGER PRIMARY KEY, crm_id INTEGER, kind TEXT, value TEXT, created_at TEXT
);
CREATE TABLE cancellations (
    cancellation_id INTEGER PRIMARY KEY, crm_id INTEGER, cancelled_on TEXT, reason TEXT
);
"""
CRM_EMAIL_STYLE_WEIGHTS = (62, 14, 4, 0, 6, 8, 6)
CRM_PHONE_STYLE_WEIGHTS = (8, 25, 15, 10, 10, 8, 10, 6, 8)
_COUNTRY_TEXT_WEIGHTS: dict[str, tuple[float, ...]] = {
    "DE": (0.35, 0.10, 0.30, 0.20, 0.05),
    "AT": (0.35, 0.30, 0.25, 0.10),
    "CH": (0.35, 0.30, 0.25, 0.10),
}
_STRASSE = re.compile(r"stra(ss|ß)e\b")

CustomerRow = tuple[int, str, str, str, str, str, str, str, str, str, float, str, str]
ContactRow = tuple[int, int, str, str, str]
CancellationRow = tuple[int, int, str, str]


@dataclass
class CrmTables:
    customers: list[CustomerRow]
    contacts: list[ContactRow]
    cancellations: list[CancellationRow]


def build_crm(
    pop: Population, churn: ChurnPlan, timeline: Timeline, rng: np.random.Generator
) -> CrmTables:
    """Customers in crm_id order with their contact history and past cancellations."""
    idx = np.flatnonzero(pop.in_crm)
    idx = idx[np.argsort(pop.crm_id[idx])]
    n = len(idx)
    last = timeline.last_day

    def stamp(day: np.ndarray, low_hour: int, high_hour: int) -> np.ndarray:
        return day * 86_400 + rng.integers(low_hour * 3600, high_hour * 3600, size=n)

    created = pop.signup_day[idx] * 86_400 + pop.signup_second[idx]
    migrated = np.where(pop.signup_day[idx] < 0, stamp(np.zeros(n, np.int64), 2, 4), created)
    email_changed = stamp(pop.email_change_day[idx], 8, 20)
    phone_changed = stamp(pop.phone_change_day[idx], 8, 20)
    cancelled = np.where(churn.churn_day[idx] <= last, stamp(churn.churn_day[idx], 8, 18), -1)
    updated = np.maximum.reduce(
        [
            migrated,
            np.where(pop.email_change_day[idx] >= 0, email_changed, -1),
            np.where(pop.phone_change_day[idx] >= 0, phone_changed, -1),
            cancelled,
        ]
    )
    origin = datetime.combine(timeline.history_start, time())

    def ts(seconds: int) -> str:
        return f"{origin + timedelta(seconds=seconds):%Y-%m-%d %H:%M:%S}"

    emails = style_emails(list(pop.email[idx]), pick(rng, n, CRM_EMAIL_STYLE_WEIGHTS))
    phone_styles = pick(rng, n, CRM_PHONE_STYLE_WEIGHTS)
    phones = format_phones(
        list(pop.calling_code[idx]), list(pop.phone_area[idx]), list(pop.phone_sub[idx]),
        phone_styles,
    )
    shout = rng.random(n) < 0.03
    abbreviate = rng.random(n) < 0.12
    country_pick = rng.random(n)
    customers: list[CustomerRow] = []
    for j, i in enumerate(idx.tolist()):
        c = pop.country[i]
        texts, weights = names.COUNTRY_TEXTS[c], np.cumsum(_COUNTRY_TEXT_WEIGHTS[c])
        country_text = texts[min(int(np.searchsorted(weights, country_pick[j])), len(texts) - 1)]
        street = pop.street[i]
        if abbreviate[j]:
            street = _STRASSE.sub("str.", street)
        customers.append(
            (
                int(pop.crm_id[i]),
                pop.first_name[i],
                pop.last_name[i].upper() if shout[j] else pop.last_name[i],
                emails[j],
                phones[j],
                f"{street} {pop.house_no[i]}",
                pop.postal_code[i],
                pop.city[i],
                country_text,
                PLANS[pop.plan[i]],
                float(pop.monthly_fee[i]),
                ts(int(created[j])),
                ts(int(updated[j])),
            )
        )

    contacts = _contacts(pop, idx, emails, phone_styles, migrated, email_changed, phone_changed,
                         ts, rng)

    gone = idx[churn.churn_day[idx] <= last]
    gone = gone[np.lexsort((pop.crm_id[gone], churn.churn_day[gone]))]
    cancellations: list[CancellationRow] = [
        (k + 1, int(pop.crm_id[i]), f"{timeline.date(int(churn.churn_day[i]))}",
         CANCELLATION_REASONS[churn.reason[i]])
        for k, i in enumerate(gone.tolist())
    ]
    return CrmTables(customers, contacts, cancellations)


def _contacts(
    pop: Population,
    idx: np.ndarray,
    emails: list[str],
    phone_styles: np.ndarray,
    base: np.ndarray,
    email_changed: np.ndarray,
    phone_changed: np.ndarray,
    ts: Callable[[int], str],
    rng: np.random.Generator,
) -> list[ContactRow]:
    """Extra emails/phones: alternatives, previous values, exact and near duplicates."""
    n = len(idx)
    exact_dup = rng.random(n) < 0.10
    near_dup = rng.random(n) < 0.15
    near_style = (pick(rng, n, CRM_EMAIL_STYLE_WEIGHTS) + rng.integers(1, 7, size=n)) % 7
    near_email = style_emails(list(pop.email[idx]), near_style)
    alt_email = style_emails(list(pop.email_alt[idx]), np.where(rng.random(n) < 0.2, 1, 0))
    phone_dup = rng.random(n) < 0.12
    cc = list(pop.calling_code[idx])
    other_style = (phone_styles + rng.integers(1, len(PHONE_STYLES), size=n)) % len(PHONE_STYLES)
    dup_phone = format_phones(cc, list(pop.phone_area[idx]), list(pop.phone_sub[idx]), other_style)
    second_phone = format_phones(
        cc, list(pop.phone2_area[idx]), list(pop.phone2_sub[idx]),
        rng.integers(len(PHONE_STYLES), size=n),
    )
    old_phone = format_phones(
        cc, list(pop.phone_old_area[idx]), list(pop.phone_old_sub[idx]),
        rng.integers(len(PHONE_STYLES), size=n),
    )
    current_since = np.where(pop.email_change_day[idx] >= 0, email_changed, base)
    rows: list[ContactRow] = []
    for j, i in enumerate(idx.tolist()):
        crm_id = int(pop.crm_id[i])
        entries: list[tuple[str, str, int]] = []
        if pop.email_old[i]:
            entries.append(("email", pop.email_old[i], int(email_changed[j])))
        if exact_dup[j]:
            entries.append(("email", emails[j], int(current_since[j])))
        if near_dup[j]:
            entries.append(("email", near_email[j], int(current_since[j])))
        if alt_email[j]:
            entries.append(("email", alt_email[j], int(base[j])))
        if second_phone[j]:
            entries.append(("phone", second_phone[j], int(base[j])))
        if phone_dup[j]:
            entries.append(("phone", dup_phone[j], int(base[j])))
        if old_phone[j]:
            entries.append(("phone", old_phone[j], int(phone_changed[j])))
        for kind, value, seconds in entries:
            rows.append((len(rows) + 1, crm_id, kind, value, ts(seconds)))
    return rows


def break_countries(tables: CrmTables, end_date: str, rng: np.random.Generator) -> int:
    """The `bad_country` fault: unmappable country text on every row updated on end_date."""
    broken = 0
    for k, row in enumerate(tables.customers):
        if row[12].startswith(end_date):
            bad = names.BAD_COUNTRY_TEXTS[int(rng.integers(len(names.BAD_COUNTRY_TEXTS)))]
            tables.customers[k] = (*row[:8], bad, *row[9:])
            broken += 1
    return broken


def write_crm(path: Path, tables: CrmTables) -> None:
    """Write the SQLite file; rows go in key order so the table contents are reproducible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    try:
        con.executescript(DDL)
        con.executemany(f"INSERT INTO customers VALUES ({','.join('?' * 13)})", tables.customers)
        con.executemany("INSERT INTO contacts VALUES (?,?,?,?,?)", tables.contacts)
        con.executemany("INSERT INTO cancellations VALUES (?,?,?,?)", tables.cancellations)
        con.commit()
    finally:
        con.close()
