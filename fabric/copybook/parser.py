"""Copybook text to a tree of data description entries.

Fixed-format source is assumed by default: only columns 7-72 are read and a `*` or `/` in
column 7 makes the line a comment (Cobrix's `comments_lbound`/`comments_ubound` options move
those bounds; `truncate_comments=false` reads whole lines). `*>` starts an inline comment.
Level-88 condition names and level-66 RENAMES are skipped; everything else that is not
understood raises `CopybookSyntaxError` with the line, column and token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from fabric.copybook.encoding import SignClause, Usage
from fabric.copybook.errors import CopybookSyntaxError
from fabric.copybook.picture import Picture, PictureError, parse_picture

_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|[^\s,;]+")
_LEVEL = re.compile(r"\d{1,2}")

USAGES: dict[str, Usage] = {
    "DISPLAY": Usage.DISPLAY,
    "COMP": Usage.BINARY,
    "COMP-0": Usage.BINARY,
    "COMP-4": Usage.BINARY,
    "COMP-5": Usage.BINARY,
    "COMPUTATIONAL": Usage.BINARY,
    "COMPUTATIONAL-0": Usage.BINARY,
    "COMPUTATIONAL-4": Usage.BINARY,
    "COMPUTATIONAL-5": Usage.BINARY,
    "BINARY": Usage.BINARY,
    "COMP-9": Usage.BINARY_LITTLE_ENDIAN,
    "COMP-3": Usage.PACKED,
    "COMPUTATIONAL-3": Usage.PACKED,
    "PACKED-DECIMAL": Usage.PACKED,
    "COMP-3U": Usage.PACKED_NO_SIGN,
    "COMP-1": Usage.FLOAT,
    "COMPUTATIONAL-1": Usage.FLOAT,
    "COMP-2": Usage.DOUBLE,
    "COMPUTATIONAL-2": Usage.DOUBLE,
    "NATIONAL": Usage.NATIONAL,
}
_CLAUSE_KEYWORDS = frozenset(
    {
        "REDEFINES", "OCCURS", "PIC", "PICTURE", "USAGE", "SIGN", "LEADING", "TRAILING",
        "VALUE", "VALUES", "BLANK", "JUST", "JUSTIFIED", "SYNC", "SYNCHRONIZED", "GLOBAL",
        "EXTERNAL", *USAGES,
    }
)  # fmt: skip


@dataclass(frozen=True)
class Token:
    text: str
    line: int
    column: int

    @property
    def upper(self) -> str:
        return self.text.upper()


@dataclass(frozen=True)
class Occurs:
    minimum: int
    maximum: int
    depending_on: str | None = None


@dataclass
class Item:
    """One data description entry and its subordinate entries."""

    level: int
    name: str
    line: int
    redefines: str | None = None
    occurs: Occurs | None = None
    picture: Picture | None = None
    usage: Usage | None = None
    sign: SignClause | None = None
    children: list[Item] = field(default_factory=list)
    synthetic: bool = False

    @property
    def is_filler(self) -> bool:
        return self.name.upper() == "FILLER"

    @property
    def is_elementary(self) -> bool:
        return self.picture is not None or self.usage in (Usage.FLOAT, Usage.DOUBLE)


@dataclass(frozen=True)
class SourceFormat:
    """Which columns of each line hold code (Cobrix: comments_lbound/_ubound)."""

    truncate_comments: bool = True
    first_column: int = 6  # 0-based index of the first kept column (column 7)
    last_column: int = 72  # 0-based index after the last kept column (column 72)


def parse_copybook(text: str, source_format: SourceFormat | None = None) -> list[Item]:
    """Parse copybook text into its level-01 (or 77) records."""
    fmt = source_format or SourceFormat()
    tokens = list(_tokens(text, fmt))
    roots: list[Item] = []
    stack: list[Item] = []
    for statement in _statements(tokens):
        item = _parse_entry(statement)
        if item is None:
            continue
        while stack and stack[-1].level >= item.level:
            stack.pop()
        if stack:
            parent = stack[-1]
            if parent.is_elementary:
                raise _error(
                    f"{parent.name} (line {parent.line}) has a PIC or floating-point USAGE, so it"
                    f" cannot have the subordinate level-{item.level:02d} item {item.name}",
                    statement[0],
                )
            parent.children.append(item)
        elif item.level in (1, 77):
            roots.append(item)
        else:
            # A copybook without an 01 record: wrap its items in an unnamed record.
            if not roots or not roots[-1].synthetic:
                roots.append(Item(level=0, name="RECORD", line=item.line, synthetic=True))
            roots[-1].children.append(item)
            stack.append(roots[-1])
        stack.append(item)
    if not roots:
        raise CopybookSyntaxError("no data description entries found", line=1, column=1, token="")
    for root in roots:
        _check_tree(root)
    return roots


def _check_tree(item: Item) -> None:
    if not item.children and not item.is_elementary:
        raise CopybookSyntaxError(
            f"{item.name} has neither a PIC clause nor subordinate items",
            line=item.line,
            column=1,
            token=item.name,
        )
    for child in item.children:
        if child.usage is None and item.usage is not None:
            child.usage = item.usage  # a group's USAGE applies to its members
        _check_tree(child)


def _tokens(text: str, fmt: SourceFormat) -> Iterator[Token]:
    for number, raw in enumerate(text.splitlines(), start=1):
        if fmt.truncate_comments:
            base = fmt.first_column
            code = raw[fmt.first_column : fmt.last_column]
            if code[:1] in ("*", "/"):
                continue
        else:
            base = 0
            code = raw
            if code.lstrip().startswith("*"):
                continue
        inline = code.find("*>")
        if inline >= 0:
            code = code[:inline]
        for match in _TOKEN.finditer(code):
            text_ = match.group()
            column = base + match.start() + 1
            if text_.endswith(".") and not text_.startswith(("'", '"')):
                if len(text_) > 1:
                    yield Token(text_[:-1], number, column)
                yield Token(".", number, column + len(text_) - 1)
            else:
                yield Token(text_, number, column)


def _statements(tokens: list[Token]) -> Iterator[list[Token]]:
    current: list[Token] = []
    for token in tokens:
        if token.text == ".":
            if current:
                yield current
            current = []
        else:
            current.append(token)
    if current:
        last = current[-1]
        raise _error("the last entry is not terminated by a period", last)


def _error(message: str, token: Token) -> CopybookSyntaxError:
    return CopybookSyntaxError(message, line=token.line, column=token.column, token=token.text)


class _Cursor:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def next(self, expected: str) -> Token:
        token = self.peek()
        if token is None:
            last = self.tokens[-1]
            raise CopybookSyntaxError(
                f"entry ends where {expected} was expected",
                line=last.line,
                column=last.column + len(last.text),
                token=".",
            )
        self.pos += 1
        return token

    def accept(self, *words: str) -> Token | None:
        token = self.peek()
        if token is not None and token.upper in words:
            self.pos += 1
            return token
        return None

    def integer(self, expected: str) -> int:
        token = self.next(expected)
        if not token.text.isdigit():
            raise _error(f"expected {expected}", token)
        return int(token.text)


def _parse_entry(tokens: list[Token]) -> Item | None:
    cursor = _Cursor(tokens)
    first = cursor.next("a level number")
    if not _LEVEL.fullmatch(first.text):
        raise _error("expected a level number (01-49, 66, 77 or 88)", first)
    level = int(first.text)
    if level in (66, 88):
        return None  # RENAMES and condition names describe no storage of their own
    if not (1 <= level <= 49 or level == 77):
        raise _error("level numbers are 01-49, 66, 77 or 88", first)
    name_token = cursor.peek()
    name = "FILLER"
    if name_token is not None and name_token.upper not in _CLAUSE_KEYWORDS:
        name = cursor.next("a name").text
    item = Item(level=level, name=name, line=first.line)
    while (token := cursor.peek()) is not None:
        _parse_clause(cursor, token, item)
    return item


def _parse_clause(cursor: _Cursor, token: Token, item: Item) -> None:
    word = cursor.next("a clause").upper
    if word == "REDEFINES":
        item.redefines = cursor.next("the name of the redefined item").text
    elif word == "OCCURS":
        item.occurs = _parse_occurs(cursor)
    elif word in ("PIC", "PICTURE"):
        cursor.accept("IS")
        pic = cursor.next("a picture string")
        try:
            item.picture = parse_picture(pic.text)
        except PictureError as exc:
            raise _error(str(exc), pic) from None
    elif word == "USAGE":
        cursor.accept("IS")
        usage = cursor.next("a usage")
        if usage.upper not in USAGES:
            raise _error(f"unsupported USAGE (known: {', '.join(sorted(USAGES))})", usage)
        item.usage = USAGES[usage.upper]
    elif word in USAGES:
        item.usage = USAGES[word]
    elif word in ("SIGN", "LEADING", "TRAILING"):
        if word == "SIGN":
            cursor.accept("IS")
            position = cursor.next("LEADING or TRAILING")
            if position.upper not in ("LEADING", "TRAILING"):
                raise _error("expected LEADING or TRAILING", position)
            word = position.upper
        separate = cursor.accept("SEPARATE") is not None
        if separate:
            cursor.accept("CHARACTER")
        item.sign = SignClause(leading=word == "LEADING", separate=separate)
    elif word in ("VALUE", "VALUES"):
        cursor.accept("IS", "ARE")
        cursor.next("a literal")
        while (nxt := cursor.peek()) is not None and nxt.upper not in _CLAUSE_KEYWORDS:
            cursor.next("a literal")
    elif word == "BLANK":
        cursor.accept("WHEN")
        if cursor.accept("ZERO", "ZEROS", "ZEROES") is None:
            raise _error("expected BLANK WHEN ZERO", cursor.next("ZERO"))
    elif word in ("JUST", "JUSTIFIED"):
        cursor.accept("RIGHT")
    elif word in ("SYNC", "SYNCHRONIZED"):
        cursor.accept("LEFT", "RIGHT")
    elif word in ("GLOBAL", "EXTERNAL"):
        pass
    else:
        raise _error("unexpected token in a data description entry", token)


def _parse_occurs(cursor: _Cursor) -> Occurs:
    first = cursor.integer("the number of occurrences")
    minimum, maximum = first, first
    if cursor.accept("TO"):
        maximum = cursor.integer("the maximum number of occurrences")
    cursor.accept("TIMES")
    depending_on = None
    if cursor.accept("DEPENDING"):
        cursor.accept("ON")
        depending_on = cursor.next("the DEPENDING ON item").text
        if minimum == maximum:
            minimum = 0
    while cursor.accept("ASCENDING", "DESCENDING", "INDEXED") is not None:
        cursor.accept("KEY", "BY")
        cursor.accept("IS")
        cursor.next("a name")
        while (nxt := cursor.peek()) is not None and nxt.upper not in _CLAUSE_KEYWORDS:
            if nxt.upper in ("ASCENDING", "DESCENDING", "INDEXED"):
                break
            cursor.next("a name")
    if maximum < minimum:
        raise CopybookSyntaxError(
            f"OCCURS {minimum} TO {maximum}: the maximum is below the minimum",
            line=cursor.tokens[0].line,
            column=cursor.tokens[0].column,
            token=str(maximum),
        )
    return Occurs(minimum, maximum, depending_on)
