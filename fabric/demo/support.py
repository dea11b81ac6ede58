"""Support desk export: one cp1252 CSV of tickets per day, CRLF, quoted multi-line text.

The desk keeps its own contact records ("requesters", ``SD-nnnnnn``), created the first time
somebody writes in, with whatever name/email/phone they gave then. About 0.5% of rows are
deliberately malformed; the kinds are counted so quarantine can be reconciled exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from fabric.demo.churn import ChurnPlan
from fabric.demo.noise import (
    PHONE_STYLES,
    ascii_fold,
    fault_row_count,
    format_phones,
    style_emails,
)
from fabric.demo.population import PLAN_MBPS, PLANS, Population, Timeline

COLUMNS: tuple[str, ...] = (
    "ticket_id", "opened_at", "requester_id", "requester_name", "requester_email",
    "requester_phone", "channel", "category", "subject", "description", "priority",
    "satisfaction",
)
MALFORMED_KINDS: tuple[str, ...] = ("field_count", "opened_at", "satisfaction")
MALFORMED_SHARE = 0.005

CATEGORIES: tuple[str, ...] = (
    "outage", "speed", "billing", "contract", "cancellation", "router", "move", "sales", "other",
)
_CHANNELS: tuple[str, ...] = ("email", "phone", "chat", "web_form")
_PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")

_SUBJECTS: dict[str, tuple[str, ...]] = {
    "outage": ("Internet seit {hours} Stunden weg", "Totalausfall \u2013 kein Internet",
               "No internet since this morning", "Störung in {city}?"),
    "speed": ("Nur {mbps} Mbit/s statt {plan_mbps}", "Speed very slow in the evening",
              "Langsames WLAN, Videos ruckeln"),
    "billing": ("Rechnung zu hoch: {amount} €", "Doppelte Abbuchung, bitte prüfen",
                "Question about my invoice, charged {amount} €", "Mahnung erhalten, obwohl bezahlt"),
    "contract": ("Tarifwechsel auf {plan}", "Vertragslaufzeit?", "Change of bank details"),
    "cancellation": ("Kündigung zum nächstmöglichen Termin", "Wie kann ich kündigen?",
                     "Cancel my contract", "Sonderkündigung wegen Störungen"),
    "router": ("Router blinkt rot", "FRITZ!Box verliert Verbindung", "WLAN-Passwort vergessen"),
    "move": ("Umzug nach {city}", "Moving house \u2013 can I take my contract with me?"),
    "sales": ("Verfügbarkeit in {postal} {city}?", "Angebot für \"{plan}\"",
              "Wann kommt Glasfaser zu mir?"),
    "other": ("Frage", "Feedback zur Hotline", "Rückruf erbeten"),
}
_BODIES: dict[str, tuple[str, ...]] = {
    "outage": ('Der Router zeigt "DSL sync lost" an.', "Seit gestern Abend geht gar nichts mehr.",
               "It\u2019s been down since Monday, I work from home!", "Die Info-LED leuchtet rot."),
    "speed": ("Abends kommen nur {mbps} Mbit/s an, bezahlt habe ich {plan_mbps}.",
              "Speedtest says {mbps} Mbit/s \u2013 that\u2019s not what I pay for.",
              "Netflix ruckelt ständig, \u201eVerbindung unterbrochen\u201c."),
    "billing": ("Auf der Rechnung stehen {amount} € statt wie vereinbart weniger.",
                "Der Betrag wurde zweimal abgebucht.", "Please explain the one-off fee of 9,99 €."),
    "contract": ("Ich möchte auf {plan} wechseln, was kostet das?",
                 "Bis wann läuft mein Vertrag?", "My IBAN has changed, where can I update it?"),
    "cancellation": ("Hiermit kündige ich meinen Vertrag fristgerecht.",
                     "Ich bin mit dem Service unzufrieden und möchte kündigen.",
                     "Please cancel \u2013 I\u2019ve found a cheaper offer.", "Was kostet eine Kündigung?"),
    "router": ("Die FRITZ!Box startet ständig neu.", "WLAN im Café-Bereich unseres Hauses fällt aus.",
               "Router LED blinks \"red\" every few minutes."),
    "move": ("Wir ziehen nach {city} um, geht der Vertrag mit?", "New address from next month."),
    "sales": ("Ist {plan} in {postal} {city} verfügbar?", "Was kostet der Anschluss?",
              "Gibt es ein Angebot für Neukunden?"),
    "other": ("Die Hotline war sehr freundlich, danke!", "Bitte um Rückruf.",
              "Ich habe eine allgemeine Frage zu Ihrem Service."),
}
_GREETINGS: tuple[str, ...] = ("Hallo,", "Guten Tag,", "Sehr geehrte Damen und Herren,", "Hi,")
_CLOSINGS: tuple[str, ...] = ("Danke!", "Viele Grüße\r\n{first}", "Mit freundlichen Grüßen\r\n{name}",
                              "Thanks, {first}", "Merci & Grüße aus {city}")
_NAME_STYLES = 5
_CATEGORY_WEIGHTS = np.array([0.03, 0.10, 0.20, 0.14, 0.04, 0.16, 0.05, 0.0, 0.08])
_PRIORITY_WEIGHTS = np.array([0.2, 0.6, 0.15, 0.05])
_PRIORITY_WEIGHTS_OUTAGE = np.array([0.0, 0.3, 0.45, 0.25])
_MALFORMED_WEIGHTS = np.array([0.4, 0.3, 0.3])
_BAD_SATISFACTION: tuple[str, ...] = ("n/a", "k.A.", "good")
#: Requester email styles (noise.EMAIL_STYLES codes 0..6) as cumulative probabilities.
_REQUESTER_EMAIL_CUMULATIVE = np.cumsum([55, 15, 5, 3, 4, 4]) / 90  # style 6 gets the last 4/90


_NEEDS_QUOTES = re.compile(r'[,"\r\n]|^\s|\s$')


def _quote(value: str) -> str:
    """Minimal CSV quoting, plus quotes around values with edge whitespace (kept verbatim)."""
    if _NEEDS_QUOTES.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


def _row(fields: list[str]) -> str:
    return ",".join(_quote(f) for f in fields) + "\r\n"


HEADER = _row(list(COLUMNS))


@dataclass
class DayTickets:
    text: str  # decoded CSV text; encode as cp1252 to write
    rows: int  # data records (excluding the header)
    lines: int  # physical lines including the header
    malformed: dict[str, int] = field(default_factory=dict)
    fault_malformed: int = 0  # of `malformed`, the rows added by the malformed_rows fault


@dataclass
class _Ticket:
    fields: list[str]
    malformed: str = ""  # one of MALFORMED_KINDS, or '' for a good row


class SupportDesk:
    """Produces each day's export; requester records are created at a person's first ticket."""

    def __init__(
        self, pop: Population, churn: ChurnPlan, timeline: Timeline, rng: np.random.Generator
    ) -> None:
        self._pop = pop
        self._churn = churn
        self._timeline = timeline
        self._rng = rng
        n = pop.size
        self._profile = np.full((n, 2), -1, dtype=np.int64)
        #: requester number -> (entity index, name, email, phone)
        self.requesters: list[tuple[int, str, str, str]] = []
        #: requester numbers that appear in at least one well-formed row
        self.valid_requesters: set[int] = set()
        self._ticket_seq = 0

    def _requester(self, entity: int, second: bool, day: int) -> int:
        """The desk's contact record for `entity`, created with today's details if new."""
        slot = 1 if second else 0
        number = int(self._profile[entity, slot])
        if number >= 0:
            return number
        pop = self._pop
        u = self._rng.random(6)
        idx = np.array([entity])
        first, last = pop.first_name[entity], pop.last_name[entity]
        name = (
            f"{first} {last}",
            f"{last}, {first}",
            f"{first} {last}".upper(),
            f"{first} {last}".lower(),
            ascii_fold(f"{first} {last}"),
        )[int(u[0] * _NAME_STYLES)]
        email = pop.email_alt[entity] if second else str(pop.email_on(idx, day)[0])
        style = int(np.searchsorted(_REQUESTER_EMAIL_CUMULATIVE, u[1], side="right"))
        email = style_emails([email], np.array([style]))[0]
        if pop.phone2_area[entity] != "" and u[2] < 0.3:
            area, sub = pop.phone2_area[entity], pop.phone2_sub[entity]
        else:
            areas, subs = pop.phone_on(idx, day)
            area, sub = str(areas[0]), str(subs[0])
        no_email = not second and u[3] < 0.1
        no_phone = u[4] < 0.5 and not no_email  # someone must be reachable
        phone = format_phones(
            [pop.calling_code[entity]], ["" if no_phone else area], [sub],
            np.array([int(u[5] * len(PHONE_STYLES))]),
        )[0]
        number = len(self.requesters)
        self.requesters.append((entity, name, "" if no_email else email, phone))
        self._profile[entity, slot] = number
        return number

    def valid_requester_keys(self) -> list[tuple[str, int]]:
        """(requester_id, entity index) of every requester seen in a well-formed row."""
        return [
            (requester_key(number), self.requesters[number][0])
            for number in sorted(self.valid_requesters)
        ]

    def day(self, day: int, fault_rng: np.random.Generator | None = None) -> DayTickets:
        """Render file day `day` (call in increasing day order).

        With `fault_rng` (the `malformed_rows` fault) extra malformed rows are drawn from it
        alone and numbered after the day's last ticket, so every other row and file stays
        byte-identical to the estate without the fault.
        """
        pop, churn, rng = self._pop, self._churn, self._rng
        customers = np.flatnonzero(
            pop.in_crm & (pop.signup_day <= day) & (churn.churn_day > day)
        )
        prospects = np.flatnonzero((pop.prospect_from <= day) & (day <= pop.prospect_until))
        signal = churn.signal(customers, day)
        degraded = churn.degraded(customers, day)
        rate = (
            0.011
            * np.exp(0.45 * pop.risk[customers])
            * (1 + 2.5 * signal)
            * (1 + 4.0 * degraded)
            * (1 + 0.4 * pop.stress[customers])
        )
        counts = rng.poisson(np.concatenate([rate, np.full(len(prospects), 0.03)]))
        who = np.repeat(np.concatenate([customers, prospects]), counts)
        signal = np.repeat(np.concatenate([signal, np.zeros(len(prospects))]), counts)
        degraded = np.repeat(np.concatenate([degraded, np.zeros(len(prospects), bool)]), counts)
        n = len(who)
        seconds = np.where(
            rng.random(n) < 0.8,
            rng.integers(7 * 3600, 20 * 3600, size=n),
            rng.integers(0, 86_400, size=n),
        )
        order = np.lexsort((who, seconds))
        who, seconds, signal, degraded = who[order], seconds[order], signal[order], degraded[order]
        tickets = self._tickets(day, who, seconds, signal, degraded)
        extra = 0
        if fault_rng is not None:
            extra = fault_row_count(len(tickets))
            self._add_malformed(tickets, day, extra, fault_rng)
        return _render(tickets, extra)

    def _tickets(
        self,
        day: int,
        who: np.ndarray,
        seconds: np.ndarray,
        signal: np.ndarray,
        degraded: np.ndarray,
    ) -> list[_Ticket]:
        """Draw every attribute of the day's tickets at once, then format them."""
        pop, rng = self._pop, self._rng
        n = len(who)
        prospect = ~pop.in_crm[who] | (day < pop.signup_day[who])
        second = pop.second_profile[who] & ~prospect & (rng.random(n) < 0.4)
        weights = np.tile(_CATEGORY_WEIGHTS, (n, 1))
        weights[:, 0] += 2.0 * degraded
        weights[:, 1] += 0.6 * degraded
        weights[:, 2] += 0.25 * pop.stress[who]
        weights[:, 4] += 1.2 * signal
        weights[prospect] = np.eye(len(CATEGORIES))[CATEGORIES.index("sales")]
        category = _draw_rows(rng, weights)
        priority = _draw_rows(
            rng, np.where(degraded[:, None], _PRIORITY_WEIGHTS_OUTAGE, _PRIORITY_WEIGHTS)
        )
        picks = rng.random((n, 7))  # subject, body, 2nd body, greeting, closing, channel, plan
        two_sentences = rng.random(n) < 0.5
        letter = rng.random(n) < 0.55
        plan = pop.plan[who]
        mbps = (np.array(PLAN_MBPS)[plan] * rng.uniform(0.05, 0.5, size=n)).astype(int)
        amount = pop.monthly_fee[who] * rng.uniform(1.2, 2.5, size=n)
        hours = rng.integers(2, 49, size=n)
        mean = 4.1 - 0.6 * pop.risk[who] - 2.0 * signal - 1.2 * degraded
        rating = np.clip(np.round(rng.normal(mean, 0.9)), 1, 5).astype(int)
        rated = rng.random(n) < 0.65
        broken = rng.random(n) < MALFORMED_SHARE
        broken_kind = _draw_rows(rng, np.tile(_MALFORMED_WEIGHTS, (n, 1)))
        broken_variant = rng.random(n)
        date_text = f"{self._timeline.date(day)}"
        tickets = []
        for j, e in enumerate(who.tolist()):
            number = self._requester(e, bool(second[j]), day)
            _, name, email, phone = self.requesters[number]
            cat = CATEGORIES[category[j]]
            plan_j = int(plan[j])
            first = pop.first_name[e]
            fill = {
                "hours": hours[j],
                "city": pop.city[e],
                "postal": pop.postal_code[e],
                "mbps": mbps[j],
                "plan_mbps": PLAN_MBPS[plan_j],
                "amount": f"{amount[j]:.2f}".replace(".", ","),
                "plan": PLANS[int(picks[j, 6] * 3)],
                "first": first,
                "name": f"{first} {pop.last_name[e]}",
            }
            bodies = _BODIES[cat]
            b1 = int(picks[j, 1] * len(bodies))
            body = bodies[b1]
            if two_sentences[j] and len(bodies) > 1:
                body += " " + bodies[(b1 + 1 + int(picks[j, 2] * (len(bodies) - 1))) % len(bodies)]
            body = body.format(**fill)
            if letter[j]:
                greeting = _GREETINGS[int(picks[j, 3] * len(_GREETINGS))]
                closing = _CLOSINGS[int(picks[j, 4] * len(_CLOSINGS))].format(**fill)
                body = f"{greeting}\r\n{body}\r\n{closing}"
            subjects = _SUBJECTS[cat]
            self._ticket_seq += 1
            h, rest = divmod(int(seconds[j]), 3600)
            ticket = _Ticket(
                [
                    f"T{self._ticket_seq:07d}",
                    f"{date_text} {h:02d}:{rest // 60:02d}:{rest % 60:02d}",
                    requester_key(number),
                    name,
                    email,
                    phone,
                    _CHANNELS[int(picks[j, 5] * len(_CHANNELS))],
                    cat,
                    subjects[int(picks[j, 0] * len(subjects))].format(**fill),
                    body,
                    _PRIORITIES[priority[j]],
                    str(rating[j]) if rated[j] else "",
                ]
            )
            if broken[j]:
                _break(ticket, MALFORMED_KINDS[broken_kind[j]], float(broken_variant[j]))
            else:
                self.valid_requesters.add(number)
            tickets.append(ticket)
        return tickets

    def _add_malformed(
        self, tickets: list[_Ticket], day: int, count: int, rng: np.random.Generator
    ) -> None:
        good = [t for t in tickets if not t.malformed]
        for _ in range(count):
            self._ticket_seq += 1
            if good:
                fields = list(good[int(rng.integers(len(good)))].fields)
            else:
                fields = [""] * len(COLUMNS)
                fields[1] = f"{self._timeline.date(day)} 12:00:00"
            fields[0] = f"T{self._ticket_seq:07d}"
            extra = _Ticket(fields)
            kind = MALFORMED_KINDS[int(rng.integers(len(MALFORMED_KINDS)))]
            _break(extra, kind, float(rng.random()))
            tickets.insert(int(rng.integers(len(tickets) + 1)), extra)


def _render(tickets: list[_Ticket], fault_malformed: int) -> DayTickets:
    parts = [HEADER]
    malformed = dict.fromkeys(MALFORMED_KINDS, 0)
    lines = 1
    for t in tickets:
        text = _field_count_row(t.fields) if t.malformed == "field_count" else _row(t.fields)
        if t.malformed:
            malformed[t.malformed] += 1
        lines += text.count("\r\n")
        parts.append(text)
    return DayTickets("".join(parts), len(tickets), lines, malformed, fault_malformed)


def requester_key(number: int) -> str:
    """The desk's contact id for requester `number` (0-based creation order)."""
    return f"SD-{number + 1:06d}"


def _break(ticket: _Ticket, kind: str, variant: float) -> None:
    """Damage a row the way exports really break; `variant` in [0, 1) picks the flavour."""
    ticket.malformed = kind
    f = ticket.fields
    if kind == "opened_at":
        day_part, time_part = f[1].split(" ")
        y, m, d = day_part.split("-")
        options = (f"{d}.{m}.{y} {time_part[:5]}", f"{y}-13-{d} {time_part}", "gestern 14:30",
                   f"{day_part}T25:61:00")
        f[1] = options[int(variant * len(options))]
    elif kind == "satisfaction":
        f[11] = _BAD_SATISFACTION[int(variant * len(_BAD_SATISFACTION))]


def _draw_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One category per row of an (n, k) weight matrix."""
    cumulative = weights.cumsum(axis=1)
    u = rng.random(len(weights)) * cumulative[:, -1]
    return (u[:, None] >= cumulative).sum(axis=1)


def _field_count_row(fields: list[str]) -> str:
    """A row whose subject went out unquoted around a comma (13+ fields), or one cut short.

    The flavour follows the subject's length parity: arbitrary, but fixed by the row itself.
    """
    if len(fields[8]) % 2:
        cells = [_quote(f) for f in fields]
        cells[8] = fields[8].replace('"', "").replace("\r\n", " ") + ", bitte dringend"
        return ",".join(cells) + "\r\n"
    return ",".join(_quote(f) for f in fields[:9]) + "\r\n"
