"""`lce tasks import|list`: transfer-task results (wide or long CSV) with families and directions, matched to the
stored models by name, in one transaction."""

import csv

import pytest
from sqlalchemy import text

from lce.published import AUTHORS_TASKS
from tests.conftest import Cli, published_file

PAPER_FAMILIES = {"many-shot": 12, "few-shot": 12, "detection": 6, "surface-normals": 5}


def stored(engine, query: str):
    with engine.connect() as conn:
        return conn.execute(text(query)).all()


def write_rows(path, header, rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def long_form(path, out):
    """The wide CSV melted into model,task,dataset,metric,value, task and dataset left empty."""
    rows = []
    for row in csv.DictReader(path.open()):
        for column, value in row.items():
            if column and column != "model" and not column.startswith("Unnamed:"):
                rows.append([row["model"], "", "", column, value])
    return write_rows(out, ["model", "task", "dataset", "metric", "value"], rows)


def test_wide_csv_gets_families_directions_and_values(cli, engine, paper_data):
    result = cli("tasks", "import", published_file(AUTHORS_TASKS))
    assert result.exit_code == 0, result.output
    assert "Imported 35 metric(s) (35 created) for 14 model(s): 490 value(s) written." in result.stdout
    assert "ignored: dt_Avg." in result.stdout
    assert "lower is better: sne_Mean, sne_Median" in result.stdout
    assert "warning" not in result.stderr

    families = dict(stored(engine, "SELECT family, count(*) FROM task_metric GROUP BY family"))
    assert families == PAPER_FAMILIES
    directions = dict(stored(engine, "SELECT name, direction FROM task_metric WHERE family = 'surface-normals'"))
    assert directions == {"sne_Mean": "lower", "sne_Median": "lower", "sne_11.25": "higher",
                          "sne_22.5": "higher", "sne_30": "higher"}
    assert stored(engine, "SELECT count(*) FROM task_metric WHERE name = 'dt_Avg.' OR name LIKE 'Unnamed%'") == [(0,)]
    described = stored(engine, "SELECT name, task, dataset FROM task_metric"
                               " WHERE name IN ('dt_ImageNet', 'ISIC_20_shot', 'voc_tuned_ap_50', 'sne_Mean')"
                               " ORDER BY name")
    assert described == [("ISIC_20_shot", "20-shot", "ISIC"), ("dt_ImageNet", "linear", "ImageNet"),
                         ("sne_Mean", "mean angular error", "NYUv2"), ("voc_tuned_ap_50", "tuned_ap_50", "VOC")]
    values = dict(((model, metric), value) for model, metric, value in stored(
        engine, "SELECT model, metric, value FROM model_task_performance"))
    assert len(values) == 14 * 35
    assert values["InsDis(R)", "dt_ImageNet"] == 59.5
    assert values["MoCoV1(R)", "sne_Mean"] == 33.69
    assert values["Supervised(R)", "EuroSAT_50_shot"] == pytest.approx(float(
        next(r for r in csv.DictReader(published_file(AUTHORS_TASKS).open()) if r["model"] == "Supervised(R)")
        ["EuroSAT_50_shot"]))

    listing = cli("tasks", "list")
    assert listing.exit_code == 0, listing.output
    assert "sne_Median" in listing.stdout and "35 row(s)" in listing.stdout


def test_long_csv_stores_the_same_as_the_wide_one(cli, engine, paper_data, tmp_path):
    long_csv = long_form(published_file(AUTHORS_TASKS), tmp_path / "long.csv")
    result = cli("tasks", "import", long_csv)
    assert result.exit_code == 0, result.output
    assert "Imported 35 metric(s) (35 created) for 14 model(s): 490 value(s) written." in result.stdout
    assert "ignored: dt_Avg." in result.stdout
    again = cli("tasks", "import", published_file(AUTHORS_TASKS))
    assert again.exit_code == 0, again.output
    assert "Nothing changed: all 35 metric(s) are already stored" in again.stdout


def test_long_csv_families_from_the_task_and_a_families_file(cli, engine, paper_data, tmp_path):
    long_csv = write_rows(tmp_path / "retrieval.csv", ["model", "task", "dataset", "metric", "value"], [
        ["MoCoV1(R)", "retrieval", "Oxford5k", "recall_at_1", "0.61"],
        ["BYOL(R)", "retrieval", "Oxford5k", "recall_at_1", "0.72"],
        ["MoCoV1(R)", "inference", "", "latency_ms", "12.5"],
        ["BYOL(R)", "inference", "", "latency_ms", "11.0"],
    ])
    result = cli("tasks", "import", long_csv)
    assert result.exit_code == 1
    assert "no task family for the metric(s) recall_at_1, latency_ms" in result.stderr
    assert "--families FILE" in result.stderr

    families = write_rows(tmp_path / "families.csv", ["pattern", "family", "direction"],
                          [["retrieval", "retrieval", ""], ["latency_*", "speed", "lower"]])
    result = cli("tasks", "import", long_csv, "--families", families)
    assert result.exit_code == 0, result.output
    metrics = stored(engine, "SELECT name, family, direction, task, dataset FROM task_metric ORDER BY name")
    assert metrics == [("latency_ms", "speed", "lower", "inference", None),
                       ("recall_at_1", "retrieval", "higher", "retrieval", "Oxford5k")]
    assert stored(engine, "SELECT value FROM model_task_performance WHERE model = 'BYOL(R)'"
                          " AND metric = 'latency_ms'") == [(11.0,)]


def test_a_families_file_overrides_and_ignores(cli, engine, paper_data, tmp_path):
    families = write_rows(tmp_path / "families.csv", ["pattern", "family", "direction"],
                          [["dt_Avg.", "many-shot-mean", "higher"], ["voc_*", "ignore", ""]])
    result = cli("tasks", "import", published_file(AUTHORS_TASKS), "--families", families)
    assert result.exit_code == 0, result.output
    assert "ignored: voc_forzen_ap, voc_forzen_ap_50" in result.stdout
    counts = dict(stored(engine, "SELECT family, count(*) FROM task_metric GROUP BY family"))
    assert counts == {"many-shot": 12, "many-shot-mean": 1, "few-shot": 12, "surface-normals": 5}


def test_names_that_match_no_model_are_listed(cli, engine, paper_data, tmp_path):
    path = write_rows(tmp_path / "tasks.csv", ["model", "dt_ImageNet", "sne_Mean"], [
        ["InsDis(R)", "59.5", "32.99"], ["InsDis", "59.5", "32.99"], ["NoSuchNet", "1", "2"],
        ["BYOL(R)", "", "30.1"],
    ])
    result = cli("tasks", "import", path)
    assert result.exit_code == 0, result.output
    assert ("2 model name(s) of " in result.stderr
            and "match no stored model and were not imported: InsDis (stored: 'InsDis(R)'?), NoSuchNet."
            in result.stderr)
    assert "for 2 model(s): 3 value(s) written" in result.stdout
    rows = stored(engine, "SELECT model, metric, value FROM model_task_performance ORDER BY model, metric")
    # BYOL's empty cell is a missing value, not an error.
    assert rows == [("BYOL(R)", "sne_Mean", 30.1), ("InsDis(R)", "dt_ImageNet", 59.5), ("InsDis(R)", "sne_Mean", 32.99)]


def test_no_stored_model_is_an_error(cli, engine):
    result = cli("tasks", "import", published_file(AUTHORS_TASKS))
    assert result.exit_code == 1
    assert "None of the 14 model name(s) in " in result.stderr
    assert "InsDis(R), MoCoV1(R), PCLV1(R), PIRL(R), PCLV2(R) and 9 more" in result.stderr
    assert stored(engine, "SELECT count(*) FROM task_metric") == [(0,)]


def test_same_file_is_a_no_op_and_other_values_need_replace(cli, engine, paper_data, tmp_path):
    source = published_file(AUTHORS_TASKS)
    assert cli("tasks", "import", source).exit_code == 0
    again = cli("tasks", "import", source)
    assert again.exit_code == 0
    assert "Nothing changed: all 35 metric(s) are already stored with these values" in again.stdout

    changed = tmp_path / "changed.csv"
    changed.write_text(source.read_text().replace("InsDis(R),59.5,", "InsDis(R),60.5,", 1))
    refused = cli("tasks", "import", changed)
    assert refused.exit_code == 1
    assert ("already holds 1 metric(s) of " in refused.stderr
            and "dt_ImageNet (InsDis(R): 59.5 stored, 60.5 in the file). Pass --replace" in refused.stderr)
    query = "SELECT value FROM model_task_performance WHERE model = 'InsDis(R)' AND metric = 'dt_ImageNet'"
    assert stored(engine, query) == [(59.5,)]

    swapped = cli("tasks", "import", changed, "--replace")
    assert swapped.exit_code == 0, swapped.output
    assert "Imported 35 metric(s) (34 unchanged, 1 replaced) for 14 model(s): 14 value(s) written." in swapped.stdout
    assert stored(engine, query) == [(60.5,)]
    assert stored(engine, "SELECT count(*) FROM task_performance") == [(490,)]


def test_a_changed_direction_needs_replace(cli, engine, paper_data, tmp_path):
    source = published_file(AUTHORS_TASKS)
    assert cli("tasks", "import", source).exit_code == 0
    families = write_rows(tmp_path / "families.csv", ["pattern", "family", "direction"],
                          [["sne_Mean", "surface-normals", "higher"]])
    refused = cli("tasks", "import", source, "--families", families)
    assert refused.exit_code == 1
    assert "sne_Mean (direction 'lower' stored, 'higher' in the file)" in refused.stderr
    assert cli("tasks", "import", source, "--families", families, "--replace").exit_code == 0
    assert stored(engine, "SELECT direction FROM task_metric WHERE name = 'sne_Mean'") == [("higher",)]


def test_values_for_more_models_are_added(cli, engine, paper_data, tmp_path):
    source = published_file(AUTHORS_TASKS)
    lines = source.read_text().splitlines(keepends=True)
    first = tmp_path / "first.csv"
    first.write_text("".join(lines[:6]))
    assert "for 5 model(s): 175 value(s) written" in cli("tasks", "import", first).stdout
    result = cli("tasks", "import", source)
    assert result.exit_code == 0, result.output
    assert "Imported 35 metric(s) (35 added) for 14 model(s): 315 value(s) written." in result.stdout
    assert stored(engine, "SELECT count(*) FROM task_performance") == [(490,)]


@pytest.mark.parametrize("header, rows, message", [
    (["name", "dt_ImageNet"], [["InsDis(R)", "59.5"]], "lacks the column model; its header is 'name,dt_ImageNet'"),
    (["model", "dt_ImageNet", "sne_Mean"], [["InsDis(R)", "59.5", "33"], ["BYOL(R)", "74.3", "abc"]],
     "tasks.csv, line 3, column sne_Mean: 'abc' is not a number."),
    (["model", "dt_ImageNet"], [["InsDis(R)", "inf"]], "tasks.csv, line 2, column dt_ImageNet: 'inf' is not a finite"),
    (["model", "dt_ImageNet"], [["InsDis(R)", "59.5"], ["InsDis(R)", "60"]],
     "tasks.csv, line 3: model 'InsDis(R)' appears twice (first at line 2)."),
    (["model", "dt_ImageNet", "dt_ImageNet"], [["InsDis(R)", "59.5", "60"]],
     "the header names the column(s) dt_ImageNet more than once"),
    (["model", "dt_ImageNet", "mystery"], [["InsDis(R)", "59.5", "1"]], "no task family for the metric(s) mystery."),
    (["model", "dt_ImageNet"], [["", "59.5"]], "tasks.csv, line 2: the model name is empty."),
    (["model", "dt_ImageNet"], [["InsDis(R)", ""]], "holds no values: every metric cell is empty"),
    (["model", "task", "dataset", "metric", "value"],
     [["InsDis(R)", "linear", "ImageNet", "top1", "59.5"], ["BYOL(R)", "linear", "Pets", "top1", "80"]],
     "tasks.csv, line 3: metric 'top1' has task 'linear' and dataset 'Pets', but 'linear' and 'ImageNet' at line 2"),
    (["model", "metric", "value"], [["InsDis(R)", "dt_Pets", "59.5"], ["InsDis(R)", "dt_Pets", "60"]],
     "tasks.csv, line 3: model 'InsDis(R)' has a second value for metric 'dt_Pets' (first at line 2)."),
    (["model", "metric", "value"], [["InsDis(R)", "dt_Pets", "x"]], "tasks.csv, line 2, column value: 'x' is not"),
])
def test_bad_input_is_one_message_and_nothing_written(cli, engine, paper_data, tmp_path, header, rows, message):
    result = cli("tasks", "import", write_rows(tmp_path / "tasks.csv", header, rows))
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert stored(engine, "SELECT count(*) FROM task_metric") == [(0,)]


@pytest.mark.parametrize("rows, message", [
    ([["dt_*", "many-shot", "better"]], "line 2: direction 'better' must be 'higher' or 'lower'"),
    ([["", "many-shot", "higher"]], "line 2: the pattern is empty."),
    ([["dt_*", "", "higher"]], "line 2: the family for pattern 'dt_*' is empty."),
])
def test_bad_families_file_is_an_error(cli, engine, paper_data, tmp_path, rows, message):
    families = write_rows(tmp_path / "families.csv", ["pattern", "family", "direction"], rows)
    result = cli("tasks", "import", published_file(AUTHORS_TASKS), "--families", families)
    assert result.exit_code == 1
    assert "families.csv, " + message in result.stderr
    assert stored(engine, "SELECT count(*) FROM task_metric") == [(0,)]


def test_deleting_a_model_deletes_its_results(cli, engine, paper_data):
    assert cli("tasks", "import", published_file(AUTHORS_TASKS)).exit_code == 0
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM model WHERE name = 'InsDis(R)'"))
    assert stored(engine, "SELECT count(*) FROM task_performance") == [(13 * 35,)]


@pytest.mark.parametrize("command", [["tasks"], ["tasks", "import"], ["tasks", "list"], ["correlate"]],
                         ids=" ".join)
def test_help_explains_itself_with_an_example(command):
    result = Cli()(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert "lce" in result.stdout.split("Example", 1)[1]
