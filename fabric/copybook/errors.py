"""Exceptions raised by the copybook reader.

Each names where the problem is: the copybook line and token, the data file and byte offset,
or the reader option, and what to do about it when that is not obvious.
"""

from __future__ import annotations

from fabric.errors import FabricError


class CopybookError(FabricError):
    """Base class of every error the copybook reader raises on purpose."""


class CopybookSyntaxError(CopybookError):
    """The copybook text cannot be parsed; names the line, column and offending token."""

    def __init__(self, message: str, *, line: int, column: int, token: str) -> None:
        self.line = line
        self.column = column
        self.token = token
        super().__init__(f"copybook line {line}, column {column}, at {token!r}: {message}")


class CopybookLayoutError(CopybookError):
    """The copybook parses but describes an impossible layout (unknown DEPENDING ON field...)."""


class OptionError(CopybookError):
    """A reader option is unknown, unsupported or has an invalid value."""


class UnknownCodePageError(OptionError):
    """The requested EBCDIC code page or ASCII charset does not exist."""


class FramingError(CopybookError):
    """The data file cannot be cut into records (bad RDW, truncated or misaligned records).

    Raised when `on_framing_error=fail` (the default); with `quarantine` the same problem is
    reported as a quarantined span of bytes instead and the rest of the file is decoded.
    """

    def __init__(self, message: str, *, path: str, offset: int) -> None:
        self.path = path
        self.offset = offset
        super().__init__(f"{path}: at byte offset {offset}: {message}")


class DecodeError(CopybookError):
    """A field value cannot be decoded and `on_decode_error=fail` was requested."""
