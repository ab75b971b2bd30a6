"""Registering probe datasets in Postgres: `lce probe add|list|show`.

    outcome = add_probe("broden1_224", Path("/data/broden1_224"))    # check, build the decode cache, store

A probe row records where the dataset is, its size and a hash of its CSV files; its concepts are one row per
(label, category) with the label's global number, primary category, frequency and coverage. Adding the same
content again changes nothing in the database (the decode cache follows the label PNGs, lce/probe/cache.py);
other content under a stored name needs `replace`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from lce.config import lce_home
from lce.db.connection import connect, connect_reader
from lce.errors import LceError
from lce.probe.broden import Broden
from lce.probe.cache import DecodeCache
from lce.probe.check import check_probe

SHOWN_PROBLEMS = 20


@dataclass(frozen=True)
class AddedProbe:
    name: str
    probe_id: int
    outcome: str  # created | unchanged | replaced
    images: int
    concepts: int
    cache: Path
    cache_built: bool  # False: a cache of the same content (manifest) was there
    images_decoded: bool  # False with --fast


def problems_summary(problems: list, shown: int = SHOWN_PROBLEMS) -> str:
    lines = [f"  {problem}" for problem in problems[:shown]]
    if len(problems) > shown:
        lines.append(f"  ... and {len(problems) - shown} more")
    return "\n".join(lines)


def add_probe(name: str, root: Path, replace: bool = False, workers: int = 0,
              progress: Callable[[str, int, int], None] | None = None, fast: bool = False) -> AddedProbe:
    """Check the dataset, decode every image and label PNG (`fast`: no images, and label files whose size and
    mtime match the last check are not hashed again), build or reuse the decode cache, then store the probe.
    Two adds of one name at once are serialised in the database: the second finds the first's row."""
    root = Path(root).resolve()
    problems = check_probe(root)
    if problems:
        raise LceError(f"{root} has {len(problems)} problem(s); nothing was stored. Fix them (lce probe check "
                       f"{root} lists them):\n{problems_summary(problems)}")
    probe = Broden.open(root)
    content = probe.content_sha256()
    engine = connect()
    with engine.connect() as conn:
        _refusal(_stored(conn, name), name, content, replace)  # before the long part; checked again below
    # Decoding every file (and the label PNGs into the cache) proves they are readable before anything is stored.
    cache = DecodeCache.build(probe, lce_home() / "cache", workers, progress, images=not fast, trust_stat=fast)
    with engine.begin() as conn:
        # One add per name at a time (released at commit): a concurrent add of the same name waits here, then
        # sees this one's row, instead of failing on the unique name.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"lce probe {name}"})
        stored = _stored(conn, name)
        _refusal(stored, name, content, replace)
        if stored is not None and stored.content_sha256 == content and not replace:
            outcome, probe_id = "unchanged", stored.id
        else:
            outcome = "replaced" if stored else "created"
            probe_id = _store(conn, name, probe, content, stored.id if stored else None)
    return AddedProbe(name, probe_id, outcome, len(probe), _concept_count(engine, probe_id), cache.directory,
                      cache.built, not fast)


def registered_probe(engine: Engine, name: str):
    """The registered probe dataset `name` (id, path, content_sha256, source, image_size); LceError naming the
    registered ones when there is none."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT id, path, content_sha256, source, image_size FROM probe"
                                " WHERE name = :n AND source = 'broden'"), {"n": name}).first()
        if row is None:
            known = conn.execute(text("SELECT string_agg(name, ', ' ORDER BY name) FROM probe"
                                      " WHERE source = 'broden'")).scalar()
            raise LceError(f"No probe dataset named {name!r} is registered (registered: {known or 'none'}); add one "
                           "with `lce probe add NAME DIR` (or make one with `lce probe synth`).")
    return row


def registered_image_size(name: str) -> int:
    """The image size of the registered probe dataset `name`, the size lce ingest feeds models at (read through
    the read-only login)."""
    return registered_probe(connect_reader(required=False), name).image_size


def _stored(conn, name: str):
    return conn.execute(text("SELECT id, content_sha256, source FROM probe WHERE name = :n"), {"n": name}).first()


def _refusal(stored, name: str, content: str, replace: bool) -> None:
    if stored is not None and stored.source != "broden":
        raise LceError(f"Probe name {name!r} is taken by the vocabulary of imported results; choose another name.")
    if stored is not None and stored.content_sha256 != content and not replace:
        raise LceError(f"A probe named {name!r} is already stored with other content (another CSV hash); pass "
                       "--replace to store this dataset under that name instead. Nothing was written.")


def _store(conn, name: str, probe: Broden, content: str, probe_id: int | None) -> int:
    first = probe.rows[0]
    category_images = {c: sum(1 for row in probe.rows if c in row.cells) for c in probe.categories}
    fields = dict(name=name, path=str(probe.root), images=len(probe), size=first.ih, seg=first.sh, content=content,
                  categories=json.dumps(category_images))
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
        for members in probe.members.values():
            for member in members:
                label = probe.vocabulary[member.number]
                copy.write_row((label.name, member.category, label.number, label.primary_category,
                                member.frequency, member.coverage))
    stale = conn.execute(text(
        "SELECT c.name, c.category FROM concept c WHERE c.probe_id = :p AND NOT EXISTS (SELECT 1 FROM new_concept n"
        " WHERE n.name = c.name AND n.category = c.category) AND (EXISTS (SELECT 1 FROM unit u WHERE u.concept_id"
        " = c.id) OR EXISTS (SELECT 1 FROM unit_concept t WHERE t.concept_id = c.id))"), {"p": probe_id}).all()
    if stale:
        shown = ", ".join(f"{row.name} ({row.category})" for row in stale[:10])
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


def _concept_count(engine, probe_id: int) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM concept WHERE probe_id = :p"), {"p": probe_id}).scalar()
