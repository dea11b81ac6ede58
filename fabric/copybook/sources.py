"""Finding and opening data files: plain files are memory-mapped, compressed ones inflated.

A data argument may name a file, a directory (all its non-hidden files, sorted), a glob
pattern, or a list of those; each file gets a File_Id in that order. `.gz`, `.bz2` and
`.xz` files are decompressed into memory.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import lzma
import mmap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fabric.copybook.errors import CopybookError

DataSource = str | Path | Sequence[str | Path]
_DECOMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    ".gz": gzip.decompress,
    ".bz2": bz2.decompress,
    ".xz": lzma.decompress,
}


def data_files(data: DataSource) -> list[Path]:
    """The files `data` names, in File_Id order."""
    if not isinstance(data, str | Path):
        return [f for item in data for f in data_files(item)]
    path = Path(data)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if path.is_file():
        return [path]
    found = sorted(Path(p) for p in glob.glob(str(data)) if Path(p).is_file())
    if not found:
        raise CopybookError(f"data file not found: {data}")
    return found


class DataBuffer:
    """A data file's bytes: memory-mapped, or inflated in memory when compressed.

    `release_before(offset)` tells the kernel that mapped pages before `offset` are no
    longer needed, so reading a large file keeps a bounded resident set.
    """

    def __init__(self, view: memoryview, mapped: mmap.mmap | None = None) -> None:
        self.view = view
        self._mapped = mapped
        self._released = 0

    def release_before(self, offset: int) -> None:
        if self._mapped is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        end = offset - offset % mmap.PAGESIZE
        if end > self._released:
            self._mapped.madvise(mmap.MADV_DONTNEED, self._released, end - self._released)
            self._released = end


@contextmanager
def open_data(path: Path) -> Iterator[DataBuffer]:
    """The file's bytes, valid inside the `with` block."""
    decompress = _DECOMPRESSORS.get(path.suffix.lower())
    if decompress is not None:
        yield DataBuffer(memoryview(decompress(path.read_bytes())))
        return
    if path.stat().st_size == 0:
        yield DataBuffer(memoryview(b""))
        return
    with path.open("rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    view = memoryview(mapped)
    try:
        yield DataBuffer(view, mapped)
    finally:
        view.release()
        # A view may still live in an unfinished generator (the map then closes when it is
        # collected); no module globals here, as this may run at interpreter shutdown.
        try:  # noqa: SIM105
            mapped.close()
        except BufferError:
            pass
