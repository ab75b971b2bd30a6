"""A server is ours before lce touches it: a postmaster.pid left by a crash, a reboot, a container restart or a
copied LCE_HOME (naming another home's live postmaster, a dead pid, garbage, any live process of any user) never
gets that process signalled, and never leaves the store stuck: the file is moved aside, said once, and the store's
own server starts.

On lce 0.2 (before this check), another home's pid file made `lce models` use *that* server and `lce db stop`
stop it; a live `sleep` of the server's user was killed by `lce db stop`; garbage, or a process of another user,
left every command failing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from lce.db import connection
from lce.db.server import SUPERUSER, EmbeddedServer
from tests.conftest import Cli


def _server_account() -> dict:
    """subprocess options that run a program as the embedded server's OS user (pgserver as root, else us)."""
    return dict(user="pgserver", group="pgserver", extra_groups=[]) if os.geteuid() == 0 else {}


def _answers(server: EmbeddedServer) -> bool:
    with psycopg.connect(host=str(server.socket_dir()), user=SUPERUSER, dbname="postgres", connect_timeout=10) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def _postmaster_of(data_dir: Path) -> int | None:
    """The pid in data_dir's postmaster.pid when /proc shows it working in data_dir (what a postmaster does)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        return pid if os.path.samefile(f"/proc/{pid}/cwd", data_dir) else None
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    """(ours, other): two homes with a data directory each; `other`'s server runs for the whole module, ours is
    stopped, and its real postmaster.pid (as it was while it ran) is kept to forge stale ones from."""
    root = tmp_path_factory.mktemp("pid-files")
    saved = {name: os.environ.pop(name, None) for name in ("LCE_DATABASE_URL", "LCE_DATABASE_READONLY_URL")}
    other, ours = EmbeddedServer(root / "other"), EmbeddedServer(root / "ours")
    other.start()
    ours.start()
    ours.real_pid_file = (ours.data_dir / "postmaster.pid").read_text().splitlines()
    ours.stop()
    yield ours, other
    connection.dispose_all()
    for server in (ours, other):
        server.stop()
    for name, value in saved.items():
        if value is not None:
            os.environ[name] = value


@pytest.fixture
def victims():
    """Processes started for a test, killed after it."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def _forged(ours: EmbeddedServer, pid: int) -> str:
    """Our own pid file as it was while our server ran, with another pid: status ready, our socket directory."""
    return "\n".join([str(pid), *ours.real_pid_file[1:]]) + "\n"


def _fault(kind: str, ours: EmbeddedServer, other: EmbeddedServer, victims: list) -> tuple[str, subprocess.Popen | None]:
    """(pid file content, the live process it names if any) for a kind of stale pid file."""
    if kind == "another home's live postmaster":  # as in a copy of that home: the socket's lock file too
        lock = other.data_dir / ".s.PGSQL.5432.lock"
        assert lock.exists()
        (ours.data_dir / lock.name).write_bytes(lock.read_bytes())
        return (other.data_dir / "postmaster.pid").read_text(), None
    if kind == "a dead pid":
        finished = subprocess.Popen(["true"])
        finished.wait()
        return _forged(ours, finished.pid), None
    if kind == "garbage":
        return "garbage\x00\n", None
    if kind == "a live sleep of the server's user":
        victims.append(subprocess.Popen(["sleep", "120"], cwd="/", **_server_account()))
        return _forged(ours, victims[-1].pid), victims[-1]
    if kind == "a live sleep of another user":
        if os.geteuid() != 0:
            pytest.skip("another user's process needs root here (the server runs as pgserver, the sleep as root)")
        victims.append(subprocess.Popen(["sleep", "120"], cwd="/"))  # root's, while the server's user is pgserver
        return _forged(ours, victims[-1].pid), victims[-1]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["another home's live postmaster", "a dead pid", "garbage",
                                  "a live sleep of the server's user", "a live sleep of another user"])
def test_a_stale_pid_file_is_set_aside_and_nothing_else_is_signalled(homes, victims, monkeypatch, kind):
    ours, other = homes
    monkeypatch.setenv("LCE_HOME", str(ours.home))
    content, victim = _fault(kind, ours, other, victims)
    (ours.data_dir / "postmaster.pid").write_text(content)
    connection.dispose_all()

    stopped = Cli()("db", "stop")  # before any start: there is nothing of ours to stop
    assert stopped.exit_code == 0 and "was not running" in stopped.stdout, stopped.output
    assert (ours.data_dir / "postmaster.pid").read_text() == content

    result = Cli()("models")
    assert result.exit_code == 0 and "No models yet" in result.stdout, result.output
    assert result.stderr.count("note:") == 1 and "postmaster.pid" in result.stderr, result.stderr
    aside = sorted(ours.data_dir.glob("postmaster.pid.stale-*"))
    assert len(aside) == 1 and aside[0].read_text() == content
    aside[0].unlink()
    locks = list(ours.data_dir.glob(".s.PGSQL.5432.lock.stale-*"))  # PostgreSQL would refuse to start beside it
    assert len(locks) == (1 if kind == "another home's live postmaster" else 0)
    for lock in locks:
        assert lock.name in result.stderr
        lock.unlink()
    ours_pid = _postmaster_of(ours.data_dir)
    assert ours_pid is not None, "our own server did not start"
    assert ours.socket_dir() is not None and not str(ours.socket_dir()).startswith(str(other.home))

    connection.dispose_all()
    stopped = Cli()("db", "stop")
    assert stopped.exit_code == 0 and "embedded server stopped" in stopped.stdout, stopped.output
    assert not (ours.data_dir / "postmaster.pid").exists()
    assert _answers(other)  # the other home's server kept running throughout
    if victim is not None:
        assert victim.poll() is None, f"{kind} was signalled"


def test_our_own_running_server_is_not_set_aside(homes, monkeypatch):
    ours, _ = homes
    monkeypatch.setenv("LCE_HOME", str(ours.home))
    connection.dispose_all()
    assert Cli()("models").exit_code == 0
    pid = _postmaster_of(ours.data_dir)
    connection.dispose_all()
    again = Cli()("models")
    assert again.exit_code == 0 and "note:" not in again.stderr, again.output
    assert _postmaster_of(ours.data_dir) == pid and not list(ours.data_dir.glob("postmaster.pid.stale-*"))
    connection.dispose_all()
    assert "embedded server stopped" in Cli()("db", "stop").stdout


def test_where_proc_cwd_cannot_be_read_the_command_lines_data_directory_decides(homes, monkeypatch):
    """Root without CAP_SYS_PTRACE (a container's default) cannot read another user's /proc/PID/cwd: then the
    postmaster's -D decides, for a process of the server's user."""
    from lce.db import pidfile
    from lce.db.server import _server_uid

    ours, other = homes
    real_samefile = os.path.samefile

    def unreadable_cwd(first, second):
        if str(first).startswith("/proc/") and str(first).endswith("/cwd"):
            raise PermissionError(13, "Permission denied", str(first))
        return real_samefile(first, second)

    monkeypatch.setattr(pidfile.os.path, "samefile", unreadable_cwd)
    assert pidfile.PidFile.read(other.data_dir, _server_uid()).ours  # its own data directory, by -D
    (ours.data_dir / "postmaster.pid").write_text((other.data_dir / "postmaster.pid").read_text())
    try:
        found = pidfile.PidFile.read(ours.data_dir, _server_uid())
        assert not found.ours and "another data directory" in found.reason
    finally:
        (ours.data_dir / "postmaster.pid").unlink()
