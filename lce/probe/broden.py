"""Reading a probe dataset in the Broden format (docs/method.md section 2).

    probe = Broden.open(Path("broden1_224"), split="val")
    probe.labels_of(0)          # ImageLabels: pixel layers (sh x sw, global label numbers) and whole-image labels
    probe.vocabulary[17]        # Label(number=17, name='red-c', counts={'color': 3130}, ...)

index.csv columns are read by name; a category cell is empty or a ';'-separated list: integers are whole-image
labels (scene, texture), file names (relative to images/) are label PNGs whose pixel value is R + 256 G (0 =
unlabeled), several files being several label layers. Opening reads the CSV files only; `lce probe check`
(lce.probe.check) looks at every file.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lce.errors import LceError
from lce.input_files import TextLimits, read_text
from lce.probe.labels import ImageLabels

INDEX_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw")
LABEL_COLUMNS = ("number", "name", "category", "frequency", "coverage")
CATEGORY_COLUMNS = ("name", "first", "last", "count", "frequency")
CODE_COLUMNS = ("code", "number", "name", "frequency", "coverage")
SPLITS = ("train", "val", "all")
# Broden's largest table is index.csv: 63,305 images in about 13 MB, lines of a few hundred bytes.
PROBE_TABLE_LIMITS = TextLimits(size=256 * 2**20, line=2**20, lines=2_000_000,
                                why="about 20 times Broden's index.csv of 63,305 images")
# Broden marks colours and scenes with a suffix in the stored name ("red-c", "bedroom-s"); display drops it.
NAME_SUFFIXES = ("-c", "-s")
_CATEGORY_COUNT = re.compile(r"^\s*([^()]+?)\s*\((\d+)\)\s*$")


def display_name(name: str) -> str:
    for suffix in NAME_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass(frozen=True)
class Label:
    """One label of label.csv: its global number, name, the categories it occurs in (with image counts), and its
    primary category: the one where it has the largest coverage in c_<category>.csv, as NetDissect decides (ties
    go to the earlier category; without c_ files, the largest count in label.csv)."""

    number: int
    name: str
    counts: dict[str, int]
    frequency: int
    coverage: float
    primary_category: str

    @property
    def display_name(self) -> str:
        return display_name(self.name)


@dataclass(frozen=True)
class CategoryLabel:
    """One row of c_<category>.csv: a label as a member of one category."""

    category: str
    code: int
    number: int
    frequency: int
    coverage: float


@dataclass(frozen=True)
class IndexRow:
    line: int  # in index.csv (the header is line 1), for messages
    image: str
    split: str
    ih: int
    iw: int
    sh: int
    sw: int
    cells: dict[str, tuple[str, ...]]  # category -> items of its cell (empty categories omitted)

    def label_files(self, category: str) -> list[str]:
        return [item for item in self.cells.get(category, ()) if not _is_int(item)]

    def whole_labels(self, category: str) -> list[int]:
        return [int(item) for item in self.cells.get(category, ()) if _is_int(item)]


@dataclass
class Problem:
    """Something wrong with a probe dataset, with the file (and line) where it is."""

    path: Path
    message: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}" + (f", line {self.line}" if self.line is not None else "") + f": {self.message}"


class Problems(list):
    """Collects problems; in strict mode the first one raises (reading for use, rather than checking)."""

    def __init__(self, strict: bool):
        super().__init__()
        self.strict = strict

    def add(self, path: Path, message: str, line: int | None = None) -> None:
        problem = Problem(path, message, line)
        if self.strict:
            raise LceError(f"{problem}.")
        self.append(problem)


def _is_int(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def _read_table(path: Path, required: tuple[str, ...], problems: Problems) -> list[tuple[int, dict[str, str]]]:
    """(line, row) pairs of a CSV file whose header holds `required`; a problem (and no rows) otherwise."""
    if not os.path.lexists(path):
        problems.add(path, "is missing")
        return []
    try:  # a regular file within limits: a FIFO would wait, a link to /dev/zero or a huge file fill the memory
        text = read_text(path, PROBE_TABLE_LIMITS)
    except LceError as error:
        problems.add(path, str(error).removeprefix(str(path)).lstrip(", "))
        return []
    reader = csv.DictReader(text.splitlines())
    try:
        return _table_rows(path, reader, required, problems)
    except csv.Error as error:  # a cell longer than csv's field limit
        problems.add(path, f"cannot be read as a CSV table ({error}; a cell holds at most "
                           f"{csv.field_size_limit():,} characters)", reader.line_num)
        return []


def _table_rows(path: Path, reader: csv.DictReader, required: tuple[str, ...],
                problems: Problems) -> list[tuple[int, dict[str, str]]]:
    header = reader.fieldnames or []
    missing = [column for column in required if column not in header]
    if missing:
        problems.add(path, f"malformed header: lacks {', '.join(missing)} (header is {','.join(header)!r})", 1)
        return []
    rows = []
    for row in reader:
        if None in row:
            problems.add(path, "has more cells than its header has columns", reader.line_num)
            continue
        rows.append((reader.line_num, row))
    return rows


def _int(value: str, path: Path, line: int, column: str, problems: Problems) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        problems.add(path, f"{column} {value!r} is not a whole number", line)
        return None


def _float(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


class Broden:
    """A Broden-format probe dataset: its vocabulary and its index (optionally one split of it)."""

    def __init__(self, root: Path, categories: list[str], vocabulary: dict[int, Label],
                 members: dict[str, list[CategoryLabel]], rows: list[IndexRow], split: str):
        self.root = root
        self.categories = categories
        self.vocabulary = vocabulary
        self.members = members
        self.rows = rows
        self.split = split

    @classmethod
    def open(cls, root: Path, split: str = "all") -> Broden:
        """Read the CSV files; the first problem in them is an LceError naming the file and line."""
        return cls.read(root, split, Problems(strict=True))

    @classmethod
    def read(cls, root: Path, split: str, problems: Problems) -> Broden:
        if split not in SPLITS:
            raise LceError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}.")
        root = Path(root)
        if not root.is_dir():
            raise LceError(f"{root} is not a directory (a Broden-format probe dataset is one).")
        if not os.path.lexists(root / "index.csv"):  # one that is not a regular file is said so by _read_index
            raise LceError(f"{root / 'index.csv'} is missing: {root} is not a Broden-format dataset.")
        categories = _read_categories(root, problems)
        vocabulary = _read_labels(root, categories, problems)
        members = _read_members(root, categories, vocabulary, problems)
        vocabulary = _primary_by_coverage(vocabulary, members, categories)
        rows = _read_index(root, categories, vocabulary, problems)
        if split != "all":
            rows = [row for row in rows if row.split == split]
        if not rows and not problems:
            problems.add(root / "index.csv", f"lists no images{'' if split == 'all' else f' in split {split!r}'}")
        return cls(root, categories, vocabulary, members, rows, split)

    def __len__(self) -> int:
        return len(self.rows)

    def image_path(self, index: int) -> Path:
        return self.root / "images" / self.rows[index].image

    def labels_of(self, index: int) -> ImageLabels:
        """Decode image `index`'s label PNGs (at sh x sw) and whole-image labels."""
        row = self.rows[index]
        labels = ImageLabels()
        for category in self.categories:
            files = row.label_files(category)
            if files:
                labels.pixel[category] = [read_label_png(self.root / "images" / name) for name in files]
            whole = row.whole_labels(category)
            if whole:
                labels.whole[category] = whole
        return labels

    def content_sha256(self) -> str:
        """A hash of the dataset's CSV files (index, labels, categories, per-category codes)."""
        return csv_content_sha256(self.root)

    def max_layers(self) -> dict[str, int]:
        """The most label layers any image has, per category."""
        return {c: max((len(row.label_files(c)) for row in self.rows), default=0) for c in self.categories}


def csv_content_sha256(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted([root / "index.csv", root / "label.csv", root / "category.csv", *root.glob("c_*.csv")]):
        if path.is_file():  # read in blocks: a huge c_*.csv that no table names costs time, not memory
            digest.update(path.name.encode() + b"\0")
            with open(path, "rb") as table:
                while block := table.read(2**20):
                    digest.update(block)
            digest.update(b"\0")
    return digest.hexdigest()


def read_label_png(path: Path) -> np.ndarray:
    """A label PNG as an int32 array of label numbers: R + 256 G (0 = unlabeled)."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode != "RGB":
            image = image.convert("RGB")
        pixels = np.asarray(image, dtype=np.int32)
    return pixels[:, :, 0] + 256 * pixels[:, :, 1]


def unknown_labels(layer: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The label numbers of a decoded layer that are neither 0 (unlabeled) nor in `known` (sorted numbers)."""
    numbers = np.unique(layer)
    return numbers[(numbers != 0) & ~np.isin(numbers, known)]


def _read_categories(root: Path, problems: Problems) -> list[str]:
    path = root / "category.csv"
    return [row["name"].strip() for _, row in _read_table(path, CATEGORY_COLUMNS, problems)]


def _read_labels(root: Path, categories: list[str], problems: Problems) -> dict[int, Label]:
    path = root / "label.csv"
    vocabulary: dict[int, Label] = {}
    for line, row in _read_table(path, LABEL_COLUMNS, problems):
        number = _int(row["number"], path, line, "number", problems)
        if number is None or number == 0:  # 0 is "unlabeled" where a dataset lists it
            continue
        counts: dict[str, int] = {}
        for entry in filter(None, (part.strip() for part in row["category"].split(";"))):
            match = _CATEGORY_COUNT.match(entry)
            category, count = (match.group(1), int(match.group(2))) if match else (entry, 0)
            if category not in categories:
                problems.add(path, f"label {number} names category {category!r}, which category.csv lacks", line)
            counts[category] = count
        if not counts:
            problems.add(path, f"label {number} has no category", line)
            continue
        if number in vocabulary:
            problems.add(path, f"label number {number} appears twice", line)
        primary = max(counts, key=lambda category: counts[category])
        vocabulary[number] = Label(number, row["name"].strip(), counts, int(_float(row["frequency"])),
                                   _float(row["coverage"]), primary)
    return vocabulary


def _primary_by_coverage(vocabulary: dict[int, Label], members: dict[str, list[CategoryLabel]],
                         categories: list[str]) -> dict[int, Label]:
    coverage: dict[int, dict[str, float]] = {}
    for category, found in members.items():
        for member in found:
            coverage.setdefault(member.number, {})[category] = member.coverage
    updated = {}
    for number, label in vocabulary.items():
        shares = coverage.get(number)
        if shares:
            order = {c: i for i, c in enumerate(categories)}
            primary = max(shares, key=lambda c: (shares[c], -order.get(c, len(order))))
            label = replace(label, primary_category=primary)
        updated[number] = label
    return updated


def _read_members(root: Path, categories: list[str], vocabulary: dict[int, Label],
                  problems: Problems) -> dict[str, list[CategoryLabel]]:
    members: dict[str, list[CategoryLabel]] = {}
    for category in categories:
        path = root / f"c_{category}.csv"
        if not path.exists():  # optional: label.csv says the same, less precisely
            members[category] = [
                CategoryLabel(category, code, label.number, label.counts[category], label.coverage)
                for code, label in enumerate(
                    sorted((l for l in vocabulary.values() if category in l.counts), key=lambda l: l.number), 1)
            ]
            continue
        found = []
        for line, row in _read_table(path, CODE_COLUMNS, problems):
            code = _int(row["code"], path, line, "code", problems)
            number = _int(row["number"], path, line, "number", problems)
            if code is None or number is None or number == 0:
                continue
            if number not in vocabulary:
                problems.add(path, f"label number {number} is absent from label.csv", line)
                continue
            found.append(CategoryLabel(category, code, number, int(_float(row["frequency"])),
                                       _float(row["coverage"])))
        members[category] = found
    return members


def _read_index(root: Path, categories: list[str], vocabulary: dict[int, Label],
                problems: Problems) -> list[IndexRow]:
    path = root / "index.csv"
    rows = []
    table = _read_table(path, INDEX_COLUMNS, problems)
    if table:
        header = list(table[0][1].keys())
        unknown = [c for c in header if c not in INDEX_COLUMNS and c not in categories]
        for category in unknown:
            problems.add(path, f"column {category!r} is not a category of category.csv", 1)
        categories = [c for c in header if c in categories]
    for line, row in table:
        sizes = [_int(row[column], path, line, column, problems) for column in ("ih", "iw", "sh", "sw")]
        if None in sizes:
            continue
        if not row["image"].strip():
            problems.add(path, "the image cell is empty", line)
            continue
        cells = {}
        for category in categories:
            items = tuple(item.strip() for item in (row.get(category) or "").split(";") if item.strip())
            for item in items:
                if _is_int(item) and int(item) not in vocabulary:
                    problems.add(path, f"{category} label {item} is absent from label.csv", line)
            if items:
                cells[category] = items
        rows.append(IndexRow(line, row["image"].strip(), (row.get("split") or "").strip(), *sizes, cells))
    return rows
