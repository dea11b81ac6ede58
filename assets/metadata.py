"""Asset metadata that data teams look at: small, PII-masked previews of what a step wrote."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from fabric.config import FabricConfig
from fabric.identifiers import qualified, split_qualified
from fabric.pii import mask_frame
from fabric.warehouse import Warehouse, table_exists

PREVIEW_ROWS = 5


def table_preview(
    config: FabricConfig,
    warehouse: Warehouse,
    table: str,
    partitions: Sequence[date] = (),
    partition_column: str = "_fabric_partition",
) -> str:
    """The first rows of `table` (of the given partitions) as Markdown, PII columns masked."""
    schema, name = split_qualified(table)
    with warehouse.connect(read_only=True) as con:
        if not table_exists(con, table):
            return f"`{table}` does not exist yet"
        where = ""
        params: list[object] = []
        if partitions:
            where = f'WHERE "{partition_column}" IN (SELECT unnest(?::DATE[]))'
            params = [list(partitions)]
        frame = con.execute(
            f"SELECT * FROM {qualified(schema, name)} {where} LIMIT {PREVIEW_ROWS}", params
        ).df()
    masked = mask_frame(frame, config.pii.get(table, []))
    return str(masked.to_markdown(index=False)) if len(masked) else "(no rows)"
