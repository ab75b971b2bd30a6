"""Writing dissection runs (imported or dissected) to Postgres: one transaction, bulk COPY.

    outcomes = write_runs(engine, [RunRecord(...), ...], replace=False, retry_s=60)

The records (RunRecord and its parts) are lce.records'. A run is identified by (model, layer, probe, variant,
quantile, segmentation size, source): its RunIdentity. Writing a run that exists with the same content changes
nothing ("unchanged"); with other content it is refused unless `replace`, which swaps the old run for the new one
inside the same transaction. Either every run of the call is written, or none is.

Stored embeddings are immutable: a replaced run that an embedding_point uses is kept, marked superseded
(`superseded_at`, `superseded_by`), and every view and run-choosing query leaves it out; a replaced run no
embedding uses is deleted. Only current runs are unique per identity.

Writers of the same probe take a transaction-scoped advisory lock first, so two identical imports at once
give "created" and "unchanged" rather than a duplicate key. With `retry_s`, a database that goes away during
the write is retried on a fresh connection for that long (outage.retrying); a retry that finds the run already
stored with this content (the commit went through, its acknowledgement did not) reports it as written.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import Enum

import numpy as np
import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from lce.config import code_version
from lce.db.controls import set_control
from lce.db.outage import retrying
from lce.errors import LceError
from lce.records import Bootstrap, ConceptKey, ModelInfo, RunIdentity, RunRecord, TallyColumns

_PROBE_LOCK = 7_425_002  # advisory lock space of run writers, keyed by hashtext(probe name); migrate.py uses 7_425_001


class Outcome(str, Enum):
    CREATED = "created"
    UNCHANGED = "unchanged"
    REPLACED = "replaced"


@dataclass(frozen=True)
class WrittenRun:
    record: RunRecord
    outcome: Outcome
    run_id: int


def write_runs(engine: Engine, records: list[RunRecord], replace: bool = False,
               retry_s: float = 0.0) -> list[WrittenRun]:
    """Write every record in one transaction; see the module docstring for the rules. With `retry_s` > 0 a lost
    connection is retried for that many seconds before outage.DatabaseLost."""

    def attempt(engine: Engine, retried: bool) -> list[WrittenRun]:
        with engine.begin() as conn:
            for probe in sorted({record.probe for record in records}):  # sorted: two writers never deadlock
                conn.execute(text("SELECT pg_advisory_xact_lock(:space, hashtext(:probe))"),
                             {"space": _PROBE_LOCK, "probe": probe})
            return [_write_run(conn, record, replace, retried) for record in records]

    try:
        return retrying(attempt, engine, retry_s)
    except (IntegrityError, psycopg.IntegrityError) as error:
        # Parsers check what they can; this catches the rest.
        # COPY runs on the raw psycopg cursor, so its errors arrive unwrapped.
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise LceError(f"The database refused the data: {reason}. Nothing was written.") from error


# Bytes a run's rows take in PostgreSQL (heap tuples, line pointers, page slack, their share of the indexes),
# measured with pg_total_relation_size on runs of the synthetic probe (512 units, 50 concepts: 3.3 MB stored) and
# rounded up: an estimate that errs on the large side, for a warning before a dissection.
UNIT_ROW_BYTES = 400  # unit (368 measured)
TALLY_ROW_BYTES = 300  # unit_tally: one row per unit and category, its arrays' headers (246)
TALLY_PAIR_BYTES = 24  # one (unit, concept) pair in those arrays: concept id, intersection, IoU (20)
TOP_IMAGE_ROW_BYTES = 140  # unit_top_image (130)
REPLICATE_BYTES = 8  # one stored replicate's label and IoU in a unit_replicate row (int4 + float4)
REPLICATE_ROW_BYTES = 600  # the rest of that row (2.2 KB with 200 replicates)
ALTERNATIVE_ROW_BYTES = 90  # unit_alternative
ALTERNATIVES_PER_UNIT = 16  # labels a unit takes in 1% of the replicates or more (10 measured)
WAL_FACTOR = 2  # every byte goes to the write-ahead log first, then to its table


def stored_bytes(units: int, concepts: int, categories: int, top_images: int, replicates: int) -> int:
    """About the bytes a dissected run of `units` units takes in the database, over a probe of `concepts`
    concepts in `categories` categories (every unit counted with a tally for every concept, the most there can
    be), with `top_images` per unit and, with `replicates` stored replicates (0: no bootstrap), their labels and
    the alternatives; the write-ahead log not counted (WAL_FACTOR). Measured constants, above."""
    bootstrap = (replicates * REPLICATE_BYTES + REPLICATE_ROW_BYTES
                 + ALTERNATIVES_PER_UNIT * ALTERNATIVE_ROW_BYTES) if replicates else 0
    return units * (UNIT_ROW_BYTES + categories * TALLY_ROW_BYTES + concepts * TALLY_PAIR_BYTES
                    + top_images * TOP_IMAGE_ROW_BYTES + bootstrap)


def _write_run(conn: Connection, record: RunRecord, replace: bool, retried: bool = False) -> WrittenRun:
    content = record.content_sha256()
    probe_id, probe_source = _probe(conn, record.probe)
    model_id = _model(conn, record.model)
    existing = conn.execute(
        text(
            "SELECT id, source_sha256 FROM run WHERE model_id = :model AND layer = :layer AND probe_id = :probe"
            " AND variant = :variant AND quantile = :quantile AND seg_size IS NOT DISTINCT FROM :seg"
            " AND source = :source AND superseded_at IS NULL FOR UPDATE"
        ),
        dict(model=model_id, layer=record.layer, probe=probe_id, variant=record.variant,
             quantile=record.quantile, seg=record.seg_size, source=record.source),
    ).first()
    outcome = Outcome.CREATED
    if existing is not None:
        if retried and existing.source_sha256 == content:
            # An earlier try committed this very run and lost only the acknowledgement: it is stored, once.
            return WrittenRun(record, Outcome.REPLACED if replace else Outcome.CREATED, existing.id)
        if not replace and existing.source_sha256 == content:
            return WrittenRun(record, Outcome.UNCHANGED, existing.id)
        if not replace:
            raise LceError(
                f"The database already holds a run for {record.describe()} (run {existing.id}) with different "
                "content. Pass --replace to swap it for this one; nothing was written."
            )
        _retire(conn, existing.id)
        outcome = Outcome.REPLACED

    tallies = TallyColumns.of(record.tallies)
    concept_ids = _concepts(conn, probe_id, probe_source, record, tallies)
    bootstrap = record.bootstrap
    run_id = conn.execute(
        text(
            "INSERT INTO run (model_id, probe_id, layer, variant, quantile, iou_threshold, seg_size,"
            " checkpoint_sha256, source, source_sha256, settings, code_version, unit_count, replicates,"
            " bootstrap_blocks, bootstrap_seed)"
            " VALUES (:model, :probe, :layer, :variant, :quantile, :cutoff, :seg, :checkpoint, :source,"
            " :content, CAST(:settings AS jsonb), :code, :units, :replicates, :blocks, :seed) RETURNING id"
        ),
        dict(model=model_id, probe=probe_id, layer=record.layer, variant=record.variant,
             quantile=record.quantile, cutoff=record.iou_threshold, seg=record.seg_size,
             checkpoint=record.model.checkpoint_sha256, source=record.source, content=content,
             settings=json.dumps(record.settings, sort_keys=True), code=code_version(),
             units=len(record.units), replicates=bootstrap.replicates if bootstrap else None,
             blocks=bootstrap.blocks if bootstrap else None, seed=bootstrap.seed if bootstrap else None),
    ).scalar_one()

    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY unit (run_id, unit, threshold, concept_id, iou, {', '.join(_UNCERTAINTY)},"
                     " runner_up_id) FROM STDIN") as copy:
        for row in record.units:
            concept = concept_ids[row.concept] if row.concept else None
            runner_up = concept_ids[row.runner_up] if row.runner_up else None
            copy.write_row((run_id, row.unit, row.threshold, concept, row.iou,
                            *(_known(getattr(row, name)) for name in _UNCERTAINTY), runner_up))
    if len(tallies):
        _write_tallies(cursor, run_id, record, tallies, concept_ids)
    if record.top_images:
        with cursor.copy("COPY unit_top_image (run_id, unit, rank, image, activation) FROM STDIN") as copy:
            for unit, rank, image, activation in record.top_images:
                copy.write_row((run_id, unit, rank, image, activation))
    if bootstrap is not None:
        _write_bootstrap(cursor, run_id, bootstrap, concept_ids)
    if outcome is Outcome.REPLACED:
        conn.execute(text("UPDATE run SET superseded_by = :new WHERE id = :old"),
                     {"new": run_id, "old": existing.id})
    if record.control:
        set_control(conn, run_id)
    return WrittenRun(record, outcome, run_id)


# UnitRow's measures of a label's uncertainty, as unit's columns of the same names.
_UNCERTAINTY = ("iou_low", "iou_high", "stability", "runner_up_iou", "chance_iou", "lift")


def _known(value: float | None) -> float | None:
    """NULL for what is not known: None, or NaN (the arithmetic's mark for a unit without a label)."""
    return None if value is None or value != value else float(value)


def _write_bootstrap(cursor, run_id: int, bootstrap: Bootstrap, concept_ids: dict[ConceptKey, int]) -> None:
    """A run's alternatives (unit_alternative) and its units' replicate labels (unit_replicate)."""
    if bootstrap.alternatives:
        with cursor.copy("COPY unit_alternative (run_id, unit, concept_id, share) FROM STDIN") as copy:
            for unit, concept, share in bootstrap.alternatives:
                copy.write_row((run_id, unit, concept_ids[concept], share))
    labels = bootstrap.labels
    if labels is None or not labels.label.size:
        return
    ids = np.array([concept_ids[key] for key in labels.concepts] + [0], dtype=np.int64)[labels.label]  # -1: the 0
    ious = np.where(labels.label >= 0, labels.iou, 0).astype(np.float32)
    with cursor.copy("COPY unit_replicate (run_id, unit, concept_ids, ious) FROM STDIN") as copy:
        for unit, (row_ids, row_label, row_ious) in enumerate(zip(ids.tolist(), labels.label, ious.tolist())):
            concept = [None if label < 0 else id_ for id_, label in zip(row_ids, row_label.tolist())]
            copy.write_row((run_id, unit, concept, row_ious))


class _Tallies:
    """A record's tallies as numpy columns, sorted by (unit, category, concept id): one unit_tally row per run of
    equal (unit, category), from starts[i] to ends[i]."""

    def __init__(self, record: RunRecord, tallies: TallyColumns, concept_ids: dict[ConceptKey, int]):
        count = len(tallies)

        def column(name: str, dtype) -> np.ndarray:
            return np.asarray(getattr(tallies, name), dtype=dtype)

        concept = np.array([concept_ids[key] for key in tallies.concepts], dtype=np.int64)[tallies.concept]
        self.names = {concept_ids[key]: key for key in tallies.named()}
        self.categories = sorted({category for category, _ in self.names.values()})
        code = {category: index for index, category in enumerate(self.categories)}
        self.concepts = np.array(sorted(self.names), dtype=np.int64)  # the run's concepts (run_concept)
        concept_category = np.array([code[self.names[id_][0]] for id_ in self.concepts.tolist()], dtype=np.int64)
        unit = column("unit", np.int64)
        category = concept_category[np.searchsorted(self.concepts, concept)]
        order = np.lexsort((concept, category, unit))
        self.unit, self.category, self.concept = unit[order], category[order], concept[order]
        self.intersection = column("intersection", np.int64)[order]
        self.activation = column("activation", np.int64)[order]
        self.truth = column("truth", np.int64)[order]
        self.iou = column("iou", np.float64)[order]
        self._check(record)
        change = np.flatnonzero((self.unit[1:] != self.unit[:-1]) | (self.category[1:] != self.category[:-1])) + 1
        self.starts, self.ends = np.r_[0, change], np.r_[change, count]
        # G is the concept's, once per run (run_concept.truth), unless it differs between units (imported files).
        position = np.searchsorted(self.concepts, self.concept)
        low, high = np.full(len(self.concepts), np.iinfo(np.int64).max), np.zeros(len(self.concepts), np.int64)
        np.minimum.at(low, position, self.truth)
        np.maximum.at(high, position, self.truth)
        self.concept_truth, self.concept_truth_varies = low, low != high
        self.row_truths = np.logical_or.reduceat(self.concept_truth_varies[position], self.starts)
        # A is the unit's (dissect) or the unit's within a category (netdissect): one per row, unless it varies.
        self.row_activation = np.minimum.reduceat(self.activation, self.starts)
        self.row_activations = self.row_activation != np.maximum.reduceat(self.activation, self.starts)

    def _check(self, record: RunRecord) -> None:
        """The checks of the former row table (unit_concept) that arrays cannot hold, as one message."""
        bad = ~((self.iou >= 0) & (self.iou <= 1)) | (self.intersection < 0) \
            | (self.intersection > self.activation) | (self.intersection > self.truth)
        same = np.flatnonzero((self.unit[1:] == self.unit[:-1]) & (self.concept[1:] == self.concept[:-1]))
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            reason = (f"intersection {self.intersection[at]}, activation {self.activation[at]}, truth "
                      f"{self.truth[at]}, IoU {self.iou[at]} (a tally needs 0 <= intersection <= activation, "
                      "truth and 0 <= IoU <= 1)")
        elif len(same):
            at = int(same[0])
            reason = "more than once"
        else:
            return
        category, name = self.names[int(self.concept[at])]
        raise LceError(f"The database refused the data: {record.describe()} holds a tally of unit {self.unit[at]} "
                       f"with {name} ({category}): {reason}. Nothing was written.")


# PostgreSQL's binary COPY (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4): its header
# and trailer; arrays as (ndim, has-null flag, element type oid, length, lower bound), then (size, value) pairs.
_COPY_HEADER = b"PGCOPY\n\xff\r\n\0" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_INT4, _INT8, _FLOAT8 = (23, ">i4"), (20, ">i8"), (701, ">f8")


def _elements(values: np.ndarray, kind: tuple[int, str]) -> tuple[memoryview, int]:
    """Every value as an array element (size, value), big-endian, in one buffer; and one element's length."""
    dtype = np.dtype([("size", ">i4"), ("value", kind[1])])
    elements = np.empty(len(values), dtype=dtype)
    elements["size"] = dtype["value"].itemsize
    elements["value"] = values
    return memoryview(elements.tobytes()), dtype.itemsize


def _write_tallies(cursor, run_id: int, record: RunRecord, columns: TallyColumns,
                   concept_ids: dict[ConceptKey, int]) -> None:
    """The record's tallies into run_concept (G once per concept) and unit_tally (one row per unit and category,
    I, IoU and A as arrays), with one binary COPY of whole arrays: numpy builds the bytes, no Python call per
    pair."""
    tallies = _Tallies(record, columns, concept_ids)
    with cursor.copy("COPY run_concept (run_id, concept_id, truth) FROM STDIN") as copy:
        for concept, truth, varies in zip(tallies.concepts.tolist(), tallies.concept_truth.tolist(),
                                          tallies.concept_truth_varies.tolist()):
            copy.write_row((run_id, concept, None if varies else truth))
    # (column, _Tallies attribute, element type): every value of a column in one buffer, sliced per row.
    arrays = [(name, _elements(getattr(tallies, attribute), kind), kind[0]) for name, attribute, kind in (
        ("concept_ids", "concept", _INT4), ("intersections", "intersection", _INT8), ("ious", "iou", _FLOAT8),
        ("activations", "activation", _INT8), ("truths", "truth", _INT8))]
    categories = [category.encode() for category in tallies.categories]
    null = struct.pack(">i", -1)
    parts = [_COPY_HEADER]
    rows = zip(tallies.starts.tolist(), tallies.ends.tolist(), tallies.unit[tallies.starts].tolist(),
               tallies.category[tallies.starts].tolist(), tallies.row_activation.tolist(),
               tallies.row_activations.tolist(), tallies.row_truths.tolist())
    for start, end, unit, category, activation, activations_vary, truths_vary in rows:
        parts.append(struct.pack(">hiiii", 9, 4, run_id, 4, unit))
        parts.append(struct.pack(">i", len(categories[category])) + categories[category])
        parts.append(null if activations_vary else struct.pack(">iq", 8, activation))
        for name, (data, size), oid in arrays:
            if (name == "activations" and not activations_vary) or (name == "truths" and not truths_vary):
                parts.append(null)
                continue
            parts.append(struct.pack(">iiiiii", 20 + (end - start) * size, 1, 0, oid, end - start, 1))
            parts.append(data[start * size:end * size])
    parts.append(_COPY_TRAILER)
    columns = "run_id, unit, category, activation, concept_ids, intersections, ious, activations, truths"
    with cursor.copy(f"COPY unit_tally ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(b"".join(parts))


def _retire(conn: Connection, run_id: int) -> None:
    """Take a replaced run out of the current ones: deleted, unless an embedding uses it (embeddings are
    immutable), then kept and marked superseded (its successor is filled in once it has an id)."""
    used = conn.execute(text("SELECT EXISTS (SELECT 1 FROM embedding_point WHERE run_id = :id)"),
                        {"id": run_id}).scalar()
    if used:
        conn.execute(text("UPDATE run SET superseded_at = now() WHERE id = :id"), {"id": run_id})
    else:
        conn.execute(text("DELETE FROM run WHERE id = :id"), {"id": run_id})


def find_run(engine: Engine, identity: RunIdentity):
    """The current run with this identity (id, checkpoint_sha256, source_sha256, settings), or None."""
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT r.id, r.checkpoint_sha256, r.source_sha256, r.settings FROM run r JOIN model m ON m.id = r.model_id"
                " JOIN probe p ON p.id = r.probe_id WHERE m.name = :model AND r.layer = :layer AND p.name = :probe"
                " AND r.variant = :variant AND r.quantile = :quantile AND r.seg_size IS NOT DISTINCT FROM :seg"
                " AND r.source = :source AND r.superseded_at IS NULL"
            ),
            dict(model=identity.model, layer=identity.layer, probe=identity.probe, variant=identity.variant,
                 quantile=identity.quantile, seg=identity.seg_size, source=identity.source),
        ).first()


def _probe(conn: Connection, name: str) -> tuple[int, str]:
    """The probe's id and source; an unknown name becomes an imported vocabulary (no dataset on disk)."""
    row = conn.execute(text("SELECT id, source FROM probe WHERE name = :name"), {"name": name}).first()
    if row is None:
        row = conn.execute(
            text("INSERT INTO probe (name, source) VALUES (:name, 'imported') RETURNING id, source"),
            {"name": name},
        ).first()
    return row.id, row.source


def _model(conn: Connection, model: ModelInfo) -> int:
    """The model's id, creating it, and filling in what an earlier row left unknown."""
    return conn.execute(
        text(
            "INSERT INTO model (name, architecture, checkpoint_sha256, family, notes)"
            " VALUES (:name, :arch, :checkpoint, :family, :notes)"
            " ON CONFLICT (name) DO UPDATE SET"
            " architecture = COALESCE(model.architecture, EXCLUDED.architecture),"
            " checkpoint_sha256 = COALESCE(model.checkpoint_sha256, EXCLUDED.checkpoint_sha256),"
            " family = COALESCE(model.family, EXCLUDED.family),"
            " notes = COALESCE(model.notes, EXCLUDED.notes)"
            " RETURNING id"
        ),
        dict(name=model.name, arch=model.architecture, checkpoint=model.checkpoint_sha256,
             family=model.family, notes=model.notes),
    ).scalar_one()


def _concepts(conn: Connection, probe_id: int, probe_source: str, record: RunRecord,
              tallies: TallyColumns) -> dict[ConceptKey, int]:
    """Ids of every concept the record names (its units' labels and `tallies`, the record's tallies as columns).
    An imported vocabulary grows; a dataset's vocabulary is fixed."""
    wanted = {row.concept for row in record.units if row.concept} | tallies.named()
    wanted |= {row.runner_up for row in record.units if row.runner_up}
    if record.bootstrap is not None:
        wanted |= {concept for _, concept, _ in record.bootstrap.alternatives}
        if record.bootstrap.labels is not None:
            wanted |= set(record.bootstrap.labels.concepts)
    known = {
        (row.category, row.name): row.id
        for row in conn.execute(text("SELECT id, category, name FROM concept WHERE probe_id = :p"), {"p": probe_id})
    }
    missing = sorted(wanted - known.keys())
    if missing and probe_source != "imported":
        shown = ", ".join(f"{name} ({category})" for category, name in missing[:10])
        raise LceError(
            f"{record.describe()} names {len(missing)} concept(s) that probe {record.probe!r} does not have: "
            f"{shown}{' ...' if len(missing) > 10 else ''}. Nothing was written."
        )
    for category, name in missing:
        known[(category, name)] = conn.execute(
            text("INSERT INTO concept (probe_id, name, category) VALUES (:p, :name, :category) RETURNING id"),
            {"p": probe_id, "name": name, "category": category},
        ).scalar_one()
    return known
