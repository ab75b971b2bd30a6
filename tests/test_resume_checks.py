"""A file for `lce ingest --resume` is checked as an import is (issue 23, items 7 and 8): a pending file that lce
saved, then edited, is one message naming the file (and the run and field), exit 1, the file kept and nothing
stored; names, numbers and ranges as the importers check them, the probe registered, its top images within it; a
file nested too deep or inflating to gigabytes stops early, without a traceback."""

import copy
import gzip
import json
import zlib

import numpy as np
import pytest
from sqlalchemy import text

from lce.db import pending
from lce.importers import pending_runs
from lce.records import Bootstrap, ModelInfo, ReplicateLabels, RunRecord, TallyRow, UnitRow

TABLES = ("model", "run", "unit", "unit_top_image", "unit_replicate", "probe", "concept")
IMAGES = 12


def stored(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() for table in TABLES}


@pytest.fixture(scope="module")
def synth_probe(tmp_path_factory):
    from tests.conftest import Cli

    folder = tmp_path_factory.mktemp("probe") / "synth"
    assert Cli()("probe", "synth", folder, "--images", IMAGES, "--size", "32", "--seed", "1").exit_code == 0
    return folder


@pytest.fixture
def saved(cli, engine, synth_probe, tmp_path, monkeypatch):
    """A pending file as lce saves it, of a dissected run over the registered probe 'synth': its JSON document
    and a function that writes an edited copy and returns its path."""
    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))
    assert cli("probe", "add", "synth", synth_probe).exit_code == 0
    with engine.connect() as conn:
        sky, tree = (tuple(row) for row in conn.execute(text(
            "SELECT category, name FROM concept ORDER BY category, name LIMIT 2")))
    units = [UnitRow(0, sky, 0.3, 1.5, iou_low=0.2, iou_high=0.4, stability=0.9, runner_up=tree,
                     runner_up_iou=0.1, chance_iou=0.05, lift=6.0),
             UnitRow(1, None, 0.0, -0.5, iou_low=float("nan"), stability=float("nan"))]
    tallies = [TallyRow(0, sky, 30, 60, 70, 0.3), TallyRow(0, tree, 10, 60, 50, 0.1),
               TallyRow(1, sky, 1, 9, 70, 1 / 78)]
    labels = ReplicateLabels([sky, tree], np.array([[0, 1, 0], [-1, -1, -1]]),
                             np.array([[0.3, 0.1, 0.25], [0, 0, 0]], dtype=np.float32))
    record = RunRecord(ModelInfo("victim", "resnet18", notes="resnet18, random init (seed 3)"), "synth", "layer4",
                       "dissect", 0.01, 0.04, "dissected", units, tallies, seg_size=8,
                       settings={"image_size": 32, "seed": 3},
                       top_images=[(unit, rank, image, 3.0 - rank) for unit in (0, 1) for rank, image
                                   in enumerate((IMAGES - 1, 0))],
                       bootstrap=Bootstrap(1000, 10, 2**59 + 3, [(0, sky, 0.9), (0, tree, 0.1)], labels))
    path = pending.save([record], replace=False)
    document = json.loads(gzip.decompress(path.read_bytes()))
    path.unlink()

    def edited(edit=None, raw: bytes | None = None):
        changed = copy.deepcopy(document)
        if edit is not None:
            edit(changed)
        target = tmp_path / "edited.runs.json.gz"
        target.write_bytes(raw if raw is not None else gzip.compress(json.dumps(changed).encode()))
        return target

    return document, edited


def test_a_pending_file_as_lce_saves_it_is_stored(cli, engine, saved):
    document, edited = saved
    run = document["runs"][0]
    assert run["units"][1]["stability"] is None and run["units"][1]["iou_low"] is None  # NaN is saved as null
    before = stored(engine)
    path = edited()
    result = cli("ingest", "--resume", path)
    assert result.exit_code == 0, result.output
    assert not path.exists()
    after = stored(engine)
    assert {table: after[table] - before[table] for table in TABLES} == {
        "model": 1, "run": 1, "unit": 2, "unit_top_image": 4, "unit_replicate": 2, "probe": 0, "concept": 0}


def put(*keys, value):
    """An edit that sets document[runs][0][keys...] to value."""
    def edit(document):
        place = document["runs"][0]
        for key in keys[:-1]:
            place = place[key]
        place[keys[-1]] = value
    return edit


CRAFTED = {
    # case: (edit of the saved document, words of the message after the file's name)
    "newline in the model name": (put("model", "name", value="vic\ntim"),
                                  ", run 1, model: the model name 'vic\\ntim' holds U+000A"),
    "line separator in the layer name": (put("layer", value="layer\u20284"),
                                         ", run 1: the layer name 'layer\\u20284' holds U+2028 (LINE SEPARATOR)"),
    "model name of 20,000 characters": (put("model", "name", value="m" * 20_000),
                                        "is 20,000 characters long; lce takes at most 200."),
    "newline in a label": (put("units", 0, "concept", value=["object", "s\nky"]),
                           "units[0]: the label 's\\nky' holds U+000A"),
    "probe ../../etc/passwd": (put("probe", value="../../etc/passwd"),
                               ": its runs dissect probe '../../etc/passwd', which is not a probe dataset registered"),
    "newline in the probe name": (put("probe", value="syn\nth"), "the probe name 'syn\\nth' holds U+000A"),
    "iou_threshold infinite": (put("iou_threshold", value=float("inf")), "iou_threshold inf is outside [0, 1]."),
    "quantile NaN": (put("quantile", value=float("nan")), "quantile nan is not a finite number."),
    "threshold infinite": (put("units", 0, "threshold", value=float("-inf")),
                           "units[0]: threshold -inf is not a finite number."),
    "stability NaN": (put("units", 0, "stability", value=float("nan")), "units[0]: stability nan is not a number"),
    "top image 10^9": (put("top_images", 0, 2, value=10**9),
                       ", run 1: top image 1,000,000,000 (unit 0, rank 0) is beyond the 12 images of probe 'synth'"),
    "top image of no unit": (put("top_images", 0, 0, value=5),
                             "top_images[0]: unit 5 is not one of the run's 2 units (0 to 1)."),
    "unit numbered twice": (put("units", 1, "unit", value=0), "units[1]: unit 0 of model 'victim' appears twice"),
    "replace as a string": (lambda document: document.update(replace="false"), "its replace is 'false'"),
    # The tracebacks of issue 23's item 8 that came from a pending file.
    "tally count 2^70": (put("tallies", 0, "truth", value=2**70), "tallies[0]: truth 1180591620717411303424 is "
                                                                  "not a pixel count: counts run from 0 to 2^63 - 1"),
    "replicate label 10^6": (put("bootstrap", "labels", "label", 0, 1, value=10**6),
                             "labels: label 1000000 of unit 0 in replicate 1 is neither -1 (no label) nor one of "
                             "the 2 concepts' indices (0 to 1)."),
    "replicate labels of another shape": (put("bootstrap", "labels", "label", 1, value=[-1, -1]),
                                          "labels: unit 1's row is 2 labels and 3 IoUs"),
    "NUL in the layer name": (put("layer", value="layer\x004"), "the layer name 'layer\\x004' holds U+0000"),
    "unit IoU as a string": (put("units", 0, "iou", value="0.3"), "units[0]: iou '0.3' is not a number (or null)."),
    "tally IoU as a string": (put("tallies", 0, "iou", value="0.3"), "tallies[0]: iou '0.3' is not a number."),
    "NUL in the settings": (put("settings", "seed", value="\x00"), "the settings hold a NUL character"),
    "NaN in the settings": (put("settings", "seed", value=float("nan")), "the settings hold nan, not a finite number."),
    "settings nested 900 deep": (put("settings", "deep", value=json.loads("[" * 900 + "]" * 900)),
                                 "the settings nest lists or objects more than 8 levels deep"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_a_crafted_pending_file_is_one_message_and_stores_nothing(cli, engine, saved, case):
    edit, words = CRAFTED[case]
    before = stored(engine)
    path = saved[1](edit)
    result = cli("ingest", "--resume", path)
    message = result.stderr.replace("\n", "")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert message.startswith(f"error: --resume {path}") and words in message, message
    assert message.endswith("Nothing was written.") and path.exists()
    assert stored(engine) == before


def test_a_pending_file_nested_100000_deep_is_one_message(cli, engine, saved):
    before = stored(engine)
    path = saved[1](raw=gzip.compress(b'{"format": "lce-pending-runs", "version": 1, "replace": false, "runs": '
                                      + b"[" * 100_000 + b"]" * 100_000 + b"}"))
    result = cli("ingest", "--resume", path)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "nests lists or objects deeper than Python's JSON reader can follow" in result.stderr
    assert stored(engine) == before and path.exists()


def test_a_gzip_bomb_stops_at_its_limit(cli, engine, saved):
    """200 MiB of blanks in 200 kB: reading stops past 64 MiB (50 times 200 kB is less), not when memory is gone."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    parts = [squeeze.compress(b'{"format": "lce-pending-runs", "version": 1, "replace": false, "runs": [')]
    parts += [squeeze.compress(b" " * 2**20) for _ in range(200)]
    parts += [squeeze.compress(b"]}"), squeeze.flush()]
    bomb = b"".join(parts)
    assert len(bomb) < 2**20
    before = stored(engine)
    path = saved[1](raw=bomb)
    result = cli("ingest", "--resume", path)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert (f"its {len(bomb):,} bytes decompress to more than {pending_runs.RATIO_FROM:,} bytes of JSON"
            in result.stderr.replace("\n", ""))
    assert stored(engine) == before and path.exists()
