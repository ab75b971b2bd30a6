"""`lce compare`: shared and exclusive concepts of two models, per-category units, their embedding distance."""

import csv
import io
import json
import math
from collections import defaultdict

import pytest
from sqlalchemy import text

from lce.analysis.compare import compare
from tests.conftest import PAPER_EXCLUDED

A, B = "MoCoV1(R)", "InfoMin(R)"


def csv_concepts(path, model, min_iou=0.04):
    """From the authors' CSV with the csv module: {(category, label): (units, best IoU)} of the interpretable
    units (label not '-', IoU present and > min_iou), as docs/method.md section 3 keeps them."""
    found = defaultdict(list)
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["name"] == model and row["label"] != "-" and row["iou"] and float(row["iou"]) > min_iou:
                found[(row["category"], row["label"])].append(float(row["iou"]))
    return {concept: (len(ious), max(ious)) for concept, ious in found.items()}


def embed_paper(cli, tmp_path):
    args = [arg for name in PAPER_EXCLUDED for arg in ("--exclude", name)]
    result = cli("embed", *args, "--out", tmp_path / "lce.csv")
    assert result.exit_code == 0, result.output


def test_shared_and_exclusive_concepts_match_the_authors_csv(engine, paper_data):
    expected_a, expected_b = csv_concepts(paper_data, A), csv_concepts(paper_data, B)
    comparison = compare(A, B)
    shared = {(r.category, r.label) for r in comparison.shared}
    assert shared == expected_a.keys() & expected_b.keys()
    assert {(r.category, r.label) for r in comparison.only_a} == expected_a.keys() - expected_b.keys()
    assert {(r.category, r.label) for r in comparison.only_b} == expected_b.keys() - expected_a.keys()
    assert len(shared) > 10 and comparison.only_a and comparison.only_b
    for row in comparison.concepts:
        key = (row.category, row.label)
        assert (row.units_a, row.units_b) == (expected_a.get(key, (0,))[0], expected_b.get(key, (0,))[0])
        assert row.max_iou_a == (pytest.approx(expected_a[key][1]) if key in expected_a else None)
        assert row.max_iou_b == (pytest.approx(expected_b[key][1]) if key in expected_b else None)
    for row in comparison.categories:
        assert row.units_a == sum(n for (c, _), (n, _) in expected_a.items() if c == row.category)
        assert row.concepts_b == sum(1 for c, _ in expected_b if c == row.category)
        assert row.shared == sum(1 for c, _ in shared if c == row.category)
    assert comparison.a.interpretable == sum(n for n, _ in expected_a.values())
    assert (comparison.a.units, comparison.b.units) == (2048, 2048)
    assert comparison.jaccard == pytest.approx(len(shared) / len(expected_a.keys() | expected_b.keys()))
    # A stricter cut-off keeps fewer units, counted the same way.
    strict = compare(A, B, min_iou=0.08)
    assert strict.a.interpretable == sum(n for n, _ in csv_concepts(paper_data, A, 0.08).values())


def test_distance_is_the_euclidean_distance_of_the_stored_coordinates(cli, engine, paper_data, tmp_path):
    before = compare(A, B)
    assert before.embedding is None and "No stored embedding holds both runs" in before.embedding_note
    embed_paper(cli, tmp_path)
    with engine.connect() as conn:
        points = dict(conn.execute(text("SELECT m.name, p.coordinates FROM embedding_point p"
                                        " JOIN model m ON m.id = p.model_id")).all())
        embedding_id = conn.execute(text("SELECT id FROM embedding")).scalar_one()
    written = {row["model"]: [float(row[f"pc{i}"]) for i in (1, 2, 3)]
               for row in csv.DictReader((tmp_path / "lce.csv").open())}
    comparison = compare(A, B)
    distance = comparison.embedding
    assert distance.embedding_id == embedding_id and distance.method == "pca" and distance.components == 3
    assert distance.distance == pytest.approx(math.dist(points[A], points[B]), abs=1e-9)
    assert distance.distance == pytest.approx(math.dist(written[A], written[B]), abs=1e-5)
    assert distance.coordinates_a == pytest.approx(points[A])
    # MoCoV1 sits far out on PC1 (4.95) and InfoMin near the origin: their clusters differ (docs/method.md section 3).
    assert distance.distance > 4 and not distance.same_cluster
    pairwise = sorted(math.dist(p, q) for i, p in enumerate(points.values()) for q in list(points.values())[i + 1:])
    assert (distance.models, distance.pairs) == (13, 78)
    assert distance.median_distance == pytest.approx((pairwise[38] + pairwise[39]) / 2)
    assert distance.rank == 1 + sum(1 for d in pairwise if d < distance.distance - 1e-9)
    # A model left out of the embedding has no distance, and says why.
    outside = compare(A, "Random(R)")
    assert outside.embedding is None and "No stored embedding holds both runs (1 embedding(s) stored)" in \
        outside.embedding_note


def test_the_newest_embedding_holding_both_is_used_unless_one_is_named(cli, engine, paper_data, tmp_path):
    embed_paper(cli, tmp_path)
    assert cli("embed", "--model", A, "--model", B, "--model", "BYOL(R)", "--components", "2", "--clusters", "2",
               "--out", tmp_path / "small.csv").exit_code == 0
    assert compare(A, B).embedding.embedding_id == 2 and compare(A, B).embedding.components == 2
    assert compare(A, B, embedding_id=1).embedding.components == 3
    result = cli("compare", A, "SwAV(R)", "--embedding", "2")
    assert result.exit_code == 1 and "Embedding 2 does not hold run(s)" in result.stderr
    result = cli("compare", A, B, "--embedding", "99")
    assert result.exit_code == 1 and "No embedding with id 99 is stored" in result.stderr


def test_csv_and_json_formats_carry_the_same_rows(cli, paper_data, tmp_path):
    embed_paper(cli, tmp_path)
    expected = compare(A, B)
    as_csv = cli("compare", A, B, "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert list(rows[0])[:9] == ["model_a", "model_b", "category", "label", "presence", "units_a", "max_iou_a",
                                 "units_b", "max_iou_b"]  # then p, q, significant (test_compare_significance.py)
    assert len(rows) == len(expected.concepts)
    assert sum(1 for row in rows if row["presence"] == "both") == len(expected.shared)
    assert {row["model_a"] for row in rows} == {A}
    only_b = next(row for row in rows if row["presence"] == "only_b")
    assert only_b["units_a"] == "0" and only_b["max_iou_a"] == "" and float(only_b["max_iou_b"]) > 0.04

    as_json = cli("compare", A, B, "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert (data["shared"], data["only_a"], data["only_b"]) == \
        (len(expected.shared), len(expected.only_a), len(expected.only_b))
    assert data["a"]["model"] == A and data["b"]["interpretable"] == expected.b.interpretable
    assert data["embedding"]["distance"] == pytest.approx(expected.embedding.distance)
    assert data["embedding"]["same_cluster"] is False
    assert len(data["concepts"]) == len(expected.concepts) and len(data["categories"]) == 4


def test_table_output_names_both_runs_and_the_distance(cli, paper_data, tmp_path):
    embed_paper(cli, tmp_path)
    result = cli("compare", A, B)
    assert result.exit_code == 0, result.output
    comparison = compare(A, B)
    assert f"A: {A} (run " in result.stdout and f"B: {B} (run " in result.stdout
    assert f"{len(comparison.shared)} concepts shared, {len(comparison.only_a)} only in A" in result.stdout
    assert f"Distance in embedding 1 (pca, 3 components, IoU > 0.04): {comparison.embedding.distance:.3f}" in \
        result.stdout
    assert "material" in result.stdout and "Concepts" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["NoSuchNet", B], "No model named 'NoSuchNet' is stored"),
    (["MoCoV1", B], "did you mean MoCoV1(R)"),
    ([A, A], "Both names choose the same run"),
    ([A, B, "--format", "xml"], "--format must be one of table, csv, json"),
    ([A, B, "--min-iou", "1.5"], "--min-iou must lie in [0, 1)"),
    ([A, B, "--layer", "layer3"], "No run of 'MoCoV1(R)' matches --layer/--probe/--variant"),
])
def test_bad_input_is_one_clear_error(cli, paper_data, args, message):
    result = cli("compare", *args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_model_with_several_runs_needs_a_choice(cli, paper_data):
    assert cli("import", "dissect-csv", paper_data, "--layer", "layer3").exit_code == 0
    result = cli("compare", A, B)
    assert result.exit_code == 1
    assert "Model 'MoCoV1(R)' has 2 runs that match" in result.stderr and "layer layer3" in result.stderr
    chosen = cli("compare", A, B, "--layer", "layer3", "--format", "json")
    assert chosen.exit_code == 0, chosen.output
    assert json.loads(chosen.stdout)["a"]["layer"] == "layer3"


def test_runs_on_different_probes_are_refused(cli, paper_data, tmp_path):
    solo = tmp_path / "solo.csv"  # InfoMin's units as another model, imported under another probe name
    with paper_data.open(newline="") as source, solo.open("w", newline="") as target:
        writer = csv.writer(target)
        for row in csv.reader(source):
            if row[1] in ("name", B):
                writer.writerow(row[:1] + ["Solo" if row[1] == B else row[1]] + row[2:])
    assert cli("import", "dissect-csv", solo, "--layer", "layer4", "--probe", "other-probe").exit_code == 0
    result = cli("compare", A, "Solo")
    assert result.exit_code == 1
    assert "were dissected on different probes (places365-upp and other-probe)" in result.stderr
