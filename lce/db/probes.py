"""Writing a probe dataset to Postgres (`lce probe add`): its row and its concepts, in the caller's transaction.

    with engine.begin() as conn:
        lock_probe_name(conn, "broden1_224")              # one add per name at a time, until commit
        stored = stored_probe(conn, "broden1_224")        # (id, content_sha256, source), None when new
        probe_id = write_probe(conn, ProbeRecord(...), concepts, stored.id if stored else None)

The concepts replace the stored ones as a set, keyed by (category, name): new ones are inserted, kept ones
updated in place (their ids, which runs point to, stay), and dropped ones deleted, unless a stored run uses
one, which refuses the whole write. lce/probe/registry.py decides what to write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, Row, text

from lce.errors import LceError

SHOWN_STALE = 10  # concepts named in the message of a refused write


@dataclass(frozen=True)
class ProbeRecord:
    name: str
    path: str
    image_count: int
    image_size: int
    seg_size: int
    content_sha256: str  # of the dataset's CSV files
    category_images: dict[str, int]  # images annotating each category


@dataclass(frozen=True)
class ProbeConcept:
    name: str
    category: str
    number: int  # the label's global number
    primary_category: str
    frequency: int
    coverage: float


def lock_probe_name(conn: Connection, name: str) -> None:
    """Wait for any other add of `name` to commit (the lock is released at this transaction's end), so that a
    concurrent add of the same name sees this one's row instead of failing on the unique name."""
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"lce probe {name}"})


def stored_probe(conn: Connection, name: str) -> Row | None:
    """The stored probe `name` (id, content_sha256, source), or None."""
    return conn.execute(text("SELECT id, content_sha256, source FROM probe WHERE name = :n"), {"n": name}).first()


def write_probe(conn: Connection, probe: ProbeRecord, concepts: Iterable[ProbeConcept], probe_id: int | None) -> int:
    """Insert the probe (`probe_id` None) or update probe `probe_id`, then replace its concepts; returns its id.
    LceError, with nothing written, when a concept that stored runs use is missing from `concepts`."""
    fields = dict(name=probe.name, path=probe.path, images=probe.image_count, size=probe.image_size,
                  seg=probe.seg_size, content=probe.content_sha256, categories=json.dumps(probe.category_images))
    if probe_id is None:
        probe_id = conn.execute(text(
            "INSERT INTO probe (name, path, image_count, image_size, seg_size, content_sha256, source,"
            " category_images) VALUES (:name, :path, :images, :size, :seg, :content, 'broden',"
            " CAST(:categories AS jsonb)) RETURNING id"), fields).scalar_one()
    else:
        conn.execute(text(
            "UPDATE probe SET path = :path, image_count = :images, image_size = :size, seg_size = :seg,"
            " content_sha256 = :content, category_images = CAST(:categories AS jsonb) WHERE id = :id"),
            {**fields, "id": probe_id})
    conn.execute(text("CREATE TEMP TABLE new_concept (name text, category text, number int, primary_category text,"
                      " frequency int, coverage double precision) ON COMMIT DROP"))
    with conn.connection.driver_connection.cursor().copy("COPY new_concept FROM STDIN") as copy:
        for concept in concepts:
            copy.write_row((concept.name, concept.category, concept.number, concept.primary_category,
                            concept.frequency, concept.coverage))
    stale = conn.execute(text(
        "SELECT c.name, c.category FROM concept c WHERE c.probe_id = :p AND NOT EXISTS (SELECT 1 FROM new_concept n"
        " WHERE n.name = c.name AND n.category = c.category) AND (EXISTS (SELECT 1 FROM unit u WHERE u.concept_id"
        " = c.id) OR EXISTS (SELECT 1 FROM run_concept t WHERE t.concept_id = c.id))"), {"p": probe_id}).all()
    if stale:
        shown = ", ".join(f"{row.name} ({row.category})" for row in stale[:SHOWN_STALE])
        raise LceError(f"The new dataset lacks {len(stale)} concept(s) that stored runs use: {shown}. Delete those "
                       "runs first, or add the dataset under another name. Nothing was written.")
    conn.execute(text("DELETE FROM concept c WHERE c.probe_id = :p AND NOT EXISTS (SELECT 1 FROM new_concept n"
                      " WHERE n.name = c.name AND n.category = c.category)"), {"p": probe_id})
    conn.execute(text(
        "INSERT INTO concept (probe_id, name, category, number, primary_category, frequency, coverage)"
        " SELECT :p, name, category, number, primary_category, frequency, coverage FROM new_concept"
        " ON CONFLICT (probe_id, category, name) DO UPDATE SET number = EXCLUDED.number,"
        " primary_category = EXCLUDED.primary_category, frequency = EXCLUDED.frequency,"
        " coverage = EXCLUDED.coverage"), {"p": probe_id})
    return probe_id


def concept_count(conn: Connection, probe_id: int) -> int:
    return conn.execute(text("SELECT count(*) FROM concept WHERE probe_id = :p"), {"p": probe_id}).scalar()
