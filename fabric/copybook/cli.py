"""`fabric copybook ...`: decode mainframe data files from the command line.

`read COPYBOOK DATA [--option key=value ...]` prints one JSON object per record in Spark's
`toJSON` conventions (see `jsonlines`), the way the Cobrix corpus' expected files are
written. Issues (undecodable values, unframeable bytes) are summarised on stderr and can
be written as JSON lines with `--issues FILE`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from fabric.copybook.errors import CopybookError
from fabric.copybook.jsonlines import json_lines
from fabric.copybook.reader import CopybookReader

app = typer.Typer(help="Read COBOL copybook data files (Cobrix-compatible).", no_args_is_help=True)


@app.callback()
def copybook() -> None:
    """Read COBOL copybook data files (Cobrix-compatible)."""


def parse_options(pairs: list[str]) -> dict[str, str]:
    """`key=value` strings to a dict; the value may itself contain '='."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected key=value, got {pair!r}", param_hint="--option")
        options[key.strip()] = value
    return options


@app.command()
def read(
    copybook: Annotated[Path, typer.Argument(help="the copybook file", exists=True)],
    data: Annotated[str, typer.Argument(help="a data file, directory or glob")],
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="a reader option as key=value (repeatable)"),
    ] = None,
    issues: Annotated[Path | None, typer.Option(help="write the issues table here as JSON lines")] = None,
    limit: Annotated[int | None, typer.Option(help="print at most this many records")] = None,
) -> None:
    """Print the records of DATA as JSON lines."""
    try:
        reader = CopybookReader(copybook, parse_options(option or []))
        printed = 0
        issue_count = 0
        issue_file = issues.open("w", encoding="utf-8") if issues else None
        try:
            for batch in reader.iter_batches(data):
                table = batch.table
                if limit is not None:
                    table = table.slice(0, max(limit - printed, 0))
                for line in json_lines(table):
                    sys.stdout.write(line + "\n")
                printed += table.num_rows
                issue_count += batch.issues.num_rows
                if issue_file is not None:
                    for row in batch.issues.to_pylist():
                        issue_file.write(json.dumps(row) + "\n")
                if limit is not None and printed >= limit:
                    break
        finally:
            if issue_file is not None:
                issue_file.close()
    except CopybookError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if issue_count:
        where = f" (written to {issues})" if issues else " (use --issues FILE to see them)"
        typer.echo(f"{issue_count} issue(s) found{where}", err=True)
