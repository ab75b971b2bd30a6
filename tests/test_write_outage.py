"""A database that goes away: an ingest retries its write and keeps its dissection (retried, or saved for
`lce ingest --resume`); any other command says so in one message."""

import os
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import create_engine, text

from lce.db import connection, pending, runs
from lce.db import outage as outage_errors
from lce.db.server import EmbeddedServer
from lce.errors import LceError
from lce.ingest import resume as resume_module
from lce.ingest import run as ingest_module
from lce.records import ModelInfo, RunRecord, UnitRow
from tests.conftest import Cli

CLOSED = "postgresql+psycopg://lce@127.0.0.1:9/lce?connect_timeout=2"  # port 9 (discard): nothing listens
INGEST = ("ingest", "victim", "--probe", "synth", "--arch", "resnet18", "--random-init", "--seed", "3",
          "--batch-size", "8")


def add_probe(cli, tmp_path):
    out = tmp_path / "probe"
    assert cli("probe", "synth", out, "--images", "30", "--size", "64", "--seed", "2").exit_code == 0
    assert cli("probe", "add", "synth", out).exit_code == 0


def stored_rows(engine):
    """Every row of the stored runs, as a direct comparison of two stores (ids left out)."""
    with engine.connect() as conn:
        return {
            "run": conn.execute(text(
                "SELECT layer, variant, quantile, iou_threshold, seg_size, checkpoint_sha256, source, source_sha256,"
                " unit_count, settings FROM run ORDER BY layer")).all(),
            "unit": conn.execute(text(
                "SELECT u.unit, u.threshold, c.category, c.name, u.iou FROM unit u"
                " LEFT JOIN concept c ON c.id = u.concept_id ORDER BY u.unit")).all(),
            "unit_concept": conn.execute(text(
                "SELECT t.unit, c.category, c.name, t.intersection, t.activation, t.truth, t.iou FROM unit_concept t"
                " JOIN concept c ON c.id = t.concept_id ORDER BY t.unit, c.category, c.name")).all(),
            "unit_top_image": conn.execute(text(
                "SELECT unit, rank, image, activation FROM unit_top_image ORDER BY unit, rank")).all(),
        }


def lce_process(home, *args):
    """`lce ...` in another process (as a user's other terminal would be), on the embedded server in `home`."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("LCE_DATABASE_URL", "LCE_DATABASE_READONLY_URL")}
    subprocess.run([sys.executable, "-m", "lce", *args], env={**env, "LCE_HOME": str(home)}, check=True,
                   capture_output=True, timeout=120)


@pytest.fixture(params=["started by another process", "started by this process"])
def own_server(database, tmp_path, monkeypatch, request):
    """An embedded server of this test's own (the session's shared one must not be stopped), as the default,
    started by another process (as a user's earlier command would have) or by the ingest's own process."""
    home = tmp_path / "home"
    if request.param == "started by another process":
        lce_process(home, "probe", "list")
    monkeypatch.setenv("LCE_HOME", str(home))
    monkeypatch.delenv("LCE_DATABASE_URL")
    monkeypatch.delenv("LCE_DATABASE_READONLY_URL", raising=False)
    connection.dispose_all()
    server = EmbeddedServer(home)
    if request.param == "started by this process":
        server.start()
    assert server.is_running()
    yield server
    connection.dispose_all()
    server.stop()


def kill_postmaster(server):
    """A crash: SIGKILL, no shutdown; the pooled connections die with it."""
    pid = int((server.data_dir / "postmaster.pid").read_text().splitlines()[0])
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while server.is_running() and time.monotonic() < deadline:  # a zombie until PID 1 reaps it
        time.sleep(0.05)


@pytest.mark.parametrize("loss", ["SIGKILL", "lce db stop"])
def test_a_server_lost_at_the_write_is_started_again_and_gets_the_run_once(own_server, tmp_path, monkeypatch,
                                                                           loss):
    cli = Cli()
    add_probe(cli, tmp_path)
    monkeypatch.setenv("LCE_WRITE_RETRY_S", "60")
    real_write_runs = ingest_module.write_runs
    timings = {}

    def lost_then_write(*args, **kwargs):
        if loss == "SIGKILL":
            kill_postmaster(own_server)
        else:
            lce_process(own_server.home, "db", "stop")
        assert not own_server.is_running()
        started = time.perf_counter()
        try:
            return real_write_runs(*args, **kwargs)  # connect() starts the embedded server again
        finally:
            timings["write"] = time.perf_counter() - started

    monkeypatch.setattr(ingest_module, "write_runs", lost_then_write)
    result = cli(*INGEST)
    assert result.exit_code == 0, result.output
    assert "victim layer4: created run" in result.stdout and "Traceback" not in result.output
    assert own_server.is_running()
    engine = connection.connect()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM unit")).scalar() == 512
        assert conn.execute(text("SELECT count(*) FROM unit_top_image")).scalar() == 5120
    assert not (own_server.home / "pending").exists()
    print(f"write after {loss}, the server started again: {timings['write']:.2f} s")


def test_a_database_away_at_the_write_and_back_within_the_window_gets_the_run_once(cli, engine, database, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))
    add_probe(cli, tmp_path)
    monkeypatch.setenv("LCE_WRITE_RETRY_S", "30")
    real_write_runs = ingest_module.write_runs
    timings = {}

    def away_for_two_seconds(engine, records, **kwargs):
        monkeypatch.setenv("LCE_DATABASE_URL", CLOSED)
        back = threading.Timer(2.0, os.environ.__setitem__, ("LCE_DATABASE_URL", database))
        back.start()
        started = time.perf_counter()
        try:
            return real_write_runs(create_engine(CLOSED), records, **kwargs)
        finally:
            timings["write"] = time.perf_counter() - started
            back.join()

    monkeypatch.setattr(ingest_module, "write_runs", away_for_two_seconds)
    result = cli(*INGEST)
    assert result.exit_code == 0, result.output
    assert "victim layer4: created run" in result.stdout and "Traceback" not in result.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM unit")).scalar() == 512
    assert not (tmp_path / "home" / "pending").exists()
    print(f"write with the database away for 2 s: {timings['write']:.2f} s")


def test_a_database_away_past_the_window_saves_the_run_for_resume(cli, engine, database, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("LCE_HOME", str(home))
    add_probe(cli, tmp_path)
    monkeypatch.setenv("LCE_WRITE_RETRY_S", "1")
    real_write_runs = ingest_module.write_runs
    timings = {}

    def away(engine, records, **kwargs):
        monkeypatch.setenv("LCE_DATABASE_URL", CLOSED)  # every reconnection fails too
        started = time.perf_counter()
        try:
            return real_write_runs(create_engine(CLOSED), records, **kwargs)
        finally:
            timings["window"] = time.perf_counter() - started

    monkeypatch.setattr(ingest_module, "write_runs", away)
    result = cli(*INGEST)
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "did not come back within 1 s" in result.stderr
    saved = list((home / "pending").iterdir())
    assert len(saved) == 1 and f"lce ingest --resume {saved[0]}" in result.stderr.replace("\n", "")
    assert stat.S_IMODE(saved[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "pending").stat().st_mode) == 0o700
    print(f"retry window of 1 s gave up after {timings['window']:.2f} s")

    monkeypatch.setenv("LCE_DATABASE_URL", database)
    monkeypatch.setattr(ingest_module, "write_runs", real_write_runs)
    connection.dispose_all()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run")).scalar() == 0
    assert f"pending:   {saved[0]}" in cli("db", "status").stdout
    result = cli("ingest", "--resume", saved[0])
    assert result.exit_code == 0, result.output
    assert "victim layer4: created run" in result.stdout and not saved[0].exists()
    resumed = stored_rows(engine)
    assert len(resumed["unit"]) == 512 and resumed["unit_concept"] and len(resumed["unit_top_image"]) == 5120

    # The same ingest straight into the store gives the same rows, bit for bit.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM run"))
    result = cli(*INGEST)
    assert result.exit_code == 0, result.output
    assert stored_rows(engine) == resumed


def test_a_retry_after_a_commit_whose_acknowledgement_was_lost_stores_the_run_once(engine, monkeypatch):
    record = RunRecord(model=ModelInfo("m"), probe="p", layer="layer4", variant="dissect", quantile=0.01,
                       iou_threshold=0.04, source="imported:test", units=[UnitRow(0, ("object", "sky"), 0.1)])
    first = runs.write_runs(engine, [record])
    # The retry of the same write (the first try's commit went through, its answer did not).
    monkeypatch.setattr(runs, "retrying", lambda attempt, engine, window_s: attempt(engine, True))
    again = runs.write_runs(engine, [record], retry_s=60)
    assert (again[0].outcome, again[0].run_id) == (runs.Outcome.CREATED, first[0].run_id)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run")).scalar() == 1


def test_a_connection_lost_mid_import_is_one_message(cli, engine, tmp_path, monkeypatch):
    path = tmp_path / "units.csv"
    path.write_text(",name,unit,iou,label,category\n0,M,0,0.2,sky,object\n")
    real_probe = runs._probe

    def terminated(conn, name):
        conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))  # the server drops this session
        return real_probe(conn, name)

    monkeypatch.setattr(runs, "_probe", terminated)
    result = cli("import", "dissect-csv", path)
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = result.stderr.replace("\n", "")
    assert "went away" in message and "nothing was written; run the same command again" in message
    monkeypatch.setattr(runs, "_probe", real_probe)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run")).scalar() == 0


@pytest.mark.parametrize("content, message", [
    (b"not gzip at all", "not gzip'd JSON"),
    (__import__("gzip").compress(b'{"format": "something else"}'), "no format 'lce-pending-runs'"),
    (__import__("gzip").compress(b'{"format": "lce-pending-runs", "version": 1, "replace": false, '
                                 b'"runs": [{"model": {}}]}'), "damaged or incomplete"),
])
def test_a_bad_resume_file_is_one_message_naming_it(cli, engine, tmp_path, content, message):
    path = tmp_path / "bad.runs.json.gz"
    path.write_bytes(content)
    result = cli("ingest", "--resume", path)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert str(path) in result.stderr.replace("\n", "") and message in result.stderr.replace("\n", "")
    assert path.exists()


def test_ingest_needs_a_model_or_resume_not_both(cli, tmp_path):
    assert "Missing MODEL" in cli("ingest", "--probe", "synth").stderr
    both = cli("ingest", "r18", "--resume", tmp_path / "x.runs.json.gz")
    assert both.exit_code == 1 and "not both" in both.stderr


@pytest.mark.parametrize("outage, says", [
    (lambda: outage_errors.DatabaseLost("server closed the connection", 1.0), "once the database is back."),
    (lambda: outage_errors.DatabaseFull("could not extend file"), "then run it again."),
], ids=["lost", "full"])
def test_a_resume_whose_database_goes_away_or_fills_keeps_its_file(database, tmp_path, monkeypatch, outage, says):
    """lce ingest --resume (lce.ingest.resume.store_file) deletes the file only once its runs are written: when the
    write is lost or refused, the message names the file to resume again and the file stays, whole."""
    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))
    record = RunRecord(model=ModelInfo("m"), probe="synth", layer="layer4", variant="dissect", quantile=0.01,
                       iou_threshold=0.04, source="dissected", units=[UnitRow(0, ("object", "sky"), 0.1)])
    path = pending.save([record], replace=False)
    saved = path.read_bytes()
    monkeypatch.setattr(resume_module, "check_probes", lambda *arguments: None)  # no probe needed for this

    def lost(*arguments, **options):
        raise outage()

    monkeypatch.setattr(resume_module, "write_runs", lost)
    with pytest.raises(LceError) as refused:
        resume_module.resume(path)
    assert f"Nothing was written; the runs stay in {path} for `lce ingest --resume" in str(refused.value)
    assert str(refused.value).endswith(says) and path.read_bytes() == saved
