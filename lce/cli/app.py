"""The Typer application, its consoles, and the one place where user errors become messages and exit codes."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from contextlib import contextmanager

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lce.config import code_version
from lce.db import outage
from lce.disk import full_message, no_space
from lce.errors import LceError

app = typer.Typer(
    name="lce",
    help=(
        "Compare vision models by what they have learned: per-unit dissection results stored in PostgreSQL, "
        "queried with SQL, and projected into a Learned Concepts Embedding.\n\n"
        "Example: lce import dissect-csv models_dissect_profiles_raw.csv && lce embed --out lce.csv --plot lce.png"
    ),
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion: commands, subcommands and options
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Terminal control characters (ESC, BEL, C1 ...) but newline and tab: a stored name holding ESC ]0; or ESC [31m would
# retitle or recolour the terminal of whoever is shown it.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` as rich markup that shows it as it is: brackets escaped (rich's escape, which also doubles a
    backslash before one: \\[/x] is no closing tag), control characters as \\x1b."""
    return escape(CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text))


UNWRAPPED = 100_000  # columns: wider than any row, so that nothing printed to a pipe or a file is wrapped


class OutputConsole(Console):
    """Rich's console for standard output, wrapped at the terminal's width only on a terminal: in a pipe or a log
    file every line and every table row is printed whole (rich would wrap them at 80 columns), so that grep and
    cut see one row per line."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        return size if self.is_terminal else ConsoleDimensions(UNWRAPPED, size.height)


console = OutputConsole()
errors = Console(stderr=True)


def _print_version(given: bool) -> None:
    if given:
        typer.echo(code_version())
        raise typer.Exit()


@app.callback()
def lce_options(version: bool = typer.Option(False, "--version", is_eager=True, expose_value=False,
                                             callback=_print_version,
                                             help="Print lce's version, as recorded with every result, and exit.")
                ) -> None:
    """Options of lce itself, before the command (the app's help= is what --help shows)."""


def user_errors(function: Callable) -> Callable:
    """Print an LceError as one paragraph on stderr and exit non-zero, instead of a traceback. A database that
    goes away mid-command (a stopped or crashed server) is one too, for every command: its transaction was
    rolled back, and the message says to run the command again. So is a full disk: the database's (PostgreSQL's
    disk_full) or any file system's (ENOSPC), named with what to free."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            try:
                return function(*args, **kwargs)
            except Exception as error:
                if isinstance(error, LceError):
                    raise

                if no_space(error):
                    raise LceError(full_message(error, "A file")) from error

                if outage.disk_full(error):
                    raise outage.DatabaseFull(outage.reason(error)) from error
                if not outage.connection_lost(error):
                    raise
                raise LceError(outage.lost_message(error)) from error
        except LceError as error:
            # a message may hold brackets (pip install 'lce[ray]'), and names that anyone who wrote runs chose
            errors.print(f"[bold red]error:[/] {printable(str(error))}", highlight=False, soft_wrap=True)
            raise typer.Exit(error.exit_code) from None

    return wrapper


OVERALL = "models"  # lce ingest --plan's bar of rows done; the other bars are each worker's passes
DISSECTED = "pass 1"  # the pass that reads every probe image once per model, whichever worker runs it


@contextmanager
def progress_bars():
    """Rich progress bars on stderr, one per named task, with images/s and an ETA; yields the callback
    update(name, done, total) that the library's long functions report to. The "models" bar's rate is the images
    dissected per second over all its workers (their "... pass 1" bars), its ETA from the models done. Only on a
    terminal: elsewhere (a log) rich would draw no bars but leave an empty line behind."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=errors, transient=True, disable=not errors.is_interactive) as bar:
        tasks: dict[str, int] = {}
        last: dict[str, int] = {}  # each pass-1 bar's count, to add what it gained to the overall images
        overall = {"images": 0, "since": time.monotonic()}

        def update(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total, rate="")
            if name.endswith(DISSECTED):
                overall["images"] += done - last.get(name, 0) if done >= last.get(name, 0) else done
                last[name] = done
            if name == OVERALL:
                elapsed = time.monotonic() - overall["since"]
                rate = overall["images"] / elapsed if elapsed > 0 and overall["images"] else 0
                bar.update(tasks[name], completed=done, total=total, rate=f"{rate:,.0f} img/s" if rate else "")
                return
            speed = bar.tasks[tasks[name]].speed
            bar.update(tasks[name], completed=done, total=total, rate=f"{speed:,.0f} img/s" if speed else "")
            if OVERALL in tasks:  # its images/s moves with the workers', not only when a model ends
                update(OVERALL, bar.tasks[tasks[OVERALL]].completed, bar.tasks[tasks[OVERALL]].total)

        yield update
