"""Inputs are bounded: only regular files are read where a file is expected (a device, a FIFO, a socket or a
directory is one message, before anything opens it), imports and plans are capped in size, line length and lines
(refused while reading, naming the file and line), a plan's dry run builds each distinct model once, and a plan's
`workers` cell is at most the machine's CPUs. Nothing is written to the database in any of these cases."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import weakref
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch  # noqa: F401 (loaded before `bounded` caps the address space: its libraries are large)
from sqlalchemy import text

from lce.errors import LceError
from lce.input_files import IMPORT_LIMITS, TextLimits, check_input, read_text
from tests import test_ingest
from lce.published import AUTHORS_TASKS, AUTHORS_UNITS, netdissect_result
from tests.conftest import REPO, published_file

synth = test_ingest.synth  # the registered 30-image 64-px probe 'synth'

DISSECT_HEADER = "name,unit,iou,label,category\n"
# Every command that reads a file the user names; {path} is the file under test.
COMMANDS = {
    "dissect-csv": ["import", "dissect-csv", "{path}"],
    "dissect-report": ["import", "dissect-report", "{path}", "--model", "m", "--layer", "l"],
    "netdissect-csv": ["import", "netdissect-csv", "{path}", "--model", "m", "--layer", "l"],
    "tasks": ["tasks", "import", "{path}"],
    "families": ["tasks", "import", "{tasks}", "--families", "{path}"],  # the authors' task table
    "plan": ["ingest", "--plan", "{path}", "--probe", "synth", "--dry-run"],
    "resume": ["ingest", "--resume", "{path}"],
}
KINDS = {"dev-zero": "is a character device", "fifo": "is a FIFO", "directory": "is a directory",
         "socket": "is a socket"}


def stored(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                for table in ("model", "run", "unit", "probe", "task_metric")}


@contextmanager
def bounded(seconds: int = 20, memory: int = 2**30):
    """Today's main opens a FIFO and waits for a writer, and reads /dev/zero until memory runs out: under this
    guard such a test fails within `seconds` and `memory` more bytes of address space instead of hanging the
    run or the machine."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    size = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    resource.setrlimit(resource.RLIMIT_AS, (size + memory, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def special_file(kind: str, folder: Path) -> Path:
    if kind == "dev-zero":
        return Path("/dev/zero")
    path = folder / f"input-{kind}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()  # the socket file stays
    return path


def command(name: str, path: Path) -> list[str]:
    parts = [part.replace("{path}", str(path)) for part in COMMANDS[name]]
    return [str(published_file(AUTHORS_TASKS)) if part == "{tasks}" else part for part in parts]


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_path_that_is_not_a_regular_file_is_refused_before_it_is_read(cli, engine, tmp_path, name, kind):
    path = special_file(kind, tmp_path)
    with bounded():
        result = cli(*command(name, path))
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert f"{path} {KINDS[kind]}" in result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.output
    assert stored(engine) == {"model": 0, "run": 0, "unit": 0, "probe": 0, "task_metric": 0}


@pytest.mark.parametrize("name", ["dissect-csv", "plan"])
def test_a_fifo_does_not_make_the_command_wait(tmp_path, name):
    """The real command in its own process, under a timeout: it refuses the FIFO rather than wait for a writer."""
    fifo = special_file("fifo", tmp_path)
    environment = {**os.environ, "PYTHONPATH": str(REPO), "LCE_HOME": str(tmp_path / "home")}
    environment.pop("LCE_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "lce", *command(name, fifo)], capture_output=True, text=True,
                          timeout=120, env=environment, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert f"{fifo} is a FIFO (named pipe), not a regular file" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "home").exists()  # refused before the store was touched


def test_check_input_refuses_before_opening_and_names_the_option(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with bounded(seconds=5):
        with pytest.raises(LceError, match=r"^--resume .*pipe is a FIFO \(named pipe\), not a regular file"):
            check_input(tmp_path / "pipe", "--resume")
    with pytest.raises(LceError, match=r"nothing-here does not exist\.$"):
        check_input(tmp_path / "nothing-here", "--resume")
    (tmp_path / "link").symlink_to("/dev/zero")
    with pytest.raises(LceError, match="link is a character device"):
        check_input(tmp_path / "link")
    (tmp_path / "ok.csv").write_text("a,b\n")
    assert check_input(tmp_path / "ok.csv").st_size == 4


def test_a_file_larger_than_its_stat_said_is_stopped_while_read():
    """/proc files are regular and stat as 0 bytes: the reader counts what it reads, not what stat said."""
    limits = TextLimits(size=1000, line=10**6, lines=10**6, why="a test")
    assert Path("/proc/self/maps").stat().st_size == 0
    with pytest.raises(LceError, match=r"^/proc/self/maps is larger than 1,000 bytes, the most lce reads in this "
                                       r"file \(a test\)"):
        read_text(Path("/proc/self/maps"), limits)


def small_limits(monkeypatch, **limits) -> None:
    """The importers' limits made small (the real ones are 256 MiB, 1 MiB lines, 2,000,000 lines)."""
    assert (IMPORT_LIMITS.size, IMPORT_LIMITS.line, IMPORT_LIMITS.lines) == (256 * 2**20, 2**20, 2_000_000)
    monkeypatch.setattr("lce.importers.common.IMPORT_LIMITS", TextLimits(
        **{"size": 10**6, "line": 10**5, "lines": 10**5, "why": "a test's limit", **limits}))


def dissect_rows(count: int, label: str = "sky") -> str:
    return DISSECT_HEADER + "".join(f"m,{unit},0.1,{label},object\n" for unit in range(count))


@pytest.mark.parametrize("case, limits, content, message", [
    ("oversized", {"size": 2000}, dissect_rows(100), "is larger than 2,000 bytes, the most lce reads in this file "
                                                     "(a test's limit)"),
    ("long line", {"line": 100}, dissect_rows(3) + "m,3,0.1," + "x" * 200 + ",object\n",
     ", line 5: the line is longer than 100 bytes"),
    ("too many rows", {"lines": 50}, dissect_rows(60), ", line 51: the file has more than 50 lines"),
])
def test_an_import_over_a_limit_is_one_message_naming_file_and_line(cli, engine, tmp_path, monkeypatch, case,
                                                                       limits, content, message):
    small_limits(monkeypatch, **limits)
    path = tmp_path / "big.csv"
    path.write_text(content)
    result = cli("import", "dissect-csv", path)
    assert result.exit_code == 1, result.output
    assert f"{path}{message}" in result.stderr or f"{path} {message}" in result.stderr, result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.output
    assert stored(engine)["unit"] == 0


def test_the_paper_data_is_within_the_import_limits():
    """The real files the limits were sized against read as they are (with room to spare)."""
    for file in (AUTHORS_UNITS, netdissect_result("resnet50_imagenet_layer4.csv")):
        path = published_file(file)
        assert len(read_text(path, IMPORT_LIMITS)) > 100_000
        assert path.stat().st_size * 100 < IMPORT_LIMITS.size


@pytest.mark.parametrize("limits, message", [
    ({"size": 500}, "is larger than 500 bytes"),
    ({"lines": 10}, ", line 11: the file has more than 10 lines"),
    ({"line": 64}, ", line 3: the line is longer than 64 bytes"),
])
def test_an_oversized_plan_is_refused_before_any_row_is_checked(cli, engine, tmp_path, monkeypatch, limits,
                                                                message):
    monkeypatch.setattr("lce.ingest.plan.PLAN_LIMITS", TextLimits(
        **{"size": 10**6, "line": 10**4, "lines": 10**4, "why": "a test's limit", **limits}))
    path = tmp_path / "plan.csv"
    rows = [f"r18-{seed},resnet18,true,{seed}\n" for seed in range(30)]
    rows[1] = f"r18-1,resnet18,true,1{'0' * 80}\n"
    path.write_text("model,arch,random_init,seed\n" + "".join(rows))
    result = cli("ingest", "--plan", path, "--probe", "synth", "--dry-run")
    assert result.exit_code == 1, result.output
    assert f"Plan {path}{message}" in result.stderr or f"Plan {path} {message}" in result.stderr, result.stderr
    assert "line 2 (" not in result.stdout  # no row was checked
    assert stored(engine)["run"] == 0


def test_workers_beyond_the_machines_cpus_make_an_invalid_row(cli, engine, synth, tmp_path):
    cpus = os.cpu_count()
    path = tmp_path / "plan.csv"
    path.write_text(f"model,arch,random_init,workers\nok,resnet18,true,{cpus}\nmany,resnet18,true,{cpus + 1}\n")
    result = cli("ingest", "--plan", path, "--probe", "synth", "--dry-run")
    assert result.exit_code == 1, result.output
    assert f"line 3 (many) is invalid: --workers {cpus + 1} is more than this machine's {cpus} CPU(s)" \
        in result.stdout
    assert "line 2 (ok) is invalid" not in result.stdout
    single = test_ingest.ingest(cli, "many", "--arch", "resnet18", "--random-init", "--workers", str(cpus + 1))
    assert single.exit_code == 1 and f"--workers {cpus + 1} is more than" in single.stderr
    assert stored(engine)["run"] == 0


def test_a_plan_dry_run_builds_each_distinct_model_once_and_one_at_a_time(engine, synth, tmp_path, monkeypatch):
    """40 rows of two models (random seeds do not make another model to check; layer lists do not either): two
    builds, the first model gone before the second is built, and every row checked as before."""
    from lce.ingest.plan import check_plan, read_plan
    from lce.models.build import ModelSpec

    builds, alive = [], []
    original = ModelSpec.build

    def counted(spec):
        assert all(model() is None for model in alive), "a model built before is still alive"
        loaded = original(spec)
        builds.append(spec.architecture)
        alive.append(weakref.ref(loaded.module))
        return loaded

    monkeypatch.setattr(ModelSpec, "build", counted)
    rows = [f"r18-{seed},resnet18,true,{seed},{'layer3;layer4' if seed % 2 else ''}\n" for seed in range(30)]
    rows += [f"sq-{seed},squeezenet1_1,true,{seed},features.12\n" for seed in range(10)]
    path = tmp_path / "plan.csv"
    path.write_text("model,arch,random_init,seed,layer\n" + "".join(rows))
    checked = check_plan(read_plan(path, defaults={"probe": "synth"}))
    assert sorted(builds) == ["resnet18", "squeezenet1_1"]
    assert [row.status for row in checked] == ["to do"] * 40, [row.reason for row in checked if row.reason]
    assert checked[1].layers == ["layer3", "layer4"] and checked[2].layers == ["layer4"]
    assert checked[35].layers == ["features.12"]


def test_a_fifo_among_a_probes_files_is_refused_and_nothing_is_stored(cli, engine, tmp_path, monkeypatch):
    """`probe add` hashes every c_*.csv of the folder for its decode cache: a FIFO there is refused, not read."""
    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))
    probe = tmp_path / "probe"
    assert cli("probe", "synth", probe, "--images", "10", "--size", "64").exit_code == 0
    os.mkfifo(probe / "c_extra.csv")
    with bounded():
        result = cli("probe", "add", "synth", probe)
    assert result.exit_code == 1, result.output
    assert f"{probe / 'c_extra.csv'} is a FIFO (named pipe), not a regular file" in result.stderr
    assert "Traceback" not in result.output
    assert stored(engine)["probe"] == 0


def test_a_checkpoint_that_is_a_device_is_refused_by_name():
    import torchvision

    from lce.models.checkpoints import load_checkpoint

    with pytest.raises(LceError, match=r"^Checkpoint /dev/zero is a character device, not a regular file"):
        load_checkpoint(torchvision.models.resnet18(), Path("/dev/zero"))
