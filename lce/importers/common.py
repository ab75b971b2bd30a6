"""What every importer shares: reading a table file, and checks that name the file, row and value at fault.

    for where, row in read_csv(path, ["name", "unit"]):     # where: "results.csv, line 12"
        model = check_name(row["name"].strip(), where, "model name")     # lce.names
        unit = parse_int(row["unit"], where, "unit")

Names and labels are checked by lce.names (one line of printable text). CSV files are read with csv's own newline
handling, so a line number is a line as an editor counts them.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lce.errors import LceError
from lce.input_files import IMPORT_LIMITS, read_text
from lce.records import ModelInfo, RunRecord, TallyRow, UnitRow
from lce.vocabulary import CATEGORIES

COUNT_LIMIT = 2**63  # counts are PostgreSQL bigints


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
    """Rows of a CSV file as dicts, each with its place (the header is line 1; a row with a quoted newline is
    placed at its last line). A row with more cells than the header, or too few to reach a `required` column, is
    an error; a short row's other columns are None."""
    text = _read_text(path)
    if "," not in io.StringIO(text, newline="").readline():
        raise LceError(f"{path} is not a CSV file: its first line should be a header such as "
                       f"{','.join(required)}.")
    reader = csv.DictReader(io.StringIO(text, newline=""))  # newline="": only \n, \r\n and \r end a line
    try:
        header = reader.fieldnames or []
    except csv.Error as error:
        raise _csv_error(path, reader.reader.line_num, error) from None
    missing = [column for column in required if column not in header]
    if missing:
        raise LceError(f"{path} lacks the column(s) {', '.join(missing)}; its header is "
                       f"{','.join(header)!r}, and {','.join(required)} are needed.")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise _csv_error(path, reader.reader.line_num, error) from None
        where = Where(path, reader.line_num)
        if None in row:  # more cells than header columns
            raise LceError(f"{where} has more cells than the header has columns.")
        short = [column for column in required if row[column] is None]  # DictReader's filling of a short row
        if short:
            cells = sum(value is not None for value in row.values())
            raise LceError(f"{where} has {cells} cell(s) for the header's {len(header)} columns: it lacks "
                           f"{', '.join(short)}.")
        yield where, row


def csv_header(path: Path) -> list[str]:
    """The header line of a CSV file, every column as written (duplicates and empty names included)."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        return next(reader, [])
    except csv.Error as error:
        raise _csv_error(path, reader.line_num, error) from None


def _csv_error(path: Path, line: int, error: csv.Error) -> LceError:
    where = Where(path, max(line, 1))
    if "field larger than field limit" in str(error):
        return LceError(f"{where}: a cell is longer than {csv.field_size_limit():,} characters, more than any name, "
                        "label or number lce reads; the file is damaged, or a quote is not closed.")
    return LceError(f"{where}: not readable as CSV ({error}).")


def _read_text(path: Path) -> str:
    return read_text(path, IMPORT_LIMITS)  # a regular file within the limits, UTF-8, no NUL byte


def read_json_text(path: Path) -> str:
    return _read_text(path)


def parse_int(value: str, where: Where, column: str) -> int:
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)  # "3.0" and "1e3" are whole numbers too
    except (TypeError, ValueError):
        raise LceError(f"{where}: {column} {value!r} is not a whole number.") from None
    if not number.is_integer():
        raise LceError(f"{where}: {column} {value!r} is not a whole number.")
    return int(number)


def parse_count(value: str, where: Where, column: str) -> int:
    """A pixel count: a whole number from 0 to 2^63 - 1 (a PostgreSQL bigint)."""
    count = parse_int(value, where, column)
    if not 0 <= count < COUNT_LIMIT:
        raise LceError(f"{where}: {column} {value!r} is not a pixel count: counts run from 0 to 2^63 - 1.")
    return count


def parse_iou(value: str | float | None, where: Where, column: str = "iou") -> float | None:
    """An IoU in [0, 1]; an empty cell (or JSON null) is None, a missing value rather than an error, and NaN is
    refused (it would be stored as a missing value without a word)."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        iou = float(value)
    except (TypeError, ValueError):
        raise LceError(f"{where}: {column} {value!r} is not a number.") from None
    if math.isnan(iou):
        raise LceError(f"{where}: {column} {value!r} is not a number; leave the cell empty (null in JSON) for a "
                       "unit without an IoU.")
    if not 0.0 <= iou <= 1.0:
        raise LceError(f"{where}: {column} {value!r} is outside [0, 1].")
    return iou


def parse_finite(value: str | float, where: Where, column: str) -> float:
    """A finite number (an activation, a threshold): NaN and infinities are refused."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LceError(f"{where}: {column} {value!r} is not a number.") from None
    if not math.isfinite(number):
        raise LceError(f"{where}: {column} {value!r} is not a finite number.")
    return number


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
