"""The vectorised decoders, on hand-made bytes: text, zoned, packed, binary, floats."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from fabric.copybook import UnknownCodePageError
from fabric.copybook.codepages import ascii_charset, ebcdic_code_page
from fabric.copybook.decode import decode
from fabric.copybook.encoding import (
    Alphanumeric,
    Binary,
    Display,
    Encoding,
    Floating,
    NumberFormat,
    Packed,
    SignClause,
    Usage,
    arrow_type,
    make_encoding,
)
from fabric.copybook.picture import parse_picture
from fabric.copybook.settings import Decoded, DecodeSettings


def rows(*hex_rows: str) -> np.ndarray:
    data = [bytes.fromhex(h.replace(" ", "")) for h in hex_rows]
    return np.frombuffer(b"".join(data), dtype=np.uint8).reshape(len(data), -1)


def ebcdic(*texts: str, codec: str = "cp037") -> np.ndarray:
    return rows(*(t.encode(codec).hex() for t in texts))


def field(pic: str, usage: Usage = Usage.DISPLAY, sign: SignClause | None = None) -> Encoding:
    return make_encoding(parse_picture(pic), usage, sign)


def run(
    encoding: Encoding,
    raw: np.ndarray,
    settings: DecodeSettings | None = None,
    available: np.ndarray | None = None,
) -> Decoded:
    settings = settings or DecodeSettings(code_page=ebcdic_code_page("common"))
    return decode(encoding, arrow_type(encoding), raw, available, settings)


def flags(mask: np.ndarray | None) -> list[bool]:
    return [] if mask is None else [bool(flag) for flag in mask]


def values(encoding: Encoding, raw: np.ndarray, **settings: object) -> list[object]:
    base = {"code_page": ebcdic_code_page("common")}
    return run(encoding, raw, DecodeSettings(**{**base, **settings})).array.to_pylist()  # type: ignore[arg-type]


# --- text -------------------------------------------------------------------------------


def test_text_trimming_policies_and_nulls():
    raw = np.vstack([ebcdic("  AB  "), rows("000000000000"), ebcdic("      ")])
    text = Alphanumeric(6)
    assert values(text, raw) == ["AB", None, ""]
    assert values(text, raw, trimming="left") == ["AB  ", None, ""]
    assert values(text, raw, trimming="right") == ["  AB", None, ""]
    assert values(text, raw, trimming="none") == ["  AB  ", None, "      "]
    assert values(text, raw, improved_null_detection=False) == ["AB", "", ""]


def test_text_code_pages():
    raw = rows("C1 9F 48 4A")
    page = ebcdic_code_page
    assert values(Alphanumeric(4), raw, code_page=page("cp037")) == ["A\u00a4\u00e7\u00a2"]
    assert values(Alphanumeric(4), raw, code_page=page("cp1140")) == ["A\u20ac\u00e7\u00a2"]
    assert values(Alphanumeric(4), raw, code_page=page("cp1141")) == ["A\u20ac\u00e7\u00c4"]
    assert values(Alphanumeric(4), raw, code_page=page("cp1148")) == ["A\u20ac\u00e7["]
    assert values(Alphanumeric(4), raw, code_page=page("common")) == ["A"]
    controls = rows("C1 0D 25 05")
    cp037 = values(Alphanumeric(4), controls, code_page=page("cp037"), trimming="none")
    assert cp037 == ["A\n\r "]
    extended = values(Alphanumeric(4), controls, code_page=page("cp037_extended"), trimming="none")
    assert extended == ["A\n\r\t"]
    assert values(Alphanumeric(4), controls, code_page=page("cp037")) == ["A"]


def test_unknown_code_page_lists_the_known_ones():
    with pytest.raises(UnknownCodePageError, match=r"cp9999.*known: common"):
        ebcdic_code_page("cp9999")
    with pytest.raises(UnknownCodePageError, match="no-such-charset"):
        ascii_charset("no-such-charset")


def test_ascii_text_utf8_and_charsets():
    raw = rows("41 C3 A9 42 01 20", "FF 41 20 20 20 20")
    utf8 = DecodeSettings(ebcdic=False, code_page=None)
    assert run(Alphanumeric(6), raw, utf8).array.to_pylist() == ["A\u00e9B", "\ufffdA"]
    latin1 = DecodeSettings(ebcdic=False, code_page=ascii_charset("ISO-8859-1"))
    assert run(Alphanumeric(6), raw, latin1).array.to_pylist() == ["A\u00c3\u00a9B", "\u00ffA"]


def test_text_of_short_records_keeps_what_is_there():
    raw = np.vstack([ebcdic("ABCDEF"), ebcdic("GHIJKL"), ebcdic("MNOPQR")])
    available = np.array([6, 2, 0])
    out = run(Alphanumeric(6), raw, available=available).array.to_pylist()
    assert out == ["ABCDEF", "GH", None]


# --- zoned decimals ----------------------------------------------------------------------


def test_zoned_overpunch_and_scale():
    raw = rows("F1F2C3", "F1F2D3", "F0F0F0", "F1F2F3")
    assert values(field("S9(3)"), raw) == [123, -123, 0, 123]
    assert values(field("S9V99"), raw) == [Decimal("1.23"), Decimal("-1.23"), 0, Decimal("1.23")]
    unsigned = run(field("9(3)"), raw)
    assert unsigned.array.to_pylist() == [123, None, 0, 123]
    assert flags(unsigned.invalid) == [False, True, False, False]


def test_zoned_sign_positions():
    leading = field("S9(3)", sign=SignClause(leading=True, separate=False))
    assert values(leading, rows("D1F2F3")) == [-123]
    separate = field("S9(3)", sign=SignClause(leading=True, separate=True))
    assert values(separate, ebcdic("-123", "+045")) == [-123, 45]
    trailing = field("9(2)V99", sign=SignClause(leading=False, separate=True))
    assert values(trailing, ebcdic("3050-")) == [Decimal("-30.50")]


def test_zoned_blanks_invalid_digits_and_strictness():
    raw = np.vstack([ebcdic("   "), ebcdic("1A3"), ebcdic(" 12"), rows("000000")])
    decoded = run(field("9(3)"), raw)
    assert decoded.array.to_pylist() == [None, None, 12, None]
    assert flags(decoded.invalid) == [False, True, False, False]
    # Cobrix reads a blank implied-decimal field as zero, and low-values as zero when
    # improved null detection is off.
    assert values(field("9V99"), raw[:1]) == [Decimal("0.00")]
    assert values(field("9(3)"), raw[3:], improved_null_detection=False) == [0]
    positive_overpunch = rows("F1F2C3")
    assert values(field("9(3)"), positive_overpunch) == [123]
    assert values(field("9(3)"), positive_overpunch, strict_sign_overpunching=True) == [None]


def test_zoned_edited_and_explicit_point():
    assert values(field("S9(3).99"), ebcdic("-12.50", "012.5 ")) == [
        Decimal("-12.50"),
        Decimal("12.50"),
    ]
    assert values(field("Z(4)9-"), ebcdic("  123-", "   45 ")) == [-123, 45]
    assert values(field("+9(4)"), ebcdic("-0042")) == [-42]
    assert values(field("9(3)PPP"), ebcdic("123")) == [Decimal(123000)]
    assert values(field("SPP99"), rows("F1D2")) == [Decimal("-0.0012")]


def test_zoned_wide_values_are_exact():
    digits = "3050393257676267687078781717600592714"
    raw = ebcdic(digits[:-1] + "J")  # J = overpunched -1
    assert values(field("S9(37)"), raw) == [-int(digits[:-1] + "1")]
    assert values(field("S9(19)V9(18)"), raw) == [Decimal("-" + digits[:19] + "." + digits[19:-1] + "1")]


def test_zoned_ascii():
    settings = DecodeSettings(ebcdic=False, code_page=None)
    raw = rows(*(t.encode().hex() for t in ("0012}", "0012J", "  -12", "12345")))
    assert run(field("S9(5)"), raw, settings).array.to_pylist() == [-120, -121, -12, 12345]


# --- packed decimals ---------------------------------------------------------------------


def test_packed_signs_and_invalid_nibbles():
    raw = rows("12345C", "12345D", "12345F", "1A345C", "123451", "000000", "404040")
    decoded = run(field("S9(5)", Usage.PACKED), raw)
    assert decoded.array.to_pylist() == [12345, -12345, 12345, None, None, None, None]
    assert flags(decoded.invalid) == [
        False,
        False,
        False,
        True,
        True,
        False,
        False,
    ]
    unsigned = run(field("9(5)", Usage.PACKED), raw[:2])
    assert unsigned.array.to_pylist() == [12345, None]


def test_packed_without_sign_nibble_and_scales():
    assert values(field("9(4)", Usage.PACKED_NO_SIGN), rows("1234")) == [1234]
    assert values(field("S9(3)V99", Usage.PACKED), rows("12345D")) == [Decimal("-123.45")]
    assert values(field("S9(5)PPP", Usage.PACKED), rows("12345C")) == [Decimal(12345000)]


@pytest.mark.parametrize("digits", [15, 17, 18, 19, 20, 31, 37, 38])
def test_packed_long_values_are_exact(digits: int):
    number = "9876543210" * 4
    text = number[:digits]
    nibbles = ("0" if digits % 2 == 0 else "") + text + "D"
    encoding = field(f"S9({digits})", Usage.PACKED)
    assert encoding.size == len(nibbles) // 2
    expected = -int(text)
    out = values(encoding, rows(nibbles))
    assert out == [expected]


# --- binary and floating point ---------------------------------------------------------


def test_binary_sizes_signs_and_overflow():
    assert values(field("S9(4)", Usage.BINARY), rows("FFFE", "7FFF")) == [-2, 32767]
    assert values(field("9(4)", Usage.BINARY), rows("FFFE")) == [65534]
    unsigned = run(field("9(8)", Usage.BINARY), rows("80000000", "00000010"))
    assert unsigned.array.to_pylist() == [None, 16]  # int32 cannot hold 2**31
    assert flags(unsigned.overflow) == [True, False]
    assert values(field("S9(7)V99", Usage.BINARY), rows("FFFFFFF6")) == [Decimal("-0.10")]
    little = Binary(4, NumberFormat(9, 0, 0, True, False), little_endian=True)
    assert values(little, rows("FEFFFFFF")) == [-2]


def test_binary_wide_values():
    assert values(field("S9(20)", Usage.BINARY), rows("FF FFFFFFFFFFFFFFFF")) == [-1]
    big = (10**37) - 1
    raw = rows(big.to_bytes(16, "big").hex(), (-big).to_bytes(16, "big", signed=True).hex())
    assert values(field("S9(37)", Usage.BINARY), raw) == [big, -big]


def test_floats_ibm_and_ieee():
    ibm = rows("41100000", "C276A000")
    assert values(Floating(4), ibm) == [1.0, -118.625]
    ibm_double = rows("4110000000000000")
    assert values(Floating(8), ibm_double) == [1.0]
    ieee = rows("3FC00000")
    assert values(Floating(4), ieee, floating_point_format="ieee754") == [1.5]
    little = rows("0000C03F")
    assert values(Floating(4), little, floating_point_format="ieee754_little_endian") == [1.5]


def test_value_types_follow_spark():
    assert arrow_type(field("9(9)")) == pa.int32()
    assert arrow_type(field("9(10)")) == pa.int64()
    assert arrow_type(field("9(19)")) == pa.decimal128(19, 0)
    assert arrow_type(field("9(9)", Usage.BINARY)) == pa.int64()
    assert arrow_type(field("9(18)", Usage.BINARY)) == pa.decimal128(20, 0)
    assert arrow_type(field("9(5)"), strict_integral_precision=True) == pa.decimal128(5, 0)
    assert arrow_type(Display(3, NumberFormat(3, 2, 0, True, True))) == pa.decimal128(3, 2)
    assert isinstance(field("S9(3)", Usage.PACKED), Packed)
