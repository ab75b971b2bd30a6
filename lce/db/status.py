"""`lce db status`: where the database is, whether it answers, its schema revision and what it holds."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text

from lce.config import external_database_url, external_readonly_url, lce_home
from lce.db import migrate, roles
from lce.db.connection import connect, masked, normalise_url
from lce.db.pending import check_pending_dir, pending_files
from lce.db.server import EmbeddedServer
from lce.errors import LceError


@dataclass
class DatabaseStatus:
    url: str  # password masked
    embedded: bool
    running: bool
    reader_url: str | None = None  # the read-only login (lce sql), password masked; None when none is set
    data_dir: str | None = None
    server_version: str | None = None
    revision: str | None = None
    head: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    # runs saved for `lce ingest --resume` when the database was away or full ($LCE_HOME/pending, $LCE_PENDING_DIR)
    pending: list[str] = field(default_factory=list)
    pending_dir_problem: str | None = None  # why $LCE_PENDING_DIR could not take runs (an ingest refuses to start)


# unit_tally rather than the view unit_concept: counting pairs would unpack every array of the store.
TABLES = ("model", "run", "unit", "unit_tally", "probe", "concept", "embedding")


def database_status() -> DatabaseStatus:
    """Describe the configured database; the embedded server is inspected, not started."""
    external = external_database_url()
    pending = [str(path) for path in pending_files()]  # $LCE_HOME/pending and $LCE_PENDING_DIR
    try:
        check_pending_dir()
        pending_dir_problem = None
    except LceError as error:
        pending_dir_problem = f"{str(error).removesuffix(' Nothing was dissected.')} Until then an ingest refuses to " \
            "start."
    if external:
        readonly = external_readonly_url()
        status = DatabaseStatus(url=masked(normalise_url(external)), embedded=False, running=True, pending=pending,
                                pending_dir_problem=pending_dir_problem,
                                reader_url=masked(normalise_url(readonly, "LCE_DATABASE_READONLY_URL"))
                                if readonly else None)
    else:
        server = EmbeddedServer(lce_home())
        status = DatabaseStatus(url="", embedded=True, running=server.is_running(), data_dir=str(server.data_dir),
                                pending=pending, pending_dir_problem=pending_dir_problem)
        if not status.running:
            return status
    engine = connect(upgrade=False)
    status.url = masked(engine.url.render_as_string(hide_password=False))
    if status.embedded:
        status.reader_url = masked(EmbeddedServer(lce_home()).url(roles.READER))
    status.head = migrate.head()
    status.revision = migrate.current(engine)
    with engine.connect() as conn:
        status.server_version = conn.execute(text("SHOW server_version")).scalar()
        if status.revision is not None:
            for table in TABLES:
                status.counts[table] = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
    return status
