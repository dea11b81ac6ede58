"""Fabric's own exception types.

Every error raised to a user names where the problem is (file, line, key, table, partition)
and, when it is not obvious, what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "***"
"""What stands in for a secret (or a masked personal value, `fabric.pii`) in any text shown."""


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every occurrence of each non-empty secret replaced by `REDACTED` (longest
    first, so a secret containing another is masked whole): for error messages of clients that
    may echo what they were given."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


class FabricError(Exception):
    """Base class of every error Fabric raises on purpose."""


class ConfigError(FabricError):
    """`fabric.yaml` (or a file it references) is missing or invalid."""


class SourceError(FabricError):
    """A source cannot be read at all (as opposed to bad rows, which are quarantined)."""


class WarehouseError(FabricError):
    """The warehouse file is locked, missing a table, or an identifier is invalid."""


class QualityGateClosed(FabricError):
    """A partition failed a critical expectation; scoring and publishing refuse it."""


class ModelError(FabricError):
    """No usable model: missing from the registry, or its signature does not match."""


class PublishError(FabricError):
    """A business system rejected or could not receive published records."""
