"""A database that went away mid-command: recognising it, naming it, and retrying a write until it is back; and a
database whose disk is full, which is not retried.

    if connection_lost(error): raise DatabaseLost(reason(error))
    written = retrying(lambda engine, retried: write(engine), engine, window_s=60)   # reconnects between tries
    probe = retrying(lambda engine, retried: check(engine), None, window_s=60)      # a command's first connection

A lost connection is a server stopped (`lce db stop`), crashed or restarted, or a network gone: the driver's
OperationalError or InterfaceError. A transaction that saw one was rolled back by the server (or never reached
it), so what it was writing is not stored, except where the commit itself went through and only its
acknowledgement was lost; a retried write recognises that case by its content (runs.py).

A full disk (PostgreSQL's disk_full, SQLSTATE 53100: "could not extend file ...: No space left on device") is
also an OperationalError, but the connection is fine and retrying would only fail again: it is DatabaseFull at
once, naming the file system to free.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from lce.config import external_database_url, lce_home
from lce.db import connection
from lce.db.connection import DatabaseUnreachable, masked
from lce.disk import file_system
from lce.errors import LceError, first_line

T = TypeVar("T")

DISK_FULL = "53100"  # PostgreSQL's SQLSTATE disk_full (psycopg.errors.DiskFull)
_FIRST_PAUSE_S = 0.25  # the first retry comes at once (a pool's stale connection); then the pause doubles
_LONGEST_PAUSE_S = 5.0


class DatabaseLost(LceError):
    """The database went away, and did not come back within the retry window (if any). `str()` tells the user to
    run the command again; `gone()` is only what happened, for callers that say what else to do."""

    def __init__(self, reason: str, window_s: float = 0.0):
        self.reason, self.window_s = reason, window_s
        super().__init__(f"{self.gone()} {_AGAIN}")

    def gone(self) -> str:
        within = f" and did not come back within {self.window_s:g} s" if self.window_s > 0 else ""
        return f"The database ({database_description()}) went away{within}: {self.reason}."


_AGAIN = ("Its transaction was rolled back, so nothing was written; run the same command again once the database "
          "is back (`lce db status` says whether it is).")


class DatabaseFull(LceError):
    """The database's disk is full: the write was refused and rolled back. `str()` says which file system and what
    to free; `full()` is only what happened, for callers that say what else to do."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"{self.full()} Its transaction was rolled back, so nothing was written; {self.remedy()}, "
                         "then run the same command again.")

    def full(self) -> str:
        return f"The database's disk is full ({database_disk()}): {self.reason}."

    @staticmethod
    def remedy() -> str:
        """What to free: "free space on ...", or ask the external server's administrator."""
        if external_database_url():
            return "ask the database server's administrator for space (or remove what it no longer needs)"
        return ("free space on that file system (`du -sh` of its folders shows what takes it; lce's decode caches "
                "under $LCE_HOME/cache may go, they are rebuilt when needed)")


def disk_full(error: BaseException) -> bool:
    """Whether `error` is PostgreSQL's disk_full (SQLSTATE 53100), wrapped by SQLAlchemy or not."""
    error = getattr(error, "orig", None) or error
    return isinstance(error, psycopg.errors.DiskFull) or getattr(error, "sqlstate", None) == DISK_FULL


def database_disk() -> str:
    """Which disk the database writes to, for messages: the embedded server's data directory's file system (with
    its free space), or the external server's."""
    if external_database_url():
        return f"the database server's disk, {database_description()}"
    return file_system(lce_home() / "postgres")


def connection_lost(error: BaseException) -> bool:
    """Whether `error` says the connection to the server was lost (rather than that the SQL or data was bad, or
    that the disk is full)."""
    if disk_full(error):
        return False
    if isinstance(error, (OperationalError, InterfaceError)):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))


def reason(error: BaseException) -> str:
    """The driver's first line, without SQLAlchemy's wrapping."""
    return first_line(getattr(error, "orig", None) or error)


def database_description() -> str:
    """Which database this process talks to, for messages (password hidden)."""
    external = external_database_url()
    return masked(external) if external else f"the embedded server in {lce_home() / 'postgres'}"


def lost_message(error: BaseException) -> str:
    """The message for a command whose connection was lost (the CLI's user_errors)."""
    return str(DatabaseLost(reason(error)))


def _restarting(error: LceError) -> bool:
    """Whether a first connection's LceError may be the embedded server restarting (an external server that does
    not answer the first time is more likely a wrong URL, said at once)."""
    return isinstance(error, DatabaseUnreachable) and not external_database_url()


def retrying(attempt: Callable[[Engine, bool], T], engine: Engine | None, window_s: float,
             sleep: Callable[[float], None] = time.sleep) -> T:
    """attempt(engine, retried) until it returns; a lost connection is retried for `window_s` seconds, each time
    on a fresh engine (`connect()` starts the embedded server again when it is not running). Raises DatabaseLost
    when the window closes, DatabaseFull at once for a full disk, any other error at once.

    `engine` None: a command's first connection, made by `connect()` inside the window, so that the embedded server
    being restarted (by another command, `lce db stop`) while the command starts is waited for as a write waits.
    Its other LceErrors (a URL that never worked, a home the server cannot use) are said at once, not retried."""
    deadline = time.monotonic() + window_s
    pause, retried = _FIRST_PAUSE_S, False
    while True:
        try:
            if retried:
                connection.dispose_all()
            if retried or engine is None:
                engine = connection.connect()
        except Exception as error:  # noqa: BLE001
            # connect() says "Cannot reach ..." (or "Could not start the embedded server") as an LceError; the
            # URL worked before, so that is the outage going on.
            if not (isinstance(error, LceError) and (retried or _restarting(error)) or connection_lost(error)):
                raise
            last, last_reason = error, str(error) if isinstance(error, LceError) else reason(error)
        else:
            try:
                return attempt(engine, retried)
            except Exception as error:  # noqa: BLE001 - sorted into lost connections and everything else
                if disk_full(error):
                    raise DatabaseFull(reason(error)) from error
                if not connection_lost(error):
                    raise
                last, last_reason = error, reason(error)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DatabaseLost(last_reason, window_s) from last
        sleep(0 if not retried else min(pause, remaining))
        if retried:
            pause = min(pause * 2, _LONGEST_PAUSE_S)
        retried = True
