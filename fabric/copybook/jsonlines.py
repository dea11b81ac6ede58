"""Records as JSON lines, written the way Spark's `Dataset.toJSON` writes them.

Null fields are left out (a group whose fields are all null prints as `{}`), keys keep
schema order, decimals print in plain notation with exactly their scale's fraction digits
(`30.50`), integers of any size print as integers, float/double print like Java's
`Float.toString`/`Double.toString` (`-30503.93`, `9.9479683373533E9`), binary values print
as base64, and strings are escaped like Jackson: `\\n`-style short escapes, `\\u00XX`
(upper-case hex) for other control characters, non-ASCII characters as raw UTF-8.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa

_ESCAPES = {i: f"\\u{i:04X}" for i in range(0x20)}
_ESCAPES.update({0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"})
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\"})


def json_string(text: str) -> str:
    return '"' + text.translate(_ESCAPES) + '"'


def java_float(value: float, single: bool) -> str:
    """Java's Float.toString / Double.toString of `value`."""
    if math.isnan(value):
        return '"NaN"'
    if math.isinf(value):
        return '"Infinity"' if value > 0 else '"-Infinity"'
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    if single:
        text = np.format_float_scientific(np.float32(value), unique=True, trim="-")
    else:
        text = repr(float(value))
    sign = "-" if text.startswith("-") else ""
    digits, exponent = _digits_and_exponent(text.lstrip("-"))
    if -3 <= exponent < 7:
        if exponent >= 0:
            whole = digits[: exponent + 1].ljust(exponent + 1, "0")
            fraction = digits[exponent + 1 :] or "0"
        else:
            whole = "0"
            fraction = "0" * (-exponent - 1) + digits
        return f"{sign}{whole}.{fraction}"
    mantissa = digits[0] + "." + (digits[1:] or "0")
    return f"{sign}{mantissa}E{exponent}"


def _digits_and_exponent(text: str) -> tuple[str, int]:
    """Significant digits (no leading/trailing zeros) and the decimal exponent of the first."""
    mantissa, _, exp_text = text.lower().partition("e")
    exponent = int(exp_text) if exp_text else 0
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    leading = len(whole + fraction) - len((whole + fraction).lstrip("0"))
    exponent += len(whole) - 1 - leading
    return digits.rstrip("0") or "0", exponent


def encode(value: Any, dtype: pa.DataType) -> str:
    """One value of Arrow type `dtype` as JSON (the value is not None)."""
    if pa.types.is_struct(dtype):
        parts = [
            f"{json_string(field.name)}:{encode(value[field.name], field.type)}"
            for field in dtype
            if value.get(field.name) is not None
        ]
        return "{" + ",".join(parts) + "}"
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        item = dtype.value_type
        return "[" + ",".join("null" if v is None else encode(v, item) for v in value) + "]"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return json_string(value)
    if pa.types.is_boolean(dtype):
        return "true" if value else "false"
    if pa.types.is_decimal(dtype):
        return format(Decimal(value), "f")
    if pa.types.is_floating(dtype):
        return java_float(float(value), dtype == pa.float32())
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return json_string(base64.b64encode(value).decode("ascii"))
    return str(value)


def json_lines(table: pa.Table | pa.RecordBatch) -> Iterator[str]:
    """Each row of `table` as one Spark-style JSON object."""
    struct_type = pa.struct(list(table.schema))
    for row in table.to_pylist():
        yield encode(row, struct_type)
