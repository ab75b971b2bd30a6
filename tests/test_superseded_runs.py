"""Stored embeddings are immutable: --replace keeps a run an embedding uses (superseded, out of every view) and
deletes one no embedding uses."""

import random

from sqlalchemy import text

from lce.resources import read_sql

CONCEPTS = [("sky", "object"), ("grass", "object"), ("wood", "material"), ("red-c", "color"), ("dotted", "texture"),
            ("street-s", "scene"), ("leg", "part"), ("metal", "material")]


def write_csv(path, models, seed):
    rng = random.Random(seed)
    lines = [",name,unit,iou,label,category"]
    for model in models:
        for unit in range(24):
            label, category = rng.choice(CONCEPTS)
            lines.append(f"{len(lines)},{model},{unit},{rng.uniform(0.01, 0.3):.6f},{label},{category}")
    path.write_text("\n".join(lines) + "\n")
    return path


def rows(engine, query, **params):
    with engine.connect() as conn:
        return conn.execute(text(query), params).all()


def test_replacing_a_run_an_embedding_uses_keeps_it_superseded(cli, engine, tmp_path):
    first = write_csv(tmp_path / "first.csv", ["A", "B", "C", "D"], seed=1)
    assert cli("import", "dissect-csv", first).exit_code == 0
    result = cli("embed", "--components", "2", "--clusters", "2", "--out", tmp_path / "lce.csv",
                 "--plot", tmp_path / "lce.png")
    assert result.exit_code == 0, result.output
    points = rows(engine, "SELECT m.name, p.run_id, p.coordinates, p.cluster FROM embedding_point p"
                          " JOIN model m ON m.id = p.model_id ORDER BY m.name")
    old_a = dict((name, run) for name, run, _, _ in points)["A"]
    profile = rows(engine, read_sql("queries/embedding_category_profile"), embedding=1)

    again = write_csv(tmp_path / "again.csv", ["A"], seed=2)
    result = cli("import", "dissect-csv", again, "--replace")
    assert result.exit_code == 0, result.output

    # The embedding still has every point, with the same coordinates and the run it was made from.
    assert rows(engine, "SELECT m.name, p.run_id, p.coordinates, p.cluster FROM embedding_point p"
                        " JOIN model m ON m.id = p.model_id ORDER BY m.name") == points
    assert rows(engine, read_sql("queries/embedding_category_profile"), embedding=1) == profile  # lce correlate's
    (new_a,) = rows(engine, "SELECT superseded_by FROM run WHERE id = :id AND superseded_at IS NOT NULL", id=old_a)[0]
    assert new_a is not None and new_a != old_a
    # Views and the run-choosing queries see only the new run.
    assert rows(engine, "SELECT DISTINCT run_id FROM unit_label WHERE model = 'A'") == [(new_a,)]
    assert rows(engine, "SELECT count(*) FROM unit_label")[0][0] == 4 * 24
    assert rows(engine, "SELECT count(*) FROM model_concept_units WHERE run_id = :id", id=old_a)[0][0] == 0
    models = cli("models")
    assert models.exit_code == 0 and str(old_a) not in [line.split()[2] for line in models.stdout.splitlines()
                                                        if line.split()[:1] == ["A"]]
    result = cli("embed", "--components", "2", "--clusters", "2", "--out", tmp_path / "lce2.csv",
                 "--plot", tmp_path / "lce2.png")
    assert result.exit_code == 0, result.output
    assert rows(engine, "SELECT p.run_id FROM embedding_point p JOIN model m ON m.id = p.model_id"
                        " WHERE m.name = 'A' ORDER BY p.embedding_id") == [(old_a,), (new_a,)]

    # Replacing the new run, which the second embedding uses, supersedes it too; the old one stays.
    third = write_csv(tmp_path / "third.csv", ["A"], seed=3)
    assert cli("import", "dissect-csv", third, "--replace").exit_code == 0
    runs_a = rows(engine, "SELECT r.id, r.superseded_at IS NOT NULL FROM run r JOIN model m ON m.id = r.model_id"
                          " WHERE m.name = 'A' ORDER BY r.id")
    assert [superseded for _, superseded in runs_a] == [True, True, False]


def test_replacing_a_run_no_embedding_uses_deletes_it(cli, engine, tmp_path):
    assert cli("import", "dissect-csv", write_csv(tmp_path / "a.csv", ["A", "B"], seed=1)).exit_code == 0
    (old,) = rows(engine, "SELECT r.id FROM run r JOIN model m ON m.id = r.model_id WHERE m.name = 'A'")[0]
    result = cli("import", "dissect-csv", write_csv(tmp_path / "b.csv", ["A"], seed=2), "--replace")
    assert result.exit_code == 0, result.output
    assert rows(engine, "SELECT count(*) FROM run WHERE id = :id", id=old)[0][0] == 0
    assert rows(engine, "SELECT count(*) FROM unit WHERE run_id = :id", id=old)[0][0] == 0
    assert rows(engine, "SELECT count(*) FROM run")[0][0] == 2


def test_only_current_runs_are_unique(engine):
    """The identity index is partial: a second current run is refused, a superseded one is not counted."""
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO probe (name, source) VALUES ('p', 'imported')"))
        conn.execute(text("INSERT INTO model (name) VALUES ('m')"))
    insert = ("INSERT INTO run (model_id, probe_id, layer, variant, quantile, iou_threshold, source, code_version,"
              " unit_count, superseded_at) SELECT m.id, p.id, 'l', 'dissect', 0.01, 0.04, 'dissected', 'v', 0, {}"
              " FROM model m, probe p")
    with engine.begin() as conn:
        conn.execute(text(insert.format("now()")))
        conn.execute(text(insert.format("NULL")))
    try:
        with engine.begin() as conn:
            conn.execute(text(insert.format("NULL")))
    except Exception as error:  # noqa: BLE001
        assert "uq_run_current_identity" in str(error)
    else:
        raise AssertionError("a second current run with the same identity was accepted")
