"""The first connections of an ingest (the probe check, the run lock) wait for a restarting embedded server as the
write does, within LCE_WRITE_RETRY_S; a server that never comes back is the usual one message (issue 23, item 9)."""

import threading
import time

import pytest
from sqlalchemy import text

from lce.db import connection
from lce.db.server import EmbeddedServer
from lce.ingest import run as ingest_module
from lce.errors import LceError
from tests.conftest import Cli
from tests.test_write_outage import INGEST, add_probe


@pytest.fixture
def server(database, tmp_path, monkeypatch):
    """An embedded server of this test's own (the session's shared one must not be stopped), as the default."""
    home = tmp_path / "home"
    monkeypatch.setenv("LCE_HOME", str(home))
    monkeypatch.delenv("LCE_DATABASE_URL")
    monkeypatch.delenv("LCE_DATABASE_READONLY_URL", raising=False)
    connection.dispose_all()
    server = EmbeddedServer(home)
    server.start()
    yield server
    connection.dispose_all()
    server.stop()


def restart_at(stage: str, server: EmbeddedServer, monkeypatch, back_after_s: float | None):
    """Stop the server at `stage` of the ingest's start: before the probe check's query ("probe check"), or
    before the run lock is taken ("run lock"); start it again `back_after_s` later in a thread (as another command
    would), or never (its start then fails, as a broken server's would)."""
    real_open, real_lock = ingest_module.open_registered_probe, ingest_module.dissection_lock
    happened = {}

    def stop():
        if happened:
            return
        server.stop()  # the pool's connections die with it
        happened["stopped"] = time.perf_counter()
        if back_after_s is None:
            def broken(self):
                raise LceError(f"The embedded PostgreSQL server in {self.data_dir}: pg_ctl failed: could not start "
                               "server.")
            monkeypatch.setattr(EmbeddedServer, "start", broken)
        else:  # joined by the test: a start after its end would leave a server that nobody stops
            happened["restart"] = threading.Timer(back_after_s, server.start)
            happened["restart"].start()

    def probe_check(*args, **kwargs):
        stop()
        return real_open(*args, **kwargs)

    def run_lock(*args, **kwargs):
        stop()
        return real_lock(*args, **kwargs)

    if stage == "probe check":
        monkeypatch.setattr(ingest_module, "open_registered_probe", probe_check)
    else:
        monkeypatch.setattr(ingest_module, "dissection_lock", run_lock)
    return happened


@pytest.mark.parametrize("stage", ["probe check", "run lock"])
def test_a_server_restarted_as_the_ingest_starts_is_waited_for(server, tmp_path, monkeypatch, stage):
    cli = Cli()
    add_probe(cli, tmp_path)
    monkeypatch.setenv("LCE_WRITE_RETRY_S", "60")
    happened = restart_at(stage, server, monkeypatch, back_after_s=1.0)
    result = cli(*INGEST, "--replicates", "0")
    happened["restart"].join()
    assert result.exit_code == 0, result.output
    assert "victim layer4: created run" in result.stdout and "Traceback" not in result.output
    assert server.is_running()
    with connection.connect().connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM unit")).scalar() == 512
    assert not (server.home / "pending").exists()


@pytest.mark.parametrize("stage", ["probe check", "run lock"])
def test_a_server_that_never_comes_back_at_the_start_is_one_message_within_the_window(server, tmp_path,
                                                                                      monkeypatch, stage):
    cli = Cli()
    add_probe(cli, tmp_path)
    monkeypatch.setenv("LCE_WRITE_RETRY_S", "2")
    happened = restart_at(stage, server, monkeypatch, back_after_s=None)
    dissected = []
    monkeypatch.setattr(ingest_module, "dissect", lambda *args, **kwargs: dissected.append(1))
    result = cli(*INGEST, "--replicates", "0")
    waited = time.perf_counter() - happened["stopped"]
    assert result.exit_code == 1 and "Traceback" not in result.output and not dissected
    message = result.stderr.replace("\n", "")
    assert message.count("error:") == 1
    assert "went away and did not come back within 2 s: The embedded PostgreSQL server in" in message
    assert "nothing was written; run the same command again" in message
    assert waited < 2 + 3, waited  # within the window (opened before the stop), and a last try at most
    assert not (server.home / "pending").exists()
