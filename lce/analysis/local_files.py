"""Local files that `lce sql` joins in: read by lce on a connection of their own, handed over as tables.

    name, path = read_option("families=families.csv")   # or "families.csv": the name is the file's stem
    table = read_table(path, f"--read {name}={path}")   # a pyarrow.Table; LceError unless a regular data file
    con.register(name, table)                            # the locked session sees a table, never the path

The locked session (duck.py) reaches no file; a file that a query names (`JOIN 'families.csv'`) or that --read
gives is read here, on a throw-away DuckDB connection that runs only lce's own read_csv/read_parquet/read_json
and has nothing attached.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import duckdb
import pyarrow

from lce.errors import LceError, first_line

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SUFFIXES = (".csv", ".tsv", ".parquet", ".json", ".jsonl", ".ndjson")


def read_option(option: str) -> tuple[str, Path]:
    """--read NAME=PATH, or --read PATH named after the file's stem (families.csv: families)."""
    name, equals, path = option.partition("=")
    if not equals or not NAME.fullmatch(name):
        name, path = Path(option).name.split(".")[0], option
        if not NAME.fullmatch(name):
            raise LceError(f"--read {option}: the file's name is no table name; give one as --read NAME=PATH "
                           "(letters, digits and _).")
    return name, Path(path)


def read_table(path: Path, where: str) -> pyarrow.Table:
    """The rows of a regular CSV, TSV, Parquet or JSON file (by suffix, optionally .gz), as Arrow; `where` names
    the file in a message (the option or the query that gave it)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise LceError(f"{where}: {error.strerror}.") from None
    if any(glob in str(path) for glob in "*?["):  # DuckDB would read them as a pattern of several files
        raise LceError(f"{where}: a name with * ? or [ is a pattern to DuckDB; name one file.")
    if not stat.S_ISREG(mode):
        raise LceError(f"{where} is not a regular file (a folder, device or pipe); lce sql reads files only.")
    suffix = path.name.lower().removesuffix(".gz")
    suffix = next((known for known in SUFFIXES if suffix.endswith(known)), None)
    if suffix is None:
        raise LceError(f"{where}: lce sql reads {', '.join(SUFFIXES)} files (optionally .gz), by suffix.")
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        if suffix == ".parquet":
            relation = con.read_parquet(str(path))
        elif suffix in (".csv", ".tsv"):
            relation = con.read_csv(str(path))
        else:
            relation = con.read_json(str(path))
        return relation.to_arrow_table()
    except duckdb.Error as error:
        raise LceError(f"{where}: DuckDB cannot read it: {first_line(error)}") from None
    finally:
        con.close()
