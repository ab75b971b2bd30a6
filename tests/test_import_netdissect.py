"""`lce import netdissect-csv` on real NetDissect results, and `lce import dissect-report`."""

import csv
import json

import pytest
from sqlalchemy import text

from lce.published import netdissect_result
from tests.conftest import published_file

FILES = {
    "resnet18_places365_layer4.csv": 512,
    "resnet50_imagenet_layer1.csv": 256,
    "resnet50_imagenet_layer4.csv": 2048,
}
CATEGORIES = ("color", "object", "part", "material", "scene", "texture")


@pytest.mark.parametrize("name", sorted(FILES))
def test_real_tally_imports_units_and_per_category_tallies(cli, engine, name):
    path = published_file(netdissect_result(name))
    result = cli("import", "netdissect-csv", path, "--model", name.removesuffix(".csv"), "--layer", "layerX")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(path.open()))
    labelled = sum(1 for row in rows for cat in CATEGORIES if row[f"{cat}-label"])
    with engine.connect() as conn:
        run = conn.execute(text("SELECT * FROM run")).mappings().one()
        assert (run["variant"], run["quantile"], run["source"], run["unit_count"]) == \
            ("netdissect", 0.005, "imported:netdissect-csv", FILES[name])
        assert run["settings"]["unlabelled_tallies_skipped"] == len(rows) * 6 - labelled
        assert conn.execute(text("SELECT count(*) FROM unit_concept")).scalar() == labelled
        # tally.csv numbers units from 1; lce from 0.
        first = rows[0]
        unit0 = conn.execute(text("SELECT label, category, iou FROM unit_label WHERE unit = 0")).one()
        assert unit0 == (first["label"], first["category"], pytest.approx(float(first["score"])))
        object_tally = conn.execute(text(
            "SELECT c.name, t.truth, t.activation, t.intersection, t.iou FROM unit_concept t"
            " JOIN concept c ON c.id = t.concept_id WHERE t.unit = 0 AND c.category = 'object'")).one()
        assert object_tally == (first["object-label"], int(first["object-truth"]), int(first["object-activation"]),
                                int(first["object-intersect"]), pytest.approx(float(first["object-iou"])))
        top = conn.execute(text("SELECT max(unit) FROM unit")).scalar()
        assert top == FILES[name] - 1


def test_resnet18_places_first_unit_is_the_published_one(cli, engine):
    path = published_file(netdissect_result("resnet18_places365_layer4.csv"))
    cli("import", "netdissect-csv", path, "--model", "r18", "--layer", "layer4")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT label, category, iou > 0.04 FROM unit_label WHERE unit = 0")).one() == \
            ("reception-s", "scene", True)
        assert conn.execute(text("SELECT count(*) FROM unit_label WHERE interpretable")).scalar() == \
            sum(1 for row in csv.DictReader(path.open()) if float(row["score"]) > 0.04)


def test_tally_with_unit_zero_is_out_of_range(cli, engine, tmp_path):
    path = tmp_path / "tally.csv"
    path.write_text("unit,category,label,score\n0,object,sky,0.1\n")
    result = cli("import", "netdissect-csv", path, "--model", "m", "--layer", "l")
    assert result.exit_code == 1
    assert "unit 0 of model 'm' is out of range: it is below 1" in result.stderr
    assert f"{path}, line 2" in result.stderr


def test_tally_with_partial_category_columns_names_them(cli, tmp_path):
    path = tmp_path / "tally.csv"
    path.write_text("unit,category,label,score,object-label,object-iou\n1,object,sky,0.1,sky,0.1\n")
    result = cli("import", "netdissect-csv", path, "--model", "m", "--layer", "l")
    assert result.exit_code == 1
    assert "lacks the column(s) object-truth, object-activation, object-intersect" in result.stderr


def test_dissect_report_imports_one_run(cli, engine, tmp_path):
    path = tmp_path / "report.json"
    units = [{"unit": 0, "iou": 0.2, "label": "sky", "cat": "object"},
             {"unit": 1, "iou": 0.01, "label": "-", "cat": "object"},
             {"unit": 2, "iou": 0.06, "label": "red-c", "cat": "color"}]
    path.write_text(json.dumps({"header": {"name": "x"}, "units": units}))
    result = cli("import", "dissect-report", path, "--model", "places", "--layer", "layer4")
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        assert conn.execute(text(
            "SELECT unit, label, category, interpretable FROM unit_label ORDER BY unit")).all() == [
            (0, "sky", "object", True), (1, None, None, False), (2, "red-c", "color", True)]
        assert conn.execute(text("SELECT source, variant FROM run")).one() == ("imported:dissect-report", "dissect")
    again = cli("import", "dissect-report", path, "--model", "places", "--layer", "layer4")
    assert "Nothing changed" in again.stdout


@pytest.mark.parametrize("content, message", [
    ("not json at all", "is not JSON"),
    ('{"layers": []}', 'has no list under "units"'),
    ('{"units": [{"unit": 0, "iou": 0.1, "label": "sky"}]}', "units[0] lacks cat"),
    ('{"units": [{"unit": 0, "iou": "x", "label": "sky", "cat": "object"}]}', "units[0]: iou 'x' is not a number"),
    ('{"units": [{"unit": 0, "iou": 0.1, "label": "sky", "cat": "object"},'
     ' {"unit": 0, "iou": 0.1, "label": "sky", "cat": "object"}]}', "units[1]: unit 0 of model 'm' appears twice"),
])
def test_bad_report_is_one_clear_error(cli, engine, tmp_path, content, message):
    path = tmp_path / "report.json"
    path.write_text(content)
    result = cli("import", "dissect-report", path, "--model", "m", "--layer", "l")
    assert result.exit_code == 1
    assert message in result.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run")).scalar() == 0
