"""What every importer shares: reading a table file, and checks that name the file, row and value at fault."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lce.db.runs import ModelInfo, RunRecord, TallyRow, UnitRow
from lce.db.schema import CATEGORIES
from lce.errors import LceError


@dataclass(frozen=True)
class Where:
    """A place in an input file, for messages: 'results.csv, line 12' or 'report.json, units[3]'."""

    path: Path
    line: int | None = None
    entry: int | None = None  # index into a JSON list, where there are no lines to speak of

    def __str__(self) -> str:
        if self.entry is not None:
            return f"{self.path}, units[{self.entry}]"
        return f"{self.path}" + (f", line {self.line}" if self.line is not None else "")


def read_csv(path: Path, required: list[str]) -> Iterator[tuple[Where, dict[str, str]]]:
    """Rows of a CSV file as dicts, each with its place (the header is line 1; quoted newlines are not expected)."""
    text = _read_text(path)
    lines = text.splitlines()
    if not lines or "," not in lines[0]:
        raise LceError(f"{path} is not a CSV file: its first line should be a header such as "
                       f"{','.join(required)}.")
    reader = csv.DictReader(lines)
    header = reader.fieldnames or []
    missing = [column for column in required if column not in header]
    if missing:
        raise LceError(f"{path} lacks the column(s) {', '.join(missing)}; its header is "
                       f"{','.join(header)!r}, and {','.join(required)} are needed.")
    for row in reader:
        where = Where(path, reader.line_num)
        if None in row:  # more cells than header columns
            raise LceError(f"{where} has more cells than the header has columns.")
        yield where, row


def csv_header(path: Path) -> list[str]:
    """The header line of a CSV file, every column as written (duplicates and empty names included)."""
    lines = _read_text(path).splitlines()
    return next(csv.reader(lines[:1]), [])


def _read_text(path: Path) -> str:
    if not path.exists():
        raise LceError(f"{path} does not exist.")
    if path.is_dir():
        raise LceError(f"{path} is a directory, not a file.")
    data = path.read_bytes()
    if b"\0" in data[:4096]:
        raise LceError(f"{path} is a binary file, not a CSV or JSON text file.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise LceError(f"{path} is not UTF-8 text (byte {error.start} cannot be decoded).") from error


def read_json_text(path: Path) -> str:
    return _read_text(path)


def parse_int(value: str, where: Where, column: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LceError(f"{where}: {column} {value!r} is not a whole number.") from None
    if not number.is_integer():
        raise LceError(f"{where}: {column} {value!r} is not a whole number.")
    return int(number)


def parse_iou(value: str | float | None, where: Where, column: str = "iou") -> float | None:
    """An IoU in [0, 1]; an empty cell (or JSON null) is None, a missing value rather than an error."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        iou = float(value)
    except (TypeError, ValueError):
        raise LceError(f"{where}: {column} {value!r} is not a number.") from None
    if math.isnan(iou):
        return None
    if not 0.0 <= iou <= 1.0:
        raise LceError(f"{where}: {column} {value!r} is outside [0, 1].")
    return iou


def parse_category(value: str, where: Where, column: str = "category") -> str:
    category = value.strip()
    if category not in CATEGORIES:
        raise LceError(f"{where}: {column} {value!r} is not a known category; lce knows {', '.join(CATEGORIES)}.")
    return category


class UnitIndex:
    """Collects unit indices per model and checks them: no duplicates, and 0..n-1 for n units listed.

    Indices are 0-based; `first` is how the file numbers its first unit, used in messages (tally.csv: 1).
    """

    def __init__(self, path: Path, first: int = 0):
        self.path = path
        self.first = first
        self._rows: dict[str, dict[int, Where]] = defaultdict(dict)

    def add(self, model: str, unit: int, where: Where) -> None:
        seen = self._rows[model]
        if unit in seen:
            raise LceError(
                f"{where}: unit {unit + self.first} of model {model!r} appears twice (first at {seen[unit]})."
            )
        if unit < 0:
            raise LceError(f"{where}: unit {unit + self.first} of model {model!r} is out of range: it is below "
                           f"{self.first}, the first unit number.")
        seen[unit] = where

    def check_range(self) -> None:
        """Every model's units must be first..first+n-1: a unit beyond the layer's size is an error."""
        for model, seen in self._rows.items():
            count = len(seen)
            for unit, where in seen.items():
                if unit >= count:
                    raise LceError(
                        f"{where}: unit {unit + self.first} of model {model!r} is out of range: the "
                        f"file lists {count} units for it, so unit numbers must run from {self.first} to "
                        f"{count - 1 + self.first}."
                    )


def imported_run(
    *, path: Path, fmt: str, model: str, architecture: str | None, probe: str, layer: str, variant: str,
    quantile: float, iou_threshold: float, units: list[UnitRow], tallies: list[TallyRow] | None = None,
    **settings,
) -> RunRecord:
    """The run of an imported file: source `imported:<fmt>`, units (and tallies) in unit order."""
    return RunRecord(
        model=ModelInfo(name=model, architecture=architecture),
        probe=probe,
        layer=layer,
        variant=variant,
        quantile=quantile,
        iou_threshold=iou_threshold,
        source=f"imported:{fmt}",
        units=sorted(units, key=lambda u: u.unit),
        tallies=sorted(tallies or [], key=lambda t: (t.unit, t.concept)),
        settings={"file": path.name, "format": fmt, **settings},
    )
