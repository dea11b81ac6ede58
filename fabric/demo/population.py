"""The people behind the estate: customers and prospects with their true attributes.

Everything here is the *truth* (clean names, current and previous contact data, latent churn
drivers). The silo modules derive their messy records from it. Days are integers relative to
the first file day (``history_start`` = day 0); negative days lie before the files begin.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from fabric.demo import names
from fabric.demo.noise import ascii_fold, pick

#: "Never" / "no such day" sentinel for integer day arrays.
NEVER = 1 << 30

PLANS: tuple[str, ...] = ("basic", "plus", "pro")
PLAN_FEES: dict[str, tuple[float, float, float]] = {
    "EUR": (29.99, 44.99, 64.99),
    "CHF": (39.90, 59.90, 84.90),
}
#: Nominal download speed per plan (Mbit/s), used by speed tests.
PLAN_MBPS: tuple[int, int, int] = (50, 100, 250)

_PRE_HISTORY_SHARE = 0.85
_CRM_MAX_AGE_DAYS = 3 * 365
_PROSPECT_SHARE = 0.087  # prospects per CRM customer: ~8% of all entities
_CONVERSION_SHARE = 0.20
_HOUSEHOLD_SHARE = 0.03
_NAMESAKE_SHARE = 0.5  # prospects copying a customer's last name + city
_EMAIL_CHANGE_SHARE = 0.06
_PHONE_CHANGE_SHARE = 0.03
_MIN_LAST_DAY_UPDATES = 50


@dataclass(frozen=True)
class Timeline:
    """File days are 0..file_days-1; the simulation runs on to sim_days (the hidden future)."""

    history_start: date
    window_days: int
    file_days: int
    sim_days: int

    @property
    def last_day(self) -> int:
        return self.file_days - 1

    @property
    def end_date(self) -> date:
        return self.date(self.last_day)

    @property
    def window_start(self) -> date:
        return self.date(self.file_days - self.window_days)

    def date(self, day: int) -> date:
        return self.history_start + timedelta(days=day)


@dataclass
class Population:
    """Column arrays, one element per entity (customers first, then prospects).

    String columns are object arrays so they can be fancy-indexed; '' means "none". Change
    days are ``-NEVER`` when nothing changed (so "day < change_day" is never true).
    """

    entity_id: np.ndarray
    is_prospect: np.ndarray
    in_crm: np.ndarray  # customers and converted prospects
    first_name: np.ndarray
    last_name: np.ndarray
    country: np.ndarray
    city: np.ndarray
    postal_code: np.ndarray
    street: np.ndarray
    house_no: np.ndarray
    calling_code: np.ndarray
    phone_area: np.ndarray
    phone_sub: np.ndarray
    phone_old_area: np.ndarray
    phone_old_sub: np.ndarray
    phone_change_day: np.ndarray
    phone2_area: np.ndarray
    phone2_sub: np.ndarray
    email: np.ndarray
    email_old: np.ndarray
    email_change_day: np.ndarray
    email_alt: np.ndarray
    signup_day: np.ndarray  # NEVER for prospects that never sign up
    signup_second: np.ndarray
    prospect_from: np.ndarray  # first day active as a prospect (NEVER for plain customers)
    prospect_until: np.ndarray  # last day active as a prospect
    household_of: np.ndarray  # -1, or the entity whose phone and address are shared
    namesake_of: np.ndarray  # -1, or the customer whose last name and city a prospect shares
    plan: np.ndarray
    currency: np.ndarray
    monthly_fee: np.ndarray
    risk: np.ndarray
    stress: np.ndarray
    engagement: np.ndarray
    web_user_id: np.ndarray
    web_created_day: np.ndarray
    web_os: np.ndarray
    second_profile: np.ndarray  # writes to support from the alternative email too
    account_no: np.ndarray
    account_opened_day: np.ndarray
    crm_id: np.ndarray  # 0 = not in the CRM

    @property
    def size(self) -> int:
        return len(self.entity_id)

    def email_on(self, idx: np.ndarray, day: int | np.ndarray) -> np.ndarray:
        """The primary email each entity had on `day`."""
        old = day < self.email_change_day[idx]
        return np.where(old, self.email_old[idx], self.email[idx])

    def phone_on(self, idx: np.ndarray, day: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(area, subscriber) of the primary phone each entity had on `day`."""
        old = day < self.phone_change_day[idx]
        return (
            np.where(old, self.phone_old_area[idx], self.phone_area[idx]),
            np.where(old, self.phone_old_sub[idx], self.phone_sub[idx]),
        )


def _obj(values: list[str] | np.ndarray) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


def _zipf_weights(n: int, exponent: float) -> np.ndarray:
    return 1.0 / np.arange(1, n + 1) ** exponent


def build_population(
    customers: int, timeline: Timeline, rng: np.random.Generator
) -> Population:
    """Draw every entity with clean attributes, households, namesakes and contact changes."""
    n_prospects = round(customers * _PROSPECT_SHARE)
    n_converted = min(round(n_prospects * _CONVERSION_SHARE), customers)
    n_plain = customers - n_converted
    n = n_plain + n_prospects
    is_prospect = np.arange(n) >= n_plain
    converted = np.zeros(n, dtype=bool)
    converted[n_plain + rng.choice(n_prospects, size=n_converted, replace=False)] = True
    in_crm = ~is_prospect | converted
    width = max(7, len(str(n)))
    entity_id = _obj(
        [f"C{i + 1:0{width}d}" for i in range(n_plain)]
        + [f"P{i + 1:0{width}d}" for i in range(n_prospects)]
    )

    female = rng.random(n) < 0.5
    first_f = rng.choice(len(names.FIRST_NAMES_FEMALE), size=n)
    first_m = rng.choice(len(names.FIRST_NAMES_MALE), size=n)
    first_name = _obj(
        [
            names.FIRST_NAMES_FEMALE[a] if f else names.FIRST_NAMES_MALE[b]
            for f, a, b in zip(female.tolist(), first_f.tolist(), first_m.tolist(), strict=True)
        ]
    )
    last_w = _zipf_weights(len(names.LAST_NAMES), 0.75)
    last_name = _obj([names.LAST_NAMES[i] for i in pick(rng, n, last_w).tolist()])

    city_idx = pick(rng, n, [c.weight for c in names.CITIES])
    country = _obj([names.CITIES[i].country for i in city_idx.tolist()])
    postal_low = np.array([c.postal_low for c in names.CITIES])
    postal_high = np.array([c.postal_high for c in names.CITIES])
    postal_num = rng.integers(postal_low[city_idx], postal_high[city_idx] + 1)
    street_pick = rng.random(n)
    streets_by_country = {"DE": names.STREETS_DACH, "AT": names.STREETS_AT, "CH": names.STREETS_CH}
    street = _obj(
        [
            streets_by_country[c][int(u * len(streets_by_country[c]))]
            for c, u in zip(country.tolist(), street_pick.tolist(), strict=True)
        ]
    )
    house_num = np.minimum(rng.geometric(1 / 25, size=n), 240)
    house_suffix = np.where(rng.random(n) < 0.04, rng.choice(list("abc"), size=n), "")

    # --- when each entity exists ------------------------------------------------------------
    signup_day = np.full(n, NEVER, dtype=np.int64)
    plain = ~is_prospect
    pre = plain & (rng.random(n) < _PRE_HISTORY_SHARE)
    signup_day[pre] = rng.integers(-_CRM_MAX_AGE_DAYS, 0, size=int(pre.sum()))
    in_files = plain & ~pre
    signup_day[in_files] = rng.integers(0, timeline.file_days, size=int(in_files.sum()))
    signup_day[converted] = rng.integers(0, timeline.file_days, size=n_converted)
    signup_second = rng.integers(7 * 3600, 22 * 3600, size=n)
    prospect_from = np.full(n, NEVER, dtype=np.int64)
    prospect_until = np.full(n, -NEVER, dtype=np.int64)
    prospect_from[converted] = signup_day[converted] - rng.integers(5, 61, size=n_converted)
    prospect_until[converted] = signup_day[converted] - 1
    browsing = is_prospect & ~converted
    n_browsing = int(browsing.sum())
    prospect_from[browsing] = rng.integers(-30, timeline.file_days, size=n_browsing)
    prospect_until[browsing] = prospect_from[browsing] + rng.geometric(1 / 20, size=n_browsing)

    # --- hard negatives: households and namesakes ---------------------------------------------
    place = _Place(country, city_idx, postal_num, street, house_num, house_suffix)
    household_of = _link_households(rng, ~is_prospect, place, first_name, last_name)
    namesake_of = _copy_namesakes(rng, is_prospect, ~is_prospect, place, first_name, last_name)
    # Household members must differ from their head in first name (the matcher's tie-breaker).
    pool = names.FIRST_NAMES_FEMALE + names.FIRST_NAMES_MALE
    for m in np.flatnonzero(household_of >= 0).tolist():
        while first_name[m] == first_name[household_of[m]]:
            first_name[m] = pool[int(rng.integers(len(pool)))]

    city = _obj([names.CITIES[i].name for i in city_idx.tolist()])
    postal_code = _obj(
        [
            f"{p:05d}" if c == "DE" else f"{p:04d}"
            for p, c in zip(postal_num.tolist(), country.tolist(), strict=True)
        ]
    )
    house_no = _obj(
        [f"{h}{s}" for h, s in zip(house_num.tolist(), house_suffix.tolist(), strict=True)]
    )
    _make_name_address_unique(first_name, last_name, postal_code, house_no, in_crm, household_of)

    # --- phones -------------------------------------------------------------------------------
    calling_code = _obj([names.COUNTRY_CALLING_CODES[c] for c in country.tolist()])
    landline = rng.random(n) < 0.45
    landline[household_of >= 0] = True
    landline[household_of[household_of >= 0]] = True
    phone_area, phone_sub = _draw_phones(rng, country, city_idx, landline)
    has_phone2 = rng.random(n) < 0.3
    phone2_area, phone2_sub = _draw_phones(rng, country, city_idx, ~landline)
    phone2_area[~has_phone2] = ""
    phone2_sub[~has_phone2] = ""
    phone_old_area, phone_old_sub = _draw_phones(rng, country, city_idx, landline)
    phone_change_day = np.full(n, -NEVER, dtype=np.int64)
    email_change_day = np.full(n, -NEVER, dtype=np.int64)
    changeable = in_crm & (household_of < 0) & (signup_day < timeline.last_day)
    changeable[household_of[household_of >= 0]] = False
    phone_changes = changeable & (rng.random(n) < _PHONE_CHANGE_SHARE)
    email_changes = changeable & ~phone_changes & (rng.random(n) < _EMAIL_CHANGE_SHARE)
    # The CRM's last partition must be busy (the bad_country fault needs rows there).
    spare = np.flatnonzero(changeable & ~phone_changes & ~email_changes)
    last_day_count = min(len(spare), max(_MIN_LAST_DAY_UPDATES, round(customers * 0.004)))
    last_day_updates = rng.choice(spare, size=last_day_count, replace=False)
    by_phone = rng.random(last_day_count) < 0.3
    for mask, change_day in ((phone_changes, phone_change_day), (email_changes, email_change_day)):
        idx = np.flatnonzero(mask)
        low = np.maximum(signup_day[idx] + 1, 1)
        change_day[idx] = low + (rng.random(len(idx)) * (timeline.file_days - low)).astype(np.int64)
    phone_change_day[last_day_updates[by_phone]] = timeline.last_day
    email_change_day[last_day_updates[~by_phone]] = timeline.last_day
    no_phone_change = phone_change_day < 0
    phone_old_area[no_phone_change] = ""
    phone_old_sub[no_phone_change] = ""
    household_phone = household_of >= 0
    phone_area[household_phone] = phone_area[household_of[household_phone]]
    phone_sub[household_phone] = phone_sub[household_of[household_phone]]
    _make_phones_unique(
        rng,
        [
            (phone_area, phone_sub, ~household_phone),
            (phone2_area, phone2_sub, has_phone2),
            (phone_old_area, phone_old_sub, ~no_phone_change),
        ],
    )

    # --- emails -------------------------------------------------------------------------------
    email = _draw_emails(rng, first_name, last_name, country, work=False)
    email_old = _draw_emails(rng, first_name, last_name, country, work=False)
    email_old[email_change_day < 0] = ""
    has_alt = rng.random(n) < 0.25
    email_alt = _draw_emails(rng, first_name, last_name, country, work=True)
    email_alt[~has_alt] = ""
    _make_emails_unique(rng, [email, email_old, email_alt])

    # --- latent churn drivers and commercial attributes ---------------------------------------
    plan = pick(rng, n, [0.45, 0.35, 0.20]).astype(np.int64)
    currency = _obj(["CHF" if c == "CH" else "EUR" for c in country.tolist()])
    monthly_fee = np.array(
        [PLAN_FEES[c][p] for c, p in zip(currency.tolist(), plan.tolist(), strict=True)]
    )
    risk = rng.standard_normal(n)
    stress = rng.random(n) < 0.10
    engagement = rng.lognormal(-0.125, 0.5, size=n)

    # --- system keys --------------------------------------------------------------------------
    has_web = rng.random(n) < np.where(is_prospect, 0.85, 0.72)
    web_created_day = np.full(n, NEVER, dtype=np.int64)
    start = np.where(is_prospect, prospect_from, signup_day)
    lag = np.where(
        start < 0,
        (rng.random(n) * np.maximum(-start, 1)).astype(np.int64),
        rng.integers(0, 11, size=n),
    )
    web_created_day[has_web] = (start + lag)[has_web]
    web_user_id = np.full(n, "", dtype=object)
    ids = _unique_ints(rng, int(has_web.sum()), 36**6, 36**10)
    web_user_id[has_web] = [f"u{np.base_repr(int(x), 36).lower()}" for x in ids]
    web_os = pick(rng, n, [0.48, 0.40, 0.12])
    second_profile = has_alt & (rng.random(n) < 0.3)

    account_no = np.full(n, "", dtype=object)
    account_opened_day = np.full(n, NEVER, dtype=np.int64)
    account_opened_day[in_crm] = signup_day[in_crm] + rng.integers(0, 3, size=int(in_crm.sum()))
    account_no[in_crm] = [f"A{x:07d}" for x in _unique_ints(rng, int(in_crm.sum()), 10**6, 10**7)]

    crm_id = np.zeros(n, dtype=np.int64)
    crm_idx = np.flatnonzero(in_crm)
    created = signup_day[crm_idx] * 86_400 + signup_second[crm_idx]
    order = crm_idx[np.lexsort((crm_idx, created))]
    crm_id[order] = 10_001 + np.arange(len(order))

    return Population(
        entity_id=entity_id,
        is_prospect=is_prospect,
        in_crm=in_crm,
        first_name=first_name,
        last_name=last_name,
        country=country,
        city=city,
        postal_code=postal_code,
        street=street,
        house_no=house_no,
        calling_code=calling_code,
        phone_area=phone_area,
        phone_sub=phone_sub,
        phone_old_area=phone_old_area,
        phone_old_sub=phone_old_sub,
        phone_change_day=phone_change_day,
        phone2_area=phone2_area,
        phone2_sub=phone2_sub,
        email=email,
        email_old=email_old,
        email_change_day=email_change_day,
        email_alt=email_alt,
        signup_day=signup_day,
        signup_second=signup_second,
        prospect_from=prospect_from,
        prospect_until=prospect_until,
        household_of=household_of,
        namesake_of=namesake_of,
        plan=plan,
        currency=currency,
        monthly_fee=monthly_fee,
        risk=risk,
        stress=stress,
        engagement=engagement,
        web_user_id=web_user_id,
        web_created_day=web_created_day,
        web_os=web_os,
        second_profile=second_profile,
        account_no=account_no,
        account_opened_day=account_opened_day,
        crm_id=crm_id,
    )


@dataclass(frozen=True)
class _Place:
    """Where entities live (arrays edited in place when people share a home or a town)."""

    country: np.ndarray
    city_idx: np.ndarray
    postal_num: np.ndarray
    street: np.ndarray
    house_num: np.ndarray
    house_suffix: np.ndarray


def _link_households(
    rng: np.random.Generator,
    plain: np.ndarray,
    place: _Place,
    first_name: np.ndarray,
    last_name: np.ndarray,
) -> np.ndarray:
    """Move some customers in with another (head) customer; return household_of (-1 = none).

    Members share the head's address (and, later, landline phone) and mostly the last name.
    """
    household_of = np.full(len(plain), -1, dtype=np.int64)
    plain_idx = np.flatnonzero(plain)
    n_households = round(len(plain_idx) * _HOUSEHOLD_SHARE)
    if not n_households or len(plain_idx) < 2 * n_households:
        return household_of
    chosen = rng.choice(plain_idx, size=2 * n_households, replace=False)
    members, heads = chosen[:n_households], chosen[n_households:]
    household_of[members] = heads
    for column in (place.country, place.city_idx, place.postal_num, place.street,
                   place.house_num, place.house_suffix):
        column[members] = column[heads]
    same_last = rng.random(n_households) < 0.7
    last_name[members[same_last]] = last_name[heads[same_last]]
    return household_of


def _copy_namesakes(
    rng: np.random.Generator,
    is_prospect: np.ndarray,
    plain: np.ndarray,
    place: _Place,
    first_name: np.ndarray,
    last_name: np.ndarray,
) -> np.ndarray:
    """Give half the prospects a customer's last name and town (a quarter also the first name).

    Returns namesake_of (-1 = none).
    """
    namesake_of = np.full(len(is_prospect), -1, dtype=np.int64)
    plain_idx = np.flatnonzero(plain)
    prospect_idx = np.flatnonzero(is_prospect)
    namesakes = prospect_idx[rng.random(len(prospect_idx)) < _NAMESAKE_SHARE]
    if len(namesakes) and len(plain_idx):
        models = rng.choice(plain_idx, size=len(namesakes))
        namesake_of[namesakes] = models
        last_name[namesakes] = last_name[models]
        for column in (place.city_idx, place.country, place.postal_num, place.street):
            column[namesakes] = column[models]
        full = rng.random(len(namesakes)) < 0.25
        first_name[namesakes[full]] = first_name[models[full]]
    return namesake_of


def _unique_ints(rng: np.random.Generator, size: int, low: int, high: int) -> np.ndarray:
    """`size` distinct random integers in [low, high), in draw order."""
    values = rng.integers(low, high, size=size)
    while True:
        _, first = np.unique(values, return_index=True)
        if len(first) == size:
            return values
        dup = np.ones(size, dtype=bool)
        dup[first] = False
        values[dup] = rng.integers(low, high, size=int(dup.sum()))


def _draw_phones(
    rng: np.random.Generator, country: np.ndarray, city_idx: np.ndarray, landline: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n = len(country)
    mobile_pick = rng.random(n)
    sub_len = np.where(landline, 7, rng.integers(7, 9, size=n))
    subs = rng.integers(2 * 10**7, 10**8, size=n)
    areas = [
        names.CITIES[ci].area_code
        if land
        else names.MOBILE_PREFIXES[c][int(u * len(names.MOBILE_PREFIXES[c]))]
        for c, ci, land, u in zip(
            country.tolist(), city_idx.tolist(), landline.tolist(), mobile_pick.tolist(),
            strict=True,
        )
    ]
    sub_str = [str(s)[:k] for s, k in zip(subs.tolist(), sub_len.tolist(), strict=True)]
    return _obj(areas), _obj(sub_str)


def _make_phones_unique(
    rng: np.random.Generator, slots: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> None:
    """Redraw subscriber numbers until every national number (area+subscriber) is unique.

    Each slot is (areas, subscribers, mask of entities that really have that phone);
    household members share the head's phone, so their primary slot is masked out.
    """
    seen: set[str] = set()
    for area, sub, mask in slots:
        for i in np.flatnonzero(mask).tolist():
            while area[i] + sub[i] in seen:
                sub[i] = str(int(rng.integers(2 * 10**6, 10**7)))
            seen.add(area[i] + sub[i])


_LOCAL_PATTERNS: tuple[str, ...] = ("{f}.{l}", "{f}{l}", "{f}_{l}", "{i}{l}", "{f}.{l}{y}",
                                    "{l}.{f}", "{i}.{l}{y}")
_WORK_PATTERNS: tuple[str, ...] = ("{f}.{l}", "{i}.{l}", "{i}{l}")


def _email_token(text: str) -> str:
    return ascii_fold(text).lower().replace(" ", "")


def _draw_emails(
    rng: np.random.Generator,
    first_name: np.ndarray,
    last_name: np.ndarray,
    country: np.ndarray,
    *,
    work: bool,
) -> np.ndarray:
    n = len(first_name)
    patterns = _WORK_PATTERNS if work else _LOCAL_PATTERNS
    pattern = rng.integers(0, len(patterns), size=n)
    year = rng.integers(50, 100 + 6, size=n) % 100
    dom = rng.random(n)
    out = []
    for f, last, c, p, y, u in zip(
        first_name.tolist(), last_name.tolist(), country.tolist(), pattern.tolist(),
        year.tolist(), dom.tolist(), strict=True,
    ):
        ft, lt = _email_token(f), _email_token(last)
        domains = names.WORK_EMAIL_DOMAINS if work else names.EMAIL_DOMAINS[c]
        local = patterns[p].format(f=ft, l=lt, i=ft[0], y=f"{y:02d}")
        out.append(f"{local}@{domains[int(u * len(domains))]}")
    return _obj(out)


def _make_emails_unique(rng: np.random.Generator, columns: list[np.ndarray]) -> None:
    """Append digits to repeated local parts until every address is unique (case-blind)."""
    seen: set[str] = set()
    for col in columns:
        for i, value in enumerate(col.tolist()):
            if not value:
                continue
            candidate = value
            while candidate in seen:
                local, _, domain = value.partition("@")
                candidate = f"{local}{int(rng.integers(2, 1000))}@{domain}"
            col[i] = candidate
            seen.add(candidate)


def _make_name_address_unique(
    first_name: np.ndarray,
    last_name: np.ndarray,
    postal_code: np.ndarray,
    house_no: np.ndarray,
    in_crm: np.ndarray,
    household_of: np.ndarray,
) -> None:
    """No two CRM customers may share normalised name + postal code + house number."""
    seen: set[tuple[str, str, str, str]] = set()
    for i in np.flatnonzero(in_crm).tolist():
        key = _name_address_key(first_name[i], last_name[i], postal_code[i], house_no[i])
        while key in seen:
            if household_of[i] >= 0:  # keep the shared address; rename the household member
                pool = names.FIRST_NAMES_FEMALE + names.FIRST_NAMES_MALE
                first_name[i] = pool[(pool.index(first_name[i]) + 1) % len(pool)]
            else:
                house_no[i] = str(int("".join(ch for ch in house_no[i] if ch.isdigit())) + 1)
            key = _name_address_key(first_name[i], last_name[i], postal_code[i], house_no[i])
        seen.add(key)


def _name_address_key(first: str, last: str, postal: str, house: str) -> tuple[str, str, str, str]:
    return (ascii_fold(first).upper(), ascii_fold(last).upper(), postal, house.upper())
