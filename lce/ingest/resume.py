"""Storing the runs that an ingest saved when its database went away or was full (`lce ingest --resume FILE`).

    for stored in resume(Path("~/.lce/pending/20261206-211500-r18.runs.json.gz"), replace=False):
        print(stored.written.record.model.name, stored.written.run_id, stored.interpretable)

The file is written in one transaction with its own --replace (or with `replace` when True), then deleted
(lce.db.pending.resume); each run's interpretable units are counted as the ingest that dissected it counts them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lce.db import pending
from lce.db.runs import WrittenRun
from lce.ingest.run import interpretable_units


@dataclass(frozen=True)
class ResumedRun:
    written: WrittenRun  # the run as stored (its record, outcome and run id)
    interpretable: int  # its units whose label's IoU exceeds the run's cut-off


def resume(path: Path, replace: bool = False) -> list[ResumedRun]:
    """Store the file's runs; `replace` False keeps the --replace of the command that saved them."""
    return [ResumedRun(item, len(interpretable_units(item.record)))
            for item in pending.resume(path, replace=replace or None)]
