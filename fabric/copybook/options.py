"""Reader options: the Cobrix option names (as strings), validated into `ReaderOptions`.

Keys are case-insensitive and '-' equals '_' (`redefine-segment-id-map:1` is
`redefine_segment_id_map:1`). Unknown keys raise `OptionError` naming the key. Options that
only steer Spark's partitioning are accepted and ignored (`SPARK_ONLY`). Two options are
Fabric's own: `on_decode_error` (null | quarantine | fail) and `on_framing_error`
(fail | quarantine), see the package README.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from fabric.copybook.errors import OptionError
from fabric.copybook.settings import FLOATING_POINT_FORMATS, TRIMMING_POLICIES

SPARK_ONLY = frozenset(
    {"input_split_records", "input_split_size_mb", "enable_indexes", "enable_index_cache",
     "pedantic", "path", "paths"}
)  # fmt: skip
RECORD_FORMATS = ("F", "V", "D", "T")
DEBUG_MODES = {"false": None, "true": "hex", "hex": "hex", "raw": "raw", "binary": "raw"}

_INDEXED = re.compile(r"^(redefine_segment_id_map|segment_children|segment_id_level)[:_]?(\d+)$")
_SCALAR_KEYS = frozenset(
    {
        "copybook", "copybook_contents", "copybooks", "encoding", "ebcdic_code_page",
        "ebcdic_code_page_class", "ascii_charset", "record_format", "record_length",
        "record_start_offset", "record_end_offset", "file_start_offset", "file_end_offset",
        "is_record_sequence", "is_text", "is_rdw_big_endian", "is_rdw_part_of_record_length",
        "rdw_adjustment", "record_length_field", "variable_size_occurs",
        "schema_retention_policy", "generate_record_id", "string_trimming_policy",
        "floating_point_format", "strict_sign_overpunching", "strict_integral_precision",
        "improved_null_detection", "drop_group_fillers", "drop_value_fillers",
        "filler_naming_policy", "segment_field", "segment_filter", "segment_id_root",
        "segment_id_prefix", "debug", "non_terminals", "occurs_mappings",
        "record_header_parser", "rhp_additional_info", "truncate_comments", "comments_lbound",
        "comments_ubound", "on_decode_error", "on_framing_error",
    }
)  # fmt: skip


@dataclass(frozen=True)
class ReaderOptions:
    copybook_paths: tuple[str, ...] = ()
    copybook_contents: str | None = None
    ebcdic: bool = True
    ebcdic_code_page: str = "common"
    ascii_charset: str | None = None
    record_format: str = "F"
    record_length: int | None = None
    record_start_offset: int = 0
    record_end_offset: int = 0
    file_start_offset: int = 0
    file_end_offset: int = 0
    rdw_big_endian: bool = False
    rdw_adjustment: int = 0
    record_length_field: str | None = None
    variable_size_occurs: bool = False
    keep_original_root: bool = False
    generate_record_id: bool = False
    trimming: str = "both"
    floating_point_format: str = "ibm"
    strict_sign_overpunching: bool = False
    strict_integral_precision: bool = False
    improved_null_detection: bool = True
    drop_group_fillers: bool = False
    drop_value_fillers: bool = True
    filler_naming_policy: str = "sequence_numbers"
    segment_field: str | None = None
    segment_filter: tuple[str, ...] = ()
    segment_levels: tuple[tuple[str, ...], ...] = ()
    segment_id_prefix: str = ""
    segment_redefines: dict[str, tuple[str, ...]] = field(default_factory=dict)
    segment_children: dict[str, tuple[str, ...]] = field(default_factory=dict)
    debug: str | None = None
    non_terminals: tuple[str, ...] = ()
    occurs_mappings: dict[str, dict[str, int]] = field(default_factory=dict)
    record_header_parser: str | None = None
    rhp_additional_info: str | None = None
    truncate_comments: bool = True
    comments_lbound: int = 6
    comments_ubound: int = 72
    on_decode_error: str = "null"
    on_framing_error: str = "fail"

    @classmethod
    def from_mapping(cls, options: Mapping[str, str] | None) -> ReaderOptions:
        """Validate Cobrix-style string options."""
        values: dict[str, str] = {}
        indexed: dict[str, dict[int, str]] = {}
        for raw_key, raw_value in (options or {}).items():
            key = raw_key.strip().lower().replace("-", "_")
            value = str(raw_value)
            if key in SPARK_ONLY:
                continue
            if match := _INDEXED.match(key):
                indexed.setdefault(match.group(1), {})[int(match.group(2))] = value
            elif key in _SCALAR_KEYS:
                values[key] = value
            else:
                raise OptionError(f"unknown copybook reader option {raw_key!r}")
        return _build(values, indexed)


def _bool(values: dict[str, str], key: str, default: bool) -> bool:
    if key not in values:
        return default
    text = values[key].strip().lower()
    if text not in ("true", "false"):
        raise OptionError(f"option {key}={values[key]!r}: expected true or false")
    return text == "true"


def _int(values: dict[str, str], key: str, default: int | None) -> int | None:
    if key not in values:
        return default
    try:
        return int(values[key].strip())
    except ValueError:
        raise OptionError(f"option {key}={values[key]!r}: expected an integer") from None


def _nonneg(values: dict[str, str], key: str) -> int:
    number = _int(values, key, 0) or 0
    if number < 0:
        raise OptionError(f"option {key}={number}: must not be negative")
    return number


def _choice(values: dict[str, str], key: str, default: str, allowed: tuple[str, ...]) -> str:
    text = values.get(key, default).strip()
    folded = {a.lower(): a for a in allowed}
    if text.lower() not in folded:
        raise OptionError(f"option {key}={text!r}: expected one of {', '.join(allowed)}")
    return folded[text.lower()]


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _mapping_option(indexed: dict[int, str], key: str) -> dict[str, tuple[str, ...]]:
    """`NAME => a,b` entries (redefine_segment_id_map / segment-children)."""
    result: dict[str, tuple[str, ...]] = {}
    for _, text in sorted(indexed.items()):
        name, arrow, targets = text.partition("=>")
        if not arrow or not name.strip() or not targets.strip():
            raise OptionError(f"option {key}={text!r}: expected 'NAME => value[,value...]'")
        result[name.strip()] = _names(targets)
    return result


def _build(values: dict[str, str], indexed: dict[str, dict[int, str]]) -> ReaderOptions:
    record_format = _choice(values, "record_format", "F", (*RECORD_FORMATS, "FB", "VB"))
    if record_format in ("FB", "VB"):
        raise OptionError(f"record_format={record_format} (blocked records) is not supported")
    if _bool(values, "is_record_sequence", False):
        record_format = "V"
    if _bool(values, "is_text", False):
        record_format = "D"
    encoding = _choice(values, "encoding", "ebcdic", ("ebcdic", "ascii"))
    occurs_mappings: dict[str, dict[str, int]] = {}
    if "occurs_mappings" in values:
        try:
            parsed = json.loads(values["occurs_mappings"])
            occurs_mappings = {str(k): {str(v): int(n) for v, n in m.items()} for k, m in parsed.items()}
        except (ValueError, AttributeError, TypeError):
            raise OptionError(
                'option occurs_mappings: expected JSON like {"FIELD": {"value": count, ...}, ...}'
            ) from None
    levels = indexed.get("segment_id_level", {})
    if "segment_id_root" in values:
        levels = {0: values["segment_id_root"], **{k: v for k, v in levels.items() if k}}
    if sorted(levels) != list(range(len(levels))):
        raise OptionError("segment_id_level<N> options must be numbered from 0 without gaps")
    copybook_paths = _names(values.get("copybooks", ""))
    if "copybook" in values:
        copybook_paths = (values["copybook"].strip(), *copybook_paths)
    record_length = _int(values, "record_length", None)
    if record_length is not None and record_length <= 0:
        raise OptionError(f"option record_length={record_length}: must be positive")
    rdw_adjustment = _int(values, "rdw_adjustment", 0) or 0
    if _bool(values, "is_rdw_part_of_record_length", False):
        rdw_adjustment -= 4
    return ReaderOptions(
        copybook_paths=tuple(p.removeprefix("file://") for p in copybook_paths),
        copybook_contents=values.get("copybook_contents"),
        ebcdic=encoding == "ebcdic",
        ebcdic_code_page=values.get(
            "ebcdic_code_page_class", values.get("ebcdic_code_page", "common")
        ).strip(),
        ascii_charset=values.get("ascii_charset"),
        record_format=record_format,
        record_length=record_length,
        record_start_offset=_nonneg(values, "record_start_offset"),
        record_end_offset=_nonneg(values, "record_end_offset"),
        file_start_offset=_nonneg(values, "file_start_offset"),
        file_end_offset=_nonneg(values, "file_end_offset"),
        rdw_big_endian=_bool(values, "is_rdw_big_endian", False),
        rdw_adjustment=rdw_adjustment,
        record_length_field=values.get("record_length_field"),
        variable_size_occurs=_bool(values, "variable_size_occurs", False),
        keep_original_root=_choice(
            values, "schema_retention_policy", "collapse_root", ("collapse_root", "keep_original")
        )
        == "keep_original",
        generate_record_id=_bool(values, "generate_record_id", False),
        trimming=_choice(values, "string_trimming_policy", "both", TRIMMING_POLICIES),
        floating_point_format=_choice(values, "floating_point_format", "ibm", FLOATING_POINT_FORMATS),
        strict_sign_overpunching=_bool(values, "strict_sign_overpunching", False),
        strict_integral_precision=_bool(values, "strict_integral_precision", False),
        improved_null_detection=_bool(values, "improved_null_detection", True),
        drop_group_fillers=_bool(values, "drop_group_fillers", False),
        drop_value_fillers=_bool(values, "drop_value_fillers", True),
        filler_naming_policy=_choice(
            values,
            "filler_naming_policy",
            "sequence_numbers",
            ("sequence_numbers", "previous_field_name"),
        ),
        segment_field=values.get("segment_field"),
        segment_filter=_names(values.get("segment_filter", "")),
        segment_levels=tuple(_names(levels[k]) for k in sorted(levels)),
        segment_id_prefix=values.get("segment_id_prefix", ""),
        segment_redefines=_mapping_option(
            indexed.get("redefine_segment_id_map", {}), "redefine_segment_id_map"
        ),
        segment_children=_mapping_option(indexed.get("segment_children", {}), "segment_children"),
        debug=_debug_mode(values),
        non_terminals=_names(values.get("non_terminals", "")),
        occurs_mappings=occurs_mappings,
        record_header_parser=values.get("record_header_parser"),
        rhp_additional_info=values.get("rhp_additional_info"),
        truncate_comments=_bool(values, "truncate_comments", True),
        comments_lbound=_nonneg(values, "comments_lbound") if "comments_lbound" in values else 6,
        comments_ubound=_nonneg(values, "comments_ubound") if "comments_ubound" in values else 72,
        on_decode_error=_choice(values, "on_decode_error", "null", ("null", "quarantine", "fail")),
        on_framing_error=_choice(values, "on_framing_error", "fail", ("fail", "quarantine")),
    )


def _debug_mode(values: dict[str, str]) -> str | None:
    text = values.get("debug", "false").strip().lower()
    if text not in DEBUG_MODES:
        raise OptionError(f"option debug={text!r}: expected one of {', '.join(DEBUG_MODES)}")
    return DEBUG_MODES[text]
