"""Web/app events: one JSON object per line per day (UTF-8, LF); ~0.2% invalid lines."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from fabric.demo.churn import ChurnPlan
from fabric.demo.noise import fault_row_count, pick, style_emails
from fabric.demo.population import PLAN_MBPS, PLANS, Population, Timeline

EVENT_TYPES: tuple[str, ...] = (
    "login", "page_view", "speed_test", "plan_view", "cancel_page_view", "app_error",
)
MALFORMED_KINDS: tuple[str, ...] = ("truncated", "single_quoted")
MALFORMED_SHARE = 0.002
_OS: tuple[str, ...] = ("android", "ios", "web")
_PATHS: tuple[str, ...] = ("/account", "/invoices", "/usage", "/help/router", "/help/wifi",
                           "/contact", "/plans")
_ERRORS: tuple[tuple[str, str], ...] = (("E_TIMEOUT", "dashboard"), ("E_DNS", "speed_test"),
                                        ("E_AUTH", "login"), ("E_500", "invoices"))
_LOGIN_METHODS: tuple[str, ...] = ("password", "biometric", "magic_link")
# Odd multiplier: seq -> seq * K mod 2**64 is a bijection, so ids look random but never repeat.
_ID_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_ID_OFFSET = np.uint64(0x632BE59BD9B4E019)
_CLOCK: tuple[str, ...] = tuple(
    f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)
)


@dataclass
class DayEvents:
    text: str
    rows: int  # lines, valid or not
    malformed: dict[str, int] = field(default_factory=dict)
    fault_malformed: int = 0  # of `malformed`, the lines added by the malformed_rows fault


def _display_name(first: str, last: str, style: int) -> str | None:
    if style == 0:
        return f"{first} {last}"
    if style == 1:
        return f"{first} {last[0]}."
    if style == 2:
        return first.lower()
    return None


class WebTracker:
    """Emits each day's events for customers and prospects who have a web account."""

    def __init__(
        self, pop: Population, churn: ChurnPlan, timeline: Timeline, rng: np.random.Generator
    ) -> None:
        self._pop = pop
        self._churn = churn
        self._timeline = timeline
        self._rng = rng
        users = np.flatnonzero(pop.web_user_id != "")
        n = len(users)
        created = pop.web_created_day[users]
        use_alt = (pop.email_alt[users] != "") & (rng.random(n) < 0.08)
        email = np.where(use_alt, pop.email_alt[users], pop.email_on(users, created))
        styled = style_emails(list(email), pick(rng, n, [60, 22, 4, 6, 4, 4, 0]))
        name_style = pick(rng, n, [45, 20, 15, 20])
        self._user_json = np.full(pop.size, "", dtype=object)
        for i, e, s in zip(users.tolist(), styled, name_style.tolist(), strict=True):
            user = {
                "id": pop.web_user_id[i],
                "email": e,
                "name": _display_name(pop.first_name[i], pop.last_name[i], s),
            }
            self._user_json[i] = json.dumps(user, ensure_ascii=False, separators=(",", ":"))
        self._version_lag = rng.integers(0, 60, size=pop.size)
        self._seq = 0
        #: entity indices whose user id appears in at least one valid line
        self.valid_users = np.zeros(pop.size, dtype=bool)

    def _active(self, day: int) -> tuple[np.ndarray, np.ndarray]:
        pop, churn = self._pop, self._churn
        has_account = pop.web_created_day <= day
        customers = np.flatnonzero(
            has_account & pop.in_crm & (pop.signup_day <= day) & (churn.churn_day > day)
        )
        prospects = np.flatnonzero(
            has_account & (pop.prospect_from <= day) & (day <= pop.prospect_until)
        )
        return customers, prospects

    def _rates(self, customers: np.ndarray, prospects: np.ndarray, day: int) -> np.ndarray:
        pop, churn = self._pop, self._churn
        signal = churn.signal(customers, day)
        degraded = churn.degraded(customers, day).astype(float)
        engaged = pop.engagement[customers] * np.exp(-0.3 * pop.risk[customers])
        customer_rates = np.column_stack(
            (
                0.35 * engaged * (1 - 0.85 * signal),
                0.30 * engaged * (1 - 0.5 * signal),
                0.04 + 0.35 * degraded,
                0.02 + 0.08 * signal,
                0.001 + 0.25 * signal**1.5 + 0.001 * np.maximum(pop.risk[customers], 0),
                0.01 + 0.2 * degraded,
            )
        )
        prospect_rates = np.tile([0.05, 0.5, 0.0, 0.3, 0.0, 0.0], (len(prospects), 1))
        return np.vstack((customer_rates, prospect_rates))

    def day(self, day: int, fault_rng: np.random.Generator | None = None) -> DayEvents:
        """Render file day `day` (call in increasing day order); see SupportDesk.day."""
        pop, rng = self._pop, self._rng
        customers, prospects = self._active(day)
        everyone = np.concatenate((customers, prospects))
        counts = rng.poisson(self._rates(customers, prospects, day))
        who = np.repeat(np.repeat(everyone, counts.shape[1]), counts.ravel())
        kind = np.repeat(np.tile(np.arange(counts.shape[1]), len(everyone)), counts.ravel())
        n = len(who)
        seconds = np.where(
            rng.random(n) < 0.7,
            rng.integers(7 * 3600, 23 * 3600, size=n),
            rng.integers(0, 86_400, size=n),
        )
        order = np.lexsort((kind, who, seconds))
        who, kind, seconds = who[order], kind[order], seconds[order]
        props = self._props(who, kind, day)
        seq = np.arange(self._seq + 1, self._seq + n + 1, dtype=np.uint64)
        self._seq += n
        event_ids = (seq * _ID_MULTIPLIER + _ID_OFFSET).tolist()
        # App versions: a release every two weeks, each user some weeks behind.
        release = np.maximum(day - self._version_lag[who] + 400, 0) // 14
        combos, device = np.unique(pop.web_os[who] * 10_000 + release, return_inverse=True)
        devices = [
            f'{{"os":"{_OS[c // 10_000]}","app_version":"4.{c % 10_000 // 6}.{c % 6}"}}'
            for c in combos.tolist()
        ]
        stamp = f"{self._timeline.date(day)}T"
        users = self._user_json
        lines = [
            f'{{"event_id":"{eid:016x}","ts":"{stamp}{_CLOCK[s]}Z","type":"{EVENT_TYPES[k]}",'
            f'"user":{users[w]},"device":{devices[d]},"props":{p}}}'
            for eid, s, k, w, d, p in zip(
                event_ids, seconds.tolist(), kind.tolist(), who.tolist(), device.tolist(),
                props, strict=True,
            )
        ]
        bad = np.flatnonzero(rng.random(n) < MALFORMED_SHARE)
        bad_kind = pick(rng, len(bad), [0.75, 0.25])
        cut = rng.random(len(bad))
        malformed = dict.fromkeys(MALFORMED_KINDS, 0)
        for pos, k, c in zip(bad.tolist(), bad_kind.tolist(), cut.tolist(), strict=True):
            lines[pos] = _corrupt(lines[pos], k, c)
            malformed[MALFORMED_KINDS[k]] += 1
        good = np.ones(n, dtype=bool)
        good[bad] = False
        self.valid_users[who[good]] = True
        extra = fault_row_count(n) if fault_rng is not None else 0
        if fault_rng is not None:
            for _ in range(extra):
                k = int(fault_rng.integers(len(MALFORMED_KINDS)))
                source = lines[int(fault_rng.integers(n))] if n else '{"event_id":"x"}'
                if not source.endswith("}"):  # already broken: break a fresh copy instead
                    source = '{"event_id":"x","type":"login"}'
                lines.insert(
                    int(fault_rng.integers(len(lines) + 1)), _corrupt(source, k, fault_rng.random())
                )
                malformed[MALFORMED_KINDS[k]] += 1
        text = "\n".join(lines) + "\n" if lines else ""
        return DayEvents(text, len(lines), malformed, extra)

    def _props(self, who: np.ndarray, kind: np.ndarray, day: int) -> list[str]:
        pop, churn, rng = self._pop, self._churn, self._rng
        n = len(who)
        props = [""] * n
        for code, name in enumerate(EVENT_TYPES):
            pos = np.flatnonzero(kind == code)
            idx = who[pos]
            m = len(pos)
            if name == "login":
                method = pick(rng, m, [0.6, 0.3, 0.1])
                values = [f'{{"method":"{_LOGIN_METHODS[x]}"}}' for x in method.tolist()]
            elif name == "page_view":
                path = pick(rng, m, [0.3, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05])
                values = [f'{{"path":"{_PATHS[x]}"}}' for x in path.tolist()]
            elif name == "speed_test":
                nominal = np.array(PLAN_MBPS)[pop.plan[idx]]
                factor = np.where(
                    churn.degraded(idx, day),
                    rng.uniform(0.05, 0.35, size=m),
                    rng.uniform(0.7, 1.0, size=m),
                )
                down = np.round(nominal * factor, 1)
                up = np.round(down * rng.uniform(0.15, 0.25, size=m), 1)
                values = [
                    f'{{"down_mbps":{d},"up_mbps":{u},"server":"FRA-{s}"}}'
                    for d, u, s in zip(
                        down.tolist(), up.tolist(), rng.integers(1, 4, size=m).tolist(),
                        strict=True,
                    )
                ]
            elif name == "plan_view":
                viewed = rng.integers(0, 3, size=m).tolist()
                prospect = (~pop.in_crm[idx]) | (day < pop.signup_day[idx])
                values = [
                    f'{{"plan":"{PLANS[v]}","availability":{{"postal_code":"{pop.postal_code[i]}",'
                    f'"available":true}}}}'
                    if is_p
                    else f'{{"plan":"{PLANS[v]}","current_plan":"{PLANS[pop.plan[i]]}"}}'
                    for v, i, is_p in zip(viewed, idx.tolist(), prospect.tolist(), strict=True)
                ]
            elif name == "cancel_page_view":
                step = pick(rng, m, [0.6, 0.3, 0.1])
                values = [f'{{"step":{x + 1}}}' for x in step.tolist()]
            else:
                err = rng.integers(0, len(_ERRORS), size=m)
                values = [
                    f'{{"code":"{_ERRORS[x][0]}","screen":"{_ERRORS[x][1]}"}}'
                    for x in err.tolist()
                ]
            for p, v in zip(pos.tolist(), values, strict=True):
                props[p] = v
        return props


def _corrupt(line: str, kind: int, cut: float) -> str:
    """Truncate a line (any proper prefix of a JSON object is invalid) or single-quote it."""
    if MALFORMED_KINDS[kind] == "truncated":
        return line[: 10 + int(cut * (len(line) - 12))]
    return line.replace('"', "'")
