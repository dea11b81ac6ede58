"""Where OpenLineage events go: JSON lines on disk (default) or a Marquez-compatible HTTP endpoint.

File transport: one JSON object per line in `<directory>/openlineage-<YYYY-MM-DD>.jsonl` (UTC day
of writing). Each event is one `write` on a file opened for appending under an exclusive
`flock`, so steps in parallel processes never interleave their lines.

HTTP transport: each event is POSTed as JSON to `<url>/<endpoint>` (Marquez: `/api/v1/lineage`),
with `Authorization: Bearer <key>` when `api_key_env` names a set variable. The key is read
from the environment when sending and never logged.
"""

from __future__ import annotations

import fcntl
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from fabric.config import FabricConfig, LineageHttpConfig
from fabric.errors import FabricError


class LineageError(FabricError):
    """An OpenLineage event could not be delivered."""


class Transport(Protocol):
    def emit(self, events: Sequence[Mapping[str, Any]]) -> None: ...


class FileTransport:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, moment: datetime) -> Path:
        return self.directory / f"openlineage-{moment.astimezone(UTC).date().isoformat()}.jsonl"

    def emit(self, events: Sequence[Mapping[str, Any]]) -> None:
        if not events:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(datetime.now(UTC))
        text = "".join(json.dumps(e, separators=(",", ":"), sort_keys=False) + "\n" for e in events)
        try:
            with path.open("a", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    handle.write(text)
                    handle.flush()
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError as exc:
            raise LineageError(f"{path}: cannot append OpenLineage events: {exc}") from None


class HttpTransport:
    def __init__(self, settings: LineageHttpConfig) -> None:
        self.settings = settings
        self.url = f"{settings.url}/{settings.endpoint.lstrip('/')}"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        name = self.settings.api_key_env
        if name:
            key = os.environ.get(name)
            if not key:
                raise LineageError(f"fabric.yaml: lineage.http.api_key_env names {name}, which is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def emit(self, events: Sequence[Mapping[str, Any]]) -> None:
        headers = self._headers()
        for event in events:
            request = urllib.request.Request(
                self.url, data=json.dumps(event).encode(), headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.settings.timeout_seconds) as reply:
                    reply.read()
            except urllib.error.HTTPError as exc:
                body = exc.read()[:300].decode(errors="replace")
                raise LineageError(f"POST {self.url}: HTTP {exc.code}: {body}") from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise LineageError(f"POST {self.url}: {reason}") from None


def transport_for(config: FabricConfig) -> Transport | None:
    """The configured transport, or None when lineage is disabled."""
    lineage = config.lineage
    if not lineage.enabled:
        return None
    if lineage.transport == "http":
        assert lineage.http is not None  # validated by LineageConfig
        return HttpTransport(lineage.http)
    return FileTransport(config.resolve(lineage.directory))


def read_events(directory: Path) -> Iterator[dict[str, Any]]:
    """Every event written by the file transport under `directory`, oldest file first."""
    for path in sorted(directory.glob("openlineage-*.jsonl")):
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)
