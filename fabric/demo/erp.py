"""ERP extracts: fixed-width accounts, invoices and payments (ASCII, LF, no header)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from fabric.demo.churn import ChurnPlan
from fabric.demo.noise import ERP_PHONE_STYLE, ascii_fold, format_phones, style_emails
from fabric.demo.population import NEVER, Population, Timeline


@dataclass(frozen=True)
class FieldSpec:
    name: str
    length: int
    type: str  # string | integer | decimal | date


LAYOUTS: dict[str, tuple[FieldSpec, ...]] = {
    "accounts": (
        FieldSpec("account_no", 8, "string"),
        FieldSpec("account_name", 40, "string"),
        FieldSpec("email", 60, "string"),
        FieldSpec("phone", 20, "string"),
        FieldSpec("street", 40, "string"),
        FieldSpec("postal_code", 10, "string"),
        FieldSpec("city", 30, "string"),
        FieldSpec("country_code", 2, "string"),
        FieldSpec("opened_on", 8, "date"),
        FieldSpec("billing_day", 2, "integer"),
    ),
    "invoices": (
        FieldSpec("invoice_no", 12, "string"),
        FieldSpec("account_no", 8, "string"),
        FieldSpec("invoice_date", 8, "date"),
        FieldSpec("due_date", 8, "date"),
        FieldSpec("amount", 11, "decimal"),
        FieldSpec("currency", 3, "string"),
    ),
    "payments": (
        FieldSpec("payment_id", 12, "string"),
        FieldSpec("invoice_no", 12, "string"),
        FieldSpec("account_no", 8, "string"),
        FieldSpec("paid_on", 8, "date"),
        FieldSpec("amount", 11, "decimal"),
    ),
}
_DUE_DAYS = 14


def record_length(entity: str) -> int:
    return sum(f.length for f in LAYOUTS[entity])


def layout_yaml() -> str:
    """The content of erp/layout.yaml: entity -> ordered fields with 1-based start positions."""
    lines = [
        "# Fixed-width layouts of the Brightwave ERP extracts: ASCII, LF line ends, no header.",
        "# Every line of an extract is exactly record_length characters long.",
    ]
    for entity, fields in LAYOUTS.items():
        lines.append(f"{entity}:")
        start = 1
        for f in fields:
            extra = ""
            if f.type == "decimal":
                extra = ", scale: 2"
            elif f.type == "date":
                extra = ', format: "%Y%m%d"'
            lines.append(
                f"  - {{name: {f.name}, start: {start}, length: {f.length}, type: {f.type}{extra}}}"
            )
            start += f.length
    return "\n".join(lines) + "\n"


def _decimal(cents: int, width: int) -> str:
    return f"-{-cents:0{width - 1}d}" if cents < 0 else f"{cents:0{width}d}"


_STRASSE = re.compile(r"STRASSE\b")


def _erp_street(street: str, house_no: str) -> str:
    return _STRASSE.sub("STR.", ascii_fold(street).upper()) + " " + house_no.upper()


@dataclass
class DayExtract:
    accounts: str
    invoices: str
    payments: str
    counts: dict[str, int]


class ErpSystem:
    """Produces each day's three extracts; payments are scheduled when invoices are issued."""

    def __init__(
        self, pop: Population, churn: ChurnPlan, timeline: Timeline, rng: np.random.Generator
    ) -> None:
        self._pop = pop
        self._churn = churn
        self._timeline = timeline
        self._rng = rng
        opened = pop.account_opened_day
        #: Entity index of every account that appears in some accounts extract.
        self.accounts = np.flatnonzero(
            pop.in_crm & (opened < churn.churn_day) & (opened <= timeline.last_day)
        )
        self._opened = opened[self.accounts]
        self._billing_day = np.array(
            [min(timeline.date(d).day, 28) for d in self._opened.tolist()], dtype=np.int64
        )
        self._router_cents = np.where(rng.random(len(self.accounts)) < 0.2, 499, 0)
        self._fee_cents = np.round(pop.monthly_fee[self.accounts] * 100).astype(np.int64)
        self._invoice_seq = 0
        self._payment_seq = 0
        # day -> list of (invoice_no, account_no, cents)
        self._due_payments: dict[int, list[tuple[str, str, int]]] = {}

    def _account_lines(self, pos: np.ndarray) -> list[str]:
        pop, rng = self._pop, self._rng
        idx = self.accounts[pos]
        opened = self._opened[pos]
        n = len(idx)
        email_source = np.where(
            (pop.email_alt[idx] != "") & (rng.random(n) < 0.1), pop.email_alt[idx],
            pop.email_on(idx, opened),
        )
        # A quarter blank, the rest lower case as typed or shouted in upper case (style 2).
        blank_email = rng.random(n) < 0.25
        emails = style_emails(list(email_source), np.where(rng.random(n) < 0.47, 2, 0))
        area, sub = pop.phone_on(idx, opened)
        area = np.where(rng.random(n) < 0.1, "", area)
        phones = format_phones(
            list(pop.calling_code[idx]), list(area), list(sub),
            np.full(n, ERP_PHONE_STYLE),
        )
        date = self._timeline.date
        lines = []
        for j, i in enumerate(idx.tolist()):
            name = ascii_fold(f"{pop.last_name[i]}, {pop.first_name[i]}").upper()
            lines.append(
                f"{pop.account_no[i]:<8}{name:<40}"
                f"{'' if blank_email[j] else emails[j]:<60}{phones[j]:<20}"
                f"{_erp_street(pop.street[i], pop.house_no[i]):<40}{pop.postal_code[i]:<10}"
                f"{ascii_fold(pop.city[i]).upper():<30}{pop.country[i]:<2}"
                f"{date(int(opened[j])):%Y%m%d}{self._billing_day[pos[j]]:02d}"
            )
        return lines

    def day(self, day: int) -> DayExtract:
        """Render the extracts for file day `day` (call in increasing day order)."""
        pop, churn, rng = self._pop, self._churn, self._rng
        on = self._timeline.date(day)
        new = self._opened <= 0 if day == 0 else self._opened == day
        new_pos = np.flatnonzero(new)
        new_pos = new_pos[np.argsort(pop.account_no[self.accounts[new_pos]], kind="stable")]
        accounts = self._account_lines(new_pos)

        billed_pos = np.flatnonzero(
            (self._opened < day)
            & (self._billing_day == on.day)
            & (churn.churn_day[self.accounts] > day)
        )
        billed_pos = billed_pos[np.argsort(pop.account_no[self.accounts[billed_pos]], kind="stable")]
        idx = self.accounts[billed_pos]
        n = len(idx)
        one_off = np.where(rng.random(n) < 0.03, 999, 0)
        cents = self._fee_cents[billed_pos] + self._router_cents[billed_pos] + one_off
        signal = churn.signal(idx, day)
        risk = np.maximum(pop.risk[idx], 0.0)
        stress = pop.stress[idx]
        p_missed = 0.01 + 0.10 * stress + 0.10 * signal + 0.02 * risk
        p_late = 0.04 + 0.35 * stress + 0.25 * signal + 0.05 * risk
        u = rng.random(n)
        delay = np.where(
            u < p_missed,
            NEVER,
            np.where(
                u < p_missed + p_late,
                _DUE_DAYS + rng.integers(1, 31, size=n),
                rng.integers(1, _DUE_DAYS + 1, size=n),
            ),
        )
        partial = rng.random(n) < 0.02
        credit = churn.recently_degraded(idx, day) & ~churn.degraded(idx, day) & (
            rng.random(n) < 0.5
        )
        due = f"{self._timeline.date(day + _DUE_DAYS):%Y%m%d}"
        invoice_lines = []
        for j, i in enumerate(idx.tolist()):
            rows = [(int(cents[j]), True)]
            if credit[j]:
                rows.append((-round(int(self._fee_cents[billed_pos[j]]) * 0.25), False))
            for amount, payable in rows:
                self._invoice_seq += 1
                invoice_no = f"INV{self._invoice_seq:09d}"
                invoice_lines.append(
                    f"{invoice_no:<12}{pop.account_no[i]:<8}{on:%Y%m%d}{due}"
                    f"{_decimal(amount, 11)}{pop.currency[i]:<3}"
                )
                if payable and delay[j] < NEVER:
                    paid = amount // 2 if partial[j] else amount
                    self._due_payments.setdefault(day + int(delay[j]), []).append(
                        (invoice_no, pop.account_no[i], paid)
                    )

        payment_lines = []
        for invoice_no, account_no, amount in sorted(self._due_payments.pop(day, [])):
            self._payment_seq += 1
            payment_lines.append(
                f"{f'PMT{self._payment_seq:09d}':<12}{invoice_no:<12}{account_no:<8}"
                f"{on:%Y%m%d}{_decimal(amount, 11)}"
            )
        return DayExtract(
            accounts=_join(accounts),
            invoices=_join(invoice_lines),
            payments=_join(payment_lines),
            counts={
                "accounts": len(accounts),
                "invoices": len(invoice_lines),
                "payments": len(payment_lines),
            },
        )


def _join(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""
