"""Local files that `lce sql` joins in: read by lce on a connection of their own, handed over as tables.

    name, path = read_option("families=families.csv")   # or "families.csv": the name is the file's stem
    table = read_table(path, f"--read {name}={path}")   # a pyarrow.Table; LceError unless a regular data file
    con.register(name, table)                            # the locked session sees a table, never the path

The locked session (duck.py) reaches no file; a file that a query names (`JOIN 'families.csv'`) or that --read
gives is read here, on a throw-away DuckDB connection that runs only lce's own read_csv/read_parquet/read_json
and has nothing attached. The rows are held in memory, so they are counted as they are read: past half of the
machine's memory for all of a query's files (memory_budget), the file is refused with a message.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb
import pyarrow

from lce.errors import LceError, first_line
from lce.input_files import regular_file

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SUFFIXES = (".csv", ".tsv", ".parquet", ".json", ".jsonl", ".ndjson")
BATCH_ROWS = 1 << 16


def read_option(option: str) -> tuple[str, Path]:
    """--read NAME=PATH, or --read PATH named after the file's stem (families.csv: families)."""
    name, equals, path = option.partition("=")
    if not equals or not NAME.fullmatch(name):
        name, path = Path(option).name.split(".")[0], option
        if not NAME.fullmatch(name):
            raise LceError(f"--read {option}: the file's name is no table name; give one as --read NAME=PATH "
                           "(letters, digits and _).")
    return name, Path(path)


def read_table(path: Path, where: str, budget: int | None = None) -> pyarrow.Table:
    """The rows of a regular CSV, TSV, Parquet or JSON file (by suffix, optionally .gz), as Arrow; `where` names
    the file in a message (the option or the query that gave it). LceError once the rows take more than `budget`
    bytes in memory (memory_budget() when None)."""
    if any(glob in str(path) for glob in "*?["):  # DuckDB would read them as a pattern of several files
        raise LceError(f"{where}: a name with * ? or [ is a pattern to DuckDB; name one file.")
    regular_file(path, where)  # the check every input file gets: a regular file, before anything opens it
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
        return hold(relation.to_arrow_reader(BATCH_ROWS), where, memory_budget() if budget is None else budget,
                    "select the rows or columns you need into a smaller file first")
    except duckdb.Error as error:
        raise LceError(f"{where}: DuckDB cannot read it: {first_line(error)}") from None
    finally:
        con.close()


def memory_budget() -> int:
    """The bytes that a query's local files and its result may take in memory, all together: half of the
    machine's memory. Both are held (the locked session cannot stream a file it may not open, and the result leaves
    it as Arrow), so rows past that (a large file, a .gz bomb, SELECT * FROM range(10^10)) are refused as they
    come rather than ending in the kernel's out-of-memory killer."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2


def hold(reader: pyarrow.RecordBatchReader, where: str, budget: int, advice: str) -> pyarrow.Table:
    """The reader's rows as one table; LceError (`where`, then `advice`) once they take more than `budget` bytes."""
    batches, held = [], 0
    for batch in reader:
        held += batch.nbytes
        if held > budget:
            size = f"{budget / 2**30:.1f} GiB" if budget >= 2**30 else f"{budget / 2**20:.0f} MiB"
            raise LceError(f"{where}: its rows take more than {size} in memory (lce sql holds a query's local files "
                           f"and its result, within half of this machine's memory); {advice}.")
        batches.append(batch)
    return pyarrow.Table.from_batches(batches, schema=reader.schema)
