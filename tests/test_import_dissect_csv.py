"""`lce import dissect-csv` on the authors' real file and on broken ones."""

from pathlib import Path

import pytest
from sqlalchemy import text


HEADER = ",name,unit,iou,label,category\n"


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
            for table in ("model", "run", "unit", "concept", "probe", "unit_concept")
        }


def test_real_file_imports_every_unit_with_its_provenance(cli, engine, paper_data):
    # 542 distinct (category, label) pairs label some unit; 145 of them label an interpretable one.
    assert counts(engine) == {"model": 20, "run": 20, "unit": 40960, "concept": 542, "probe": 1, "unit_concept": 0}
    with engine.connect() as conn:
        run = conn.execute(text(
            "SELECT r.* FROM run r JOIN model m ON m.id = r.model_id WHERE m.name = 'MoCoV2(R)'")).mappings().one()
        assert (run["variant"], run["quantile"], run["iou_threshold"], run["source"], run["layer"]) == \
            ("dissect", 0.01, 0.04, "imported:dissect-csv", "layer4")
        assert run["unit_count"] == 2048 and run["code_version"].startswith("lce ")
        assert run["settings"]["file"] == "models_dissect_profiles_raw.csv"
        assert conn.execute(text("SELECT count(*) FROM unit WHERE iou IS NULL")).scalar() == 397
        assert conn.execute(text("SELECT count(*) FROM unit WHERE concept_id IS NULL")).scalar() == 947
        first = conn.execute(text(
            "SELECT label, category, iou, interpretable FROM unit_label WHERE model = 'MoCoV2(R)' AND unit = 0"
        )).one()
        assert first == ("ceiling-b", "part", pytest.approx(0.11151256412267685), True)
        second = conn.execute(text(
            "SELECT label, iou, interpretable FROM unit_label WHERE model = 'MoCoV2(R)' AND unit = 1")).one()
        assert second == ("metal", pytest.approx(0.01716701127588749), False)
        # A unit whose IoU is missing keeps its label but is not interpretable.
        missing = conn.execute(text(
            "SELECT label, iou, interpretable FROM unit_label WHERE model = 'SimCLRV2(R)' AND unit = 26")).one()
        assert missing == ("parking meter", None, False)


def test_importing_the_same_file_again_changes_nothing(cli, engine, paper_data):
    before = counts(engine)
    with engine.connect() as conn:
        run_ids = conn.execute(text("SELECT array_agg(id ORDER BY id) FROM run")).scalar()
    result = cli("import", "dissect-csv", paper_data, "--layer", "layer4")
    assert result.exit_code == 0
    assert "Nothing changed: all 20 run(s) are already stored" in result.stdout
    assert counts(engine) == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT array_agg(id ORDER BY id) FROM run")).scalar() == run_ids


def test_replace_swaps_the_runs(cli, engine, paper_data):
    with engine.connect() as conn:
        old_ids = set(conn.execute(text("SELECT array_agg(id) FROM run")).scalar())
    result = cli("import", "dissect-csv", paper_data, "--layer", "layer4", "--replace")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("replaced") == 20
    with engine.connect() as conn:
        new_ids = set(conn.execute(text("SELECT array_agg(id) FROM run")).scalar())
    assert not old_ids & new_ids
    assert counts(engine)["unit"] == 40960 and counts(engine)["run"] == 20


def test_different_content_for_a_stored_run_needs_replace(cli, engine, tmp_path):
    first = write(tmp_path / "a.csv", HEADER + "0,m,0,0.1,sky,object\n1,m,1,0.2,-,object\n")
    second = write(tmp_path / "b.csv", HEADER + "0,m,0,0.3,sky,object\n1,m,1,0.2,-,object\n")
    assert cli("import", "dissect-csv", first).exit_code == 0
    result = cli("import", "dissect-csv", second)
    assert result.exit_code == 1
    assert "with different content. Pass --replace" in result.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT iou FROM unit WHERE unit = 0")).scalar() == 0.1
    assert cli("import", "dissect-csv", second, "--replace").exit_code == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT iou FROM unit WHERE unit = 0")).scalar() == 0.3


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


BAD_FILES = {
    "missing_columns": (",name,unit,label\n0,m,0,sky\n", "lacks the column(s) iou, category"),
    "unknown_category": (HEADER + "0,m,0,0.1,sky,object\n1,m,1,0.2,wood,smell\n",
                         "line 3: category 'smell' is not a known category"),
    "non_numeric_iou": (HEADER + "0,m,0,0.1,sky,object\n1,m,1,high,wood,material\n",
                        "line 3: iou 'high' is not a number"),
    "iou_above_one": (HEADER + "0,m,0,1.7,sky,object\n", "line 2: iou '1.7' is outside [0, 1]"),
    "duplicate_unit": (HEADER + "0,m,0,0.1,sky,object\n1,m,0,0.2,wood,material\n",
                       "line 3: unit 0 of model 'm' appears twice (first at"),
    "unit_out_of_range": (HEADER + "0,m,0,0.1,sky,object\n1,m,7,0.2,wood,material\n",
                          "unit 7 of model 'm' is out of range: the file lists 2 units for it"),
    "negative_unit": (HEADER + "0,m,-1,0.1,sky,object\n", "unit -1 of model 'm' is out of range"),
    "fractional_unit": (HEADER + "0,m,1.5,0.1,sky,object\n", "line 2: unit '1.5' is not a whole number"),
    "json_file": ('{"units": []}\n', "is not a CSV file"),
    "binary_file": (b"\x89PNG\r\n\x1a\n\0\0\0IHDR", "is a binary file"),
    "header_only": (HEADER, "has a header but no units"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_input_is_one_clear_error_and_writes_nothing(cli, engine, tmp_path, case):
    content, message = BAD_FILES[case]
    path = write(tmp_path / f"{case}.csv", content)
    result = cli("import", "dissect-csv", path)
    assert result.exit_code == 1
    assert message in result.stderr
    assert str(path) in result.stderr
    assert "Traceback" not in result.output + result.stderr
    assert counts(engine) == {"model": 0, "run": 0, "unit": 0, "concept": 0, "probe": 0, "unit_concept": 0}


def test_missing_file_is_named(cli, tmp_path):
    result = cli("import", "dissect-csv", tmp_path / "nope.csv")
    assert result.exit_code == 1
    assert f"{tmp_path / 'nope.csv'} does not exist." in result.stderr


def test_a_failure_inside_the_transaction_leaves_nothing(engine):
    """The second run violates a CHECK constraint while being copied: the first run is rolled back with it."""
    from lce.db.runs import write_runs
    from lce.records import ModelInfo, RunRecord, UnitRow
    from lce.errors import LceError

    def record(name, iou):
        return RunRecord(model=ModelInfo(name), probe="p", layer="l", variant="dissect", quantile=0.01,
                         iou_threshold=0.04, source="imported:test",
                         units=[UnitRow(0, ("object", "sky"), 0.1), UnitRow(1, None, iou)])

    with pytest.raises(LceError, match="The database refused the data: .*violates check constraint"):
        write_runs(engine, [record("good", 0.2), record("bad", 3.0)])
    assert counts(engine) == {"model": 0, "run": 0, "unit": 0, "concept": 0, "probe": 0, "unit_concept": 0}


def test_architecture_is_stored_with_the_models(cli, engine, tmp_path):
    path = write(tmp_path / "a.csv", HEADER + "0,m,0,0.1,sky,object\n")
    assert cli("import", "dissect-csv", path, "--arch", "resnet50", "--layer", "layer3").exit_code == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT m.architecture, r.layer FROM model m JOIN run r ON r.model_id = m.id"
                                 )).one() == ("resnet50", "layer3")
