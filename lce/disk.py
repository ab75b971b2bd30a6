"""A full disk said as one message (which file system, how much is free, what to free), the free space a write
will find, and files that appear whole or not at all.

    write_atomically(path, payload)              # temporary name beside it, fsync, rename; nothing left on failure
    if no_space(error): raise LceError(full_message(error, "The decode cache"))
    free_bytes(lce_home())                       # bytes this user may still write there

A write that fails half-way on a full file system (ENOSPC) would otherwise leave a truncated or empty file that a
later command takes for a finished one (a 0-byte pending run, a cache file cut short).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

# os.link is refused by a few file systems (FAT, some network mounts): rename then, after a check that the name is
# free.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}


def no_space(error: BaseException) -> bool:
    """Whether `error` is a file system that is full (ENOSPC) or out of quota (EDQUOT)."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def write_atomically(path: Path, data: bytes, mode: int = 0o600, clobber: bool = True) -> None:
    """Make `path` hold `data`, whole or not at all: written under a temporary name in its folder (a dot file that
    no glob of finished files matches), fsync'd, then renamed into place (`clobber`) or linked there (else
    FileExistsError when `path` exists); on any failure, ENOSPC included, the temporary file is removed."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view):]
            os.fsync(descriptor)  # on a file system that allocates late, ENOSPC comes here rather than at write
        finally:
            os.close(descriptor)
        if clobber:
            os.replace(temporary, path)
        else:
            _link(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_folder(path.parent)


def _link(temporary: Path, path: Path) -> None:
    try:
        os.link(temporary, path)
    except OSError as error:
        if error.errno not in _NO_LINKS:
            raise
        if path.exists():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path)) from None
        os.rename(temporary, path)
        return
    os.unlink(temporary)


def _sync_folder(folder: Path) -> None:
    """The rename itself made durable (a crash right after keeps the file)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems cannot sync a folder; the file's own data is synced
    finally:
        os.close(descriptor)


def existing(path: Path) -> Path:
    """`path`, or its nearest folder that exists (where a file system can be asked about it)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Bytes this user may still write on the file system of `path` (its nearest existing folder)."""
    found = os.statvfs(existing(path))
    return found.f_bavail * found.f_frsize


def mount_point(path: Path) -> Path:
    """The folder where the file system holding `path` is mounted."""
    path = existing(path).resolve()
    device = path.stat().st_dev
    while path != path.parent and path.parent.stat().st_dev == device:
        path = path.parent
    return path


def file_system(path: Path) -> str:
    """'the file system of PATH, mounted at M, N free', for messages."""
    return f"the file system of {path}{mounted(path)}"


def mounted(path: Path) -> str:
    """', mounted at M, N free' of the file system holding `path` (nothing when it cannot be asked)."""
    try:
        return f", mounted at {mount_point(path)}, {size(free_bytes(path))} free"
    except OSError:
        return ""


def full_message(error: OSError | Path | str, what: str, kept: str = "") -> str:
    """One paragraph for a write refused for lack of space: `what` ("The decode cache", ...) could not be
    written, on which file system, what is left of it (`kept`, a sentence), and what to free. `error`: the OSError
    (its file named), or the path."""
    path = Path(error.filename) if isinstance(error, OSError) and error.filename else \
        None if isinstance(error, OSError) else Path(error)
    where = file_system(path) if path is not None else "its file system"
    return (f"{what} could not be written: no space left on {where}.{f' {kept}' if kept else ''} Free space there "
            "(`du -sh` of its folders shows what takes it; lce's decode caches under $LCE_HOME/cache may go, they "
            "are rebuilt when needed), then run the same command again.")


def size(count: float) -> str:
    """A byte count in binary units: '12.3 MiB'."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} B"
