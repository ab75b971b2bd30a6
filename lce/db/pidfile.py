"""Whose is a data directory's postmaster.pid? lce signals, or connects through, only a postmaster of its own.

    found = PidFile.read(data_dir, server_uid)   # None: there is no pid file
    found.ours                                   # a live postgres of this data directory, run by the server's uid
    found.reason                                 # else why not: "it names process 42 (sleep), which is not PostgreSQL"
    moved = found.set_aside()                    # postmaster.pid.stale-20261206-182501: the server may start

A pid file outlives its server: after a reboot or a container restart the pid in it may be nobody's, another
home's postmaster (a copied LCE_HOME, or the same pid given to another server), or any process of any user.
PostgreSQL trusts a pid it may signal: it refuses to start beside it, and `pg_ctl stop` signals it. So a pid is
ours only when /proc says so: a live process of the server's OS user whose program is `postgres` and whose
working directory (a postmaster's is its data directory) is this one; when that directory cannot be read (root
without CAP_SYS_PTRACE, a process of another user), the `-D` of its command line decides for a process of the
server's user, and a process of another user is never ours. Without /proc (macOS) a live pid counts as ours, as
before. A pid file that is not a regular file (a FIFO would wait for a writer, a link to /dev/zero never end, a
folder) is not read, and is not ours.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

NAME = "postmaster.pid"
SOCKET_LOCK = ".s.PGSQL.5432.lock"  # the socket's lock file, in the data directory when that is the socket's
POSTGRES_PROGRAMS = ("postgres", "postmaster")
_PROC = Path("/proc")
MAX_BYTES = 4096  # PostgreSQL's pid file is eight short lines; more is not one


@dataclass(frozen=True)
class PidFile:
    path: Path
    pid: int | None  # None: the first line is not a process id
    socket_dir: Path | None  # the socket directory it names (line 5)
    status: str  # "ready", "starting", "stopping", or "" (line 8)
    reason: str | None  # None when ours; else why not, as a clause ("it names process 12, which is not running")

    @property
    def ours(self) -> bool:
        return self.reason is None

    @classmethod
    def read(cls, data_dir: Path, server_uid: int, name: str = NAME) -> PidFile | None:
        """The pid file `name` in `data_dir` (or its socket lock file), judged; None when there is none or it cannot
        be read."""
        path = data_dir / name
        try:
            content = _read_small(path)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            return None
        if content is None:
            return cls(path, None, None, "", "it is not a regular file")
        lines = content.decode("utf-8", "replace").splitlines()
        # postmaster.pid: pid, data dir, start time, port, socket dir, listen address, shared memory, status.
        field = [line.strip() for line in lines] + [""] * 8
        pid = int(field[0]) if field[0].isascii() and field[0].isdigit() and 0 < int(field[0]) < 2**22 else None
        socket_dir = Path(field[4]) if field[4] else None
        if pid is None:
            shown = repr(field[0][:40]) if field[0] else "empty"
            return cls(path, None, socket_dir, field[7], f"its first line is {shown}, not a process id")
        return cls(path, pid, socket_dir, field[7], _not_ours(pid, data_dir, server_uid))

    def set_aside(self) -> Path:
        """Rename the file to <name>.stale-<time> (a new name, never over another) and return the new path."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in range(1000):
            target = self.path.with_name(f"{self.path.name}.stale-{stamp}{f'-{suffix}' if suffix else ''}")
            if not target.exists():
                os.rename(self.path, target)
                return target
        raise FileExistsError(target)


def _read_small(path: Path) -> bytes | None:
    """The first MAX_BYTES of a regular file; None for anything else (a FIFO would wait for a writer, a link to
    /dev/zero never end), opened without blocking and checked on the open descriptor."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        return os.read(descriptor, MAX_BYTES)
    finally:
        os.close(descriptor)


def wait_until_reaped(pid: int, seconds: float = 15.0) -> None:
    """A postmaster that was killed stays a zombie until its parent reaps it: wait for that (a moment), so that
    its children, which leave when it does, are gone too before a new server starts."""
    deadline = time.monotonic() + seconds
    while _state(pid) == "Z" and time.monotonic() < deadline:
        time.sleep(0.1)


def _not_ours(pid: int, data_dir: Path, server_uid: int) -> str | None:
    """None when `pid` is a live postmaster of `data_dir` run by `server_uid`; else what it is, for the message."""
    if not _PROC.is_dir():  # no /proc (macOS): whether it runs, and whose it is, is all there is to know
        return _by_signal(pid)
    state = _state(pid)
    if state is None or state in ("Z", "X"):
        return f"it names process {pid}, which is not running"
    try:
        uid = (_PROC / str(pid)).stat().st_uid
        argv = (_PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"it names process {pid}, which is not running"
    program = os.fsdecode(argv[0]) if argv and argv[0] else "?"
    name = os.path.basename(program) or program
    if uid != server_uid:
        return f"it names process {pid} ({name}) of another user (uid {uid})"
    if name not in POSTGRES_PROGRAMS:
        return f"it names process {pid} ({name[:60]}), which is not PostgreSQL"
    try:
        same = os.path.samefile(_PROC / str(pid) / "cwd", data_dir)  # a postmaster works in its data directory
    except PermissionError:  # root without CAP_SYS_PTRACE: its command line's -D instead
        same = _same_path(_data_dir_option(argv), data_dir)
    except OSError:
        same = False
    return None if same else f"it names process {pid}, the PostgreSQL server of another data directory"


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (R, S, Z, ...), or None when there is no such process."""
    try:
        return (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _by_signal(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"it names process {pid}, which is not running"
    except PermissionError:
        return f"it names process {pid} of another user"
    return None


def _data_dir_option(argv: list[bytes]) -> str | None:
    for position, argument in enumerate(argv):
        if argument == b"-D" and position + 1 < len(argv):
            return os.fsdecode(argv[position + 1])
        if argument.startswith(b"-D") and len(argument) > 2:
            return os.fsdecode(argument[2:])
    return None


def _same_path(given: str | None, data_dir: Path) -> bool:
    if not given or not os.path.isabs(given):  # lce passes absolute paths; anything else is not of lce's making
        return False
    try:
        return os.path.samefile(given, data_dir)
    except OSError:
        return False
