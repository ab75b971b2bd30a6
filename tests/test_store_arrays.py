"""The tally store: unit x concept tallies kept as arrays (unit_tally, run_concept) and read pair by pair through the
view unit_concept, value for value; migration 0008 moves rows stored by the former table without changing one."""

import numpy as np
import pytest
from sqlalchemy import text

from lce.db import connection, migrate
from lce.db.probes import ProbeConcept, ProbeRecord, write_probe
from lce.db.runs import write_runs
from lce.errors import LceError
from lce.records import ModelInfo, RunRecord, TallyColumns, TallyRow, UnitRow

PAIRS = ("SELECT t.run_id, t.unit, c.category, c.name, t.intersection, t.activation, t.truth, t.iou"
         " FROM unit_concept t JOIN concept c ON c.id = t.concept_id ORDER BY 1, 2, 3, 4")
BEST = "SELECT * FROM unit_category_label ORDER BY run_id, unit, category"
BIG = 3 * 2**31 + 5  # counts of a whole Broden at large segmentation sizes pass 2^31


def rows(engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


def record(name: str, tallies: list[TallyRow], variant: str = "netdissect", source: str = "imported:test",
           units: int = 3) -> RunRecord:
    return RunRecord(model=ModelInfo(name), probe="p", layer="l", variant=variant, quantile=0.005,
                     iou_threshold=0.04, source=source, units=[UnitRow(u, None, None) for u in range(units)],
                     tallies=tallies)


# A netdissect-style run: A per (unit, category), one unit whose A differs within a category and a concept whose G
# differs between units (an imported file may say so), counts past 2^31, an IoU tie (0.25) broken by name.
TALLIES = [
    TallyRow(0, ("object", "sky"), 5, 40, 30, 5 / 65),
    TallyRow(0, ("object", "tree"), 10, 40, 20, 0.2),
    TallyRow(0, ("material", "wood"), 1, 7, 3, 1 / 9),
    TallyRow(1, ("object", "sky"), 10, 20, 30, 0.25),
    TallyRow(1, ("object", "car"), 10, 21, 29, 0.25),
    TallyRow(1, ("object", "tree"), 0, 22, 20, 0.0),
    TallyRow(2, ("scene", "beach"), BIG, BIG + 1, BIG + 7, 0.1 + 0.2),
    TallyRow(2, ("object", "sky"), 0, 9, 31, 0.0),
]


def test_tallies_read_back_pair_by_pair_with_every_value(engine):
    (written,) = write_runs(engine, [record("m", TALLIES)])
    expected = sorted((written.run_id, t.unit, *t.concept, t.intersection, t.activation, t.truth, t.iou)
                      for t in TALLIES)
    assert rows(engine, PAIRS) == expected
    # One row per (unit, category); A once where it is the unit's, G once where it is the concept's.
    assert rows(engine, "SELECT unit, category, activation, activations IS NULL, truths IS NULL,"
                        " cardinality(concept_ids) FROM unit_tally ORDER BY 1, 2") == [
        (0, "material", 7, True, True, 1), (0, "object", 40, True, False, 2),
        (1, "object", None, False, False, 3), (2, "object", 9, True, False, 1), (2, "scene", BIG + 1, True, True, 1)]
    assert rows(engine, "SELECT c.name, k.truth FROM run_concept k JOIN concept c ON c.id = k.concept_id"
                        " ORDER BY 1") == [("beach", BIG + 7), ("car", 29), ("sky", None), ("tree", 20),
                                           ("wood", 3)]
    assert rows(engine, "SELECT unit, category, label, iou, intersection, activation, truth FROM unit_category_label"
                        " ORDER BY unit, category") == [
        (0, "material", "wood", 1 / 9, 1, 7, 3), (0, "object", "tree", 0.2, 10, 40, 20),
        (1, "object", "car", 0.25, 10, 21, 29), (2, "object", "sky", 0.0, 0, 9, 31),
        (2, "scene", "beach", 0.1 + 0.2, BIG, BIG + 1, BIG + 7)]


def test_a_dissected_run_of_every_pair_reads_back_exactly(engine):
    """The dissect variant's shape (A per unit, G per concept), with IoUs that only float64 keeps apart."""
    concepts = [("object", f"o{i}") for i in range(7)] + [("part", f"p{i}") for i in range(3)]
    truth = [1000 + 37 * i for i in range(len(concepts))]
    tallies = [TallyRow(u, concept, i := (u * 7 + c * 13) % 50 + 1, 500 + u, g, i / (500 + u + g - i))
               for u in range(12) for c, (concept, g) in enumerate(zip(concepts, truth))]
    (written,) = write_runs(engine, [record("d", tallies, "dissect", "dissected", units=12)])
    assert rows(engine, PAIRS) == sorted((written.run_id, t.unit, *t.concept, t.intersection, t.activation,
                                          t.truth, t.iou) for t in tallies)
    assert rows(engine, "SELECT count(*), count(activation), count(activations), count(truths) FROM unit_tally") \
        == [(24, 24, 0, 0)]


def test_tallies_handed_over_as_columns_store_what_the_rows_store(engine):
    """lce ingest hands its tallies over as numpy columns (TallyColumns): the same pairs as TallyRow objects."""
    concepts = [("scene", "s0"), ("object", "o0"), ("object", "o1"), ("color", "c0")]
    pairs = [(u, c, (u * 5 + c * 3) % 9 + 1, 40 + u, 30 + c) for u in range(6) for c in range(len(concepts))
             if (u + c) % 3]
    listed = [TallyRow(u, concepts[c], i, a, g, i / (a + g - i)) for u, c, i, a, g in pairs]
    unit, concept, intersection, activation, truth = (np.array(column) for column in zip(*pairs))
    columns = TallyColumns(concepts, unit, concept, intersection, activation, truth,
                           intersection / (activation + truth - intersection))
    assert list(columns) == listed and len(columns) == len(listed)
    first, second = write_runs(engine, [record("rows", listed, "dissect", "dissected", units=6),
                                        record("columns", columns, "dissect", "dissected", units=6)])
    stored = {}
    for run_id, *pair in rows(engine, PAIRS):
        stored.setdefault(run_id, []).append(tuple(pair))
    assert stored[first.run_id] == stored[second.run_id] and len(stored[first.run_id]) == len(listed)


@pytest.mark.parametrize("bad, words", [
    (TallyRow(1, ("object", "sky"), 11, 10, 30, 0.1), "intersection 11, activation 10, truth 30"),
    (TallyRow(1, ("object", "sky"), 5, 10, 4, 0.1), "intersection 5, activation 10, truth 4"),
    (TallyRow(1, ("object", "sky"), 1, 10, 30, 1.5), "IoU 1.5"),
    (TallyRow(1, ("object", "sky"), -1, 10, 30, 0.1), "intersection -1"),
    (TallyRow(0, ("object", "sky"), 1, 40, 30, 0.1), "more than once"),
])
def test_a_bad_tally_is_refused_and_nothing_is_written(engine, bad, words):
    with pytest.raises(LceError, match="The database refused the data") as refused:
        write_runs(engine, [record("good", TALLIES), record("bad", TALLIES[:3] + [bad])])
    assert words in str(refused.value) and "model 'bad'" in str(refused.value)
    assert rows(engine, "SELECT (SELECT count(*) FROM run), (SELECT count(*) FROM unit_tally),"
                        " (SELECT count(*) FROM run_concept)") == [(0, 0, 0)]


def test_deleting_a_run_deletes_its_tallies_and_a_used_concept_stays(engine):
    first, second = write_runs(engine, [record("a", TALLIES), record("b", TALLIES[:3])])
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM run WHERE id = :id"), {"id": first.run_id})
    assert {row[0] for row in rows(engine, PAIRS)} == {second.run_id}
    assert rows(engine, "SELECT count(*) FROM run_concept WHERE run_id = :id".replace(":id", str(first.run_id))) \
        == [(0,)]
    # 'wood' is no unit's best concept, only a tally's: a new version of the vocabulary must keep it.
    with engine.begin() as conn:
        probe_id = conn.execute(text("SELECT id FROM probe WHERE name = 'p'")).scalar()
        kept = [ProbeConcept(name, category, number, category, 1, 0.1) for number, (category, name)
                in enumerate([("object", "sky"), ("object", "tree"), ("object", "car"), ("scene", "beach")], 1)]
        with pytest.raises(LceError, match=r"lacks 1 concept\(s\) that stored runs use: wood \(material\)"):
            write_probe(conn, ProbeRecord("p", "/nowhere", 1, 224, 112, "0" * 64, {}), kept, probe_id)


def test_the_read_only_login_reads_the_view_in_both_engines(cli, engine):
    write_runs(engine, [record("m", TALLIES)])
    for engine_name in ("duckdb", "postgres"):
        result = cli("sql", "SELECT count(*) AS pairs, sum(truth) AS truth FROM unit_concept", "--engine",
                     engine_name, "--format", "csv")
        assert result.exit_code == 0, result.output
        assert result.stdout.split() == ["pairs,truth", f"8,{30 + 20 + 3 + 30 + 29 + 20 + BIG + 7 + 31}"]


OLD_RUN = ("INSERT INTO run (model_id, probe_id, layer, variant, quantile, iou_threshold, source, code_version,"
           " unit_count) SELECT m.id, p.id, 'l', 'netdissect', 0.005, 0.04, :source, 'v', 3 FROM model m, probe p"
           " WHERE m.name = :model RETURNING id")


def test_migration_0008_keeps_every_stored_pair_and_downgrades_to_the_table(empty_database):
    """A database written by lce before 0008 (rows in the table unit_concept, by plain SQL as that code wrote
    them): after the upgrade the view gives back every value, unit_category_label the same rows; after the
    downgrade the table holds them again."""
    engine = connection.connect(upgrade=False)
    migrate.upgrade(engine, "0007")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO probe (name, source) VALUES ('p', 'imported')"))
        for category, name in sorted({t.concept for t in TALLIES}):
            conn.execute(text("INSERT INTO concept (probe_id, name, category) SELECT id, :n, :c FROM probe"),
                         {"n": name, "c": category})
        for model, source, tallies in (("a", "imported:netdissect-csv", TALLIES),
                                       ("b", "dissected", TALLIES[3:6]), ("c", "dissected", [])):
            conn.execute(text("INSERT INTO model (name) VALUES (:m)"), {"m": model})
            run_id = conn.execute(text(OLD_RUN), {"model": model, "source": source}).scalar()
            conn.execute(text("INSERT INTO unit (run_id, unit) SELECT :r, generate_series(0, 2)"), {"r": run_id})
            for t in tallies:
                conn.execute(text(
                    "INSERT INTO unit_concept (run_id, unit, concept_id, intersection, activation, truth, iou)"
                    " SELECT :r, :u, id, :i, :a, :g, :iou FROM concept WHERE category = :c AND name = :n"),
                    dict(r=run_id, u=t.unit, i=t.intersection, a=t.activation, g=t.truth, iou=t.iou,
                         c=t.concept[0], n=t.concept[1]))
        conn.execute(text("UPDATE run SET superseded_at = now() WHERE model_id = (SELECT id FROM model"
                          " WHERE name = 'b')"))
    pairs, best = rows(engine, PAIRS), rows(engine, BEST)
    assert len(pairs) == 11 and len(best) == 5  # run b is superseded: in unit_concept, not in the view

    migrate.upgrade(engine)
    engine.dispose()
    assert rows(engine, PAIRS) == pairs
    assert rows(engine, BEST) == best
    assert rows(engine, "SELECT count(*) FROM unit_tally") == [(5 + 1,)]
    assert rows(engine, "SELECT relkind FROM pg_class WHERE relname = 'unit_concept'") == [("v",)]

    migrate.downgrade(engine, "0007")
    engine.dispose()
    assert rows(engine, "SELECT relkind FROM pg_class WHERE relname = 'unit_concept'") == [("r",)]
    assert rows(engine, PAIRS) == pairs
    assert rows(engine, BEST) == best
    assert "unit_tally" not in {row[0] for row in rows(engine, "SELECT tablename FROM pg_tables")}
