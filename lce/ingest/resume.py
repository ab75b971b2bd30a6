"""Storing the runs that an ingest saved when its database went away or was full (`lce ingest --resume FILE`).

    for stored in resume(Path("~/.lce/pending/20261206-211500-r18.runs.json.gz"), replace=False):
        print(stored.written.record.model.name, stored.written.run_id, stored.interpretable)
    written = store_file(path)                 # a plan's retry: the WrittenRuns, the file's own --replace

The file is read and checked as an import is (lce.importers.pending_runs), written in one transaction with its own
--replace (or with `replace` when True), then deleted; each run's interpretable units are counted as the ingest
that dissected it counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lce.config import write_retry_s
from lce.db.connection import connect
from lce.db.outage import DatabaseFull, DatabaseLost
from lce.db.runs import WrittenRun, write_runs
from lce.errors import LceError
from lce.importers.pending_runs import check_probes, load


@dataclass(frozen=True)
class ResumedRun:
    written: WrittenRun  # the run as stored (its record, outcome and run id)
    interpretable: int  # its units whose label's IoU exceeds the run's cut-off


def resume(path: Path, replace: bool = False) -> list[ResumedRun]:
    """Store the file's runs; `replace` False keeps the --replace of the command that saved them."""
    return [ResumedRun(item, len(item.record.interpretable_units()))
            for item in store_file(path, replace=replace or None)]


def store_file(path: Path, replace: bool | None = None, retry_s: float | None = None) -> list[WrittenRun]:
    """Write the file's runs in one transaction (the same replace / unchanged rules as the command that saved
    them, or `replace` when given), then delete the file. When the database is still away the file stays."""
    records, saved_replace = load(path)
    replace = saved_replace if replace is None else replace
    engine = connect()
    with engine.connect() as conn:
        check_probes(Path(path), records, conn)
    try:
        written = write_runs(engine, records, replace=replace,
                             retry_s=write_retry_s() if retry_s is None else retry_s)
    except DatabaseLost as error:
        raise LceError(f"{error.gone()} Nothing was written; the runs stay in {path} for `lce ingest --resume {path}` "
                       "once the database is back.") from None
    except DatabaseFull as error:
        raise LceError(f"{error.full()} Nothing was written; the runs stay in {path} for `lce ingest --resume "
                       f"{path}`: {error.remedy()}, then run it again.") from None
    Path(path).unlink()
    return written
