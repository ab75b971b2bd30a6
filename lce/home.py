"""What lce keeps under LCE_HOME is its OS user's alone: folders 0700, files 0600, whatever the umask.

    cache_root = private_folder(lce_home() / "cache")   # made 0700 (missing parents too), or narrowed to 0700
    with open_private(cache_root / "key.lock") as lock: ...   # created 0600 (or narrowed), opened for writing
    make_private(staging)                                # a finished tree: folders 0700, files 0600

Other local users must not reach the store (docs/security.md): the probe paths in the decode
cache's pointers, the cache itself, pending runs. The exceptions: as root, LCE_HOME and the folders above it
get search permission (o+x) so that the embedded server's account reaches its data (lce/db/server.py), and the
report's cached unit strips keep the umask's mode because `lce report` hard-links them into the report, which
is meant to be shared (their folders are 0700 all the same).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def private_folder(path: Path) -> Path:
    """`path` as a folder: each missing component made 0700 (mkdir's mode alone is masked by the umask, and
    parents=True would make the parents 0755), an existing `path` of ours narrowed to 0700."""
    missing = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:  # another process made it first
            pass
    _narrow(path, FOLDER_MODE)
    return path


def open_private(path: Path, mode: str = "w"):
    """`path` opened for writing (a lock file, a small record), created 0600 or narrowed to it."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if "w" in mode else os.O_APPEND)
    descriptor = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(descriptor).st_mode) & 0o077 and os.fstat(descriptor).st_uid == os.geteuid():
            os.fchmod(descriptor, FILE_MODE)
        return os.fdopen(descriptor, mode)
    except BaseException:
        os.close(descriptor)
        raise


def make_private(path: Path) -> None:
    """A finished file or tree made private: folders 0700, files 0600 (links are left alone)."""
    if path.is_symlink():
        return
    if not path.is_dir():
        _narrow(path, FILE_MODE)
        return
    _narrow(path, FOLDER_MODE)
    for folder, folders, files in os.walk(path):
        for name in folders:
            if not os.path.islink(os.path.join(folder, name)):
                _narrow(Path(folder, name), FOLDER_MODE)
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                _narrow(Path(folder, name), FILE_MODE)


def _narrow(path: Path, mode: int) -> None:
    """chmod to `mode` when the path is ours and wider; a path of another user is left as it is (its owner's)."""
    try:
        info = path.lstat()
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != mode and not stat.S_ISLNK(info.st_mode):
            path.chmod(mode)
    except FileNotFoundError:
        pass
