"""How big and how fast a stored run is: the unit x concept tallies of a Broden-sized ResNet-50 run (issue 14 §4).

    .venv/bin/python bench/bench_store.py                    # 2 runs written, views timed 5 times: ~3 min on 2 cores
    .venv/bin/python bench/bench_store.py --repeat 3 --view-repeat 7

A synthetic run from random tallies (seed 0): 2,048 units x 1,200 concepts (Broden's categories), every pair
non-zero, the `dissect` variant (A per unit, G per concept, IoU = I / (A + G - I) in float64). Each repetition
writes it with `write_runs` as a new model (the arrays of unit_tally and run_concept), and writes the same pairs
the way main did, one `write_row` per pair into a copy of main's `unit_concept` table (schema `main_layout`, same
columns, constraints and index), so that both layouts hold the same runs in one database. Main's write of a run
is `write_runs` without tallies plus that COPY; both are timed, alternately first.

Then, paired and alternated: `unit_category_label` (all rows fetched) over the arrays against main's definition
over main's table, and the view unit_concept against main's table. Every value of both is compared first.
LCE_HOME is a fresh temporary directory (LCE_DATABASE_URL removed), deleted at the end with its server.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

import numpy as np

from scratch_home import scratch_home  # bench/, beside this script

UNITS = 2048  # ResNet-50 layer4
# Broden's categories, scaled to 1,200 concepts.
CATEGORY_SIZES = {"object": 584, "part": 234, "material": 32, "color": 11, "scene": 292, "texture": 47}
MAIN_TABLE = """
CREATE TABLE main_layout.unit_concept (
    run_id integer NOT NULL, unit integer NOT NULL, concept_id integer NOT NULL REFERENCES concept (id),
    intersection bigint NOT NULL, activation bigint NOT NULL, truth bigint NOT NULL, iou double precision NOT NULL,
    CONSTRAINT ck_unit_concept_counts CHECK (intersection >= 0 AND activation >= 0 AND truth >= 0
        AND intersection <= activation AND intersection <= truth),
    CONSTRAINT ck_unit_concept_iou CHECK (iou >= 0 AND iou <= 1),
    FOREIGN KEY (run_id, unit) REFERENCES unit (run_id, unit) ON DELETE CASCADE,
    PRIMARY KEY (run_id, unit, concept_id))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs written in each layout (2)")
    parser.add_argument("--view-repeat", type=int, default=5, help="timings of each view, alternated (5)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def synthetic_record(seed: int, name: str):
    """The run record as lce ingest builds it (RunRecord with UnitRow and TallyRow lists)."""
    from lce.records import ModelInfo, RunRecord, TallyRow, UnitRow
    from lce.vocabulary import IOU_CUTOFF

    rng = np.random.default_rng(seed)
    concepts = [(category, f"{category}-{index:04d}") for category, size in CATEGORY_SIZES.items()
                for index in range(size)]
    truth = rng.integers(10_000, 400_000_000, len(concepts))  # G: labelled pixels of a whole Broden at seg 112
    activation = rng.integers(50_000, 8_000_000, UNITS)  # A: about 1% of a unit's upsampled pixels
    intersection = rng.integers(1, np.minimum(activation[:, None], truth[None, :]) + 1)
    iou = intersection / (activation[:, None] + truth[None, :] - intersection)
    best = iou.argmax(axis=1)
    units = [UnitRow(unit=u, concept=concepts[best[u]], iou=float(iou[u, best[u]]), threshold=0.5)
             for u in range(UNITS)]
    tallies = [TallyRow(unit=u, concept=concepts[c], intersection=i, activation=a, truth=t, iou=x)
               for u, row_i, row_x, a in zip(range(UNITS), intersection.tolist(), iou.tolist(), activation.tolist())
               for c, i, t, x in zip(range(len(concepts)), row_i, truth.tolist(), row_x)]
    return RunRecord(model=ModelInfo(name=name, architecture="resnet50"), probe="bench-broden", layer="layer4",
                     variant="dissect", quantile=0.01, iou_threshold=IOU_CUTOFF, source="dissected", units=units,
                     tallies=tallies, seg_size=112, settings={"bench": name})


def write_main_layout(engine, run_id: int, record) -> float:
    """main's tally write (lce/db/runs.py before issue 14): one COPY, one write_row per pair."""
    from sqlalchemy import text

    started = time.perf_counter()
    with engine.begin() as conn:
        concept_ids = {(row.category, row.name): row.id for row in conn.execute(text(
            "SELECT c.id, c.category, c.name FROM concept c JOIN probe p ON p.id = c.probe_id WHERE p.name = :p"),
            {"p": record.probe})}
        cursor = conn.connection.driver_connection.cursor()
        columns = "run_id, unit, concept_id, intersection, activation, truth, iou"
        with cursor.copy(f"COPY main_layout.unit_concept ({columns}) FROM STDIN") as copy:
            for tally in record.tallies:
                copy.write_row((run_id, tally.unit, concept_ids[tally.concept], tally.intersection,
                                tally.activation, tally.truth, tally.iou))
    return time.perf_counter() - started


def write_columns(engine, record, name: str) -> float:
    """write_runs of the record with its tallies as numpy columns (TallyColumns, as lce ingest hands them over)
    under another model name; the run is deleted again so that the stored sizes count each layout once."""
    from sqlalchemy import text

    from lce.db.runs import write_runs
    from lce.records import TallyColumns

    columns = TallyColumns.of(record.tallies)
    copy = dataclasses.replace(record, model=dataclasses.replace(record.model, name=name), tallies=columns)
    started = time.perf_counter()
    (written,) = write_runs(engine, [copy])
    seconds = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM run WHERE id = :id"), {"id": written.run_id})
    # Written last, its pages are the tables' last ones: VACUUM gives them back, so the sizes measured later hold
    # the other runs only.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM unit_tally, run_concept, unit, unit_top_image"))
    return seconds


def timed_query(engine, sql: str) -> tuple[float, int]:
    from sqlalchemy import text

    with engine.connect() as conn:
        started = time.perf_counter()
        rows = conn.execute(text(sql)).fetchall()
        return time.perf_counter() - started, len(rows)


def scalar(engine, sql: str):
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


def run(args: argparse.Namespace) -> None:
    from sqlalchemy import text

    from lce.db.connection import connect
    from lce.db.runs import write_runs
    from lce.resources import read_sql

    engine = connect()
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA main_layout"))
        conn.execute(text(MAIN_TABLE))
        conn.execute(text("CREATE INDEX ON main_layout.unit_concept (concept_id)"))
        old_view = read_sql("previous/unit_category_label.0007").replace("CREATE VIEW unit_category_label",
                                                                         "CREATE VIEW main_layout.unit_category_label")
        conn.execute(text(old_view.replace("FROM unit_concept t", "FROM main_layout.unit_concept t")))

    new_s, base_s, main_s, columns_s = [], [], [], []
    for repetition in range(args.repeat):
        started = time.perf_counter()
        record = synthetic_record(args.seed + repetition, f"bench-{repetition}")
        print(f"run {repetition}: record built in {time.perf_counter() - started:.1f} s "
              f"({len(record.units):,} units, {len(record.tallies):,} tallies)", flush=True)
        bare = dataclasses.replace(record, model=dataclasses.replace(record.model, name=f"bare-{repetition}"),
                                   tallies=[])

        def new() -> int:
            started = time.perf_counter()
            (written,) = write_runs(engine, [record])
            new_s.append(time.perf_counter() - started)
            return written.run_id

        def bare_run() -> None:
            started = time.perf_counter()
            (written,) = write_runs(engine, [bare])  # main's write of everything but the tallies
            base_s.append(time.perf_counter() - started)
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM run WHERE id = :id"), {"id": written.run_id})

        # Alternately first; main's pairs go to the new run's id (its unit rows), so that both layouts hold the
        # same runs.
        if repetition % 2:
            bare_run()
            run_id = new()
        else:
            run_id = new()
            bare_run()
        main_s.append(write_main_layout(engine, run_id, record))
        columns_s.append(write_columns(engine, record, f"columns-{repetition}"))
        print(f"  write_runs (arrays) {new_s[-1]:.2f} s, from columns {columns_s[-1]:.2f} s; main: write_runs "
              f"without tallies {base_s[-1]:.2f} s + per-pair COPY {main_s[-1]:.2f} s", flush=True)
        record = bare = None  # the next record is built without this one in memory

    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    runs = args.repeat
    new_bytes = scalar(engine, "SELECT pg_total_relation_size('unit_tally') + pg_total_relation_size('run_concept')")
    main_bytes = scalar(engine, "SELECT pg_total_relation_size('main_layout.unit_concept')")

    print("checking every value: unit_concept and unit_category_label, arrays against main's table ...", flush=True)
    for view in ("unit_concept", "unit_category_label"):
        for one, other in ((view, f"main_layout.{view}"), (f"main_layout.{view}", view)):
            differing = scalar(engine, f"SELECT count(*) FROM (SELECT * FROM {one} EXCEPT ALL SELECT * FROM {other}) d")
            assert differing == 0, f"{differing} rows of {one} are not in {other}"
    pairs = scalar(engine, "SELECT count(*) FROM main_layout.unit_concept")

    timings = {}
    queries = {
        "unit_category_label (all rows)": ("SELECT * FROM unit_category_label",
                                           "SELECT * FROM main_layout.unit_category_label"),
        "unit_category_label, one unit": ("SELECT * FROM unit_category_label WHERE run_id = "
                                          "(SELECT max(id) FROM run) AND unit = 7",
                                          "SELECT * FROM main_layout.unit_category_label WHERE run_id = "
                                          "(SELECT max(id) FROM run) AND unit = 7"),
        "unit_concept, one unit": ("SELECT * FROM unit_concept WHERE run_id = (SELECT max(id) FROM run) AND unit = 7",
                                   "SELECT * FROM main_layout.unit_concept WHERE run_id = (SELECT max(id) FROM run)"
                                   " AND unit = 7"),
        "unit_concept, count(*)": ("SELECT count(*) FROM unit_concept", "SELECT count(*) FROM main_layout.unit_concept"),
    }
    for label, (arrays, rows) in queries.items():
        timed_query(engine, arrays), timed_query(engine, rows)  # warm both
        pairs_s = []
        for repetition in range(args.view_repeat):
            order = (arrays, rows) if repetition % 2 == 0 else (rows, arrays)
            first, second = (timed_query(engine, sql)[0] for sql in order)
            pairs_s.append((first, second) if repetition % 2 == 0 else (second, first))
        timings[label] = pairs_s
        print(f"  {label}: done", flush=True)

    print(f"\n{runs} runs of {UNITS:,} units x {sum(CATEGORY_SIZES.values()):,} concepts "
          f"({pairs // runs:,} pairs each)\n")
    print(f"{'figure':<40} {'arrays':>10} {'main':>10} {'ratio':>8}  target")
    print(f"{'-' * 40} {'-' * 10} {'-' * 10} {'-' * 8}  ------")
    main_write = [b + m for b, m in zip(base_s, main_s)]
    print(f"{'write one run, median s':<40} {statistics.median(new_s):>10.2f} {statistics.median(main_write):>10.2f}"
          f" {statistics.median(new_s) / statistics.median(main_write):>7.3f}x  <= 5 s")
    print(f"{'write one run from columns, median s':<40} {statistics.median(columns_s):>10.2f} "
          f"{statistics.median(main_write):>10.2f} {statistics.median(columns_s) / statistics.median(main_write):>7.3f}x"
          "  <= 5 s")
    print(f"{'stored per run, MB (table+TOAST+index)':<40} {new_bytes / runs / 1e6:>10.1f} "
          f"{main_bytes / runs / 1e6:>10.1f} {new_bytes / main_bytes:>7.3f}x  <= 60 MB")
    for label, pairs_s in timings.items():
        arrays_median = statistics.median(a for a, _ in pairs_s)
        rows_median = statistics.median(b for _, b in pairs_s)
        ratios = [a / b for a, b in pairs_s]
        target = "<= 1.1x" if label.startswith("unit_category_label (all") else "-"
        print(f"{label + ', median s':<40} {arrays_median:>10.3f} {rows_median:>10.3f} "
              f"{statistics.median(ratios):>7.3f}x  {target}")
    print("\n(ratio of a view: the median of the paired ratios; write: the ratio of the medians)")


def main() -> None:
    args = parse_args()
    with scratch_home("lce-bench-store-"):
        run(args)


if __name__ == "__main__":
    sys.exit(main())
