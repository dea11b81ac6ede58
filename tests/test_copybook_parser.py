"""Copybook parsing and layout: pictures, clauses, offsets, REDEFINES, OCCURS, FILLER."""

from __future__ import annotations

import pyarrow as pa
import pytest

from fabric.copybook import Copybook, CopybookLayoutError, CopybookSyntaxError
from fabric.copybook.encoding import Binary, Display, Floating, Packed, binary_size
from fabric.copybook.layout import Group, LayoutOptions, Primitive
from fabric.copybook.parser import SourceFormat, parse_copybook
from fabric.copybook.picture import PictureError, PictureKind, parse_picture


def cobol(*lines: str) -> str:
    """Fixed-format source: each line starts in column 8."""
    return "\n".join(" " * 7 + line for line in lines)


def primitives(copybook: Copybook) -> dict[str, Primitive]:
    return {p.name: p for p in copybook.primitives()}


@pytest.mark.parametrize(
    ("pic", "size", "digits", "scale", "signed", "precision"),
    [
        ("X(10)", 10, 0, 0, False, 0),
        ("9(5)", 5, 5, 0, False, 5),
        ("S9(7)V99", 9, 9, 2, True, 9),
        ("SV9(7)", 7, 7, 7, True, 7),
        ("PPP9(5)", 5, 5, 8, False, 8),
        ("S9(5)PPP", 5, 5, 0, True, 8),
        ("9(6).99-", 10, 8, 2, True, 8),
        ("Z(6)VZZ-", 9, 8, 2, True, 8),
        ("+9(8)", 9, 8, 0, True, 8),
    ],
)
def test_picture(pic: str, size: int, digits: int, scale: int, signed: bool, precision: int):
    picture = parse_picture(pic)
    assert picture.display_size == size
    assert picture.digits == digits
    assert picture.value_scale == scale
    assert picture.signed is signed
    assert picture.precision == precision


def test_picture_kinds_and_errors():
    assert parse_picture("A(3)").kind is PictureKind.ALPHANUMERIC
    assert parse_picture("N(4)").kind is PictureKind.NATIONAL
    for bad in ("9(3", "S9S9", "9V9V9", "Q(2)", "V"):
        with pytest.raises(PictureError):
            parse_picture(bad)


def test_binary_sizes_follow_cobrix():
    assert [binary_size(d) for d in (1, 4, 5, 9, 10, 18, 19, 20, 37)] == [
        2, 2, 4, 4, 8, 8, 9, 9, 16,
    ]  # fmt: skip


def test_levels_groups_occurs_redefines_and_88_levels():
    text = cobol(
        "01  REC.",
        "    05  ID            PIC S9(4) COMP.",
        "    05  STATUS        PIC X.",
        "        88  ACTIVE    VALUE 'A'.",
        "        88  CLOSED    VALUES 'C' 'X' THRU 'Z'.",
        "    05  AMOUNT        PIC S9(7)V99 COMP-3 VALUE ZERO.",
        "    05  TEXT-AMOUNT   REDEFINES AMOUNT PIC X(5).",
        "    05  COUNT-ITEMS   PIC 9(2).",
        "    05  ITEM OCCURS 0 TO 3 TIMES DEPENDING ON COUNT-ITEMS.",
        "        10  CODE      PIC X(2).",
        "        10  QTY       PIC S9(3) SIGN LEADING SEPARATE.",
        "    05  RATE          COMP-2.",
        "    05  FLAGS         PIC X OCCURS 2 INDEXED BY IX.",
    )
    copybook = Copybook.parse(text)
    fields = primitives(copybook)
    assert copybook.record_size == 2 + 1 + 5 + 2 + 3 * (2 + 4) + 8 + 2
    assert isinstance(fields["ID"].encoding, Binary)
    assert isinstance(fields["AMOUNT"].encoding, Packed)
    assert fields["TEXT_AMOUNT"].offset == fields["AMOUNT"].offset == 3
    assert fields["COUNT_ITEMS"].offset == 8
    item = copybook.find("ITEM")
    assert item.occurs is not None and item.occurs.maximum == 3
    assert item.counter is fields["COUNT_ITEMS"]
    qty = fields["QTY"].encoding
    assert isinstance(qty, Display)
    assert qty == Display(4, qty.number, sign_leading=True, sign_separate=True)
    assert isinstance(fields["RATE"].encoding, Floating)
    assert fields["RATE"].value_type == pa.float64()
    assert list(copybook.fixed_offsets(fields["CODE"])) == [10, 16, 22]
    assert "ACTIVE" not in fields


def test_redefines_block_takes_the_largest_member():
    copybook = Copybook.parse(
        cobol(
            "01  REC.",
            "    05  A    PIC X(4).",
            "    05  B    REDEFINES A PIC X(10).",
            "    05  C    REDEFINES A PIC X(2).",
            "    05  D    PIC X.",
        )
    )
    assert primitives(copybook)["D"].offset == 10
    assert copybook.record_size == 11


def test_several_records_redefine_each_other_and_names_are_normalised():
    copybook = Copybook.parse(
        [cobol("01  REC-A.", "    05  F-1 PIC X(3)."), cobol("01  REC-B.", "    05  F:2 PIC X(5).")]
    )
    assert [r.name for r in copybook.roots] == ["REC_A", "REC_B"]
    assert copybook.record_size == 5
    assert "F2" in primitives(copybook)


def test_comments_columns_and_usage_inheritance():
    text = "\n".join(
        [
            "000100 01  REC.                                                           IGNORED",
            "000200*    05  COMMENTED PIC X(99).",
            "000300     05  GRP COMP-3.  *> inline comment",
            "000400         10  P1 PIC 9(5).",
            "000500     05  TAIL PIC X.",
        ]
    )
    fields = primitives(Copybook.parse(text))
    assert set(fields) == {"P1", "TAIL"}
    assert isinstance(fields["P1"].encoding, Packed)
    free = parse_copybook("01 REC.\n  05 A PIC X.", SourceFormat(truncate_comments=False))
    assert free[0].children[0].name == "A"


def test_copybook_without_01_level_is_wrapped():
    copybook = Copybook.parse(cobol("05  A PIC X(2).", "05  B PIC 9(3)."))
    assert copybook.roots[0].synthetic
    assert copybook.record_size == 5


@pytest.mark.parametrize(
    ("text", "line", "token"),
    [
        (cobol("01  REC.", "    05  A PIC X(3)", "    05  B PIC X."), 3, "05"),
        (cobol("01  REC.", "    05  A PIC Q(3)."), 2, "Q(3)"),
        (cobol("01  REC.", "    05  A USAGE COMP-7."), 2, "COMP-7"),
        (cobol("01  REC.", "    5X  A PIC X."), 2, "5X"),
        (cobol("01  REC.", "    05  A PIC X(2) FROBNICATE."), 2, "FROBNICATE"),
        (cobol("01  REC.", "    05  A PIC X(2).", "        10  B PIC X."), 3, "10"),
    ],
)
def test_syntax_errors_name_line_and_token(text: str, line: int, token: str):
    with pytest.raises(CopybookSyntaxError) as info:
        Copybook.parse(text)
    assert info.value.line == line
    assert f"line {line}" in str(info.value)
    assert info.value.token == token


def test_unterminated_last_entry_and_empty_group():
    with pytest.raises(CopybookSyntaxError, match="not terminated by a period"):
        Copybook.parse(cobol("01  REC.", "    05  A PIC X"))
    with pytest.raises(CopybookSyntaxError, match="neither a PIC"):
        Copybook.parse(cobol("01  REC.", "    05  EMPTY."))


def test_layout_errors():
    with pytest.raises(CopybookLayoutError, match="no elementary item is named NOPE"):
        Copybook.parse(cobol("01  REC.", "    05  T OCCURS 2 DEPENDING ON NOPE PIC X."))
    with pytest.raises(CopybookSyntaxError, match="not an earlier item"):
        Copybook.parse(cobol("01  REC.", "    05  A REDEFINES Z PIC X."))


FILLERS = cobol(
    "01  REC.",
    "    05  FILLER      PIC X.",
    "    05  NAME        PIC X(4).",
    "    05  FILLER REDEFINES NAME.",
    "        10  FIRST   PIC X(2).",
    "        10  FILLER  PIC X(2).",
    "    05  ONLY-FILL.",
    "        10  FILLER  PIC X.",
)


def _kept(copybook: Copybook) -> list[str]:
    return [n.path for n in copybook.nodes() if n.kept]


def test_filler_policies():
    default = Copybook.parse(FILLERS)
    assert _kept(default) == ["REC", "REC.NAME", "REC.FILLER_1", "REC.FILLER_1.FIRST"]
    everything = Copybook.parse(FILLERS, LayoutOptions(drop_value_fillers=False))
    assert "REC.FILLER_P1" in _kept(everything)
    assert "REC.ONLY_FILL.FILLER_P3" in _kept(everything)
    named = Copybook.parse(
        FILLERS, LayoutOptions(drop_value_fillers=False, filler_naming_policy="previous_field_name")
    )
    assert "REC.FILLER_AFTER_REC" in _kept(named)
    assert "REC.FILLER_AFTER_NAME.FILLER_AFTER_FIRST" in _kept(named)
    no_groups = Copybook.parse(FILLERS, LayoutOptions(drop_group_fillers=True))
    assert _kept(no_groups) == ["REC", "REC.NAME"]


def test_non_terminals_add_a_text_twin():
    copybook = Copybook.parse(
        cobol("01  REC.", "    05  G.", "        10  A PIC 9(2).", "        10  B PIC X."),
        LayoutOptions(non_terminals=("G",)),
    )
    root = copybook.roots[0]
    assert isinstance(root, Group)
    assert [c.name for c in root.children] == ["G", "G_NT"]
    assert root.children[1].size == 3
