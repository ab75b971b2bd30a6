"""`lce compare`: per concept, Fisher's exact test on the two unit counts and Benjamini-Hochberg over the concepts
compared; the table, CSV and JSON carry p, q and the `significant` flag."""

import csv
import io
import json
from fractions import Fraction
from math import comb

import pytest

from lce.analysis.compare import (FALSE_DISCOVERY_RATE, benjamini_hochberg, compare, count_difference_p,
                                  with_count_tests)
from tests.test_compare import csv_concepts

A, B = "MoCoV1(R)", "InfoMin(R)"


def fisher_by_hand(units_a: int, total_a: int, units_b: int, total_b: int) -> Fraction:
    """Two-sided Fisher's exact p from the hypergeometric law, in exact fractions: the probability of every table
    with the same margins that is no more likely than the one observed."""
    drawn, units = units_a + units_b, total_a + total_b

    def chance(x: int) -> Fraction:
        return Fraction(comb(total_a, x) * comb(total_b, drawn - x), comb(units, drawn))

    observed = chance(units_a)
    return sum((chance(x) for x in range(max(0, drawn - total_b), min(drawn, total_a) + 1)
                if chance(x) <= observed), Fraction(0))


# ---- Benjamini-Hochberg -----------------------------------------------------------------------------------------

def test_benjamini_hochberg_on_a_worked_example():
    # m = 10. m * p / rank: 0.01, 0.04, 0.13, 0.1025, 0.084, 0.1, 0.105714, 0.25625, 0.235556, 0.216; each q is the
    # minimum of these over its rank and the ranks above it (the step-up), capped at 1.
    p = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216]
    expected = [0.01, 0.04, 0.084, 0.084, 0.084, 0.1, 0.74 / 7, 0.216, 0.216, 0.216]
    assert benjamini_hochberg(p) == pytest.approx(expected, rel=1e-12)
    # The order given is kept: the same p-values shuffled get the same q-values, shuffled the same way.
    order = [7, 2, 9, 0, 5, 1, 8, 3, 6, 4]
    assert benjamini_hochberg([p[i] for i in order]) == pytest.approx([expected[i] for i in order], rel=1e-12)
    assert [q <= 0.05 for q in expected] == [True, True] + [False] * 8
    # Ties share a q (the larger rank's), and nothing to test is nothing.
    assert benjamini_hochberg([1.0, 0.02, 0.02]) == pytest.approx([1.0, 0.03, 0.03], rel=1e-12)
    assert benjamini_hochberg([0.9, 0.9, 0.9]) == pytest.approx([0.9] * 3, rel=1e-12)
    assert benjamini_hochberg([0.5]) == [0.5] and benjamini_hochberg([]) == []


def test_benjamini_hochbergs_own_example_rejects_four_of_fifteen():
    # Benjamini and Hochberg (1995), section 4: 15 p-values at q* = 0.05; their procedure rejects the four smallest
    # (0.0095 <= 4/15 * 0.05 = 0.01333, while no larger p lies below its own line).
    p = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262, 0.5719, 0.6528,
         0.7590, 1.000]
    q = benjamini_hochberg(p)
    assert sum(value <= 0.05 for value in q) == 4
    assert q[3] == pytest.approx(0.0095 * 15 / 4) and q[4] == pytest.approx(0.0201 * 15 / 5)  # 0.0603


# ---- Fisher's exact test ----------------------------------------------------------------------------------------

def test_fisher_p_values_on_known_counts():
    # Fisher's tea tasting: 3 of 4 against 1 of 4; the tables with probability 1, 16, 16, 1 (of 70) are no more
    # likely than the one seen (16), so p = 34/70.
    assert count_difference_p(3, 4, 1, 4) == pytest.approx(34 / 70, rel=1e-9)
    # 10 units of 512 against none of 512: only the two one-sided extremes, p = 2 C(512, 10) / C(1024, 10).
    assert count_difference_p(10, 512, 0, 512) == pytest.approx(2 * comb(512, 10) / comb(1024, 10), rel=1e-9)
    assert count_difference_p(10, 512, 0, 512) == pytest.approx(0.00187, abs=1e-5)
    # Same share in both runs, or nothing in either: nothing to explain.
    assert count_difference_p(4, 512, 16, 2048) == pytest.approx(1.0)
    assert count_difference_p(0, 512, 0, 2048) == 1.0
    for counts in [(5, 512, 30, 2048), (1, 2048, 9, 2048), (40, 2048, 12, 512), (7, 100, 0, 300)]:
        assert count_difference_p(*counts) == pytest.approx(float(fisher_by_hand(*counts)), rel=1e-9), counts
    with pytest.raises(ValueError):
        count_difference_p(600, 512, 0, 512)


def test_rows_get_p_q_and_the_flag_at_five_percent():
    from lce.analysis.compare import ConceptRow

    rows = [ConceptRow("object", name, "both", a, 0.1, b, 0.1)
            for name, a, b in [("sky", 40, 2), ("tree", 3, 4), ("grass", 12, 0), ("car", 1, 0)]]
    tested = with_count_tests(rows, 512, 512)
    p = [float(fisher_by_hand(row.units_a, 512, row.units_b, 512)) for row in rows]
    assert [row.p for row in tested] == pytest.approx(p, rel=1e-9)
    assert [row.q for row in tested] == pytest.approx(benjamini_hochberg(p), rel=1e-12)
    assert [row.significant for row in tested] == [True, False, True, False]
    assert tested[0].q == pytest.approx(4 * p[0] / 1) and tested[2].q == pytest.approx(4 * p[2] / 2)


# ---- on stored runs ---------------------------------------------------------------------------------------------

def test_compare_on_the_authors_runs_flags_the_concepts_that_differ(paper_data):
    comparison = compare(A, B)
    expected_a, expected_b = csv_concepts(paper_data, A), csv_concepts(paper_data, B)
    p = {(row.category, row.label): float(fisher_by_hand(row.units_a, 2048, row.units_b, 2048))
         for row in comparison.concepts}
    q = dict(zip(p, benjamini_hochberg(list(p.values()))))
    for row in comparison.concepts:
        key = (row.category, row.label)
        assert (row.units_a, row.units_b) == (expected_a.get(key, (0,))[0], expected_b.get(key, (0,))[0])
        assert row.p == pytest.approx(p[key], rel=1e-9, abs=1e-300)
        assert row.q == pytest.approx(q[key], rel=1e-9, abs=1e-300)
        assert row.significant == (q[key] <= FALSE_DISCOVERY_RATE)
    flagged = comparison.significant
    assert 0 < len(flagged) < len(comparison.concepts)
    # A concept held by one unit in one model alone cannot differ beyond sampling: p = 1 (1 of 2 tables each 1/2).
    single = [row for row in comparison.concepts if row.units_a + row.units_b == 1]
    assert single and all(row.p == pytest.approx(1.0) and not row.significant for row in single)
    # The largest difference in counts is flagged.
    widest = max(comparison.concepts, key=lambda row: abs(row.units_a - row.units_b))
    assert widest.significant and widest.q < 1e-6


def test_csv_json_and_table_carry_p_q_and_the_flag(cli, paper_data):
    comparison = compare(A, B)
    as_csv = cli("compare", A, B, "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    # The old columns, in their order, then the new ones.
    assert list(rows[0]) == ["model_a", "model_b", "category", "label", "presence", "units_a", "max_iou_a",
                             "units_b", "max_iou_b", "p", "q", "significant"]
    assert len(rows) == len(comparison.concepts)
    for row, concept in zip(rows, comparison.concepts):
        assert (row["label"], row["significant"]) == (concept.label, "true" if concept.significant else "false")
        assert float(row["p"]) == pytest.approx(concept.p, rel=1e-5)
        assert float(row["q"]) == pytest.approx(concept.q, rel=1e-5)

    as_json = json.loads(cli("compare", A, B, "--format", "json").stdout)
    assert as_json["significant"] == len(comparison.significant) and as_json["false_discovery_rate"] == 0.05
    assert "Fisher" in as_json["count_test"]
    first = as_json["concepts"][0]
    assert (first["p"], first["q"], first["significant"]) == \
        (pytest.approx(comparison.concepts[0].p), pytest.approx(comparison.concepts[0].q),
         comparison.concepts[0].significant)

    table = cli("compare", A, B)
    assert table.exit_code == 0, table.output
    assert (f"{len(comparison.significant)} of {len(comparison.concepts)} concepts differ in unit counts beyond unit "
            "sampling (Fisher's exact test") in table.stdout
    assert "significant" in table.stdout
