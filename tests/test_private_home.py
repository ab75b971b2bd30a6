"""LCE_HOME is its OS user's alone: after commands on a fresh home every folder is 0700 and every file 0600 (the
exceptions: as root the home's o+x, which the server's account needs on the way to its data; the server's socket,
in its 0700 folder). Another local user who points LCE_HOME at someone's store gets one message, not a traceback.

On lce 0.2, `$LCE_HOME/cache` was 0755 and its files, `probes/*.json` with the probe's path among them, 0644;
`server.lock` 0644; and another user's `lce models` ended in a PermissionError traceback.
"""

from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from lce.db import connection
from tests.conftest import Cli
from tests.test_security import own_server  # noqa: F401  (the fixture)


def _modes(home: Path) -> dict[str, str]:
    """Every path under `home` (itself included) that is not as private as it should be: {path: mode}."""
    wider = {}
    for path in [home, *home.rglob("*")]:
        info = path.lstat()
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISSOCK(info.st_mode):  # PostgreSQL's socket: 0777 by design, in a 0700 folder
            assert stat.S_IMODE(path.parent.lstat().st_mode) == 0o700, path
            continue
        if path == home and os.geteuid() == 0:
            wanted = 0o701  # search permission for the server's account (pgserver)
        else:
            wanted = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
        if mode != wanted:
            wider[str(path.relative_to(home.parent))] = oct(mode)
    return wider


def test_every_folder_and_file_under_a_fresh_home_is_private(tmp_path, own_server):  # noqa: F811
    home = tmp_path / "home"
    server = own_server(home)
    (home / "cache").mkdir(parents=True, mode=0o755)  # as an older lce left it
    os.chmod(home / "cache", 0o755)
    os.chmod(home, 0o700)
    cli = Cli()
    assert cli("probe", "synth", tmp_path / "probe", "--images", "8", "--size", "32", "--seed", "1").exit_code == 0
    added = cli("probe", "add", "synth", tmp_path / "probe")
    assert added.exit_code == 0, added.output
    assert cli("models").exit_code == 0
    assert server.is_running()
    paths = {str(p.relative_to(home)) for p in home.rglob("*")}
    assert {"server.lock", "cache/probes", "postgres/PG_VERSION"} <= paths
    assert any(p.startswith("cache/probes/") and p.endswith(".json") for p in paths)
    assert _modes(home) == {}


def test_the_decode_cache_is_private_whatever_the_umask(tmp_path):
    from lce.probe.broden import Broden
    from lce.probe.cache import DecodeCache
    from tests.test_probe_broden import write_tiny

    write_tiny(tmp_path / "tiny")
    before = os.umask(0o000)  # the widest: every file lce creates without a mode would be 0666
    try:
        DecodeCache.build(Broden.open(tmp_path / "tiny"), tmp_path / "home" / "cache")
    finally:
        os.umask(before)
    assert {path: mode for path, mode in _modes(tmp_path / "home").items() if path != "home"} == {}


@contextmanager
def _as_another_user(home: Path):
    """Run the block as another local user who can see `home` but not enter it: `nobody` (euid and egid only,
    so that this process can come back) as root; else the home made unwritable to us."""
    if os.geteuid() != 0:
        os.chmod(home / "server.lock", 0o400)
        os.chmod(home, 0o500)
        try:
            yield
        finally:
            os.chmod(home, 0o700)
        return
    import pwd

    nobody = pwd.getpwnam("nobody")
    import rich.markup  # noqa: F401  (imported now: nobody cannot read root's Python installation)

    os.setegid(nobody.pw_gid)
    os.seteuid(nobody.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.mark.parametrize("home_mode", [0o700, 0o755], ids=["home-0700", "home-0755"])
def test_another_users_home_is_one_message(monkeypatch, home_mode):
    base = Path(tempfile.mkdtemp(prefix="lce-someone-"))  # not under pytest's 0700 folder: others may enter it
    try:
        os.chmod(base, 0o711)
        home = base / "home"
        home.mkdir()
        os.chmod(home, home_mode)
        (home / "server.lock").write_text("")
        os.chmod(home / "server.lock", 0o644)  # as lce 0.2 left it
        monkeypatch.setenv("LCE_HOME", str(home))
        monkeypatch.delenv("LCE_DATABASE_URL", raising=False)
        monkeypatch.delenv("LCE_DATABASE_READONLY_URL", raising=False)
        connection.dispose_all()
        cli = Cli()
        with _as_another_user(home):
            result = cli("models")
        assert result.exit_code == 1, result.output
        assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output  # one message
        assert f"{home / 'server.lock'}" in result.stderr and "another user's store" in result.stderr, result.stderr
        assert sorted(p.name for p in home.iterdir()) == ["server.lock"]  # nothing made there
    finally:
        connection.dispose_all()
        import shutil

        shutil.rmtree(base, ignore_errors=True)
