"""Opening the warehouse file: the two ways it fails tell the operator different things."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from fabric import warehouse as warehouse_module
from fabric.errors import WarehouseError
from fabric.warehouse import Warehouse

_BLOCK_HEADERS = 3 * 4096  # DuckDB's main header and two database headers precede block 0


def test_a_torn_metadata_block_is_reported_as_a_damaged_file_not_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with Warehouse(path).connect() as con:
        con.execute("CREATE TABLE raw.t AS SELECT range AS k FROM range(1000)")
    [(block, *_)] = duckdb.connect(str(path)).execute("SELECT * FROM pragma_metadata_info()").fetchall()
    # What a process killed in the middle of rewriting the metadata block leaves: the block's
    # first pages new, the rest old (here: garbage), so its checksum no longer matches.
    with path.open("r+b") as handle:
        handle.seek(_BLOCK_HEADERS + block * 262144 + 8192)
        handle.write(b"\xa5" * 4096)
    with pytest.raises(WarehouseError) as failure, Warehouse(path).connect():
        pass
    message = str(failure.value)
    assert str(path) in message and "checksum" in message
    assert "unreadable" in message and "fabric run --from" in message
    assert "Another process holds it" not in message


def test_a_file_locked_by_another_process_says_who_to_look_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "warehouse.duckdb"
    Warehouse(path).connect().__enter__().close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('open', "
         "flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        monkeypatch.setattr(warehouse_module, "_LOCK_RETRY_SECONDS", 0.2)
        with pytest.raises(WarehouseError, match="Another process holds it"), Warehouse(path).connect():
            pass
    finally:
        holder.communicate("", timeout=30)
