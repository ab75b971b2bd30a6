"""Bad input of every kind is one clear message (file, line and value where there is one), exit code 1, and nothing
written: huge cells, NUL bytes, line separators, over-long names, deep JSON, out-of-range counts and NaN in the
importers, and output paths that are directories, links or under a file."""

import os
import random
from pathlib import Path

import pytest
from sqlalchemy import text

from lce.errors import LceError
from lce.output_paths import check_output, check_output_dir

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


# ---- names drawn in plots --------------------------------------------------------------------------------------

MATH_NAME = "a$\\foo$"  # two dollar signs: mathtext, and \foo is no symbol it knows


def four_models(tmp_path, first: str = MATH_NAME):
    """A dissect CSV of four models with six units each, the first named `first`."""
    labels = [("sky", "object"), ("tree", "object"), ("wood", "material"), ("red-c", "color"), ("grass", "object"),
              ("road", "object")]
    rows = []
    for number, model in enumerate([first, "b", "c", "d"]):
        for unit in range(6):
            label, category = labels[(unit + number) % 6 if number % 2 else (unit * (number + 1)) % 6]
            rows.append(f"0,{model},{unit},0.{2 + (unit + number) % 5},{label},{category}\n")
    path = tmp_path / "units.csv"
    path.write_text(DISSECT + "".join(rows))
    return path


EMBED = ["embed", "--components", "2", "--clusters", "2"]


def test_names_with_dollar_signs_are_drawn_as_written(cli, engine, tmp_path, monkeypatch):
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    saved = []
    savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda figure, *args, **kwargs: (saved.append(figure),
                                                                           savefig(figure, *args, **kwargs)))
    assert cli("import", "dissect-csv", four_models(tmp_path)).exit_code == 0
    result = cli(*EMBED, "--out", tmp_path / "lce.csv", "--plot", tmp_path / "lce.png")
    assert result.exit_code == 0, result.output
    texts = [t for t in saved[0].findobj(Text) if t.get_text() == MATH_NAME]
    assert texts and not any(t.get_parse_math() for t in texts)
    assert (tmp_path / "lce.png").stat().st_size > 0

    tasks = tmp_path / "tasks.csv"
    tasks.write_text("model,dt_$\\bar$\n" + "".join(f"{m},{v}\n" for m, v in [(MATH_NAME, 1), ("b", 3), ("c", 2)]))
    assert cli("tasks", "import", tasks).exit_code == 0
    result = cli("correlate", "--plot", tmp_path / "correlation.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "correlation.png").stat().st_size > 0
    result = cli("report", "--out", tmp_path / "report", "--no-images")
    assert result.exit_code == 0, result.output
    for image in ("embedding", "loadings", "elbow", "correlation", "profiles"):
        assert (tmp_path / "report" / "img" / f"{image}.png").stat().st_size > 0, image
    assert MATH_NAME in (tmp_path / "report" / "index.html").read_text()


# ---- output paths ----------------------------------------------------------------------------------------------

def bad_outputs(tmp_path) -> dict[str, tuple]:
    """Each kind of bad output path, made in tmp_path: (path, words of the message)."""
    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-file").write_text("precious")
    os.symlink(tmp_path / "nowhere.csv", tmp_path / "dangling.csv")
    os.symlink(tmp_path / "a-file", tmp_path / "link.csv")
    return {
        "directory": (tmp_path / "a-dir", "is a directory; give the path of a file to write."),
        "dangling_link": (tmp_path / "dangling.csv", f"is a symbolic link (to {tmp_path / 'nowhere.csv'}, which "
                                                     "does not exist); lce does not write through links"),
        "parent_is_a_file": (tmp_path / "a-file" / "sub" / "x.csv",
                             f"{tmp_path / 'a-file'} is a file, not a directory, so nothing can be written under it"),
        "link_to_a_file": (tmp_path / "link.csv", f"is a symbolic link (to {tmp_path / 'a-file'});"),
    }


@pytest.mark.parametrize("kind", ["directory", "dangling_link", "parent_is_a_file", "link_to_a_file"])
@pytest.mark.parametrize("option", ["--out", "--plot"])
def test_embed_refuses_a_bad_output_path_before_storing(cli, engine, tmp_path, kind, option):
    assert cli("import", "dissect-csv", four_models(tmp_path, "a")).exit_code == 0
    before = stored(engine)
    path, words = bad_outputs(tmp_path)[kind]
    paths = {"--out": tmp_path / "lce.csv", "--plot": tmp_path / "lce.png", option: path}
    result = cli(*EMBED, *[item for pair in paths.items() for item in pair])
    assert_refused(result, f"{option} {path}", words)
    assert stored(engine) == before and before["embedding"] == 0
    assert (tmp_path / "a-file").read_text() == "precious"
    assert not (tmp_path / "lce.csv").exists() and not (tmp_path / "lce.png").exists()


def test_embed_refuses_one_file_for_both_outputs(cli, engine, tmp_path):
    assert cli("import", "dissect-csv", four_models(tmp_path, "a")).exit_code == 0
    result = cli(*EMBED, "--out", tmp_path / "x", "--plot", tmp_path / "." / "x")
    assert_refused(result, "--out and --plot name the same file")
    assert stored(engine)["embedding"] == 0


def test_a_plot_that_fails_leaves_no_embedding(cli, engine, tmp_path, monkeypatch):
    import lce.cli.embed

    def fail(result, path):
        raise LceError(f"cannot draw {path}")

    monkeypatch.setattr(lce.cli.embed, "plot_embedding", fail)  # lce.report.plots's, as the command imported it
    assert cli("import", "dissect-csv", four_models(tmp_path, "a")).exit_code == 0
    assert_refused(cli(*EMBED, "--out", tmp_path / "lce.csv", "--plot", tmp_path / "lce.png"), "cannot draw")
    assert stored(engine)["embedding"] == 0


@pytest.mark.parametrize("kind", ["directory", "dangling_link", "parent_is_a_file", "link_to_a_file"])
def test_correlate_refuses_a_bad_output_path(cli, tmp_path, kind):
    path, words = bad_outputs(tmp_path)[kind]
    assert_refused(cli("correlate", "--plot", path), f"--plot {path}", words)


def test_report_out_must_be_a_directory_or_absent(cli, engine, tmp_path):
    assert cli("import", "dissect-csv", four_models(tmp_path, "a")).exit_code == 0
    bad_outputs(tmp_path)
    os.symlink(tmp_path / "a-dir", tmp_path / "dir-link")
    cases = {
        tmp_path / "a-file": "is a file, not a directory",
        tmp_path / "dir-link": f"is a symbolic link (to {tmp_path / 'a-dir'})",
        tmp_path / "dangling.csv": "is a symbolic link",
        tmp_path / "a-file" / "report": f"{tmp_path / 'a-file'} is a file, not a directory",
    }
    for path, words in cases.items():
        result = cli("report", "--out", path, "--no-images")
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"--out {path}" in result.stderr and words in result.stderr, result.stderr
    assert list((tmp_path / "a-dir").iterdir()) == [] and (tmp_path / "a-file").read_text() == "precious"
    (tmp_path / "report").mkdir()
    os.symlink(tmp_path / "a-file", tmp_path / "report" / "index.html")
    result = cli("report", "--out", tmp_path / "report", "--no-images")
    assert result.exit_code == 1 and "index.html is a symbolic link" in result.stderr
    assert (tmp_path / "a-file").read_text() == "precious"
    result = cli("report", "--out", tmp_path / "new" / "report", "--no-images")
    assert result.exit_code == 0, result.output


def test_check_output_returns_the_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "existing.csv").write_text("")
    assert check_output(Path("existing.csv"), "--out") == tmp_path.resolve() / "existing.csv"
    assert check_output(Path("new/deeper/x.png"), "--plot") == tmp_path.resolve() / "new" / "deeper" / "x.png"
    assert check_output_dir(Path("report"), "--out") == tmp_path.resolve() / "report"
    with pytest.raises(LceError, match="--out existing.csv is a file, not a directory"):
        check_output_dir(Path("existing.csv"), "--out")
    with pytest.raises(LceError, match="--sql-out /dev/null exists and is not a regular file"):
        check_output(Path("/dev/null"), "--sql-out")


@pytest.mark.parametrize("args, words", [
    ([LONG, "--probe", "p"], "--model: the model name"),
    (["m", "--probe", "p", "--layer", "layer\n4"], "--layer: the layer name 'layer\\n4' holds U+000A"),
    (["m", "--probe", "p\tq"], "--probe: the probe name"),
])
def test_bad_names_given_to_ingest_are_refused_before_dissecting(cli, engine, args, words):
    assert_refused(cli("ingest", *args, "--arch", "resnet18", "--random-init"), words)
    assert stored(engine) == NOTHING


# Issue 23, item 8: a row with fewer cells than the header left None in required columns (AttributeError on .strip).
SHORT_ROWS = {
    "dissect_csv": (["import", "dissect-csv"], "units.csv", DISSECT + "0,m,0\n",
                    ", line 2 has 3 cell(s) for the header's 6 columns: it lacks iou, label, category."),
    "netdissect_csv": (["import", "netdissect-csv", "--model", "m", "--layer", "l"], "tally.csv", TALLY + "1,object\n",
                       ", line 2 has 2 cell(s) for the header's 9 columns: it lacks label, score, object-label, "
                       "object-truth, object-activation, object-intersect, object-iou."),
    "netdissect_csv_tally_cells": (["import", "netdissect-csv", "--model", "m", "--layer", "l"], "tally.csv",
                                   TALLY + "1,object,sky,0.1,sky,10\n",
                                   ", line 2 has 6 cell(s) for the header's 9 columns: it lacks object-activation, "
                                   "object-intersect, object-iou."),
}


@pytest.mark.parametrize("case", sorted(SHORT_ROWS))
def test_a_row_with_too_few_cells_is_one_message(cli, engine, tmp_path, case):
    command, name, content, words = SHORT_ROWS[case]
    path = tmp_path / name
    path.write_text(content)
    assert_refused(cli(*command[:2], path, *command[2:]), f"{path}{words}")
    assert stored(engine) == NOTHING


def test_a_probe_name_is_checked_when_it_is_added(cli, engine, tmp_path, monkeypatch):
    """`lce probe add` takes the probe names that --probe and --resume files take, one line of printable text."""
    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))  # main built its decode cache before storing the name
    assert cli("probe", "synth", tmp_path / "synth", "--images", "4", "--size", "32").exit_code == 0
    assert_refused(cli("probe", "add", "syn\nth", tmp_path / "synth"),
                   "--probe: the probe name 'syn\\nth' holds U+000A")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM probe")).scalar() == 0


@pytest.mark.slow  # a Hugging Face model
def test_a_hugging_face_directory_with_a_pickled_bin_is_one_message(cli, engine, tmp_path, monkeypatch):
    """Issue 23, item 8: its only weights, pytorch_model.bin, pickle a call (open(marker, 'w')): refused as before,
    without the UnpicklingError's traceback, and the call never runs."""
    transformers = pytest.importorskip("transformers")
    import torch

    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))
    assert cli("probe", "synth", tmp_path / "synth", "--images", "4", "--size", "32").exit_code == 0
    assert cli("probe", "add", "synth", tmp_path / "synth").exit_code == 0
    directory, marker = tmp_path / "hf-vit", tmp_path / "ran"
    transformers.ViTConfig(image_size=32, patch_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64).save_pretrained(directory)

    class Call:
        def __reduce__(self):
            return open, (str(marker), "w")

    torch.save({"embeddings.cls_token": Call()}, directory / "pytorch_model.bin")
    before = stored(engine)
    result = cli("ingest", "pickled", "--probe", "synth", "--arch", f"hf:{directory}")
    assert_refused(result, f"--arch hf:{directory}: its weights file holds Python objects besides tensors "
                           "(first one: io.open), and lce loads weights only")
    assert not marker.exists() and stored(engine) == before
