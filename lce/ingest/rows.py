"""A plan's rows and what became of each: what lce.ingest.plan reads and checks, and lce.ingest.executors runs.

    row = PlanRow(line=2, model="resnet18", options={"probe": "synth"})     # status and reason after check_plan
    RowResult(row, "stored", seconds=12.5, runs=[outcome], where="cuda:0")   # one per row, from run_plan
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lce.ingest.run import IngestRequest


@dataclass
class PlanRow:
    line: int  # the row's line in the CSV file (the header is line 1)
    model: str
    options: dict  # the command line's options with the row's cells over them
    error: str = ""  # a cell that could not be read, said when the row is checked
    request: IngestRequest | None = None
    layers: list[str] = field(default_factory=list)
    status: str = ""  # to do | done | invalid (after check_plan)
    reason: str = ""  # why it is invalid


@dataclass
class RowResult:
    row: PlanRow
    outcome: str  # stored | skipped (stored before) | failed | invalid
    seconds: float = 0.0
    reason: str = ""
    runs: list = field(default_factory=list)  # the IngestOutcomes of a stored row
    where: str = ""  # the device (and Ray host) that ran it
