"""The `lce` command line: thin commands over the library (each module registers its commands on `app`)."""

from lce.cli import db, embed, imports, ingest, layers, probe, query  # noqa: F401  (registering the commands)
from lce.cli import tasks  # noqa: F401
from lce.cli import report  # noqa: F401  (lce compare, lce report)
from lce.cli.app import app


def main() -> None:
    app()
