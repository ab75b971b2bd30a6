"""`lce db status`: where the database is, whether it answers, its schema revision and what it holds."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text

from lce.config import external_database_url, lce_home
from lce.db import migrate
from lce.db.connection import connect, masked, normalise_url
from lce.db.server import EmbeddedServer


@dataclass
class DatabaseStatus:
    url: str  # password masked
    embedded: bool
    running: bool
    data_dir: str | None = None
    server_version: str | None = None
    revision: str | None = None
    head: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


TABLES = ("model", "run", "unit", "unit_concept", "probe", "concept", "embedding")


def database_status() -> DatabaseStatus:
    """Describe the configured database; the embedded server is inspected, not started."""
    external = external_database_url()
    if external:
        status = DatabaseStatus(url=masked(normalise_url(external)), embedded=False, running=True)
    else:
        server = EmbeddedServer(lce_home())
        status = DatabaseStatus(url="", embedded=True, running=server.is_running(), data_dir=str(server.data_dir))
        if not status.running:
            return status
    engine = connect(upgrade=False)
    status.url = masked(engine.url.render_as_string(hide_password=False))
    status.head = migrate.head()
    status.revision = migrate.current(engine)
    with engine.connect() as conn:
        status.server_version = conn.execute(text("SHOW server_version")).scalar()
        if status.revision is not None:
            for table in TABLES:
                status.counts[table] = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
    return status
