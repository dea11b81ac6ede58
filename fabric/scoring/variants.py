"""Which model scores which entity: champion, challenger, shadow.

Assignment is a stable hash of the entity key, so a customer stays with the same variant from
day to day and between runs, and anyone can recompute it: the bucket (0..99) of key `k` is

    int.from_bytes(md5(k.encode("utf-8")).digest()[8:], "little") % 100

which DuckDB computes as `md5_number_lower(k) % 100`. An entity whose bucket is below
`scoring.challenger_percent` is scored by the challenger (variant `challenger`), every other by
the champion (`champion`). With `scoring.shadow` the challenger also scores every champion
entity; those rows have variant `shadow` and are never published.
"""

from __future__ import annotations

import hashlib

CHAMPION_VARIANT = "champion"
CHALLENGER_VARIANT = "challenger"
SHADOW_VARIANT = "shadow"
VARIANTS = (CHAMPION_VARIANT, CHALLENGER_VARIANT, SHADOW_VARIANT)
BUCKETS = 100


def bucket(key: str) -> int:
    """The traffic bucket (0..99) of one entity key (reference for `bucket_sql`)."""
    digest = hashlib.md5(key.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "little") % BUCKETS


def bucket_sql(column: str) -> str:
    """SQL for the bucket of a (quoted) VARCHAR column; equal to `bucket` for every key."""
    return f"CAST(md5_number_lower({column}) % {BUCKETS} AS SMALLINT)"
