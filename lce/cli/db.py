"""`lce db status|upgrade|url|stop`: the database lce uses."""

from __future__ import annotations

import typer

from lce.cli.app import app, console, printable, user_errors
from lce.config import external_database_url
from lce.db.connection import connect, connect_reader, masked, stop_embedded
from lce.db.status import database_status
from lce.db.upgrade import upgrade_database

db_app = typer.Typer(
    help="The PostgreSQL database lce uses: the embedded server (default) or $LCE_DATABASE_URL.\n\n"
    "Example: psql \"$(lce db url)\"",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db", short_help="The database lce uses: status, upgrade, url, stop.")


@db_app.command("status", short_help="Where the database is, whether it runs, its schema and rows.")
@user_errors
def status() -> None:
    """Where the database is, whether it runs, its schema revision and row counts.

    Example: lce db status
    """
    found = database_status()
    kind = "embedded server" if found.embedded else "external server (LCE_DATABASE_URL)"
    console.print(f"database:  {kind}")
    if found.data_dir:
        console.print(f"data dir:  {found.data_dir}")
    for path in found.pending:
        console.print(f"pending:   {printable(path)} (runs saved when the database was away or full: lce ingest "
                      "--resume FILE)", soft_wrap=True, highlight=False)
    if found.pending_dir_problem:
        console.print(f"pending:   {printable(found.pending_dir_problem)}", soft_wrap=True, highlight=False)
    if not found.running:
        console.print("state:     not running (any lce command starts it)")
        return
    console.print(f"url:       {found.url}")
    console.print(f"read-only: {found.reader_url or 'none (set LCE_DATABASE_READONLY_URL for lce sql)'}",
                  soft_wrap=True, highlight=False)
    if found.embedded:
        console.print("access:    unix socket only, peer authentication for this OS user", soft_wrap=True)
    console.print(f"server:    PostgreSQL {found.server_version}")
    state = "up to date" if found.revision == found.head else f"behind (head is {found.head}; run lce db upgrade)"
    console.print(f"schema:    revision {found.revision or 'none'}, {state}")
    for table, count in found.counts.items():
        console.print(f"  {table:<13} {count:>10,} rows")


@db_app.command("upgrade", short_help="Migrate the schema to the newest revision; grant the read-only role.")
@user_errors
def upgrade() -> None:
    """Migrate the schema to the newest revision (every command also does this on first use), and give the
    read-only role SELECT on every table and view. On an external server, create that role (lce_reader, or the
    user of LCE_DATABASE_READONLY_URL) when the connecting user may create roles, and take from PUBLIC the
    temporary tables and large objects PostgreSQL grants it, as far as that user may (or say what to ask for).

    Example: LCE_DATABASE_URL=postgresql://me@dbhost/lce lce db upgrade
    """
    for said in upgrade_database():
        console.print(said)


@db_app.command("url", short_help="Print the connection URL (the read-only login unless --write).")
@user_errors
def url(
    sqlalchemy: bool = typer.Option(False, "--sqlalchemy", help="Print the SQLAlchemy URL (with driver)."),
    show_password: bool = typer.Option(False, "--show-password", help="Do not mask the password."),
    write: bool = typer.Option(False, "--write", help="The owner's login (can write) instead of the read-only "
                                                      "one."),
) -> None:
    """Print the connection URL, for psql or any Postgres client (starts the embedded server if needed): the
    read-only login unless --write.

    Example: psql "$(lce db url)" -c 'SELECT * FROM unit_label LIMIT 5'
    """
    found = (connect() if write else connect_reader(required=True)).url
    if not sqlalchemy:
        found = found.set(drivername="postgresql")
    shown = found.render_as_string(hide_password=False)
    typer.echo(shown if show_password else masked(shown))  # masked: the query's password= too


@db_app.command("stop", short_help="Stop the embedded server.")
@user_errors
def stop() -> None:
    """Stop the embedded server (it otherwise keeps running between commands).

    Example: lce db stop
    """
    if external_database_url():
        console.print("LCE_DATABASE_URL points at an external server; lce does not stop it.")
        return
    console.print("embedded server stopped" if stop_embedded() else "embedded server was not running")
