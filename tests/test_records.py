"""lce/records.py: the records importers, the ingest and the writers share, at the ground floor, and the one
RunIdentity that the writer stores a run under, the ingest looks it up by and the analyses read back."""

import json
import subprocess
import sys
from dataclasses import replace

from sqlalchemy import text

from lce.analysis.compare import ComparedRun
from lce.db.runs import find_run, write_runs
from lce.records import ModelInfo, RunIdentity, RunRecord, UnitRow
from lce.report.strips import DissectedRun
from lce.resources import read_sql


def modules_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after `statement`."""
    code = f"{statement}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


def test_records_import_nothing_of_lce_nor_a_database_nor_torch():
    loaded = modules_after("import lce.records")
    assert {name for name in loaded if name.startswith("lce")} == {"lce", "lce.records"}
    assert not loaded & {"torch", "sqlalchemy", "psycopg", "duckdb"}


def test_importers_build_their_records_without_the_writers():
    loaded = modules_after("import lce.importers.dissect_csv, lce.importers.netdissect_csv, lce.importers.task_csv,"
                           " lce.importers.pending_runs")
    assert not loaded & {"lce.db.runs", "lce.db.task_performance", "psycopg"}


def record(seg_size: int | None = 7) -> RunRecord:
    return RunRecord(model=ModelInfo("r18"), probe="synth", layer="layer4", variant="dissect", quantile=0.005,
                     iou_threshold=0.04, source="imported:test", seg_size=seg_size,
                     units=[UnitRow(0, ("object", "sky"), 0.12), UnitRow(1, None, None)])


def test_a_record_is_written_under_its_identity_and_read_back_as_it(engine):
    (written,) = write_runs(engine, [record()])
    identity = record().identity
    assert identity == RunIdentity("r18", "layer4", "synth", "dissect", 0.005, 7, "imported:test")
    assert find_run(engine, identity).id == written.run_id
    assert find_run(engine, replace(identity, seg_size=8)) is None
    assert find_run(engine, replace(identity, source="dissected")) is None
    with engine.connect() as conn:
        (row,) = conn.execute(text(read_sql("queries/model_runs")), {"model": "r18"}).mappings()
        (report_row,) = conn.execute(text(read_sql("queries/report_runs"))).mappings()
    stored = replace(identity, run_id=written.run_id)
    assert RunIdentity.of(row) == stored
    compared = ComparedRun.of(row, units=2, interpretable=1, concepts=1)
    drawn = DissectedRun.of(report_row)
    assert (compared.run_id, compared.model, compared.quantile, compared.seg_size) == (written.run_id, "r18", 0.005, 7)
    assert (drawn.run_id, drawn.layer, drawn.variant, drawn.seg_size, drawn.settings) == \
        (written.run_id, "layer4", "dissect", 7, {})


def test_a_compared_run_prints_the_fields_lce_compare_printed():
    run = ComparedRun("r18", "layer4", "synth", "dissect", 0.005, 7, "dissected", run_id=3, units=512,
                      interpretable=40, concepts=12)
    assert json.dumps(run.to_json()) == (
        '{"run_id": 3, "model": "r18", "layer": "layer4", "probe": "synth", "variant": "dissect", '
        '"source": "dissected", "units": 512, "interpretable": 40, "concepts": 12}')
