"""The command line as a user meets it: help with examples, errors without tracebacks, the embedded server,
unwrapped output where it is not a terminal, a quiet end when the reader of a pipe goes away, --version."""

import io
import os
import subprocess
import sys

import pytest
import typer

from lce.cli import app
from lce.cli.app import OutputConsole
from lce.config import code_version
from lce.db import connection, migrate
from tests.conftest import REPO, Cli


def command_tree(command, path: tuple[str, ...] = ()):
    """(path, Click command) for lce and every command and subcommand under it, from the Typer app itself."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_tree(sub, path + (name,))


TREE = dict(command_tree(typer.main.get_command(app)))
COMMANDS = [list(path) for path in TREE]


def test_the_command_tree_holds_every_command():
    """The list the help tests run over is read from the app: these are only the ones known today."""
    for path in (["compare"], ["report"], ["correlate"], ["tasks", "import"], ["db", "url"], ["probe", "synth"]):
        assert path in COMMANDS
    assert len(COMMANDS) >= 28  # lce, 9 commands, 4 groups and their 14 subcommands


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "lce")
def test_every_help_explains_itself_with_an_example(command):
    result = Cli()(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert "lce" in result.stdout.split("Example", 1)[1]


@pytest.mark.parametrize("group", [path for path, command in TREE.items() if hasattr(command, "commands")],
                         ids=lambda c: " ".join(c) or "lce")
def test_a_group_lists_each_command_on_one_short_line(group):
    """lce --help (and lce db --help, ...) give one line per command; the command's own --help says the rest."""
    listed = TREE[group].commands
    result = Cli()(*group, "--help")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for name, command in listed.items():
        assert command.short_help and "\n" not in command.short_help and len(command.short_help) <= 72, name
        assert [line for line in lines if f" {command.short_help} " in line], name  # whole, on one line
    rows = [line for line in lines if line.startswith("│ ") and line.split()[1] in listed]
    assert [row.split()[1] for row in rows] == list(listed)  # no continuation lines between them
    own = Cli()(*group, next(iter(listed)), "--help").stdout
    assert len(" ".join(own.split())) > len(next(iter(listed.values())).short_help)


def test_version_is_the_one_recorded_with_results():
    result = Cli()("--version")
    assert result.exit_code == 0
    assert result.stdout == code_version() + "\n"
    assert result.stdout.startswith("lce 0.1.0")


def test_completion_script_completes_commands(monkeypatch):
    import typer.completion
    from typer.testing import CliRunner

    # --show-completion asks shellingham for the calling shell; a run with no shell among its ancestors (a job
    # started in the background of a tool, a CI runner) has none and Typer prints "Shell  not supported".
    monkeypatch.setattr(typer.completion, "_get_shell_name", lambda: "bash")
    runner = CliRunner()
    script = runner.invoke(app, ["--show-completion", "bash"], prog_name="lce")
    assert script.exit_code == 0
    assert script.stdout.rstrip().endswith("complete -o default -F _lce_completion lce")
    completed = runner.invoke(app, [], prog_name="lce", env={"_LCE_COMPLETE": "complete_bash",
                                                             "COMP_WORDS": "lce db st", "COMP_CWORD": "2"})
    assert completed.stdout.split() == ["status", "stop"]


def test_tables_are_wrapped_on_a_terminal_and_whole_elsewhere():
    from lce.cli.tables import table as _table

    row = ("a-model-name-" * 10, "layer4", "imported:dissect-csv")
    printed = {}
    for terminal in (True, False):
        out = io.StringIO()
        table = _table(["model", "layer", "source"])
        table.add_row(*row)
        OutputConsole(file=out, force_terminal=terminal, width=60, color_system=None).print(table)
        printed[terminal] = [line for line in out.getvalue().splitlines() if line.startswith("│")]
    assert len(printed[True]) > 1 and max(len(line) for line in printed[True]) <= 60  # folded to the terminal
    assert len(printed[False]) == 1 and row[0] in printed[False][0]  # in a pipe or a file: the row, whole


def test_zoo_in_a_pipe_prints_one_line_per_model():
    """At COLUMNS=200 (conftest) rich would fold the sources; in a pipe every row is whole."""
    from lce.models.zoo import zoo_entries

    result = Cli()("zoo")
    assert result.exit_code == 0
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == [entry.name for entry in zoo_entries()]
    for row, entry in zip(rows, zoo_entries()):
        assert entry.note in row
    assert max(len(line) for line in result.stdout.splitlines()) > 200


@pytest.mark.parametrize("command", [["zoo"], ["--version"]])
def test_a_closed_pipe_ends_quietly(command, tmp_path):
    """`lce zoo | head -0`: the reader is gone before lce writes; no traceback, exit status 1 as Python's tools."""
    process = subprocess.Popen([sys.executable, "-m", "lce", *command], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "LCE_HOME": str(tmp_path)})
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 1
    assert stderr == ""


def test_cli_py_runs_the_same_app():
    result = subprocess.run([sys.executable, str(REPO / "cli.py"), "--help"], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "200"}, timeout=60)
    assert result.returncode == 0
    for command in ("embed", "sql", "models", "db", "import"):
        assert command in result.stdout


def test_unreachable_database_is_one_sentence_with_the_password_masked(monkeypatch):
    monkeypatch.setenv("LCE_DATABASE_URL", "postgresql://alice:s3cret@127.0.0.1:9/lce")
    connection.dispose_all()
    result = Cli()("models")
    connection.dispose_all()
    assert result.exit_code == 1
    assert "Cannot reach the database at postgresql+psycopg://alice:***@127.0.0.1:9/lce" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_a_url_that_is_not_postgres_is_refused(monkeypatch):
    monkeypatch.setenv("LCE_DATABASE_URL", "mysql://bob@localhost/lce")
    connection.dispose_all()
    result = Cli()("models")
    connection.dispose_all()
    assert result.exit_code == 1
    assert "mysql://bob@localhost/lce" in result.stderr


def test_user_errors_exit_non_zero_in_a_real_process(database, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,unit,iou,label,category\nm,0,x,sky,object\n")
    result = subprocess.run([sys.executable, "-m", "lce", "import", "dissect-csv", str(bad)], capture_output=True,
                            text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {bad}, line 2: iou 'x' is not a number."


def test_embedded_server_starts_on_first_use_and_stops(tmp_path, monkeypatch):
    """With no LCE_DATABASE_URL, lce runs its own server under $LCE_HOME, on a unix socket only."""
    monkeypatch.delenv("LCE_DATABASE_URL", raising=False)
    monkeypatch.delenv("LCE_DATABASE_READONLY_URL", raising=False)
    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))
    connection.dispose_all()
    cli = Cli()
    try:
        status = cli("db", "status")
        assert status.exit_code == 0 and "not running" in status.stdout
        models = cli("models")
        assert models.exit_code == 0 and "No models yet" in models.stdout
        url = cli("db", "url").stdout.strip()  # the read-only login unless --write
        assert url.startswith("postgresql://lce_reader@/lce?host=") and "home" in url and ":5432" not in url
        assert cli("db", "url", "--write").stdout.startswith("postgresql://lce_owner@/lce?host=")
        status = cli("db", "status")
        assert f"revision {migrate.head()}, up to date" in status.stdout
        assert "read-only: postgresql+psycopg://lce_reader@/lce?host=" in status.stdout
        assert "unix socket only, peer authentication" in status.stdout
        assert (tmp_path / "home" / "postgres" / "PG_VERSION").exists()
        # postmaster.pid: pid, data dir, start time, port, socket dir, listen addresses (empty: no TCP), ...
        pid_lines = (tmp_path / "home" / "postgres" / "postmaster.pid").read_text().splitlines()
        assert pid_lines[4].strip() == str(tmp_path / "home" / "postgres")
        assert pid_lines[5].strip() == ""
    finally:
        stop = cli("db", "stop")
    assert stop.exit_code == 0 and "stopped" in stop.stdout
    assert "not running" in cli("db", "status").stdout
