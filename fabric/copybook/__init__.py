"""A vectorised COBOL copybook reader, conformant with Cobrix (see README.md here).

from fabric.copybook import read_copybook, read_copybook_file

table = read_copybook_file("record.cpy", "data.bin", {"ebcdic_code_page": "cp037"})
result = read_copybook("record.cpy", "data.bin", {"record_format": "V"})
result.table, result.positions, result.issues
"""

from fabric.copybook.codepages import register_code_page
from fabric.copybook.errors import (
    CopybookError,
    CopybookLayoutError,
    CopybookSyntaxError,
    DecodeError,
    FramingError,
    OptionError,
    UnknownCodePageError,
)
from fabric.copybook.issues import ISSUE_SCHEMA
from fabric.copybook.layout import Copybook
from fabric.copybook.reader import (
    POSITION_SCHEMA,
    CopybookBatch,
    CopybookRead,
    CopybookReader,
    flatten_table,
    read_copybook,
    read_copybook_file,
)
from fabric.copybook.records import register_record_header_parser

__all__ = [
    "ISSUE_SCHEMA",
    "POSITION_SCHEMA",
    "Copybook",
    "CopybookBatch",
    "CopybookError",
    "CopybookLayoutError",
    "CopybookRead",
    "CopybookReader",
    "CopybookSyntaxError",
    "DecodeError",
    "FramingError",
    "OptionError",
    "UnknownCodePageError",
    "flatten_table",
    "read_copybook",
    "read_copybook_file",
    "register_code_page",
    "register_record_header_parser",
]
