"""The views and SQL functions of sql/: unit_label, per-concept counts, category profiles, the matrix."""

import pytest
from sqlalchemy import text

HEADER = "name,unit,iou,label,category\n"


@pytest.fixture
def small(cli, tmp_path):
    """Two models: a's units 0-3 and b's units 0-2; IoUs around the 0.04 cut-off."""
    path = tmp_path / "small.csv"
    path.write_text(HEADER + "\n".join([
        "a,0,0.10,sky,object", "a,1,0.04,sky,object", "a,2,0.05,wood,material", "a,3,0.30,-,object",
        "b,0,0.20,sky,object", "b,1,0.06,tree,object", "b,2,,red-c,color",
    ]) + "\n")
    assert cli("import", "dissect-csv", path).exit_code == 0
    return path


def rows(engine, query):
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(query))]


def test_unit_label_has_one_row_per_unit_with_the_documented_columns(engine, small):
    with engine.connect() as conn:
        result = conn.execute(text("SELECT * FROM unit_label ORDER BY model, unit"))
        # The columns of before migration 0009 first, in their order (existing SQL keeps working), then how sure
        # each label is: all unknown (NULL) for these imported runs, and `trusted` NULL where interpretable.
        assert list(result.keys()) == ["model", "layer", "probe", "variant", "run_id", "unit", "label", "category",
                                       "iou", "interpretable", "iou_low", "iou_high", "stability", "runner_up",
                                       "runner_up_iou", "chance_iou", "lift", "beats_random", "trusted"]
        result = list(result)
        found = [(r.model, r.unit, r.label, r.interpretable) for r in result]
        assert {(r.iou_low, r.stability, r.chance_iou, r.beats_random) for r in result} == {(None, None, None, None)}
        assert [r.trusted for r in result] == [None if r.interpretable else False for r in result]
    assert found == [
        ("a", 0, "sky", True),
        ("a", 1, "sky", False),  # 0.04 is not > 0.04: the cut-off is strict
        ("a", 2, "wood", True),
        ("a", 3, None, False),  # no concept ('-'), whatever its IoU
        ("b", 0, "sky", True),
        ("b", 1, "tree", True),
        ("b", 2, "red-c", False),  # IoU missing
    ]


def test_cut_off_changes_through_the_function_without_a_migration(engine, small):
    assert rows(engine, "SELECT model, unit FROM unit_label_at(0.08) WHERE interpretable ORDER BY 1, 2") == \
        [("a", 0), ("b", 0)]
    assert rows(engine, "SELECT count(*) FROM unit_label_at(0.0) WHERE interpretable") == [(5,)]
    assert rows(engine, "SELECT count(*) FROM unit_label_at(NULL) WHERE interpretable") == [(4,)]


def test_concept_counts_and_category_profile(engine, small):
    assert rows(engine, "SELECT model, category, label, units FROM model_concept_units ORDER BY 1, 2, 3") == [
        ("a", "material", "wood", 1), ("a", "object", "sky", 1), ("b", "object", "sky", 1), ("b", "object", "tree", 1)]
    assert rows(engine, "SELECT model, category, interpretable_units, distinct_concepts FROM model_category_profile"
                        " ORDER BY 1, 2") == [("a", "material", 1, 1), ("a", "object", 1, 1), ("b", "object", 2, 2)]


def test_matrix_divides_by_distinct_concepts_of_the_population(engine, small):
    # Over both models, object has 2 distinct concepts (sky, tree) and material 1 (wood).
    assert rows(engine, "SELECT model, concept, units, population_concepts, value FROM model_concept_matrix"
                        " ORDER BY 1, 2") == [
        ("a", "m_wood", 1, 1, 1.0), ("a", "o_sky", 1, 2, 0.5), ("b", "o_sky", 1, 2, 0.5), ("b", "o_tree", 1, 2, 0.5)]


def test_population_normalisers_on_the_paper_data(engine, paper_data):
    assert rows(engine, "SELECT category, max(population_concepts) FROM model_concept_matrix GROUP BY 1 ORDER BY 1"
                ) == [("color", 8), ("material", 16), ("object", 67), ("part", 54)]
    # Interpretable units per category of one model, as the paper's "all_<category>" profile.
    profile = dict(rows(engine, "SELECT category, interpretable_units FROM model_category_profile"
                                " WHERE model = 'MoCoV1(R)'"))
    with engine.connect() as conn:
        expected = dict(conn.execute(text(
            "SELECT c.category, count(*) FROM unit u JOIN run r ON r.id = u.run_id JOIN model m ON m.id = r.model_id"
            " JOIN concept c ON c.id = u.concept_id WHERE m.name = 'MoCoV1(R)' AND u.iou > 0.04 GROUP BY 1")).all())
    assert profile == expected and sum(profile.values()) > 0
