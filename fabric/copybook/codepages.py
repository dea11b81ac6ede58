"""Single-byte code pages as 256-entry tables, built to match Cobrix's output.

Tables start from Python's codecs (cp037, cp273, cp500, cp875, cp1026, cp1140) and are
adjusted the way Cobrix (which uses the JVM's tables) decodes:

* 0x0D decodes to LF and 0x25 to CR; C1 control characters (U+0080-U+009F) decode to a
  space, except NEL (U+0085) at 0x15; cp273's 0xBC is MACRON (U+00AF).
* cp1141 and cp1148 are cp273 and cp500 with the euro sign at 0x9F; cp1047 is cp037 with
  its six differing positions.
* `common` (the default) keeps only printable ASCII (plus 0x6A as '|' and 0xCA as '-')
  and decodes every other byte to a space; `cp037` likewise drops C0 control characters.
  Their `*_extended` variants keep control characters. The other pages always keep them
  (their `_extended` name is an alias).

Custom tables can be registered with `register_code_page` (Cobrix's
`ebcdic_code_page_class` option names a registered table).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from functools import cache

import numpy as np

from fabric.copybook.errors import UnknownCodePageError

_SPACE = " "
_C1_KEPT = "\x85"


@dataclass(frozen=True)
class CodePage:
    """A single-byte table: `chars[b]` is what byte `b` decodes to."""

    name: str
    chars: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.chars) != 256 or any(len(c) != 1 for c in self.chars):
            raise ValueError(f"code page {self.name}: need 256 single characters")

    @property
    def utf8(self) -> tuple[np.ndarray, np.ndarray]:
        """(table of shape (256, 4) with each character's UTF-8 bytes, their lengths)."""
        return _utf8_tables(self.chars)

    @property
    def charmap(self) -> str:
        """The table as a `codecs.charmap_decode` decoding string."""
        return "".join(self.chars)

    @property
    def ascii_translation(self) -> bytes:
        """A `bytes.translate` table: each byte to its character when that is ASCII, else
        to 0x80 (so a column decodes byte-for-byte when its maximum stays below 0x80)."""
        return _ascii_translation(self.chars)

    @property
    def trimmable(self) -> np.ndarray:
        """Bytes whose character Java's String.trim removes (U+0000-U+0020)."""
        return np.array([ord(c) <= 0x20 for c in self.chars], dtype=bool)


@cache
def _utf8_tables(chars: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    table = np.zeros((256, 4), dtype=np.uint8)
    lengths = np.zeros(256, dtype=np.int64)
    for i, c in enumerate(chars):
        encoded = c.encode("utf-8")
        table[i, : len(encoded)] = np.frombuffer(encoded, dtype=np.uint8)
        lengths[i] = len(encoded)
    return table, lengths


@cache
def _ascii_translation(chars: tuple[str, ...]) -> bytes:
    return bytes(ord(c) if ord(c) < 0x80 else 0x80 for c in chars)


def _from_codec(codec: str) -> list[str]:
    return [bytes([b]).decode(codec) for b in range(256)]


def _cobrix_adjusted(chars: list[str], *, keep_c0: bool) -> list[str]:
    out = list(chars)
    out[0x0D] = "\n"
    out[0x25] = "\r"
    for b, c in enumerate(out):
        code = ord(c)
        c1_control = 0x80 <= code <= 0x9F and c != _C1_KEPT
        c0_control = (code < 0x20 or code == 0x7F) and c not in "\n\r"
        if c1_control or (c0_control and not keep_c0):
            out[b] = _SPACE
    return out


def _cp1047() -> list[str]:
    chars = _from_codec("cp037")
    for a, b in ((0x5F, 0xB0), (0xBA, 0xAD), (0xBB, 0xBD)):
        chars[a], chars[b] = chars[b], chars[a]
    return chars


def _with_euro(codec: str) -> list[str]:
    chars = _from_codec(codec)
    chars[0x9F] = "\u20ac"
    return chars


def _common(*, extended: bool) -> list[str]:
    cp037 = _from_codec("cp037")
    chars = [c if 0x20 <= ord(c) < 0x7F else _SPACE for c in cp037]
    chars[0x6A] = "|"  # broken bar
    chars[0xCA] = "-"  # soft hyphen
    if extended:
        for b in range(0x40):
            code = ord(cp037[b])
            if 0x80 <= code <= 0x9F:
                chars[b] = "\x1a" if b < 0x20 else _SPACE
            elif code < 0x20 and cp037[b] != "\x1a":
                chars[b] = cp037[b]
        chars[0x0D] = "\n"
        chars[0x25] = "\r"
    return chars


def _builtin(name: str) -> list[str] | None:
    base = name.removesuffix("_extended")
    extended = name.endswith("_extended")
    if base == "common":
        return _common(extended=extended)
    if base == "cp037":
        return _cobrix_adjusted(_from_codec("cp037"), keep_c0=extended)
    sources = {
        "cp273": lambda: _from_codec("cp273"),
        "cp500": lambda: _from_codec("cp500"),
        "cp875": lambda: _from_codec("cp875"),
        "cp1026": lambda: _from_codec("cp1026"),
        "cp1047": _cp1047,
        "cp1140": lambda: _from_codec("cp1140"),
        "cp1141": lambda: _with_euro("cp273"),
        "cp1148": lambda: _with_euro("cp500"),
    }
    if base not in sources:
        return None
    chars = _cobrix_adjusted(sources[base](), keep_c0=True)
    if base in ("cp273", "cp1141"):
        chars[0xBC] = "\u00af"
    return chars


_REGISTERED: dict[str, CodePage] = {}

BUILTIN_EBCDIC = (
    "common", "common_extended", "cp037", "cp037_extended", "cp273", "cp500", "cp875",
    "cp1026", "cp1047", "cp1140", "cp1141", "cp1148",
)  # fmt: skip


def register_code_page(name: str, chars: str | list[str] | tuple[str, ...]) -> CodePage:
    """Register a custom 256-character table under `name` (e.g. a class name Cobrix used)."""
    page = CodePage(name, tuple(chars))
    _REGISTERED[name] = page
    return page


@cache
def _builtin_page(name: str) -> CodePage | None:
    chars = _builtin(name)
    return None if chars is None else CodePage(name, tuple(chars))


def ebcdic_code_page(name: str) -> CodePage:
    """The EBCDIC table named `name` (case-insensitive), or a registered custom one."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    page = _builtin_page(name.lower())
    if page is None:
        known = ", ".join([*BUILTIN_EBCDIC, *sorted(_REGISTERED)])
        raise UnknownCodePageError(f"unknown EBCDIC code page {name!r}; known: {known}")
    return page


@cache
def ascii_charset(name: str) -> CodePage | None:
    """A single-byte ASCII-family charset table, or None for UTF-8 (decoded separately)."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise UnknownCodePageError(f"unknown ASCII charset {name!r}") from None
    if info.name in ("utf-8", "utf_8"):
        return None
    chars = [bytes([b]).decode(info.name, errors="replace") for b in range(256)]
    if any(len(c) != 1 for c in chars):
        raise UnknownCodePageError(f"charset {name!r} is not a single-byte charset")
    return CodePage(info.name, tuple(chars))
