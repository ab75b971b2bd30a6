"""Where a command may write: checked before anything is computed or stored, so that a bad --out fails first.

    out = check_output(Path("lce.csv"), "--out")           # a file to create or overwrite
    check_table_and_plot(Path("lce.csv"), Path("lce.png"))  # both, and not the same file
    report = check_output_dir(Path("report"), "--out")     # a directory to create or write into

A file path may name a regular file (overwritten) or nothing yet; a directory path a directory or nothing yet.
Refused, with the option and the path in the message: a directory where a file is wanted (and a file where a
directory is), anything else that exists and is not a regular file (a FIFO, a device), a symbolic link (even a
dangling one: lce does not write through links, whose targets the user may not have meant), and a path one of whose
existing ancestors is not a directory. Missing parent directories are fine (the writer creates them); an existing
one must be writable. Symbolic links among the ancestors (/tmp -> /private/tmp) are followed.
"""

from __future__ import annotations

import os
from pathlib import Path

from lce.errors import LceError


def check_output(path: Path, option: str) -> Path:
    """The absolute path of a file that `option` may write (created or overwritten), or LceError saying why not."""
    path = Path(path)
    _refuse_link(path, option)
    if path.is_dir():
        raise LceError(f"{option} {path} is a directory; give the path of a file to write.")
    if path.exists() and not path.is_file():
        raise LceError(f"{option} {path} exists and is not a regular file; give the path of a file to write.")
    return _checked_parent(path, option)


def check_table_and_plot(out: Path | None, plot: Path | None) -> None:
    """--out and --plot of one command (lce embed, lce correlate): each checked as check_output() does, and not the
    same file."""
    outputs = [check_output(path, option) for path, option in ((out, "--out"), (plot, "--plot")) if path is not None]
    if len(set(outputs)) < len(outputs):
        raise LceError(f"--out and --plot name the same file ({out}); give each its own.")


def check_output_dir(path: Path, option: str) -> Path:
    """The absolute path of a directory that `option` may write into (created when absent), or LceError."""
    path = Path(path)
    _refuse_link(path, option)
    if path.exists() and not path.is_dir():
        raise LceError(f"{option} {path} is a file, not a directory; give a directory (it is created when absent).")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise LceError(f"{option} {path}: the directory is not writable.")
    return _checked_parent(path, option)


def _refuse_link(path: Path, option: str) -> None:
    if path.is_symlink():
        target = os.readlink(path)
        state = "" if path.exists() else ", which does not exist"
        raise LceError(f"{option} {path} is a symbolic link (to {target}{state}); lce does not write through links: "
                       "give the path it should write itself.")


def _checked_parent(path: Path, option: str) -> Path:
    parent = path.absolute().parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise LceError(f"{option} {path}: {ancestor} is a file, not a directory, so nothing can be written "
                               "under it.")
            if ancestor == parent and not os.access(ancestor, os.W_OK | os.X_OK):
                raise LceError(f"{option} {path}: the directory {ancestor} is not writable.")
            break
    return parent.resolve() / path.name
