"""The `lce` command line: thin commands over the library, one module per command or command group, named after
it (`lce import ...` lives in imports.py: `import` is a Python keyword). Each module registers its commands on `app`;
the order of the imports is the order of `lce --help`."""

from lce.cli import db, embed, imports, ingest, zoo, layers, probe, sql, models, tasks, correlate  # noqa: F401
from lce.cli import compare, control, report  # noqa: F401
from lce.cli.app import app


def main() -> None:
    app()
