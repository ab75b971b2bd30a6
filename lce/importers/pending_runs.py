"""The runs of a pending file (lce.db.pending) read back with the importers' checks, so that `lce ingest --resume`
(lce.ingest.resume, which stores them) stores only what an import of the same data would.

    records, replace = load(path)                 # RunRecords; else one LceError naming the file, run and field
    check_probes(path, records, conn)             # each run's probe registered, its top images within it

A file is read as any input file is: at most MAX_JSON_BYTES of JSON, its runs checked as an import's, their probe
registered and their top images within it, before anything is written.

lce writes these files itself (lce.db.pending.save), but reads them back as any input: one may have been edited,
and a run stored from it is read by every later command. So: names and labels as lce.names checks them
(one line of printable text, MAX_NAME or MAX_LABEL characters; the model's architecture and notes, texts rather
than names, at most MAX_TEXT); numbers of JSON's own types (a string or `true` is no number) and finite, IoUs and
shares in [0, 1]; counts from 0 to 2^63 - 1, unit, rank and image numbers from 0 to 2^31 - 1 (PostgreSQL bigints
and integers); units numbered 0..n-1 once each, and every tally, top image, alternative and replicate label of a
unit among them; only dissected runs (an ingest saves no other), of a probe dataset registered in the database the
runs go to, whose image count bounds the top images. An unknown measure is null, never NaN.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import reprlib
import sys
import zlib
from dataclasses import fields
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, text

from lce.db.pending import FORMAT, VERSION
from lce.records import Bootstrap, ConceptKey, ModelInfo, ReplicateLabels, RunRecord, TallyColumns, UnitRow
from lce.vocabulary import NAMES as VARIANTS
from lce.errors import LceError
from lce.importers.common import COUNT_LIMIT, UnitIndex, parse_category, parse_count, parse_finite, parse_iou
from lce.input_files import check_input
from lce.names import MAX_LABEL, check_name
from lce.resources import read_sql

# The most JSON that --resume decompresses, far above lce's own files: about 355 MiB for ResNet-50's layer4 over
# Broden (2,048 units x 1,196 concepts, 200 replicate labels a unit), 665 MiB for its four stages in one ingest,
# 2.6 GiB for all 16 of its blocks (bench/bench_pending_size.py).
MAX_JSON_BYTES = 8 * 2**30
# And, past the first RATIO_FROM bytes, at most MAX_RATIO times the file's own size: lce's files compress about 5 to
# 1, DEFLATE up to 1032 to 1, so a small file that inflates to gigabytes stops early, not when memory runs out.
MAX_RATIO, RATIO_FROM = 50, 64 * 2**20
# A model's architecture and notes: an --arch spec as resolved (an hf: directory, up to PATH_MAX, 4,096 bytes) and
# the weight files it read.
MAX_TEXT = 10_000
INDEX_LIMIT = 2**31  # unit, rank and image numbers are PostgreSQL integers
SOURCE = "dissected"  # lce.ingest.run's runs: the only ones an ingest saves
RUN_FIELDS = ("model", "probe", "layer", "variant", "quantile", "iou_threshold", "source", "units", "tallies",
              "seg_size", "settings", "top_images")
BOOTSTRAP_FIELDS = ("replicates", "blocks", "seed", "alternatives", "labels")
# UnitRow's measures that are IoUs or shares, in [0, 1] (lift, the IoU over chance's, is any finite number).
UNIT_SHARES = ("iou_low", "iou_high", "stability", "runner_up_iou", "chance_iou")
SHA256 = re.compile(r"[0-9a-f]{64}")
SETTINGS_DEPTH = 8  # a run's settings nest two levels (a list of the mean's values); later readers recurse


def load(path: Path) -> tuple[list[RunRecord], bool]:
    """(records, replace) from a file that save() wrote, its runs checked as imports are
    (lce.importers.pending_runs); one LceError naming the file (and the run and field) for anything else."""
    path = Path(path)
    try:
        document = json.loads(_decompressed(path))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as error:
        raise LceError(f"--resume {path}: not a file of pending runs that lce saved (it is not gzip'd JSON: "
                       f"{error}). Nothing was written.") from None
    except RecursionError:  # json's parser recurses once per [ or {
        raise LceError(f"--resume {path}: not a file of pending runs that lce saved: it nests lists or objects "
                       f"deeper than Python's JSON reader can follow (about {sys.getrecursionlimit():,} levels; "
                       "lce's own nest seven). Nothing was written.") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise LceError(f"--resume {path}: not a file of pending runs that lce saved (no format {FORMAT!r}). "
                       "Nothing was written.")
    if document.get("version") != VERSION:
        raise LceError(f"--resume {path}: pending-runs format version {document.get('version')!r}; this lce reads "
                       f"version {VERSION}. Nothing was written.")
    replace = document.get("replace")
    if not isinstance(replace, bool):
        raise LceError(f"--resume {path} is damaged or incomplete: its replace is {replace!r:.40}, neither true nor "
                       "false. Nothing was written.")
    return read_runs(path, document.get("runs")), replace


def _decompressed(path: Path) -> bytearray:
    """The file's JSON text, read in blocks up to its limit: MAX_JSON_BYTES, and MAX_RATIO times the file's size
    beyond the first RATIO_FROM bytes."""
    size = check_input(path, "--resume").st_size  # a regular file, before anything opens it (a FIFO would wait)
    limit = min(MAX_JSON_BYTES, max(RATIO_FROM, MAX_RATIO * size))
    text = bytearray()
    with gzip.open(path, "rb") as stream:
        while block := stream.read(min(1 << 24, limit + 1 - len(text))):
            text += block
            if len(text) > limit:
                raise LceError(
                    f"--resume {path}: its {size:,} bytes decompress to more than {limit:,} bytes of JSON (the "
                    f"limit: {MAX_RATIO} times the file's size, at least {RATIO_FROM // 2**20} MiB, at most "
                    f"{MAX_JSON_BYTES // 2**30} GiB); lce's own files compress about 5 to 1, so it is not one that "
                    "lce saved. Nothing was written.")
    return text


def read_runs(path: Path, runs: object) -> list[RunRecord]:
    """The file's runs, each checked; one LceError naming the file, the run and the field at fault."""
    if not isinstance(runs, list):
        raise LceError(f"--resume {path} is damaged or incomplete: it holds no list of runs. Nothing was written.")
    if not runs:
        raise LceError(f"--resume {path}: the file holds no runs. Nothing was written.")
    try:
        return [_run(run, f"--resume {path}, run {number + 1}") for number, run in enumerate(runs)]
    except LceError as error:
        raise LceError(f"{error} Nothing was written.") from None


def check_probes(path: Path, records: list[RunRecord], conn: Connection) -> None:
    """Each run's probe is a dataset registered in this database (lce probe add), and its top images are among
    the dataset's images (the report opens them by number)."""
    for probe in sorted({record.probe for record in records}):
        row = conn.execute(text(read_sql("queries/probe")), {"name": probe}).first()
        if row is None or row.source != "broden":
            raise LceError(f"--resume {path}: its runs dissect probe {probe!r}, which is not a probe dataset "
                           "registered in this database (lce probe list); register it with `lce probe add` and "
                           "resume again. Nothing was written.")
        for number, record in enumerate(records):
            if record.probe != probe or not record.top_images:
                continue
            unit, rank, image, _ = max(record.top_images, key=lambda top: top[2])
            if image >= row.image_count:
                raise LceError(f"--resume {path}, run {number + 1}: top image {image:,} (unit {unit}, rank {rank}) "
                               f"is beyond the {row.image_count:,} images of probe {probe!r} (0 to "
                               f"{row.image_count - 1:,}). Nothing was written.")


def _run(run: object, where: str) -> RunRecord:
    document = _object(run, where, RUN_FIELDS, ("bootstrap", "control"))
    model = _model(document["model"], f"{where}, model")
    layer = _name(document["layer"], where, "layer name")
    where = f"{where} (model {model.name!r}, layer {layer!r})"
    probe = _name(document["probe"], where, "probe name")
    source = document["source"]
    if source != SOURCE:
        raise LceError(f"{where}: source {reprlib.repr(source)}; an ingest saves dissected runs only "
                       f"(source {SOURCE!r}).")
    variant = document["variant"]
    if variant not in VARIANTS:
        raise LceError(f"{where}: variant {reprlib.repr(variant)} is not one lce knows ({', '.join(VARIANTS)}).")
    quantile = parse_finite(_number(document["quantile"], where, "quantile"), where, "quantile")
    if not 0 < quantile < 1:
        raise LceError(f"{where}: quantile {quantile!r} is outside (0, 1).")
    iou_threshold = parse_iou(_number(document["iou_threshold"], where, "iou_threshold"), where, "iou_threshold")
    seg_size = document["seg_size"]
    if seg_size is not None:
        seg_size = _index(seg_size, where, "seg_size", 1, INDEX_LIMIT)
    concepts = _Concepts()
    units = _units(_list(document["units"], where, "units"), where, model.name, concepts)
    control = document.get("control", False)
    if not isinstance(control, bool):
        raise LceError(f"{where}: control {reprlib.repr(control)} is neither true nor false.")
    return RunRecord(
        model=model, probe=probe, layer=layer, variant=variant, quantile=quantile, iou_threshold=iou_threshold,
        source=source, units=units,
        tallies=_tallies(_list(document["tallies"], where, "tallies"), where, len(units), concepts),
        seg_size=seg_size, settings=_settings(document["settings"], where),
        top_images=_top_images(_list(document["top_images"], where, "top_images"), where, len(units)),
        bootstrap=_bootstrap(document.get("bootstrap"), f"{where}, bootstrap", len(units), concepts),
        control=control)


def _model(value: object, where: str) -> ModelInfo:
    document = _object(value, where, ("name",), tuple(field.name for field in fields(ModelInfo)))
    checkpoint = document.get("checkpoint_sha256")
    if checkpoint is not None and not (isinstance(checkpoint, str) and SHA256.fullmatch(checkpoint)):
        raise LceError(f"{where}: checkpoint_sha256 {reprlib.repr(checkpoint)} is not a SHA-256 (64 hex digits).")
    return ModelInfo(name=_name(document["name"], where, "model name"),
                     architecture=_name(document.get("architecture"), where, "architecture", MAX_TEXT, True),
                     checkpoint_sha256=checkpoint,
                     family=_name(document.get("family"), where, "family", MAX_LABEL, True),
                     notes=_name(document.get("notes"), where, "notes", MAX_TEXT, True))


def _units(entries: list, where: str, model: str, concepts: _Concepts) -> list[UnitRow]:
    index, units = UnitIndex(Path(where)), []
    allowed = tuple(field.name for field in fields(UnitRow))
    for number, entry in enumerate(entries):
        at = f"{where}, units[{number}]"
        row = _object(entry, at, ("unit", "concept", "iou"), allowed)
        unit = _index(row["unit"], at, "unit", 0, INDEX_LIMIT)
        index.add(model, unit, at)
        shares = {name: parse_iou(_number(row.get(name), at, name, True), at, name) for name in UNIT_SHARES}
        units.append(UnitRow(
            unit=unit, concept=concepts.key(row["concept"], at, "label", True),
            iou=parse_iou(_number(row["iou"], at, "iou", True), at), threshold=_finite(row.get("threshold"), at,
                                                                                        "threshold", True),
            runner_up=concepts.key(row.get("runner_up"), at, "runner-up", True),
            lift=_finite(row.get("lift"), at, "lift", True), **shares))
    index.check_range()
    return units


def _tallies(entries: list, where: str, units: int, concepts: _Concepts) -> TallyColumns:
    """The tallies as columns. A Broden-sized layer has millions: the common case is checked inline, and only a
    value that fails it goes through the importers' checks, for their message."""
    numbers: dict[ConceptKey, int] = {}
    unit, concept, intersection, activation, truth, iou = [], [], [], [], [], []
    for number, tally in enumerate(entries):
        try:
            u, c, i, a, t, v = (tally["unit"], tally["concept"], tally["intersection"], tally["activation"],
                                tally["truth"], tally["iou"])
        except (TypeError, KeyError, IndexError):
            raise LceError(f"{where}, tallies[{number}] is damaged or incomplete: not an object with unit, concept, "
                           "intersection, activation, truth and iou.") from None
        if not (type(u) is int and 0 <= u < units and type(i) is int and 0 <= i < COUNT_LIMIT
                and type(a) is int and 0 <= a < COUNT_LIMIT and type(t) is int and 0 <= t < COUNT_LIMIT
                and type(v) is float and 0.0 <= v <= 1.0):
            at = f"{where}, tallies[{number}]"
            u = _unit(u, at, units)
            i, a, t = (_count(value, at, name) for value, name in ((i, "intersection"), (a, "activation"),
                                                                  (t, "truth")))
            v = parse_iou(_number(v, at, "iou"), at)
        key = concepts.key(c, f"{where}, tallies[{number}]", "label")
        unit.append(u)
        concept.append(numbers.setdefault(key, len(numbers)))
        intersection.append(i)
        activation.append(a)
        truth.append(t)
        iou.append(v)
    return TallyColumns(list(numbers), unit=np.array(unit, np.int64), concept=np.array(concept, np.int64),
                        intersection=np.array(intersection, np.int64), activation=np.array(activation, np.int64),
                        truth=np.array(truth, np.int64), iou=np.array(iou, np.float64))


def _top_images(entries: list, where: str, units: int) -> list[tuple[int, int, int, float]]:
    """(unit, rank, image, activation) rows; the image's bound is the probe's, which check_probes looks up."""
    top = []
    for number, entry in enumerate(entries):
        if not (type(entry) is list and len(entry) == 4):
            raise LceError(f"{where}, top_images[{number}]: {reprlib.repr(entry)} is not a [unit, rank, image, "
                           "activation] list.")
        u, rank, image, activation = entry
        if not (type(u) is int and 0 <= u < units and type(rank) is int and 0 <= rank < INDEX_LIMIT
                and type(image) is int and 0 <= image < INDEX_LIMIT and type(activation) is float
                and math.isfinite(activation)):
            at = f"{where}, top_images[{number}]"
            u = _unit(u, at, units)
            rank, image = (_index(value, at, name, 0, INDEX_LIMIT) for value, name in ((rank, "rank"),
                                                                                         (image, "image")))
            activation = _finite(activation, at, "activation")
        top.append((u, rank, image, float(activation)))
    return top


def _bootstrap(value: object, where: str, units: int, concepts: _Concepts) -> Bootstrap | None:
    if value is None:
        return None
    document = _object(value, where, BOOTSTRAP_FIELDS, BOOTSTRAP_FIELDS)
    alternatives = []
    for number, entry in enumerate(_list(document["alternatives"], where, "alternatives")):
        at = f"{where}, alternatives[{number}]"
        if not (type(entry) is list and len(entry) == 3):
            raise LceError(f"{at}: {reprlib.repr(entry)} is not a [unit, concept, share] list.")
        share = parse_iou(_number(entry[2], at, "share"), at, "share")
        if share == 0:
            raise LceError(f"{at}: share 0.0; an alternative is a label some replicates gave (share above 0).")
        alternatives.append((_unit(entry[0], at, units), concepts.key(entry[1], at, "label"), share))
    return Bootstrap(replicates=_index(document["replicates"], where, "replicates", 1, INDEX_LIMIT),
                     blocks=_index(document["blocks"], where, "blocks", 1, INDEX_LIMIT),
                     seed=_count(document["seed"], where, "seed"), alternatives=alternatives,
                     labels=_replicate_labels(document["labels"], f"{where}, labels", units, concepts))


def _replicate_labels(value: object, where: str, units: int, concepts: _Concepts) -> ReplicateLabels | None:
    """Row u: unit u's label in each replicate, an index into `concepts` or -1 (none), and that label's IoU."""
    if value is None:
        return None
    document = _object(value, where, ("concepts", "label", "iou"), ("concepts", "label", "iou"))
    keys = [concepts.key(key, f"{where}, concepts[{number}]", "label")
            for number, key in enumerate(_list(document["concepts"], where, "concepts"))]
    labels, ious = _list(document["label"], where, "label"), _list(document["iou"], where, "iou")
    if len(labels) != units or len(ious) != units:
        raise LceError(f"{where}: {len(labels)} rows of labels and {len(ious)} of IoUs for the run's {units} units "
                       "(one row per unit).")
    width = len(labels[0]) if units and type(labels[0]) is list else 0
    for unit, (label_row, iou_row) in enumerate(zip(labels, ious)):
        if not (type(label_row) is list and type(iou_row) is list and len(label_row) == len(iou_row) == width):
            raise LceError(f"{where}: unit {unit}'s row is {_length(label_row)} labels and {_length(iou_row)} IoUs; "
                           f"every unit's row holds one of each per stored replicate ({width} in unit 0's labels).")
        for replicate, (label, iou) in enumerate(zip(label_row, iou_row)):
            if not (type(label) is int and -1 <= label < len(keys)):
                raise LceError(f"{where}: label {reprlib.repr(label)} of unit {unit} in replicate {replicate} is "
                               f"neither -1 (no label) nor one of the {len(keys)} concepts' indices (0 to "
                               f"{len(keys) - 1}).")
            if not (type(iou) is float and 0.0 <= iou <= 1.0):
                parse_iou(_number(iou, where, f"iou of unit {unit} in replicate {replicate}"), where,
                          f"iou of unit {unit} in replicate {replicate}")
    return ReplicateLabels(concepts=keys, label=np.array(labels, dtype=np.int64).reshape(units, width),
                           iou=np.array(ious, dtype=np.float32).reshape(units, width))


def _settings(value: object, where: str) -> dict:
    """The run's settings, as PostgreSQL's jsonb takes them (finite numbers, no NUL in a string), at most
    SETTINGS_DEPTH levels deep."""
    if not isinstance(value, dict):
        raise LceError(f"{where}: settings {reprlib.repr(value)} is not an object.")
    stack = [(value, 1)]
    while stack:  # no recursion: the JSON reader allowed nearly the interpreter's whole depth
        item, depth = stack.pop()
        if isinstance(item, (dict, list)) and depth > SETTINGS_DEPTH:
            raise LceError(f"{where}: the settings nest lists or objects more than {SETTINGS_DEPTH} levels deep; "
                           "lce's nest two.")
        if isinstance(item, dict):
            stack.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif isinstance(item, list):
            stack.extend((part, depth + 1) for part in item)
        elif isinstance(item, str) and "\0" in item:
            raise LceError(f"{where}: the settings hold a NUL character (in {reprlib.repr(item)}), which a "
                           "database text cannot.")
        elif isinstance(item, float) and not math.isfinite(item):
            raise LceError(f"{where}: the settings hold {item!r}, not a finite number.")
    return value


class _Concepts:
    """(category, name) pairs checked as an importer checks a label, each distinct pair once."""

    def __init__(self):
        self.known: dict[tuple, ConceptKey] = {}

    def key(self, value: object, where: str, what: str, optional: bool = False) -> ConceptKey | None:
        if value is None and optional:
            return None
        if type(value) is list and len(value) == 2 and type(value[0]) is str and type(value[1]) is str:
            known = self.known.get((value[0], value[1]))
            if known is not None:
                return known
            category = parse_category(value[0], where, f"{what}'s category")
            key = (category, check_name(value[1], where, what, MAX_LABEL))
            self.known[value[0], value[1]] = key
            return key
        raise LceError(f"{where}: {what} {reprlib.repr(value)} is not a [category, name] pair of strings"
                       f"{' (or null)' if optional else ''}.")


def _object(value: object, where: str, required: tuple[str, ...], allowed: tuple[str, ...]) -> dict:
    """`value` as a JSON object with every `required` key and no key but `required` and `allowed` ones."""
    if not isinstance(value, dict):
        raise LceError(f"{where} is damaged or incomplete: {reprlib.repr(value)} is not an object.")
    missing = [key for key in required if key not in value]
    if missing:
        raise LceError(f"{where} is damaged or incomplete: it lacks {', '.join(missing)}.")
    unknown = [key for key in value if key not in required and key not in allowed]
    if unknown:
        raise LceError(f"{where}: unknown field(s) {reprlib.repr(unknown)}.")
    return value


def _list(value: object, where: str, what: str) -> list:
    if not isinstance(value, list):
        raise LceError(f"{where}: {what} {reprlib.repr(value)} is not a list.")
    return value


def _name(value: object, where: str, what: str, limit: int | None = None, optional: bool = False) -> str | None:
    """A name or text checked as the importers check names (check_name), after checking that it is a string."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise LceError(f"{where}: the {what} {reprlib.repr(value)} is not a string.")
    return check_name(value, where, what) if limit is None else check_name(value, where, what, limit)


def _number(value: object, where: str, what: str, optional: bool = False) -> float | int | None:
    """A JSON number as is (None where optional); a string, true or false is none."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LceError(f"{where}: {what} {reprlib.repr(value)} is not a number{' (or null)' if optional else ''}.")
    return value


def _finite(value: object, where: str, what: str, optional: bool = False) -> float | None:
    number = _number(value, where, what, optional)
    return None if number is None else parse_finite(number, where, what)


def _length(value: object) -> str:
    return f"{len(value):,}" if isinstance(value, list) else reprlib.repr(value)


def _whole(value: object, where: str, what: str) -> int:
    if type(value) is not int:  # bool is a subclass of int, and no number here
        raise LceError(f"{where}: {what} {reprlib.repr(value)} is not a whole number.")
    return value


def _count(value: object, where: str, what: str) -> int:
    return parse_count(_whole(value, where, what), where, what)


def _index(value: object, where: str, what: str, low: int, limit: int) -> int:
    number = _whole(value, where, what)
    if not low <= number < limit:
        raise LceError(f"{where}: {what} {number:,} is outside {low} to {limit - 1:,}.")
    return number


def _unit(value: object, where: str, units: int) -> int:
    number = _whole(value, where, "unit")
    if not 0 <= number < units:
        raise LceError(f"{where}: unit {number:,} is not one of the run's {units:,} units (0 to {units - 1:,}).")
    return number
