"""Registering probe datasets in Postgres: `lce probe add|list|show`.

    outcome = add_probe("broden1_224", Path("/data/broden1_224"))    # check, build the decode cache, store
    probe, categories = probe_categories("broden1_224")             # lce probe show: the probe, concepts per category

A probe row records where the dataset is, its size and a hash of its CSV files; its concepts are one row per
(label, category) with the label's global number, primary category, frequency and coverage. Adding the same
content again changes nothing in the database (the decode cache follows the label PNGs, lce/probe/cache.py);
other content under a stored name needs `replace`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from lce.config import lce_home
from lce.db.connection import connect, connect_reader
from lce.db.probes import ProbeConcept, ProbeRecord, concept_count, lock_probe_name, stored_probe, write_probe
from lce.errors import LceError
from lce.names import check_options
from lce.probe.broden import Broden
from lce.probe.cache import DecodeCache
from lce.probe.check import check_probe
from lce.resources import read_sql

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
    check_options(probe=name)  # one line of printable text, as every probe name that lce reads
    cpus = os.cpu_count() or 1  # as lce.dissect.engine.max_workers, without importing torch for it
    if not 0 <= workers <= cpus:  # 10**20 was an OverflowError; 5,000 started 5,000 processes
        raise LceError(f"--workers must be 0 (decode in this process) to this machine's {cpus} CPU(s), "
                       f"not {workers}: processes beyond them only compete for the same cores, each with its own "
                       "memory. Nothing was stored.")
    root = Path(root).resolve()
    problems = check_probe(root)
    if problems:
        raise LceError(f"{root} has {len(problems)} problem(s); nothing was stored. Fix them (lce probe check "
                       f"{root} lists them):\n{problems_summary(problems)}")
    probe = Broden.open(root)
    content = probe.content_sha256()
    engine = connect()
    with engine.connect() as conn:
        _refusal(stored_probe(conn, name), name, content, replace)  # before the long part; checked again below
    # Decoding every file (and the label PNGs into the cache) proves they are readable before anything is stored.
    cache = DecodeCache.build(probe, lce_home() / "cache", workers, progress, images=not fast, trust_stat=fast)
    with engine.begin() as conn:
        # One add per name at a time (released at commit): a concurrent add of the same name waits here, then
        # sees this one's row, instead of failing on the unique name.
        lock_probe_name(conn, name)
        stored = stored_probe(conn, name)
        _refusal(stored, name, content, replace)
        if stored is not None and stored.content_sha256 == content and not replace:
            outcome, probe_id = "unchanged", stored.id
        else:
            outcome = "replaced" if stored else "created"
            probe_id = write_probe(conn, _record(name, probe, content), _concepts(probe),
                                   stored.id if stored else None)
    with engine.connect() as conn:
        concepts = concept_count(conn, probe_id)
    return AddedProbe(name, probe_id, outcome, len(probe), concepts, cache.directory, cache.built, not fast)


def registered_probe(engine: Engine, name: str):
    """The registered probe dataset `name` (id, path, content_sha256, source, image_size); LceError naming the
    registered ones when there is none."""
    with engine.connect() as conn:
        row = conn.execute(text(read_sql("queries/probe")), {"name": name}).first()
        if row is None or row.source != "broden":
            known = conn.execute(text(read_sql("queries/probe_names")), {"source": "broden"}).scalar()
            raise LceError(f"No probe dataset named {name!r} is registered (registered: {known or 'none'}); add one "
                           "with `lce probe add NAME DIR` (or make one with `lce probe synth`).")
    return row


def open_registered_probe(engine: Engine, name: str, split: str = "all") -> tuple[object, Broden]:
    """The registered probe dataset `name` (its row, as registered_probe) and the dataset opened at its registered
    path, checked to hold the registered content. The messages name this host with the path: a worker machine of a
    cluster (lce ingest --executor ray) reads the dataset from its own disk."""
    row = registered_probe(engine, name)
    where = f"probe {name!r} at {row.path} on host {socket.gethostname()}"
    try:
        probe = Broden.open(Path(row.path), split=split)
    except LceError as error:
        raise LceError(f"The dataset of {where} cannot be opened: {error} (a worker machine of a cluster reads it "
                       "from its own disk, at the registered path).") from None
    found = probe.content_sha256()
    if found != row.content_sha256:
        raise LceError(f"The dataset of {where} is not the registered dataset: its content hash is {found[:12]}, "
                       f"{row.content_sha256[:12]} when it was added. If it changed on purpose, run `lce probe add "
                       f"{name} {row.path} --replace`; on a worker machine of a cluster, copy the registered files to "
                       f"{row.path} there, or register a path every machine shares.")
    return row, probe


def registered_image_size(name: str) -> int:
    """The image size of the registered probe dataset `name`, the size lce ingest feeds models at (read through
    the read-only login)."""
    return registered_probe(connect_reader(required=False), name).image_size


def probe_categories(name: str) -> tuple[dict, list]:
    """`lce probe show NAME`: the stored probe (probe.sql: source, image count and size, segmentation size, path,
    images per category) and its (category, concepts) rows, read through the read-only login; an LceError naming
    the stored probes when none is called `name`."""
    with connect_reader(required=False).connect() as conn:
        probe = conn.execute(text(read_sql("queries/probe")), {"name": name}).mappings().first()
        if probe is None:
            known = conn.execute(text(read_sql("queries/probe_names")), {"source": None}).scalar()
            raise LceError(f"No probe named {name!r}; stored probes: {known or 'none'}.")
        rows = conn.execute(text(read_sql("queries/probe_categories")), {"probe": probe["id"]}).all()
    return dict(probe), [tuple(row) for row in rows]


def _refusal(stored, name: str, content: str, replace: bool) -> None:
    if stored is not None and stored.source != "broden":
        raise LceError(f"Probe name {name!r} is taken by the vocabulary of imported results; choose another name.")
    if stored is not None and stored.content_sha256 != content and not replace:
        raise LceError(f"A probe named {name!r} is already stored with other content (another CSV hash); pass "
                       "--replace to store this dataset under that name instead. Nothing was written.")


def _record(name: str, probe: Broden, content: str) -> ProbeRecord:
    first = probe.rows[0]
    category_images = {c: sum(1 for row in probe.rows if c in row.cells) for c in probe.categories}
    return ProbeRecord(name=name, path=str(probe.root), image_count=len(probe), image_size=first.ih,
                       seg_size=first.sh, content_sha256=content, category_images=category_images)


def _concepts(probe: Broden) -> Iterator[ProbeConcept]:
    """One concept per (label, category) the dataset annotates."""
    for members in probe.members.values():
        for member in members:
            label = probe.vocabulary[member.number]
            yield ProbeConcept(label.name, member.category, label.number, label.primary_category, member.frequency,
                               member.coverage)
