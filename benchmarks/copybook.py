"""Benchmark: ingest a fixed-length EBCDIC file into DuckDB through the copybook reader.

    python benchmarks/copybook.py [--rows N] [--json] [--keep DIR]

Generates (seeded) a fixed-length EBCDIC file whose records mix text, zoned decimals,
binary (COMP), packed decimals (COMP-3) and an OCCURS DEPENDING ON group, then times
`CopybookReader.iter_batches` -> Arrow -> DuckDB (a table in a temporary database file).
The baseline is DuckDB's own `read_csv` loading a fixed-width ASCII file with the same
fields and the same number of bytes (one line per record, fields cut with substr/casts).
Default rows give a file of about 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from fabric.copybook import CopybookReader

COPYBOOK = """\
       01  TRANSACTION.
           05  TXN-ID            PIC 9(12)       COMP-3.
           05  ACCOUNT-ID        PIC X(16).
           05  CUSTOMER-NAME     PIC X(30).
           05  BRANCH            PIC 9(4)        COMP.
           05  AMOUNT            PIC S9(11)V99   COMP-3.
           05  BALANCE           PIC S9(13)V99.
           05  POSTED-DATE       PIC 9(8).
           05  CURRENCY          PIC X(3).
           05  FEE               PIC S9(7)V99    COMP.
           05  ITEM-COUNT        PIC 9(2).
           05  ITEMS OCCURS 0 TO 5 TIMES DEPENDING ON ITEM-COUNT.
               10  SKU           PIC X(10).
               10  QTY           PIC S9(5)       COMP-3.
               10  PRICE         PIC S9(7)V99    COMP-3.
           05  STATUS            PIC X(1).
"""
RECORD_BYTES = 7 + 16 + 30 + 2 + 7 + 15 + 8 + 3 + 4 + 2 + 5 * (10 + 3 + 5) + 1
ASCII_LINE_BYTES = 12 + 16 + 30 + 4 + 14 + 16 + 8 + 3 + 10 + 2 + 5 * (10 + 6 + 9) + 1 + 1
DEFAULT_ROWS = 5_600_000  # about 1 GB
GENERATE_CHUNK = 200_000
_NAMES = [b"SMITH JOHN", b"MUELLER ANNA", b"DUPONT MARIE", b"ROSSI LUCA", b"NOVAK PETRA"]


def _ebcdic(text: bytes) -> np.ndarray:
    return np.frombuffer(text.decode("ascii").encode("cp037"), dtype=np.uint8)


def _zoned(values: np.ndarray, width: int, signed: bool) -> np.ndarray:
    """EBCDIC zoned digits, the sign overpunched on the last digit."""
    magnitude = np.abs(values).astype(np.int64)
    digits = (magnitude[:, None] // (10 ** np.arange(width - 1, -1, -1))) % 10
    out = (0xF0 + digits).astype(np.uint8)
    if signed:
        out[:, -1] = np.where(values < 0, 0xD0, 0xC0) + digits[:, -1]
    return out


def _packed(values: np.ndarray, digits: int) -> np.ndarray:
    """COMP-3 bytes of `values` with `digits` digits (sign nibble C/D)."""
    width = digits // 2 + 1
    nibbles = 2 * width - 1
    magnitude = np.abs(values).astype(np.int64)
    decimal = (magnitude[:, None] // (10 ** np.arange(nibbles - 1, -1, -1))) % 10
    sign = np.where(values < 0, 0x0D, 0x0C)
    all_nibbles = np.concatenate([decimal, sign[:, None]], axis=1).astype(np.uint8)
    return (all_nibbles[:, 0::2] << 4) | all_nibbles[:, 1::2]


def _text(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    names = [name.ljust(width)[:width] for name in _NAMES]
    table = np.stack([np.frombuffer(x, np.uint8) for x in names])
    return table[rng.integers(0, len(names), n)]


def _ascii_number(values: np.ndarray, width: int, signed: bool) -> np.ndarray:
    """ASCII digits, with a leading '+'/'-' in the first of `width` columns when signed."""
    digits = width - 1 if signed else width
    magnitude = np.abs(values).astype(np.int64)
    out = (0x30 + (magnitude[:, None] // (10 ** np.arange(digits - 1, -1, -1))) % 10).astype(np.uint8)
    if not signed:
        return out
    sign = np.where(values < 0, ord("-"), ord("+")).astype(np.uint8)
    return np.concatenate([sign[:, None], out], axis=1)


def generate(rows: int, ebcdic_path: Path, ascii_path: Path, seed: int = 7) -> None:
    """Write both files chunk by chunk (bounded memory); the ASCII file gets as many whole
    lines as fit in the EBCDIC file's size."""
    rng = np.random.default_rng(seed)
    ascii_rows = rows * RECORD_BYTES // ASCII_LINE_BYTES
    with ebcdic_path.open("wb") as ebcdic_out, ascii_path.open("wb") as ascii_out:
        for start in range(0, rows, GENERATE_CHUNK):
            n = min(GENERATE_CHUNK, rows - start)
            fields = {
                "txn": np.arange(start, start + n, dtype=np.int64) + 10**11,
                "account": rng.integers(10**15, 10**16, n),
                "branch": rng.integers(0, 10000, n),
                "amount": rng.integers(-(10**12), 10**12, n),
                "balance": rng.integers(-(10**14), 10**14, n),
                "date": 20200101 + rng.integers(0, 1231, n),
                "fee": rng.integers(-(10**8), 10**8, n),
                "count": rng.integers(0, 6, n),
                "qty": rng.integers(-99999, 99999, (n, 5)),
                "price": rng.integers(0, 10**9, (n, 5)),
                "name": _text(rng, n, 30),
            }
            ebcdic_out.write(_ebcdic_records(fields, n).tobytes())
            lines = min(n, ascii_rows - start)
            if lines > 0:
                ascii_out.write(_ascii_records(fields, n)[:lines].tobytes())


def _ebcdic_records(f: dict[str, np.ndarray], n: int) -> np.ndarray:
    parts = [
        _packed(f["txn"], 12),
        _zoned(f["account"], 16, signed=False),
        np.frombuffer(f["name"].tobytes().decode("ascii").encode("cp037"), np.uint8).reshape(n, 30),
        f["branch"].astype(">u2").view(np.uint8).reshape(n, 2),
        _packed(f["amount"], 13),
        _zoned(f["balance"], 15, signed=True),
        _zoned(f["date"], 8, signed=False),
        np.tile(_ebcdic(b"EUR"), (n, 1)),
        f["fee"].astype(">i4").view(np.uint8).reshape(n, 4),
        _zoned(f["count"], 2, signed=False),
    ]
    for k in range(5):
        parts += [np.tile(_ebcdic(f"SKU{k:07d}".encode()), (n, 1)),
                  _packed(f["qty"][:, k], 5), _packed(f["price"][:, k], 9)]  # fmt: skip
    parts.append(np.tile(_ebcdic(b"A"), (n, 1)))
    return np.concatenate(parts, axis=1)


def _ascii_records(f: dict[str, np.ndarray], n: int) -> np.ndarray:
    """The same fields as fixed-width ASCII lines (see ASCII_SQL for the columns)."""
    parts = [
        _ascii_number(f["txn"], 12, signed=False),
        _ascii_number(f["account"], 16, signed=False),
        f["name"],
        _ascii_number(f["branch"], 4, signed=False),
        _ascii_number(f["amount"], 14, signed=True),
        _ascii_number(f["balance"], 16, signed=True),
        _ascii_number(f["date"], 8, signed=False),
        np.tile(np.frombuffer(b"EUR", np.uint8), (n, 1)),
        _ascii_number(f["fee"], 10, signed=True),
        _ascii_number(f["count"], 2, signed=False),
    ]
    for k in range(5):
        parts += [np.tile(np.frombuffer(f"SKU{k:07d}".encode(), np.uint8), (n, 1)),
                  _ascii_number(f["qty"][:, k], 6, signed=True),
                  _ascii_number(f["price"][:, k], 9, signed=False)]  # fmt: skip
    parts.append(np.tile(np.frombuffer(b"A\n", np.uint8), (n, 1)))
    return np.concatenate(parts, axis=1)


ASCII_SQL = """
CREATE TABLE baseline AS
SELECT
  CAST(substr(line, 1, 12) AS BIGINT) AS txn_id,
  substr(line, 13, 16) AS account_id,
  trim(substr(line, 29, 30)) AS customer_name,
  CAST(substr(line, 59, 4) AS INTEGER) AS branch,
  CAST(substr(line, 63, 14) AS DECIMAL(13, 0)) * 0.01 AS amount,
  CAST(substr(line, 77, 16) AS DECIMAL(15, 0)) * 0.01 AS balance,
  CAST(substr(line, 93, 8) AS INTEGER) AS posted_date,
  substr(line, 101, 3) AS currency,
  CAST(substr(line, 104, 10) AS DECIMAL(9, 0)) * 0.01 AS fee,
  CAST(substr(line, 114, 2) AS INTEGER) AS item_count,
  [struct_pack(sku := substr(line, 116 + 25 * k, 10),
               qty := CAST(substr(line, 126 + 25 * k, 6) AS INTEGER),
               price := CAST(substr(line, 132 + 25 * k, 9) AS DECIMAL(9, 0)) * 0.01)
   FOR k IN range(CAST(substr(line, 114, 2) AS INTEGER))] AS items,
  substr(line, 241, 1) AS status
FROM read_csv(?, columns = {'line': 'VARCHAR'}, delim = '|', header = false,
              quote = '', escape = '', auto_detect = false)
"""


def _connect(directory: Path, name: str) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(str(directory / f"{name}.duckdb"))
    connection.execute("SET memory_limit = '600MB'")
    connection.execute("SET preserve_insertion_order = false")
    return connection


def run_fabric(data: Path, directory: Path) -> tuple[float, int]:
    reader = CopybookReader(COPYBOOK, {"variable_size_occurs": "false"})
    schema = reader.schema(flatten=True)
    start = time.perf_counter()
    batches = (
        batch.table.to_batches()[0] if batch.table.num_rows else pa.record_batch([], schema=schema)
        for batch in reader.iter_batches(data, flatten=True)
    )
    connection = _connect(directory, "fabric")
    connection.register("stream", pa.RecordBatchReader.from_batches(schema, batches))
    connection.execute("CREATE TABLE transactions AS SELECT * FROM stream")
    counted = connection.execute("SELECT count(*) FROM transactions").fetchone()
    rows = counted[0] if counted else 0
    connection.close()
    return time.perf_counter() - start, rows


def run_baseline(data: Path, directory: Path) -> float:
    connection = _connect(directory, "baseline")
    start = time.perf_counter()
    connection.execute(ASCII_SQL, [str(data)])
    elapsed = time.perf_counter() - start
    connection.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--keep", type=Path, help="write the generated files here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fabric-copybook-bench-") as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        ebcdic_path = directory / "transactions.ebcdic"
        ascii_path = directory / "transactions.txt"
        generate(args.rows, ebcdic_path, ascii_path)
        size = ebcdic_path.stat().st_size
        fabric_s, rows = run_fabric(ebcdic_path, Path(tmp))
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        baseline_s = run_baseline(ascii_path, Path(tmp))
        if rows != args.rows:
            sys.exit(f"ingested {rows} rows, expected {args.rows}")
        result = {
            "case": f"copybook_fixed_{args.rows}",
            "rows": args.rows,
            "bytes": size,
            "fabric_s": round(fabric_s, 3),
            "baseline": "duckdb read_csv fixed-width",
            "baseline_s": round(baseline_s, 3),
            "ratio": round(baseline_s / fabric_s, 3),
            "peak_rss_mb": peak_rss_mb,
        }
        if args.json:
            print(json.dumps(result))
        else:
            mb_s = size / 1e6 / fabric_s
            print(f"{'case':<28}{'rows':>10}{'MB':>8}{'fabric s':>10}{'MB/s':>8}"
                  f"{'duckdb s':>10}{'ratio':>7}{'RSS MB':>8}")  # fmt: skip
            print(f"{result['case']:<28}{args.rows:>10}{size / 1e6:>8.0f}{fabric_s:>10.2f}"
                  f"{mb_s:>8.1f}{baseline_s:>10.2f}{result['ratio']:>7.2f}{peak_rss_mb:>8}")  # fmt: skip
            print(f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
