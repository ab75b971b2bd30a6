"""`lce report` shows each unit's uncertainty (interval, stability, chance IoU, lift, beats random, trusted) in the run
pages' unit tables and each run's interpretable, beats-random and trusted counts in the runs table; "-" where the
store does not know (an imported run, a run no control serves)."""

import csv
from collections import defaultdict
from html import escape

import pytest
from sqlalchemy import text

from lce.db.controls import set_control
from lce.report.html import TRUSTED_RULE, ReportSettings, write_report
from tests.headless import Browser
from tests.test_compare import csv_concepts
from tests.test_report import run_ids, tables

UNIT_HEADERS = ["unit", "label", "category", "IoU", "interpretable", "IoU low", "IoU high", "stability", "chance IoU",
                "lift", "beats random", "trusted"]
RUN_HEADERS = ["model", "run", "layer", "probe", "variant", "source", "units", "interpretable", "beats random",
               "trusted", "unit strips"]


def runs_table(out) -> dict[str, dict[str, str]]:
    found = tables(out / "index.html")
    assert found.headers["runs"] == RUN_HEADERS
    return {row[0]: dict(zip(RUN_HEADERS, row)) for row in found.body("runs")}


def unit_rows(out, run_id) -> list[dict[str, str]]:
    found = tables(out / "runs" / f"run-{run_id}.html")
    headers = found.headers["units"]
    assert headers[:len(UNIT_HEADERS)] == UNIT_HEADERS
    return [dict(zip(headers, row)) for row in found.body("units")]


def authors_units(path, model) -> list[dict]:
    with path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["name"] == model]


# ---- imported runs ----------------------------------------------------------------------------------------------

def test_imported_runs_show_dashes_and_beat_random_once_random_r_is_their_control(engine, paper_data, tmp_path):
    out = tmp_path / "report"
    write_report(ReportSettings(out=out, strips=False))
    runs, ids = runs_table(out), run_ids(engine)
    interpretable = sum(n for n, _ in csv_concepts(paper_data, "MoCoV1(R)").values())
    assert (runs["MoCoV1(R)"]["interpretable"], runs["MoCoV1(R)"]["beats random"], runs["MoCoV1(R)"]["trusted"]) \
        == (str(interpretable), "-", "-")
    assert all(row["beats random"] == "-" and row["trusted"] == "-" for row in runs.values())
    # The runs table's note states the rule that trusted follows (it once printed its placeholder's name).
    assert "Trusted: " + escape(TRUSTED_RULE) in (out / "index.html").read_text()
    units = unit_rows(out, ids["MoCoV1(R)"])
    assert len(units) == 2048
    # No tallies, no control: every uncertainty cell is unknown, not empty and not 0; trusted too, except that a
    # unit that is not interpretable is not trusted whatever else is unknown.
    assert all([unit[h] for h in UNIT_HEADERS[5:11]] == ["-"] * 6 for unit in units)
    assert all(unit["trusted"] == ("-" if unit["interpretable"] == "yes" else "no") for unit in units)
    assert sum(1 for unit in units if unit["interpretable"] == "yes") == interpretable
    page = (out / "runs" / f"run-{ids['MoCoV1(R)']}.html").read_text()
    assert escape(f"{interpretable} interpretable at IoU above each run's own cut-off; - beat random, - trusted.") \
        in page

    # The authors' Random(R) as the control: a unit beats random when its IoU exceeds the highest IoU of the
    # Random(R) units labelled with its concept (0.04 for a concept no Random(R) unit has), counted by hand here.
    with engine.begin() as conn:
        set_control(conn, ids["Random(R)"])
    cutoff: dict[tuple[str, str], float] = defaultdict(float)
    for row in authors_units(paper_data, "Random(R)"):
        if row["label"] != "-" and row["iou"]:
            key = (row["category"], row["label"])
            cutoff[key] = max(cutoff.get(key, 0.0), float(row["iou"]))
    expected = {}
    for row in authors_units(paper_data, "MoCoV1(R)"):
        labelled = row["label"] != "-" and row["iou"] != ""
        beats = labelled and float(row["iou"]) > cutoff.get((row["category"], row["label"]), 0.04)
        expected[int(row["unit"])] = (labelled, beats, labelled and float(row["iou"]) > 0.04)
    again = tmp_path / "again"
    write_report(ReportSettings(out=again, strips=False))
    beating = sum(1 for labelled, beats, interpretable in expected.values() if beats and interpretable)
    assert 0 < beating < interpretable
    runs = runs_table(again)
    # Trusted stays unknown: an imported unit that beats random has no stability or interval to judge.
    assert (runs["MoCoV1(R)"]["beats random"], runs["MoCoV1(R)"]["trusted"]) == (str(beating), "-")
    assert runs["Random(R)"]["beats random"] == "-"  # a control is not compared with itself
    stored = stored_units(engine, ids["MoCoV1(R)"])
    for unit in unit_rows(again, ids["MoCoV1(R)"]):
        labelled, beats, interpretable = expected[int(unit["unit"])]
        assert unit["beats random"] == (("yes" if beats else "no") if labelled else "-"), unit
        # trusted: false for a unit that is not interpretable, unknown for one that beats random (no stability or
        # interval to judge it by); the report shows what the view says.
        assert unit["trusted"] == shown(stored[int(unit["unit"])]["trusted"])
        if not interpretable:
            assert unit["trusted"] == "no", unit
        elif beats:
            assert unit["trusted"] == "-", unit
        assert [unit[h] for h in UNIT_HEADERS[5:10]] == ["-"] * 5
    page = (again / "runs" / f"run-{ids['MoCoV1(R)']}.html").read_text()
    assert f"; {beating} beat random, - trusted." in page and f"run {ids['Random(R)']}" in page


# ---- a dissected run --------------------------------------------------------------------------------------------

@pytest.fixture
def dissected(cli, engine, dissected_r18):
    """Two random-init resnet18s dissected on a 10-image synthetic probe (r18 with seed 1 is conftest's
    dissected_r18, r18-control with seed 2 is ingested here); run 'r18' gets known uncertainty values written over
    whatever the ingest stored, so that the test knows what the report must show."""
    result = cli("ingest", "r18-control", "--probe", "synth", "--arch", "resnet18", "--batch-size", "8", "--random-init",
                 "--seed", "2")
    assert result.exit_code == 0, result.output
    ids = run_ids(engine)
    with engine.begin() as conn:
        # Stability cycles through 0, 0.25 .. 1 with the unit; the interval is +-20% of the IoU; chance IoU is a
        # quarter of the IoU (lift 4), except every seventh unit, whose chance is 0 (lift unknown) and whose
        # interval's low end is 0 (not above chance: never trusted).
        conn.execute(text(
            "UPDATE unit SET stability = (unit % 5) / 4.0,"
            " iou_low = CASE WHEN unit % 7 = 0 THEN 0 ELSE iou * 0.8 END, iou_high = iou * 1.2,"
            " chance_iou = CASE WHEN unit % 7 = 0 THEN 0 ELSE iou / 4 END,"
            " lift = CASE WHEN unit % 7 = 0 THEN NULL ELSE 4.0 END WHERE run_id = :run"), {"run": ids["r18"]})
        conn.execute(text("UPDATE run SET replicates = 1000, bootstrap_blocks = 10, bootstrap_seed = 123456789012345"
                          " WHERE id = :run"), {"run": ids["r18"]})
    return ids


def stored_units(engine, run_id) -> dict[int, dict]:
    with engine.connect() as conn:
        return {row["unit"]: dict(row) for row in conn.execute(text(
            "SELECT unit, iou, interpretable, iou_low, iou_high, stability, chance_iou, lift, beats_random, trusted"
            " FROM unit_label WHERE run_id = :run"), {"run": run_id}).mappings()}


def shown(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.3f}"


def test_a_dissected_runs_units_show_their_interval_stability_and_counts(engine, dissected, tmp_path):
    run_id = dissected["r18"]
    out = tmp_path / "report"
    write_report(ReportSettings(out=out, strips=False))
    stored = stored_units(engine, run_id)
    interpretable = sum(1 for unit in stored.values() if unit["interpretable"])
    trusted = sum(1 for unit in stored.values()
                  if unit["interpretable"] and unit["stability"] >= 0.8 and unit["unit"] % 7 != 0)
    assert 0 < trusted < interpretable
    runs = runs_table(out)
    assert (runs["r18"]["interpretable"], runs["r18"]["beats random"], runs["r18"]["trusted"]) == \
        (str(interpretable), "-", str(trusted))
    rows = unit_rows(out, run_id)
    assert len(rows) == 512
    for row in rows:
        unit = stored[int(row["unit"])]
        assert [row[h] for h in UNIT_HEADERS[5:]] == [
            shown(unit[c]) for c in ("iou_low", "iou_high", "stability", "chance_iou", "lift", "beats_random",
                                     "trusted")]
        assert row["stability"] == f"{(int(row['unit']) % 5) / 4:.3f}"
        assert row["lift"] == ("-" if int(row["unit"]) % 7 == 0 else "4.000")
        assert row["trusted"] == ("yes" if unit["interpretable"] and unit["stability"] >= 0.8
                                  and int(row["unit"]) % 7 != 0 else "no")

    # With r18-control as the control of r18: the report counts the interpretable units the view says beat it.
    with engine.begin() as conn:
        set_control(conn, dissected["r18-control"])
    again = tmp_path / "again"
    write_report(ReportSettings(out=again, strips=False))
    stored = stored_units(engine, run_id)
    beating = sum(1 for unit in stored.values() if unit["interpretable"] and unit["beats_random"])
    trusted = sum(1 for unit in stored.values() if unit["trusted"])
    runs = runs_table(again)
    assert (runs["r18"]["beats random"], runs["r18"]["trusted"]) == (str(beating), str(trusted))
    assert all(unit["beats_random"] is not None for unit in stored.values() if unit["interpretable"])
    for row in unit_rows(again, run_id):
        unit = stored[int(row["unit"])]
        assert (row["beats random"], row["trusted"]) == (shown(unit["beats_random"]), shown(unit["trusted"]))
    page = (again / "runs" / f"run-{run_id}.html").read_text()
    assert f"random-weights control</th><td>run {dissected['r18-control']}" in page
    assert "bootstrap</th><td>" + escape("1000 replicates of the probe's images in 10 blocks, seed 123456789012345") \
        in page
    control = (again / "runs" / f"run-{dissected['r18-control']}.html").read_text()
    assert "random-weights control</th><td>this run is a control" in control
    # The control was dissected by lce ingest: its own bootstrap (the defaults), seeded from the probe's hash.
    assert "bootstrap</th><td>" + escape("1000 replicates of the probe's images in 10") in control


@pytest.mark.slow  # a headless browser
def test_the_unit_table_sorts_by_stability_in_a_browser(engine, dissected, tmp_path):
    out = tmp_path / "report"
    write_report(ReportSettings(out=out, strips=False))
    run_id = dissected["r18"]
    with Browser(tmp_path) as browser:
        visit = browser.open(out / "runs" / f"run-{run_id}.html")
        assert visit.errors == []
        column = UNIT_HEADERS.index("stability")
        header = f"document.querySelectorAll('#units thead th')[{column}]"
        first = (f"Array.from(document.querySelectorAll('#units tbody tr')).slice(0, 3)"
                 f".map(r => r.cells[{column}].textContent)")
        browser.evaluate(f"{header}.click()")
        assert browser.evaluate(first) == ["0.000"] * 3
        browser.evaluate(f"{header}.click()")
        assert browser.evaluate(first) == ["1.000"] * 3
        # The lift column: units whose lift is unknown ("-") sort after every number, in both directions.
        column = UNIT_HEADERS.index("lift")
        last = f"document.querySelector('#units tbody tr:last-child').cells[{column}].textContent"
        browser.evaluate(f"document.querySelectorAll('#units thead th')[{column}].click()")
        assert browser.evaluate(last) == "-"
        browser.evaluate(f"document.querySelectorAll('#units thead th')[{column}].click()")
        assert browser.evaluate(last) == "-"


# ---- the embedding's uncertainty --------------------------------------------------------------------------------

@pytest.mark.slow  # seconds on two cores (dissections or embeddings with replicates)
def test_an_embedding_with_uncertainty_shows_its_spread_and_co_assignment(cli, engine, paper_data, tmp_path):
    import numpy as np

    from lce.analysis.stored_embedding import load_embedding
    from tests.conftest import PAPER_EXCLUDED

    excluded = [arg for name in PAPER_EXCLUDED for arg in ("--exclude", name)]
    result = cli("embed", *excluded, "--uncertainty", "--replicates", "12", "--out", tmp_path / "lce.csv")
    assert result.exit_code == 0, result.output
    out = tmp_path / "report"
    write_report(ReportSettings(out=out, strips=False))
    assert (out / "img" / "coassignment.png").read_bytes()[:4] == b"\x89PNG"
    index = (out / "index.html").read_text()
    assert 'href="#coassignment"' in index and 'src="img/coassignment.png"' in index
    assert "Ellipses: each model&#x27;s 95% region over 12 replicates" in index
    found = tables(out / "index.html")
    assert found.headers["embedding-points"] == ["model", "cluster", "pc1", "pc2", "pc3", "pc1 sd", "pc2 sd", "pc3 sd"]
    stored = load_embedding().result
    sd = np.sqrt(np.diagonal(stored.covariance, axis1=1, axis2=2))
    rows = {row[0]: row for row in found.body("embedding-points")}
    for model, spread in zip(stored.matrix.models, sd):
        assert [float(v) for v in rows[model][5:]] == pytest.approx(spread, abs=5e-4), model
    assert sd.max() > 0

    # An embedding without replicates: no sd columns, no co-assignment.
    assert cli("embed", *excluded, "--out", tmp_path / "plain.csv").exit_code == 0
    plain = tmp_path / "plain"
    write_report(ReportSettings(out=plain, strips=False))
    assert tables(plain / "index.html").headers["embedding-points"] == ["model", "cluster", "pc1", "pc2", "pc3"]
    assert "coassignment" not in (plain / "index.html").read_text()
