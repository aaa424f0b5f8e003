"""Durable small writes, shared by every part: JSON read and written atomically (temp file, fsync, rename, fsync of
the folder), and storage errors worded by cause (a full disk says so; anything else gives its own reason). Standard
library only: importing it costs nothing."""

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: str | os.PathLike) -> dict | None:
    """The JSON object in `path`, or None when the file does not exist."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def write_json(path: str | os.PathLike, obj) -> None:
    """Write JSON durably and atomically (see `write_atomic`)."""
    write_atomic(path, lambda handle: handle.write((json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()))


def write_atomic(path: str | os.PathLike, write) -> None:
    """`write(binary_handle)` into a temp file beside `path`, fsync, rename over `path`, fsync the folder: readers (and
    a rerun after a crash) see the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with storage_errors(path), open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    fsync(path.parent)


@contextmanager
def storage_errors(where: str | os.PathLike) -> Iterator[None]:
    """Writers that report a failed write as their own error (torch.save's zip writer: RuntimeError; safetensors:
    SafetensorError) raise OSError instead, naming `where`: ENOSPC when the reason says the disk is full (so the
    message says to free space), EIO otherwise (the reason, no advice about space)."""
    from safetensors import SafetensorError

    try:
        yield
    except (RuntimeError, SafetensorError) as error:
        reason = str(error).splitlines()[0][:160]
        full = any(mark in reason for mark in FULL_DISK_MARKS)
        advice = "; is the disk full?" if full else ""
        raise OSError(errno.ENOSPC if full else errno.EIO, f"could not write {where} ({reason}){advice}") from error


# a failed write that these reasons name is a full disk (or a file-size limit); torch's zip writer only says that its
# stream stopped ("file write failed", "unexpected pos" from inline_container.cc)
FULL_DISK_MARKS = (
    "No space left",
    "StorageFull",
    "code: 28",
    "code: 27",
    "Disk quota",
    "File too large",
    "file write failed",
    "unexpected pos",
)


__all__ = ["FULL_DISK_MARKS", "fsync", "read_json", "storage_errors", "write_atomic", "write_json"]
