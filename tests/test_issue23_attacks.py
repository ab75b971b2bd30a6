"""Attacks on issue 23's full-disk, pid-file, bounded-input and masking work, tried as a hostile or careless user
would after it was merged: each one here got through then (a hang, memory without end, a chmod of someone else's
folder, a planted run stored, a piece of a password printed).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lce.db import connection, pending
from lce.db.pidfile import PidFile

SECRET_TAIL = "tail-of-Pw"


def _read_pid_file_in_a_child(data_dir: Path) -> subprocess.CompletedProcess:
    """PidFile.read in a child held to 1 GiB of memory and 20 s, so that a read without end fails the test
    rather than the machine."""
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))
        from pathlib import Path
        from lce.db.pidfile import PidFile
        found = PidFile.read(Path({str(data_dir)!r}), 0)
        print("ours" if found.ours else found.reason)
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})


@pytest.mark.parametrize("kind", ["link to /dev/zero", "fifo"])
def test_a_pid_file_that_is_a_device_or_a_fifo_is_not_read_without_end(tmp_path, kind):
    """postmaster.pid a link to /dev/zero read 5.4 GB in 8 s (then the OOM killer); a FIFO waited for ever: every
    command of the store (it reads the pid file before starting the server) hung."""
    pid_file = tmp_path / "postmaster.pid"
    if kind == "fifo":
        os.mkfifo(pid_file)
    else:
        pid_file.symlink_to("/dev/zero")
    try:
        result = _read_pid_file_in_a_child(tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("PidFile.read waited on the FIFO")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "not a regular file" in result.stdout, result.stdout


def test_a_pid_file_that_is_not_a_regular_file_is_set_aside(tmp_path):
    """A folder named postmaster.pid was an IsADirectoryError traceback on every command of the store."""
    (tmp_path / "postmaster.pid").mkdir()
    found = PidFile.read(tmp_path, os.geteuid())
    assert found is not None and not found.ours and found.pid is None
    assert "not a regular file" in found.reason
    moved = found.set_aside()
    assert not (tmp_path / "postmaster.pid").exists() and moved.is_dir()


def test_a_pending_folder_that_is_a_link_keeps_its_target_s_mode(tmp_path, monkeypatch):
    """$LCE_HOME/pending as a link to another folder (to keep pending runs elsewhere): the first pending file made
    lce chmod the link's target to 0700, a shared 1777 folder (or /tmp, as root) included."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "pending").symlink_to(shared)
    monkeypatch.setenv("LCE_HOME", str(home))
    monkeypatch.delenv("LCE_PENDING_DIR", raising=False)
    kept = pending.keep([], replace=False)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert kept.path.parent == home / "pending" and stat.S_IMODE(kept.path.stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="planting a file of another user needs root (chown)")
def test_a_pending_file_planted_by_another_user_in_a_shared_pending_dir_is_not_taken(tmp_path, monkeypatch):
    """LCE_PENDING_DIR=/tmp (a shared folder): any local user could drop a *.runs.json.gz there, and `lce db
    status` listed it and a plan's pending-first step stored its runs in this user's database, as this user."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    home = tmp_path / "home"
    monkeypatch.setenv("LCE_HOME", str(home))
    monkeypatch.setenv("LCE_PENDING_DIR", str(shared))
    (home / "pending").mkdir(parents=True)
    mine = pending.keep([], replace=False).path  # LCE_HOME's pending folder takes it
    planted = shared / "20000101-000000-evil.runs.json.gz"
    planted.write_bytes(mine.read_bytes())
    os.chown(planted, 65534, 65534)
    link = shared / "20000101-000001-link.runs.json.gz"
    os.symlink(mine, link)
    os.lchown(link, 65534, 65534)
    assert pending.pending_files() == [mine]


@pytest.mark.parametrize("url", [
    f"postgresql://u:p@{SECRET_TAIL}@127.0.0.1:1/db",  # an @ in the password, not percent-encoded
    f"postgresql://u:p@x@{SECRET_TAIL}@127.0.0.1:1/db",
])
def test_a_password_holding_an_at_sign_is_masked_whole(url):
    assert SECRET_TAIL not in connection.masked(url)
    assert SECRET_TAIL not in connection.hide_passwords(f"Cannot reach {url}: refused")
    assert "127.0.0.1" in connection.masked(url)


@pytest.fixture
def probe_copy(tmp_path) -> Path:
    from lce.probe.synth import synthesize

    root = tmp_path / "probe"
    synthesize(root, images=6, size=32, seed=0)
    return root


def _checked(root: Path) -> list[str]:
    from lce.probe.check import check_probe

    return [str(problem) for problem in check_probe(root)]


def test_a_huge_probe_table_is_refused_at_its_limit(probe_copy, monkeypatch):
    """A probe's c_scene.csv of 3 GB (a sparse file) took 29 s and 6.4 GB of memory in `lce probe check`, then
    ended in a csv traceback: a probe's tables were read whole, with no limit."""
    from lce.input_files import TextLimits
    from lce.probe import broden

    monkeypatch.setattr(broden, "PROBE_TABLE_LIMITS", TextLimits(size=4096, line=1024, lines=100, why="test"))
    with open(probe_copy / "c_scene.csv", "r+b") as table:
        table.truncate(64 * 2**20)  # zeros: read whole, they would be 64 MiB
    problems = _checked(probe_copy)
    assert any("c_scene.csv: is larger than 4,096 bytes" in problem for problem in problems), problems


def test_a_probe_cell_over_csv_s_limit_is_a_problem_not_a_traceback(probe_copy):
    """A cell of 200 kB (under the line limit, over csv's 128 KiB): `_csv.Error: field larger than field limit`."""
    with open(probe_copy / "c_scene.csv", "a") as table:
        table.write(f"99,1,\"{'x' * 200_000}\",1,1\n")
    problems = _checked(probe_copy)
    assert any("c_scene.csv" in problem and "131,072" in problem for problem in problems), problems


@pytest.mark.parametrize("table", ["index.csv", "c_scene.csv"])
def test_a_probe_table_that_is_a_fifo_is_named_as_one(probe_copy, table):
    """A FIFO (or a link to /dev/zero) as index.csv was said to be 'missing'."""
    (probe_copy / table).unlink()
    os.mkfifo(probe_copy / table)
    problems = _checked(probe_copy)
    assert any(f"{table}: is a FIFO (named pipe), not a regular file" in problem for problem in problems), problems


@pytest.mark.parametrize("workers", ["100000000000000000000", "5000", "-1"])
def test_probe_add_workers_beyond_the_cpus_are_one_message(tmp_path, monkeypatch, workers):
    """`lce probe add --workers 10**20` was an OverflowError traceback, `--workers 5000` started 5,000 processes."""
    from lce.probe import registry

    monkeypatch.setattr(registry, "check_probe", lambda root: pytest.fail("checked the probe first"))
    from tests.conftest import Cli

    result = Cli()("probe", "add", "p", str(tmp_path), "--workers", workers)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"--workers must be 0 (decode in this process) to this machine's {os.cpu_count()} CPU(s)" in \
        result.stderr, result.stderr


def test_a_seed_beyond_torch_s_range_is_one_message(cli):
    """`lce ingest --random-init --seed 10**20` was `ValueError: Overflow when unpacking long long`."""
    result = cli("ingest", "r18", "--arch", "resnet18", "--random-init", "--seed", str(10**20), "--probe", "none",
                 "--dry-run")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"--seed {10**20}: a seed from -2^63 to 2^64 - 1." in result.stderr


@pytest.mark.parametrize("seed", ["-1", "3000000000", str(10**20)])
def test_an_embedding_seed_out_of_range_is_one_message_and_writes_nothing(cli, paper_data, tmp_path, seed):
    """`lce embed --seed 3000000000` wrote the CSV and the plot, then failed on the embedding table's integer (a
    DataError traceback); -1 and 10**20 were scikit-learn's InvalidParameterError traceback."""
    out, plot = tmp_path / "e.csv", tmp_path / "e.png"
    result = cli("embed", "--seed", seed, "--out", str(out), "--plot", str(plot))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"--seed must be a whole number from 0 to 2^31 - 1, not {seed}." in result.stderr
    assert not out.exists() and not plot.exists()


def test_db_status_shows_a_pending_dir_holding_brackets_and_says_when_it_is_unusable(tmp_path, monkeypatch):
    """A pending file under LCE_PENDING_DIR=/tmp/p[/x] made `lce db status` a rich MarkupError traceback; an
    LCE_PENDING_DIR that is no directory was not mentioned (the next ingest refuses to start on it)."""
    from tests.conftest import Cli

    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LCE_DATABASE_URL", raising=False)
    folder = tmp_path / "p[" / "x]"  # a path that reads as rich's [/x] closing tag
    folder.mkdir(parents=True)
    monkeypatch.setenv("LCE_PENDING_DIR", str(folder))
    (folder / "20000101-000000-m.runs.json.gz").write_bytes(b"")
    result = Cli()("db", "status")
    assert result.exit_code == 0, result.output
    assert f"pending:   {folder}/20000101-000000-m.runs.json.gz" in result.stdout, result.stdout
    monkeypatch.setenv("LCE_PENDING_DIR", str(tmp_path / "absent"))
    result = Cli()("db", "status")
    assert result.exit_code == 0, result.output
    assert f"LCE_PENDING_DIR='{tmp_path / 'absent'}': no such directory" in " ".join(result.stdout.split())


def test_an_lce_home_that_is_a_file_is_said_to_be_one(tmp_path, monkeypatch):
    """LCE_HOME naming a file said 'Cannot create LCE_HOME ...: File exists.'"""
    from tests.conftest import Cli

    (tmp_path / "file").write_text("")
    monkeypatch.setenv("LCE_HOME", str(tmp_path / "file"))
    monkeypatch.delenv("LCE_DATABASE_URL", raising=False)
    result = Cli()("models")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"LCE_HOME {tmp_path / 'file'} is not a directory." in result.stderr, result.stderr


def test_a_label_png_that_is_a_fifo_is_named_as_one(probe_copy):
    """A FIFO in place of an image or label PNG was said to be 'missing'."""
    png = sorted((probe_copy / "images").rglob("*.png"))[0]
    png.unlink()
    os.mkfifo(png)
    problems = _checked(probe_copy)
    assert any(f"{png} is not a regular file" in problem for problem in problems), problems
