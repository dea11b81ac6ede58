"""Python `re` patterns rewritten for DuckDB's RE2, with Python's matching semantics.

Great Expectations' pandas engine matches regexes with Python's `re.search` (pandas keeps
Python semantics even for Arrow-backed strings). DuckDB's `regexp_matches` is RE2 and differs
in ways that change results on real data: RE2's `\\d`, `\\w` and `\\s` are ASCII-only while
Python's are Unicode-aware, and Python's `$` also matches just before a trailing newline.

`to_re2` parses the pattern with Python's own parser and writes an RE2 pattern that matches the
same strings: character classes and the `\\d`/`\\w`/`\\s` categories become explicit code point
ranges computed from Python's own character predicates (so both sides agree by construction,
whatever Unicode version RE2 was built with), `$` becomes `\\n?\\z` where nothing can follow it.
Constructs without an exact RE2 equivalent return None and the expectation runs through GE:
lookarounds, backreferences, conditionals, atomic groups and possessive repeats, word
boundaries outside ASCII mode, case-insensitive matching (Python folds more characters than
RE2, e.g. `(?i)i` also matches the dotless i, U+0131), repeat counts above RE2's limit of 1000, and a `$`
that is followed by more pattern.
"""

from __future__ import annotations

import re
import re._constants as sre  # Python's own regex grammar: the only exact reading of a pattern
import re._parser as sre_parse
import sys
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

Ranges = tuple[tuple[int, int], ...]

_MAX_CODE_POINT = sys.maxunicode
_SURROGATES = (0xD800, 0xDFFF)  # not valid in UTF-8 strings, so never in DuckDB VARCHARs
_RE2_MAX_REPEAT = 1000
_UNSUPPORTED_FLAGS = sre.SRE_FLAG_IGNORECASE | sre.SRE_FLAG_LOCALE


class _Untranslatable(Exception):
    """The pattern uses a construct RE2 cannot express with Python's semantics."""


def to_re2(pattern: str) -> str | None:
    """An RE2 pattern for `regexp_matches` equivalent to `re.search(pattern, s)`, or None."""
    try:
        parsed = sre_parse.parse(pattern, 0)
    except (re.error, RecursionError):
        return None
    try:
        return _Writer(parsed.state.flags).sequence(list(parsed), tail=True)
    except _Untranslatable:
        return None


def untranslatable_reason(pattern: str) -> str:
    """Why `to_re2` refused `pattern` (for the fallback label)."""
    try:
        sre_parse.parse(pattern, 0)
    except re.error as exc:
        return f"not a valid Python regex ({exc})"
    return "uses a regex construct without an exact RE2 equivalent (see fabric.quality.regex)"


class _Writer:
    def __init__(self, flags: int) -> None:
        if flags & _UNSUPPORTED_FLAGS:
            raise _Untranslatable
        self.flags = flags

    def sequence(self, items: Sequence[tuple[Any, Any]], tail: bool) -> str:
        last = len(items) - 1
        return "".join(self.item(op, av, tail and i == last) for i, (op, av) in enumerate(items))

    def item(self, op: Any, av: Any, tail: bool) -> str:
        if op is sre.LITERAL:
            return _char_class(((av, av),))
        if op is sre.NOT_LITERAL:
            return _char_class(_complement(((av, av),)))
        if op is sre.ANY:
            return "(?s:.)" if self.flags & sre.SRE_FLAG_DOTALL else "(?-s:.)"
        if op is sre.IN:
            return _char_class(self.class_ranges(av))
        if op is sre.AT:
            return self.anchor(av, tail)
        if op is sre.BRANCH:
            return "(?:" + "|".join(self.sequence(list(b), tail) for b in av[1]) + ")"
        if op is sre.SUBPATTERN:
            _group, add_flags, del_flags, body = av
            if add_flags & _UNSUPPORTED_FLAGS:
                raise _Untranslatable
            saved = self.flags
            self.flags = (self.flags | add_flags) & ~del_flags
            try:
                return "(?:" + self.sequence(list(body), tail) + ")"
            finally:
                self.flags = saved
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, high, body = av
            if low > _RE2_MAX_REPEAT or (high is not sre.MAXREPEAT and high > _RE2_MAX_REPEAT):
                raise _Untranslatable
            inner = self.sequence(list(body), tail=False)
            bound = f"{{{low},}}" if high is sre.MAXREPEAT else f"{{{low},{high}}}"
            return f"(?:{inner}){bound}" + ("?" if op is sre.MIN_REPEAT else "")
        raise _Untranslatable  # lookarounds, backreferences, atomic/possessive, conditionals

    def anchor(self, at: Any, tail: bool) -> str:
        multiline = self.flags & sre.SRE_FLAG_MULTILINE
        if at is sre.AT_BEGINNING:
            return "(?m:^)" if multiline else r"\A"
        if at is sre.AT_BEGINNING_STRING:
            return r"\A"
        if at is sre.AT_END_STRING:
            return r"\z"
        if at is sre.AT_END:
            if multiline:
                return "(?m:$)"  # before any newline or at the end, in both engines
            if tail:  # Python: at the end or before a final newline; consuming it is harmless
                return r"(?:\n?\z)"
            raise _Untranslatable
        if at in (sre.AT_BOUNDARY, sre.AT_NON_BOUNDARY) and self.flags & sre.SRE_FLAG_ASCII:
            return r"\b" if at is sre.AT_BOUNDARY else r"\B"  # both ASCII word characters
        raise _Untranslatable

    def class_ranges(self, items: Sequence[tuple[Any, Any]]) -> Ranges:
        negate = False
        ranges: list[tuple[int, int]] = []
        for op, av in items:
            if op is sre.NEGATE:
                negate = True
            elif op is sre.LITERAL:
                ranges.append((av, av))
            elif op is sre.RANGE:
                ranges.append(av)
            elif op is sre.CATEGORY:
                ranges.extend(self.category(av))
            else:
                raise _Untranslatable
        merged = _merge(ranges)
        return _complement(merged) if negate else merged

    def category(self, category: Any) -> Ranges:
        ascii_only = bool(self.flags & sre.SRE_FLAG_ASCII)
        table: dict[Any, tuple[str, bool]] = {
            sre.CATEGORY_DIGIT: ("digit", False),
            sre.CATEGORY_NOT_DIGIT: ("digit", True),
            sre.CATEGORY_SPACE: ("space", False),
            sre.CATEGORY_NOT_SPACE: ("space", True),
            sre.CATEGORY_WORD: ("word", False),
            sre.CATEGORY_NOT_WORD: ("word", True),
        }
        if category not in table:
            raise _Untranslatable
        name, negated = table[category]
        ranges = category_ranges(name, ascii_only)
        return _complement(ranges) if negated else ranges


_PREDICATES: dict[str, Callable[[str], bool]] = {
    "digit": str.isdecimal,  # Python's \d: Unicode decimal digits (category Nd)
    "space": str.isspace,  # \s: what str.isspace() accepts, e.g. U+00A0 and U+001C
    "word": lambda c: c.isalnum() or c == "_",  # \w: alphanumerics and the underscore
}
_ASCII = {
    "digit": ((0x30, 0x39),),
    "space": ((0x09, 0x0D), (0x20, 0x20)),
    "word": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
}


@cache
def category_ranges(name: str, ascii_only: bool = False) -> Ranges:
    """The code points Python's `\\d`, `\\s` or `\\w` match, as sorted inclusive ranges."""
    if ascii_only:
        return _ASCII[name]
    predicate = _PREDICATES[name]
    ranges: list[tuple[int, int]] = []
    start = -1
    for code in range(_MAX_CODE_POINT + 2):
        inside = code <= _MAX_CODE_POINT and predicate(chr(code))
        if inside and start < 0:
            start = code
        elif not inside and start >= 0:
            ranges.append((start, code - 1))
            start = -1
    return tuple(ranges)


def _merge(ranges: Sequence[tuple[int, int]]) -> Ranges:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return tuple(merged)


def _complement(ranges: Ranges) -> Ranges:
    result: list[tuple[int, int]] = []
    next_low = 0
    for low, high in ranges:
        if low > next_low:
            result.append((next_low, low - 1))
        next_low = max(next_low, high + 1)
    if next_low <= _MAX_CODE_POINT:
        result.append((next_low, _MAX_CODE_POINT))
    return tuple(result)


def _char_class(ranges: Ranges) -> str:
    """An RE2 class of `ranges` without surrogates; a class matching nothing if empty."""
    low_s, high_s = _SURROGATES
    parts: list[str] = []
    for low, high in ranges:
        for a, b in ((low, min(high, low_s - 1)), (max(low, high_s + 1), high)):
            if a <= b:
                parts.append(_code(a) if a == b else f"{_code(a)}-{_code(b)}")
    if not parts:
        return r"[^\x{0}-\x{10FFFF}]"
    return "[" + "".join(parts) + "]"


def _code(point: int) -> str:
    char = chr(point)
    return char if char.isascii() and char.isalnum() else f"\\x{{{point:X}}}"
