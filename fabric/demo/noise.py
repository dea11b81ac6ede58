"""How clean values become the messy raw values each silo stores.

Each function takes clean values plus an array of style codes drawn by the caller, so the noise
mix per silo is decided in one place (the silo module) and stays reproducible. The styles are
documented in fabric/demo/README.md because the identity matcher has to undo them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np

_GERMAN_FOLD = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"}
)


def ascii_fold(text: str) -> str:
    """German transliteration (ü -> ue, ß -> ss), then strip remaining accents (é -> e)."""
    folded = unicodedata.normalize("NFKD", text.translate(_GERMAN_FOLD))
    return folded.encode("ascii", "ignore").decode("ascii")


#: Phone styles; ``{cc}`` country calling code, ``{a}`` area/mobile prefix, ``{s}`` subscriber.
PHONE_STYLES: tuple[str, ...] = (
    "+{cc} {a} {s}",  # 0: the ERP's canonical style
    "0{a} {s}",
    "0{a}/{s}",
    "0{a}-{s}",
    "+{cc} (0){a} {s}",
    "00{cc}{a}{s}",
    "+{cc}{a}{s}",
    "(0{a}) {s3} {srest}",
    "0{a}{s}",
)
ERP_PHONE_STYLE = 0


def format_phones(
    calling_codes: Sequence[str],
    areas: Sequence[str],
    subscribers: Sequence[str],
    styles: np.ndarray,
) -> list[str]:
    """Render phone numbers; an empty area means "no phone" and renders as ''."""
    return [
        PHONE_STYLES[style].format(cc=cc, a=a, s=s, s3=s[:3], srest=s[3:]) if a else ""
        for cc, a, s, style in zip(calling_codes, areas, subscribers, styles.tolist(), strict=True)
    ]


def _capitalise_local(email: str) -> str:
    local, _, domain = email.partition("@")
    parts = local.replace("_", ".").split(".")
    joiner = "_" if "_" in local else "."
    return joiner.join(p[:1].upper() + p[1:] for p in parts) + "@" + domain


#: Email styles applied to a clean lower-case address.
EMAIL_STYLES: tuple[str, ...] = (
    "as_is",  # 0
    "capitalised",  # 1: Anna.Mueller@gmx.de
    "upper",  # 2: ANNA.MUELLER@GMX.DE
    "upper_domain",  # 3: anna.mueller@GMX.DE
    "leading_space",  # 4: ' anna.mueller@gmx.de'
    "trailing_space",  # 5: 'anna.mueller@gmx.de  '
    "capitalised_padded",  # 6: ' Anna.Mueller@gmx.de '
)


def _style_email(email: str, style: int) -> str:
    name = EMAIL_STYLES[style]
    if not email or name == "as_is":
        return email
    if name == "capitalised":
        return _capitalise_local(email)
    if name == "upper":
        return email.upper()
    if name == "upper_domain":
        local, _, domain = email.partition("@")
        return local + "@" + domain.upper()
    if name == "leading_space":
        return " " + email
    if name == "trailing_space":
        return email + "  "
    return " " + _capitalise_local(email) + " "


def style_emails(emails: Sequence[str], styles: np.ndarray) -> list[str]:
    """Apply EMAIL_STYLES codes element-wise ('' stays '')."""
    return [_style_email(e, s) for e, s in zip(emails, styles.tolist(), strict=True)]


def pick(rng: np.random.Generator, n: int, weights: Sequence[float] | np.ndarray) -> np.ndarray:
    """Draw n category codes 0..len(weights)-1 with the given (unnormalised) weights."""
    p = np.asarray(weights, dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def fault_row_count(rows: int) -> int:
    """Extra malformed rows the `malformed_rows` fault adds to a last-day file of `rows` rows."""
    return max(5, round(rows * 0.02))
