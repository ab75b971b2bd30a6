"""A full disk is a disk full, and costs nothing already computed: PostgreSQL's disk_full is not retried as an
outage, pending files appear whole or not at all, LCE_PENDING_DIR takes the runs when LCE_HOME cannot, and the
decode cache says one message on a full file system (issue 23, item 3)."""

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from lce.db import connection, pending, runs
from lce.importers import pending_runs
from lce.ingest import plan as batch
from lce.ingest import run as ingest_module
from lce.probe import cache as cache_module
from lce.records import ModelInfo, RunRecord, UnitRow
from tests.test_write_outage import CLOSED, INGEST, add_probe

FULL = 'could not extend file "base/16386/16553": No space left on device'
STORED_TABLES = ("run", "unit", "run_concept", "unit_tally", "unit_top_image", "unit_replicate", "unit_alternative")


def disk_full(wrapped: bool) -> Exception:
    """PostgreSQL's disk_full as psycopg raises it (a COPY's error), or wrapped as SQLAlchemy does."""
    error = psycopg.errors.DiskFull(FULL)
    return OperationalError("INSERT INTO run ...", {}, error) if wrapped else error


def counts(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (conn.execute(text("SELECT count(*) FROM run")).scalar(),
                conn.execute(text("SELECT count(*) FROM unit")).scalar())


def files_in(folder: Path) -> list[str]:
    """Every name in `folder`, dot files (a temporary file left behind) included."""
    return sorted(os.listdir(folder)) if folder.exists() else []


@pytest.fixture
def home(cli, tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("LCE_HOME", str(home))
    monkeypatch.delenv("LCE_PENDING_DIR", raising=False)
    add_probe(cli, tmp_path)
    return home


@pytest.mark.parametrize("wrapped", [True, False], ids=["sqlalchemy", "psycopg"])
def test_a_full_database_disk_is_not_retried_and_the_run_is_kept_for_resume(cli, engine, home, monkeypatch,
                                                                             wrapped):
    monkeypatch.setenv("LCE_WRITE_RETRY_S", "30")  # an outage would be retried for 30 s
    real_write_run, tries = runs._write_run, []

    def full(*args, **kwargs):
        tries.append(time.perf_counter())
        raise disk_full(wrapped)

    monkeypatch.setattr(runs, "_write_run", full)
    result = cli(*INGEST, "--replicates", "0")
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = result.stderr.replace("\n", "")
    assert len(tries) == 1  # refused once, not retried as "went away"
    assert "The database's disk is full (the database server's disk" in message and FULL in message
    assert "went away" not in message
    saved = list((home / "pending").iterdir())
    assert len(saved) == 1 and f"The dissection is kept in {saved[0]};" in message
    assert f"lce ingest --resume {saved[0]}` once the database has room: ask the database server's administrator" \
        in message
    assert counts(engine) == (0, 0)

    # Room again: --resume stores it, once; a second --resume finds no file.
    monkeypatch.setattr(runs, "_write_run", real_write_run)
    result = cli("ingest", "--resume", saved[0])
    assert result.exit_code == 0, result.output
    assert "victim layer4: created run" in result.stdout and not saved[0].exists()
    assert counts(engine) == (1, 512)
    again = cli("ingest", "--resume", saved[0])
    assert again.exit_code == 1 and "does not exist" in again.stderr and counts(engine) == (1, 512)


def test_a_full_disk_outside_an_ingest_is_one_message(cli, engine, tmp_path, monkeypatch):
    path = tmp_path / "units.csv"
    path.write_text(",name,unit,iou,label,category\n0,M,0,0.2,sky,object\n")

    def full(*args, **kwargs):
        raise disk_full(wrapped=True)

    monkeypatch.setattr(runs, "_write_run", full)
    result = cli("import", "dissect-csv", path)
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = result.stderr.replace("\n", "")
    assert message.count("error:") == 1 and "The database's disk is full" in message
    assert "nothing was written; ask the database server's administrator for space" in message


def enospc_under(folder: Path):
    """os.fsync that fails with ENOSPC for files under `folder` (a full file system there), as the kernel does
    for a write that finds no room."""
    real_fsync = os.fsync

    def fsync(descriptor):
        if os.readlink(f"/proc/self/fd/{descriptor}").startswith(str(folder)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(descriptor)

    return fsync


def away(monkeypatch):
    """The database gone for good at the write (port 9: nothing listens)."""
    from sqlalchemy import create_engine

    real_write_runs = ingest_module.write_runs

    def write(engine, records, **kwargs):
        monkeypatch.setenv("LCE_DATABASE_URL", CLOSED)
        return real_write_runs(create_engine(CLOSED), records, **kwargs)

    monkeypatch.setattr(ingest_module, "write_runs", write)
    return real_write_runs


def test_no_room_for_the_pending_file_leaves_no_file_and_says_the_dissection_is_lost(cli, home, monkeypatch):
    monkeypatch.setenv("LCE_WRITE_RETRY_S", "0")
    away(monkeypatch)
    monkeypatch.setattr(os, "fsync", enospc_under(home))
    result = cli(*INGEST, "--replicates", "0")
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = result.stderr.replace("\n", "")
    assert message.count("error:") == 1 and "went away" in message
    assert f"The runs could not be kept in a file either ({home / 'pending'}: no space left on its file system" \
        in message
    assert "this dissection is lost; set LCE_PENDING_DIR to a writable directory on another file system" in message
    assert files_in(home / "pending") == []  # no 0-byte file, no temporary file


def test_lce_pending_dir_takes_the_runs_when_lce_home_cannot_and_resume_stores_them_once(cli, engine, database,
                                                                                          home, tmp_path,
                                                                                          monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("LCE_PENDING_DIR", str(elsewhere))
    monkeypatch.setenv("LCE_WRITE_RETRY_S", "0")
    real_write_runs = away(monkeypatch)
    monkeypatch.setattr(os, "fsync", enospc_under(home))
    result = cli(*INGEST, "--replicates", "0")
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = result.stderr.replace("\n", "")
    saved = list(elsewhere.iterdir())
    assert len(saved) == 1 and saved[0].name.endswith("-victim.runs.json.gz")
    assert f"The dissection is kept in {saved[0]} ({home / 'pending'}: no space left on its file system" in message
    assert f"store it with `lce ingest --resume {saved[0]}` once the database is back" in message
    assert files_in(home / "pending") == []

    monkeypatch.setenv("LCE_DATABASE_URL", database)
    monkeypatch.setattr(ingest_module, "write_runs", real_write_runs)
    connection.dispose_all()
    assert f"pending:   {saved[0]}" in cli("db", "status").stdout  # lce db status reads LCE_PENDING_DIR too
    result = cli("ingest", "--resume", saved[0])
    assert result.exit_code == 0, result.output
    assert files_in(elsewhere) == [] and counts(engine) == (1, 512)


def test_a_plan_stores_the_runs_in_lce_pending_dir_first(engine, home, tmp_path, monkeypatch):
    # probe "synth": `home` registers it, and a pending file's probe must be registered (importers/pending_runs.py)
    record = RunRecord(model=ModelInfo("m"), probe="synth", layer="layer4", variant="dissect", quantile=0.01,
                       iou_threshold=0.04, source="dissected", units=[UnitRow(0, ("object", "disc"), 0.1)])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("LCE_PENDING_DIR", str(elsewhere))
    saved = pending.save([record], replace=False)
    moved = elsewhere / saved.name
    shutil.move(saved, moved)
    assert pending.pending_files() == [moved]
    done = batch.store_pending()
    assert [(path, said.startswith("stored m layer4 (created run")) for path, said in done] == [(moved, True)]
    assert not moved.exists() and counts(engine) == (1, 1)


@pytest.mark.parametrize("problem", ["missing", "a file", "read-only"])
def test_lce_pending_dir_is_checked_before_the_dissection(cli, home, tmp_path, monkeypatch, problem):
    target = tmp_path / "target"
    if problem == "a file":
        target.write_text("x")
    if problem == "read-only":  # (a mode of 0500 would not stop root)
        target.mkdir()
        tried = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(target)],
                               capture_output=True, text=True)
        if tried.returncode != 0:
            pytest.skip(f"mounting a read-only tmpfs is not permitted here: {tried.stderr.strip()}")
    monkeypatch.setenv("LCE_PENDING_DIR", str(target))
    dissected = []
    monkeypatch.setattr(ingest_module, "dissect", lambda *args, **kwargs: dissected.append(1))
    result = cli(*INGEST)
    if problem == "read-only":
        subprocess.run(["umount", "-l", str(target)], check=False)
    assert result.exit_code == 1 and "Traceback" not in result.output and not dissected
    said = {"missing": "no such directory", "a file": "not a directory",
            "read-only": "cannot be written to (Read-only file system)"}[problem]
    assert f"LCE_PENDING_DIR='{target}': {said}." in result.stderr.replace("\n", "")
    assert "Nothing was dissected." in result.stderr.replace("\n", "")


def test_pending_files_are_written_whole_or_not_at_all(home, monkeypatch):
    record = RunRecord(model=ModelInfo("m"), probe="p", layer="layer4", variant="dissect", quantile=0.01,
                       iou_threshold=0.04, source="dissected", units=[UnitRow(0, ("object", "sky"), 0.1)])
    real_write, written = os.write, []

    def half_then_full(descriptor, data):  # the first write goes through in part, the next finds no room
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(len(data) // 2)
        return real_write(descriptor, bytes(data[:len(data) // 2]))

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(pending.NotKept, match="no space left on its file system"):
        pending.save([record], replace=False)
    monkeypatch.setattr(os, "write", real_write)
    assert written and files_in(home / "pending") == []
    path = pending.save([record], replace=False)
    assert files_in(home / "pending") == [path.name] and pending_runs.load(path)[0][0].units == record.units


def test_a_dissection_warns_when_the_free_space_is_below_its_estimate(cli, engine, home, monkeypatch):
    monkeypatch.setattr(ingest_module, "free_bytes", lambda path: 1000)
    result = cli(*INGEST)
    assert result.exit_code == 0, result.output  # a warning, not a refusal
    message = result.stderr.replace("\n", "")
    estimate = runs.stored_bytes(512, 50, 6, 10, 200)
    assert "warning: the runs of this dissection may take about" in message
    assert f"in the pending file, should the database be unable to take it, and the file system of {home / 'pending'}" \
        in message
    # The estimate against what the run took: above it, but not by more than twice.
    with engine.connect() as conn:
        taken = sum(conn.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar() for table in STORED_TABLES)
    assert taken < estimate < 2 * taken, (taken, estimate)


def test_the_decode_cache_on_a_full_disk_is_one_message_and_nothing_half_written(cli, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("LCE_HOME", str(home))
    probe = tmp_path / "probe"
    assert cli("probe", "synth", probe, "--images", "30", "--size", "64", "--seed", "2").exit_code == 0

    def full(path, **arrays):
        Path(path).write_bytes(b"PK\x03\x04 half")  # a file cut short, as a full disk leaves it
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    real_savez = np.savez
    monkeypatch.setattr(cache_module.np, "savez", full)
    result = cli("probe", "add", "synth", probe)
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = result.stderr.replace("\n", "")
    assert message.count("error:") == 1 and f"The decode cache of the probe at {probe} could not be written: no " \
        f"space left on the file system of {home / 'cache'}" in message
    assert "Nothing of it is kept, and nothing was stored." in message
    assert [name for name in files_in(home / "cache") if not name.endswith(".lock")] == []
    assert "synth" not in cli("probe", "list").stdout
    monkeypatch.setattr(cache_module.np, "savez", real_savez)
    assert cli("probe", "add", "synth", probe).exit_code == 0


# A small tmpfs as LCE_HOME: a real full file system.

@pytest.fixture
def full_tmpfs(tmp_path):
    """An 8 MiB tmpfs (mounted only where this user may mount), and a function that fills it to the last block."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the unit tests above inject ENOSPC instead")
    tried = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount)],
                           capture_output=True, text=True)
    if tried.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {tried.stderr.strip()}")

    def fill() -> None:
        descriptor = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 10):  # down to the last block
                try:
                    while True:
                        os.write(descriptor, bytes(chunk))
                except OSError as error:
                    assert error.errno == errno.ENOSPC
        finally:
            os.close(descriptor)

    yield mount, fill
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_probe_add_on_a_full_tmpfs_home_is_one_message(cli, tmp_path, monkeypatch, full_tmpfs):
    mount, fill = full_tmpfs
    monkeypatch.setenv("LCE_HOME", str(mount / "home"))
    probe = tmp_path / "probe"
    assert cli("probe", "synth", probe, "--images", "30", "--size", "64", "--seed", "2").exit_code == 0
    (mount / "home").mkdir()
    fill()
    # In a process of its own: on today's main the decode cache's memory map dies of SIGBUS here.
    env = {**os.environ, "LCE_HOME": str(mount / "home")}
    added = subprocess.run([sys.executable, "-m", "lce", "probe", "add", "synth", str(probe)], env=env,
                           capture_output=True, text=True, timeout=300)
    assert added.returncode == 1 and "Traceback" not in added.stderr, (added.returncode, added.stderr[-2000:])
    assert added.stderr.count("error:") == 1 and "The decode cache of the probe" in added.stderr
    assert "no space left on the file system of" in added.stderr.replace("\n", "")
    cache = mount / "home" / "cache"
    assert [name for name in files_in(cache) if not name.endswith(".lock")] == []
    (mount / "filler").unlink()
    assert cli("probe", "add", "synth", probe).exit_code == 0


def test_a_full_tmpfs_home_at_the_write_keeps_the_run_in_lce_pending_dir(cli, engine, tmp_path, monkeypatch,
                                                                          full_tmpfs):
    mount, fill = full_tmpfs
    home, elsewhere = mount / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("LCE_HOME", str(home))
    add_probe(cli, tmp_path)  # its decode cache in the tmpfs, while there is room
    fill()
    real_write_run = runs._write_run

    def full(*args, **kwargs):
        raise disk_full(wrapped=True)

    monkeypatch.setattr(runs, "_write_run", full)
    for pending_dir, exit_code in ((None, 1), (elsewhere, 1)):
        if pending_dir is not None:
            monkeypatch.setenv("LCE_PENDING_DIR", str(pending_dir))
        result = cli(*INGEST, "--replicates", "0")
        assert result.exit_code == exit_code and "Traceback" not in result.output
        message = result.stderr.replace("\n", "")
        assert "The database's disk is full" in message and files_in(home / "pending") == []
        if pending_dir is None:
            assert "this dissection is lost; set LCE_PENDING_DIR" in message
    saved = list(elsewhere.iterdir())
    assert len(saved) == 1 and f"The dissection is kept in {saved[0]}" in message
    (mount / "filler").unlink()
    monkeypatch.setattr(runs, "_write_run", real_write_run)
    result = cli("ingest", "--resume", saved[0])
    assert result.exit_code == 0, result.output
    assert counts(engine) == (1, 512) and files_in(elsewhere) == []
