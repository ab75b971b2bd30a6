"""One dissection of a run at a time per database: a session advisory lock on each run's identity.

    with dissection_lock(engine, [RunIdentity("r18", "layer4", "synth", "dissect", 0.005, 7, "dissected")],
                         on_wait=print, retry_s=60):
        ...  # check what is stored, dissect what is not, write it

Two processes that ingest the same model, layer and settings at the same moment would both dissect it; the
second writer would then find the run stored with the same content ("unchanged"), minutes of work wasted, or,
with another device's settings, refuse it. Holding the identity's lock from the check of what is stored to the
end of the write makes the second wait for the first and then find the run stored ("skipped"). The lock is the
session's: a process that dies (even SIGKILL) drops its connection, and the server releases the lock with it.
Taking the lock is retried as a write is (lce.db.outage.retrying): a server restarting as a command starts is
waited for.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from lce.db.outage import retrying
from lce.records import RunIdentity

_DISSECTION_LOCK = 7_425_003  # advisory lock space of run identities; runs.py uses 7_425_002, migrate.py 7_425_001


def _key(identity: RunIdentity) -> str:
    """The lock's key: the identity of a dissected run, by names (its source is always 'dissected')."""
    return json.dumps([identity.model, identity.layer, identity.probe, identity.variant, identity.quantile,
                       identity.seg_size])


@contextmanager
def dissection_lock(engine: Engine, identities: list[RunIdentity], on_wait: Callable[[str], None] | None = None,
                    retry_s: float = 0.0) -> Iterator[None]:
    """Hold every identity's lock (sorted, so that two holders of overlapping sets never deadlock) for the
    block. When another session holds one, `on_wait` hears so once and the call waits for it. A connection lost
    while the locks are taken is retried for `retry_s` seconds on a new one (outage.DatabaseLost after that).
    Losing the lock's connection later (the embedded server restarted by a write's retry) only ends the lock
    early: the write's own transaction and the unique key of `run` still keep runs single. No identities: nothing
    is held."""
    if not identities:
        yield
        return
    keys = {_key(identity): identity for identity in identities}
    waiting_said = []

    def take(engine: Engine, retried: bool):
        connection = engine.connect()
        try:
            for key, identity in sorted(keys.items()):
                taken = connection.execute(text("SELECT pg_try_advisory_lock(:space, hashtext(:key))"),
                                           {"space": _DISSECTION_LOCK, "key": key}).scalar()
                if not taken:
                    if on_wait and not waiting_said:
                        on_wait(f"another process is dissecting {identity.model} {identity.layer} on probe "
                                f"{identity.probe} in this database; waiting for it to finish (its run is then "
                                "stored, and this one skipped).")
                        waiting_said.append(True)
                    connection.execute(text("SELECT pg_advisory_lock(:space, hashtext(:key))"),
                                       {"space": _DISSECTION_LOCK, "key": key})
            connection.commit()  # the locks are the session's; no transaction stays open while the model dissects
        except BaseException:
            # A session that took some of the locks and failed on the rest is closed, not pooled: the server
            # releases what it held.
            connection.invalidate()
            connection.close()
            raise
        return connection

    connection = retrying(take, engine, retry_s)
    try:
        yield
    finally:
        try:
            connection.execute(text("SELECT pg_advisory_unlock_all()"))
            connection.commit()
        except DBAPIError:
            pass  # the connection is gone, and the server released its locks with it
        finally:
            connection.close()
