"""Bad input of every kind is one clear message (file, line and value where there is one), exit code 1, and nothing
written: huge cells, NUL bytes, line separators, over-long names, deep JSON, out-of-range counts and NaN in the
importers, and output paths that are directories, links or under a file."""

import json
import random

import pytest
from sqlalchemy import text


DISSECT = ",name,unit,iou,label,category\n"
TALLY = "unit,category,label,score,object-label,object-truth,object-activation,object-intersect,object-iou\n"
# Random letters do not compress, so a name this long overflows PostgreSQL's btree row limit (2704 bytes).
_letters = random.Random(0)
LONG = "".join(_letters.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(20_000))
GOOD_ROWS = "".join(f"{i},m,{i},0.1,sky,object\n" for i in range(400))  # 9.8 kB: past the first 4 KiB


def stored(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                for table in ("model", "run", "unit", "concept", "unit_concept", "task_metric", "embedding")}


NOTHING = {"model": 0, "run": 0, "unit": 0, "concept": 0, "unit_concept": 0, "task_metric": 0, "embedding": 0}


def assert_refused(result, *words):
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


BAD_IMPORTS = {
    # case: (command, file name, content, words of the message after the file's name)
    "cell_over_128_kib": (["import", "dissect-csv"], "units.csv", DISSECT + "0,m,0,0.1," + "x" * 200_000 + ",object\n",
                          [", line 2: a cell is longer than 131,072 characters"]),
    "nul_after_4_kib": (["import", "dissect-csv"], "units.csv", DISSECT + GOOD_ROWS + "400,m,400,0.1,s\0ky,object\n",
                        [", line 402: a NUL byte (byte 9,825 of the file)"]),
    "line_separator_in_a_label": (["import", "dissect-csv"], "units.csv",
                                  DISSECT + "0,m,0,0.1,sky,object\n1,m,1,0.2,sky\u2028blue,object\n",
                                  [", line 3: the label 'sky\\u2028blue' holds U+2028 (LINE SEPARATOR)"]),
    "long_model_name": (["import", "dissect-csv"], "units.csv", DISSECT + f"0,{LONG},0,0.1,sky,object\n",
                        [", line 2: the model name", "is 20,000 characters long; lce takes at most 200."]),
    "long_label": (["import", "dissect-csv"], "units.csv", DISSECT + f"0,m,0,0.1,{LONG},object\n",
                   [", line 2: the label", "is 20,000 characters long; lce takes at most 500."]),
    "escape_in_a_model_name": (["import", "dissect-csv"], "units.csv", DISSECT + "0,m\x1b[31m,0,0.1,sky,object\n",
                               [", line 2: the model name 'm\\x1b[31m' holds U+001B"]),
    "nan_iou": (["import", "dissect-csv"], "units.csv", DISSECT + "0,m,0,0.1,sky,object\n1,m,1,NaN,sky,object\n",
                [", line 3: iou 'NaN' is not a number; leave the cell empty"]),
    "report_nested_100000_deep": (["import", "dissect-report", "--model", "m", "--layer", "l"], "report.json",
                                  '{"units": ' + "[" * 100_000 + "]" * 100_000 + "}",
                                  [" nests lists or objects deeper than Python's JSON reader can follow"]),
    "report_nan_iou": (["import", "dissect-report", "--model", "m", "--layer", "l"], "report.json",
                       '{"units": [{"unit": 0, "iou": NaN, "label": "sky", "cat": "object"}]}',
                       [", units[0]: iou nan is not a number"]),
    "report_label_not_a_string": (["import", "dissect-report", "--model", "m", "--layer", "l"], "report.json",
                                  '{"units": [{"unit": 0, "iou": 0.1, "label": ["sky"], "cat": "object"}]}',
                                  [", units[0]: label ['sky'] is not a string."]),
    "tally_count_1e30": (["import", "netdissect-csv", "--model", "m", "--layer", "l"], "tally.csv",
                         TALLY + "1,object,sky,0.1,sky,1e30,5,3,0.1\n",
                         [", line 2: object-truth '1e30' is not a pixel count: counts run from 0 to 2^63 - 1."]),
    "tally_count_2_63": (["import", "netdissect-csv", "--model", "m", "--layer", "l"], "tally.csv",
                         TALLY + "1,object,sky,0.1,sky,10,9223372036854775808,3,0.1\n",
                         [", line 2: object-activation '9223372036854775808' is not a pixel count"]),
    "tally_negative_count": (["import", "netdissect-csv", "--model", "m", "--layer", "l"], "tally.csv",
                             TALLY + "1,object,sky,0.1,sky,10,5,3,0.1\n2,object,sky,0.1,sky,10,5,-3,0.1\n",
                             [", line 3: object-intersect '-3' is not a pixel count"]),
    "tally_nan_score": (["import", "netdissect-csv", "--model", "m", "--layer", "l"], "tally.csv",
                        TALLY + "1,object,sky,nan,sky,10,5,3,0.1\n", [", line 2: score 'nan' is not a number"]),
    "tally_nan_category_iou": (["import", "netdissect-csv", "--model", "m", "--layer", "l"], "tally.csv",
                               TALLY + "1,object,sky,0.1,sky,10,5,3,nan\n",
                               [", line 2: object-iou 'nan' is not a number"]),
    "tasks_long_metric_name": (["tasks", "import"], "tasks.csv", f"model,dt_{LONG}\nm,1\n",
                               [", line 1: the metric name 'dt_", "is 20,003 characters long; lce takes at most 500."]),
    "tasks_control_character_in_a_model_name": (["tasks", "import"], "tasks.csv", "model,dt_Pets\nm\tx,1\n",
                                                [", line 2: the model name 'm\\tx' holds U+0009"]),
    "tasks_cell_over_128_kib": (["tasks", "import"], "tasks.csv", "model,dt_Pets\nm," + "1" * 200_000 + "\n",
                                [", line 2: a cell is longer than 131,072 characters"]),
}


@pytest.mark.parametrize("case", sorted(BAD_IMPORTS))
def test_bad_import_is_one_message_naming_file_and_line(cli, engine, tmp_path, case):
    command, name, content, words = BAD_IMPORTS[case]
    path = tmp_path / name
    path.write_bytes(content.encode())
    result = cli(*command[:2], path, *command[2:])
    assert_refused(result, *(f"{path}{word}" if word.startswith((",", " ")) else word for word in words))
    assert stored(engine) == NOTHING


@pytest.mark.parametrize("option, value, words", [
    ("--model", LONG, "--model: the model name"),
    ("--layer", "layer\n4", "--layer: the layer name 'layer\\n4' holds U+000A"),
    ("--probe", LONG[:201], "--probe: the probe name"),
    ("--model", "", "--model: the model name is empty."),
])
def test_bad_names_on_the_command_line_are_refused(cli, engine, tmp_path, option, value, words):
    path = tmp_path / "report.json"
    path.write_text('{"units": [{"unit": 0, "iou": 0.1, "label": "sky", "cat": "object"}]}')
    options = {"--model": "m", "--layer": "l", option: value}
    result = cli("import", "dissect-report", path, *[item for pair in options.items() for item in pair])
    assert_refused(result, words)
    assert stored(engine) == NOTHING


def test_line_numbers_count_only_real_newlines(cli, engine, tmp_path):
    """U+2028 in an ignored index cell and a quoted newline leave the line numbers as an editor shows them."""
    path = tmp_path / "units.csv"
    path.write_text(DISSECT + "0\u2028,m,0,0.1,sky,object\r\n1,m,1,0.2,-,\"ob\nject\"\n2,m,2,high,sky,object\n",
                    newline="")
    assert_refused(cli("import", "dissect-csv", path), f"{path}, line 5: iou 'high' is not a number")
    path.write_text(DISSECT + "0\u2028,m,0,0.1,sky,object\r\n1,m,1,0.2,tree,object\n", newline="")
    result = cli("import", "dissect-csv", path)
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT unit, label FROM unit_label ORDER BY unit")).all() == [(0, "sky"),
                                                                                                (1, "tree")]


def test_names_at_the_limits_are_stored(cli, engine, tmp_path):
    model, label = "m" * 200, "l\u00e9" * 250
    path = tmp_path / "units.csv"
    path.write_text(DISSECT + f"0,{model},0,0.1,{label},object\n", encoding="utf-8")
    result = cli("import", "dissect-csv", path)
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        assert conn.execute(text("SELECT model, label FROM unit_label")).one() == (model, label)


def test_an_empty_iou_is_still_a_missing_value(cli, engine, tmp_path):
    path = tmp_path / "units.csv"
    path.write_text(DISSECT + "0,m,0,,sky,object\n")
    assert cli("import", "dissect-csv", path).exit_code == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT iou FROM unit")).scalar() is None
