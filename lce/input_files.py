"""Files the user gives lce to read: regular files only, checked before they are opened, and read within limits.

    check_input(Path("run.runs.json.gz"), "--resume")           # LceError unless a regular file (links followed)
    text = read_text(Path("results.csv"), IMPORT_LIMITS)          # the text, or LceError naming the file and line
    text = read_text(Path("plan.csv"), PLAN_LIMITS, name="Plan plan.csv")

A device (/dev/zero never ends), a FIFO or a socket (opening one waits for a writer, or fails), a directory: each is
refused by a stat before anything opens the path; the file is then opened without blocking and checked again, so a
path swapped in between is refused too. A text file is read in blocks, counting bytes and lines as it goes, and
refused at the first block past a limit (the size, the longest line, the number of lines) or at a NUL byte: nothing
reads a whole file before knowing it is within bounds, and a file that grows while read stops at the limit too.
Lines end at `\\n`, `\\r\\n` or `\\r`, as csv and editors count them.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from lce.errors import LceError

MiB = 2**20
BLOCK = MiB  # bytes read at a time: the limits are checked between blocks
BINARY_PREFIX = 4096  # a NUL this early means a binary file rather than a damaged text file
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class TextLimits:
    """The most a text file may hold: bytes in all, bytes in one line, lines."""

    size: int
    line: int
    lines: int
    why: str  # what the limits are sized against, for the message


# The largest real inputs (the published results, lce/published.py): the LCE paper's Dissect CSV, 2.2 MB in
# 40,961 lines (20 models x 2,048 units), and a NetDissect tally.csv of 2,048 units, 575 kB with lines up to 1,671
# bytes. The limits leave 100x that (1,000 models of 2,048 units), and fit in memory once parsed; a cell stays
# capped at csv's 128 KiB.
IMPORT_LIMITS = TextLimits(size=256 * MiB, line=1 * MiB, lines=2_000_000,
                           why="100 times the LCE paper's 20 models x 2,048 units")
# A plan's row is a model's dissection (minutes to hours each); its longest cell is a checkpoint path (PATH_MAX is
# 4,096 bytes) or a list of layers.
PLAN_LIMITS = TextLimits(size=16 * MiB, line=64 * 2**10, lines=100_000,
                         why="a plan's row is a whole dissection")


def check_input(path: Path, option: str = "") -> os.stat_result:
    """The stat of `path` when it is a regular file (or a link to one) that this user may read; else one LceError
    naming `option` (e.g. '--resume') and the path. Nothing is opened."""
    return regular_file(path, f"{option} {path}" if option else f"{path}")


def regular_file(path: Path, named: str) -> os.stat_result:
    """check_input with the whole of the message's subject given (`named`: what names the file, path included)."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise LceError(f"{named} does not exist.") from None
    except OSError as error:  # a permission denied on the way, a name too long, a loop of links
        raise LceError(f"{named} cannot be read ({error.strerror}).") from None
    _refuse_unless_regular(status, named)
    if not os.access(path, os.R_OK):
        raise LceError(f"{named} cannot be read (permission denied).")
    return status


def read_text(path: Path, limits: TextLimits, name: str | None = None) -> str:
    """The UTF-8 text of a regular file within `limits` (a byte-order mark dropped); `name` opens each message
    (the path by default), which names the line at fault where there is one."""
    named = name or str(path)
    data = read_bytes(path, limits, named)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise LceError(f"{named} is not UTF-8 text (byte {error.start} cannot be decoded).") from None


def read_bytes(path: Path, limits: TextLimits, name: str | None = None) -> bytearray:
    """The bytes of a regular text file, read block by block and refused at the first limit passed or NUL byte."""
    named = name or str(path)
    status = regular_file(path, named)
    _check_size(status.st_size, limits, named)
    try:
        # O_NONBLOCK: should a FIFO have taken the file's place since the stat, opening it does not wait.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise LceError(f"{named} cannot be read ({error.strerror}).") from None
    with os.fdopen(descriptor, "rb", buffering=0) as file:
        _refuse_unless_regular(os.fstat(descriptor), named)
        os.set_blocking(descriptor, True)
        return _read_counted(file, limits, named)


def _read_counted(file, limits: TextLimits, named: str) -> bytearray:
    data = bytearray()
    lines = 0  # lines ended so far
    current = 0  # bytes of the line being read, so far
    after_cr = False  # the last block ended in \r: a \n that starts the next one ends no second line
    while True:
        block = file.read(BLOCK)
        if not block:
            return data
        _check_size(len(data) + len(block), limits, named)
        nul = block.find(b"\0")
        if nul >= 0:
            _refuse_nul(data, block, nul, named)
        pieces = _LINE_END.split(block[1:] if after_cr and block.startswith(b"\n") else block)
        for number, piece in enumerate(pieces):
            length = current + len(piece) if number == 0 else len(piece)
            if length > limits.line:
                raise LceError(f"{named}, line {lines + number + 1}: the line is longer than {_bytes(limits.line)}, "
                               f"the most lce reads in a line of this file ({limits.why}); the file is damaged, or "
                               "not the table it should be.")
        lines += len(pieces) - 1
        current = (current if len(pieces) == 1 else 0) + len(pieces[-1])
        if lines + (current > 0) > limits.lines:
            raise LceError(f"{named}, line {limits.lines + 1:,}: the file has more than {limits.lines:,} lines, the "
                           f"most lce reads in this file ({limits.why}); split it, or check that it is the table it "
                           "should be.")
        after_cr = block.endswith(b"\r")
        data += block


def _check_size(size: int, limits: TextLimits, named: str) -> None:
    if size > limits.size:
        raise LceError(f"{named} is larger than {_bytes(limits.size)}, the most lce reads in this file "
                       f"({limits.why}); split it, or check that it is the table it should be.")


def _bytes(size: int) -> str:
    return f"{size // MiB:,} MiB" if size % MiB == 0 else f"{size:,} bytes"


def _refuse_nul(data: bytearray, block: bytes, nul: int, named: str) -> None:
    position = len(data) + nul
    if position < BINARY_PREFIX:
        raise LceError(f"{named} is a binary file, not a CSV or JSON text file.")
    line = len(_LINE_END.findall(bytes(data) + block[:nul])) + 1  # the line as csv counts it (\n, \r\n, \r)
    raise LceError(f"{named}, line {line}: a NUL byte (byte {position:,} of the file); a CSV or JSON text file holds "
                   "none, so the file is damaged or not text.")


def _refuse_unless_regular(status: os.stat_result, named: str) -> None:
    mode = status.st_mode
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise LceError(f"{named} is a directory, not a file.")
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "not a regular file")
    raise LceError(f"{named} is {kind}, not a regular file; lce reads its input from regular files only (a device "
                   "or a pipe may never end, or wait for a writer).")
