"""`lce report`: the static HTML report on the authors' data and on a tiny dissected setup, unit strips drawn once and
cached, and the report opened in headless Chromium."""

import csv
import io
import shutil
from collections import Counter
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from sqlalchemy import text

from lce.analysis.embed import EmbedSettings, embed
from lce.errors import LceError
from lce.published import AUTHORS_TASKS
from lce.report.html import ReportSettings, write_report
from lce.report.strips import DissectedRun, unit_masks
from tests.conftest import PAPER_EXCLUDED, published_file
from tests.headless import Browser
from tests.test_compare import csv_concepts

CLUSTER_RGB = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]  # tab10's first three: the plot's cluster colours


class Tables(HTMLParser):
    """Every table with an id: its header, its rows as lists of cell texts, and the image sources in each row."""

    def __init__(self, html: str):
        super().__init__()
        self.headers: dict[str, list[str]] = {}
        self.rows: dict[str, list[list[str]]] = {}
        self.images: dict[str, list[list[str]]] = {}
        self._table = None
        self._cell = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "id" in attrs:
            self._table = attrs["id"]
            self.headers[self._table], self.rows[self._table], self.images[self._table] = [], [], []
        elif self._table and tag == "tbody":
            self.rows[self._table], self.images[self._table] = [], []
        elif self._table and tag == "tr":
            self.rows[self._table].append([])
            self.images[self._table].append([])
        elif self._table and tag in ("td", "th"):
            self._cell = []
        elif self._table and tag == "img":
            self.images[self._table][-1].append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._table and self._cell is not None:
            cell = "".join(self._cell).strip()
            (self.rows[self._table][-1] if tag == "td" else self.headers[self._table]).append(cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def body(self, table_id: str) -> list[list[str]]:
        return self.rows[table_id]


def tables(path) -> Tables:
    return Tables(path.read_text())


def embed_paper(cli, tmp_path):
    args = [arg for name in PAPER_EXCLUDED for arg in ("--exclude", name)]
    assert cli("embed", *args, "--out", tmp_path / "lce.csv").exit_code == 0


def run_ids(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT m.name, r.id FROM run r JOIN model m ON m.id = r.model_id")).all())


# ---- the authors' data ------------------------------------------------------------------------------------------

@pytest.mark.slow  # seconds on two cores (dissections or embeddings with replicates)
def test_report_on_the_authors_data(cli, engine, paper_data, tmp_path):
    embed_paper(cli, tmp_path)
    out = tmp_path / "report"
    result = cli("report", "--out", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'index.html'} (embedding 1, 20 run pages)" in result.stdout
    for figure in ("embedding", "loadings", "elbow", "profiles"):
        assert (out / "img" / f"{figure}.png").read_bytes()[:4] == b"\x89PNG", figure
    index = (out / "index.html").read_text()
    found = Tables(index)

    # The embedding's points and clusters as stored.
    points = {row[0]: row for row in found.body("embedding-points")}
    assert len(points) == 13 and float(points["MoCoV1(R)"][2]) == pytest.approx(4.95, abs=0.01)
    # Loadings: recomputed (the store keeps none) and ordered by magnitude, as embed computes them.
    assert "recomputed from the model x concept matrix" in index and "reproduce its stored scores" in index
    expected = embed(EmbedSettings(exclude=tuple(PAPER_EXCLUDED)), store=False)
    for component, loadings in zip(("pc1", "pc2", "pc3"), expected.loadings):
        top = int(np.abs(loadings).argmax())
        first = found.body(f"loadings-{component}")[0]
        concept = expected.matrix.concepts[top]
        assert (first[0], first[1][0], float(first[2])) == (concept[2:], concept[0], pytest.approx(loadings[top],
                                                                                                    abs=5e-4))
    with engine.connect() as conn:
        inertia = conn.execute(text("SELECT inertia FROM embedding")).scalar_one()
    assert inertia == pytest.approx([104.4, 51.2, 32.0, 23.3, 17.0, 12.6, 9.1, 6.1, 4.2, 2.7], abs=0.15)
    assert "k = 1..10: " + ", ".join(f"{v:.1f}" for v in inertia) + "; the embedding uses k = 3" in index

    # Category profiles and top concepts, against the CSV counted with the csv module.
    concepts = csv_concepts(paper_data, "MoCoV1(R)")
    profile = next(row for row in found.body("profiles") if row[0] == "MoCoV1(R)")
    cells = dict(zip(found.headers["profiles"], profile))
    for category in ("object", "part", "material", "color"):
        assert int(cells[f"{category} units"]) == sum(n for (c, _), (n, _) in concepts.items() if c == category)
        assert int(cells[f"{category} concepts"]) == sum(1 for c, _ in concepts if c == category)
    assert int(cells["interpretable"]) == sum(n for n, _ in concepts.values()) and cells["units"] == "2048"
    top = next(row for row in found.body("top-concepts") if row[0] == "MoCoV1(R)")
    (category, label), (units, _) = max(concepts.items(), key=lambda item: item[1][0])
    assert top[3].startswith(f"{label} ({category}) {units},")

    # One page per run, each with a table of its 2048 units; imported runs have no strips.
    runs = run_ids(engine)
    assert len(found.body("runs")) == 20
    for model, run_id in runs.items():
        page = out / "runs" / f"run-{run_id}.html"
        assert len(tables(page).body("units")) == 2048, model
    page = (out / "runs" / f"run-{runs['MoCoV1(R)']}.html").read_text()
    assert "Imported results carry no images" in page and "<img" not in page
    with paper_data.open(newline="") as handle:
        first = next(row for row in csv.DictReader(handle) if row["name"] == "MoCoV1(R)" and row["unit"] == "0")
    unit = Tables(page).body("units")[0]
    assert unit[:4] == ["0", first["label"], first["category"], f"{float(first['iou']):.3f}"]


@pytest.mark.slow  # seconds on two cores (dissections or embeddings with replicates)
def test_the_report_shows_the_task_correlations_once_results_are_stored(cli, paper_data, tmp_path):
    from html import escape

    from lce.analysis.correlate import correlate, summary

    embed_paper(cli, tmp_path)
    assert cli("report", "--out", tmp_path / "before", "--no-images").exit_code == 0
    assert "Task correlations" not in (tmp_path / "before" / "index.html").read_text()
    assert cli("tasks", "import", published_file(AUTHORS_TASKS)).exit_code == 0
    out = tmp_path / "report"
    result = cli("report", "--out", out, "--no-images")
    assert result.exit_code == 0, result.output
    index = (out / "index.html").read_text()
    assert "Task correlations" in index
    assert (out / "img" / "correlation.png").read_bytes()[:4] == b"\x89PNG"
    lines = summary(correlate())
    assert all(escape(line) in index for line in lines)
    assert correlate().family_mean("many-shot", "pc1") == pytest.approx(-0.71, abs=0.02)


def test_report_without_an_embedding_says_how_to_make_one(cli, paper_data, tmp_path):
    result = cli("report", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    index = (tmp_path / "report" / "index.html").read_text()
    assert "No embedding is stored yet: lce embed makes one" in index
    assert not (tmp_path / "report" / "img" / "embedding.png").exists()
    assert 'href="#loadings"' not in index and 'href="#profiles"' in index
    missing = cli("report", "--out", tmp_path / "other", "--embedding", "7")
    assert missing.exit_code == 1 and "No embedding with id 7 is stored" in missing.stderr


def test_an_empty_store_is_a_clear_error(cli, tmp_path):
    result = cli("report", "--out", tmp_path / "report")
    assert result.exit_code == 1 and "The database holds no runs yet" in result.stderr


@pytest.mark.parametrize("args, fields, message", [
    (["--batch-size", "0"], {"batch_size": 0}, "--batch-size must be at least 1, not 0."),
    (["--units", "-1"], {"strip_units": -1}, "--units must be 0 or more, not -1."),
    (["--min-iou", "1"], {"min_iou": 1.0}, "--min-iou must lie in [0, 1), not 1.0."),
])
def test_bad_options_are_refused_by_the_library_with_the_commands_message(cli, tmp_path, args, fields, message):
    result = cli("report", "--out", tmp_path / "report", *args)
    assert result.exit_code == 1 and result.stderr == f"error: {message}\n"
    with pytest.raises(LceError) as refused:
        write_report(ReportSettings(out=tmp_path / "report", **fields))
    assert str(refused.value) == message
    assert not (tmp_path / "report").exists()


# ---- a tiny dissected setup -------------------------------------------------------------------------------------

@pytest.fixture
def probe(cli, tmp_path, monkeypatch, synthetic_probe):
    """A 10-image, 64-px synthetic probe registered as 'synth' (every image is a top image of every unit, since
    dissection keeps 10). LCE_HOME, and so the strip cache, is in tmp_path."""
    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))
    path = synthetic_probe(tmp_path / "probe", images=10, size=64, seed=2)
    assert cli("probe", "add", "synth", path).exit_code == 0
    return path


@pytest.fixture
def dissected(dissected_r18):
    """The probe and a random-init resnet18 dissected on it as 'r18' (`ingest(cli, "r18", "--random-init", "--seed",
    "1")` on the probe above; done once a session: conftest's dissected_r18)."""
    return dissected_r18


def ingest(cli, model, *args, arch="resnet18"):
    result = cli("ingest", model, "--probe", "synth", "--arch", arch, "--batch-size", "8", *args)
    assert result.exit_code == 0, result.output


def dissected_run(engine, model="r18", variant="dissect") -> DissectedRun:
    from lce.resources import read_sql

    with engine.connect() as conn:
        rows = conn.execute(text(read_sql("queries/report_runs"))).mappings().all()
    return DissectedRun.of(next(row for row in rows if row["model"] == model and row["variant"] == variant))


def cached_strips(tmp_path):
    return sorted((tmp_path / "home" / "cache" / "report").glob("*/unit-*.jpg"))


@pytest.mark.slow  # a dissection and reports drawing every unit's strips: seconds on two cores
def test_dissected_units_get_strips_drawn_once_and_reused(cli, engine, dissected, tmp_path):
    first = write_report(ReportSettings(out=tmp_path / "report", batch_size=8))
    run = dissected_run(engine)
    strips = first.strips[run.run_id]
    assert (strips.rendered, strips.reused, strips.note) == (512, 0, None)
    cache = cached_strips(tmp_path)
    assert len(cache) == 512
    published = sorted((tmp_path / "report" / "strips" / f"run-{run.run_id}").glob("unit-*.jpg"))
    assert [p.name for p in published] == [p.name for p in cache]
    with Image.open(published[0]) as strip:  # ten 64-px images (the probe's size) with 2-px gaps
        assert strip.size == (10 * 64 + 9 * 2, 64)
        assert len(np.unique(np.asarray(strip).reshape(-1, 3), axis=0)) > 100  # pictures, not a blank
    page = tables(tmp_path / "report" / "runs" / f"run-{run.run_id}.html")
    assert len(page.body("units")) == 512
    assert page.images["units"][0] == [f"../strips/run-{run.run_id}/unit-00000.jpg"]

    stamps = {path: path.stat().st_mtime_ns for path in cache}
    again = cli("report", "--out", tmp_path / "again")
    assert again.exit_code == 0, again.output
    assert "unit strips: 0 drawn, 512 reused from the cache" in again.stdout
    assert {path: path.stat().st_mtime_ns for path in cached_strips(tmp_path)} == stamps
    assert len(list((tmp_path / "again" / "strips" / f"run-{run.run_id}").glob("unit-*.jpg"))) == 512


@pytest.mark.slow  # a dissection and reports drawing every unit's strips: seconds on two cores
@pytest.mark.parametrize("variant", ["dissect", "netdissect"])
def test_masks_are_the_ones_dissection_tallied(cli, engine, dissected, variant, tmp_path):
    """With 10 probe images every image is a top image, so a unit's mask pixels at the segmentation size, summed
    over its top images, are the activation count A that dissection stored: for every concept under the dissect
    variant, and for the concepts of categories that every image annotates (color, scene, texture in this probe)
    under netdissect, which counts the mask only in images annotating the concept's category."""
    if variant == "netdissect":
        ingest(cli, "r18", "--random-init", "--seed", "1", "--variant", "netdissect")
    run = dissected_run(engine, variant=variant)
    with engine.connect() as conn:
        counts = conn.execute(text(
            "SELECT t.unit, max(t.activation) FROM unit_concept t JOIN concept c ON c.id = t.concept_id"
            " WHERE t.run_id = :r AND c.category IN ('color', 'scene', 'texture') GROUP BY t.unit ORDER BY t.unit"
            " LIMIT 6"), {"r": run.run_id}).all()
    assert len(counts) == 6
    for unit, activation in counts:
        masks = unit_masks(run, unit, device="cpu")
        assert masks.shape == (10, run.seg_size, run.seg_size)
        assert abs(int(masks.sum()) - activation) <= activation // 200, (unit, int(masks.sum()), activation)
    strips = write_report(ReportSettings(out=tmp_path / "report", strip_units=4)).strips[run.run_id]
    assert (strips.rendered, strips.note) == (4, "Strips of the 4 units with the highest IoU (--units 4).")


def test_units_option_draws_the_best_units_only(cli, engine, dissected, tmp_path):
    result = cli("report", "--out", tmp_path / "report", "--units", "5")
    assert result.exit_code == 0, result.output
    run = dissected_run(engine)
    with engine.connect() as conn:
        best = conn.execute(text("SELECT unit FROM unit WHERE run_id = :r ORDER BY iou DESC NULLS LAST, unit"
                                 " LIMIT 5"), {"r": run.run_id}).scalars().all()
    drawn = sorted(int(p.stem.split("-")[1]) for p in (tmp_path / "report" / "strips" / f"run-{run.run_id}")
                   .glob("unit-*.jpg"))
    assert drawn == sorted(best)
    page = tmp_path / "report" / "runs" / f"run-{run.run_id}.html"
    assert "Strips of the 5 units with the highest IoU (--units 5)" in page.read_text()
    assert sum(1 for images in tables(page).images["units"] if images) == 5
    more = write_report(ReportSettings(out=tmp_path / "report", strip_units=8))
    assert (more.strips_rendered, more.strips_reused) == (3, 5)  # only the missing ones are drawn

    plain = cli("report", "--out", tmp_path / "plain", "--no-images")
    assert plain.exit_code == 0 and "unit strips" not in plain.stdout
    page = (tmp_path / "plain" / "runs" / f"run-{run.run_id}.html").read_text()
    assert "Unit strips were not drawn for this report (--no-images)" in page and "<img" not in page
    (tmp_path / "a-file").write_text("")
    clash = cli("report", "--out", tmp_path / "a-file")
    assert clash.exit_code == 1 and "is a file, not a directory" in clash.stderr


@pytest.mark.slow  # a dissection and reports drawing every unit's strips: seconds on two cores
def test_a_missing_checkpoint_is_said_in_the_report(cli, engine, dissected, tmp_path):
    checkpoint = tmp_path / "weights.pth"
    torch.manual_seed(5)
    torch.save(torchvision.models.resnet18().state_dict(), checkpoint)
    ingest(cli, "r18-file", "--checkpoint", checkpoint)
    kept = write_report(ReportSettings(out=tmp_path / "before", strip_units=4))
    assert kept.strips[dissected_run(engine, "r18-file").run_id].rendered == 4  # from the file, while it exists
    checkpoint.unlink()
    (tmp_path / "home" / "cache" / "report").rename(tmp_path / "old-cache")  # nothing cached to fall back on
    result = cli("report", "--out", tmp_path / "report", "--units", "4")
    assert result.exit_code == 0, result.output
    assert f"the checkpoint file {checkpoint} is gone" in result.stderr
    run = dissected_run(engine, "r18-file")
    page = (tmp_path / "report" / "runs" / f"run-{run.run_id}.html").read_text()
    assert f"Strips not drawn: the checkpoint file {checkpoint} is gone" in page
    assert len(tables(tmp_path / "report" / "runs" / f"run-{run.run_id}.html").body("units")) == 512
    assert len(list((tmp_path / "report" / "strips" / f"run-{dissected_run(engine).run_id}").glob("*.jpg"))) == 4


def test_a_model_that_no_longer_gives_the_stored_activations_draws_nothing(engine, dissected, tmp_path):
    with engine.begin() as conn:
        conn.execute(text("UPDATE unit_top_image SET activation = activation * 2 + 1"))
    outcome = write_report(ReportSettings(out=tmp_path / "report", strip_units=3))
    strips = outcome.strips[dissected_run(engine).run_id]
    assert not strips.files and strips.rendered == 0
    assert "does not reproduce the activations stored with run" in strips.note


def test_a_run_of_an_older_lce_is_rebuilt_from_its_backfilled_settings(engine, dissected, tmp_path):
    """Runs stored before the settings said how the model was made get them from migration 0007 (the model's
    architecture, ImageNet's normalisation, the seed), and their layer is read as nchw, as lce read it then."""
    from lce.db import migrate

    older = "'architecture' - 'source' - 'zoo' - 'model_image_size' - 'checkpoint_layout' - 'mean' - 'std'" \
            " - 'normalization_source' - 'layout' - 'prefix_tokens' - 'layout_origin'"
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE run SET settings = settings - {older} || '{{\"random_init\": true}}'"))
    migrate.downgrade(engine, "0006")
    migrate.upgrade(engine)
    strips, settings = strips_of(engine, "r18", tmp_path)
    assert {key: settings[key] for key in ("architecture", "source", "zoo", "mean", "std", "random_init", "seed")} \
        == {"architecture": "resnet18", "source": "torchvision", "zoo": None, "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225], "random_init": True, "seed": 1}
    assert settings["normalization_source"] == "backfilled by migration 0007 from the model row"
    assert "layout" not in settings
    assert_drawn(strips)
    migrate.downgrade(engine, "0006")  # the backfill goes, and what was recorded before stays
    with engine.connect() as conn:
        after = conn.execute(text("SELECT settings FROM run")).scalar_one()
    assert "architecture" not in after and after["seed"] == 1


def tiny_swin_64() -> torch.nn.Module:
    """A two-stage Swin whose blocks return (B, H, W, C): 8 x 8 x 32 at features.3 for the 64-px probe; built by
    `--arch tests.test_report:tiny_swin_64`."""
    return torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[1, 1],
                                              window_size=[4, 4])


def strips_of(engine, model, tmp_path, units=4, allowed_archs=()):
    """The strips of `model`'s run in a report drawing `units` of them, and the recorded settings of the run."""
    run = dissected_run(engine, model)
    outcome = write_report(ReportSettings(out=tmp_path / f"report-{model}", strip_units=units, batch_size=8,
                                          allowed_archs=allowed_archs))
    return outcome.strips[run.run_id], run.settings


def assert_drawn(strips, units=4):
    """`units` strips drawn from recomputed peaks that match the stored ones, ten 64-px tiles each."""
    assert (strips.rendered, strips.note) == (units, f"Strips of the {units} units with the highest IoU "
                                                     f"(--units {units}).")
    assert len(strips.files) == units and all(path.is_file() for path in strips.files.values())
    with Image.open(next(iter(strips.files.values()))) as strip:
        assert strip.size == (10 * 64 + 9 * 2, 64)


@pytest.mark.slow  # a timm or Hugging Face model dissected
def test_a_timm_vit_run_draws_its_strips_from_its_patch_tokens(cli, engine, probe, tmp_path):
    ingest(cli, "vit", "--random-init", "--seed", "3", "--layer", "blocks.1", arch="timm:vit_tiny_patch16_224")
    run = dissected_run(engine, "vit")
    assert (run.settings["layout"], run.settings["prefix_tokens"], run.settings["model_image_size"]) == \
        ("tokens", 1, 64)
    out = tmp_path / "report"
    result = cli("report", "--out", out, "--units", "4")
    assert result.exit_code == 0, result.output
    assert "does not reproduce" not in result.output and "not drawn" not in result.output
    drawn = sorted((out / "strips" / f"run-{run.run_id}").glob("unit-*.jpg"))
    assert len(drawn) == 4
    with Image.open(drawn[0]) as strip:  # ten 64-px tiles: the 4 x 4 patch grid's masks at the image's size
        assert strip.size == (10 * 64 + 9 * 2, 64)
    page = (out / "runs" / f"run-{run.run_id}.html").read_text()
    assert "Strips of the 4 units with the highest IoU (--units 4)" in page
    assert sum(1 for images in tables(out / "runs" / f"run-{run.run_id}.html").images["units"] if images) == 4


@pytest.mark.slow  # seconds on two cores (dissections or embeddings with replicates)
def test_the_recorded_normalisation_is_the_one_the_strips_use(cli, engine, probe, tmp_path):
    ingest(cli, "r18-half", "--random-init", "--seed", "1", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5")
    strips, settings = strips_of(engine, "r18-half", tmp_path)
    assert (settings["mean"], settings["std"]) == ([0.5] * 3, [0.5] * 3)
    assert_drawn(strips)
    # The same run said to be ImageNet-normalised (what the report used to assume): its peaks are not the stored ones.
    with engine.begin() as conn:
        conn.execute(text("UPDATE run SET settings = settings || CAST(:imagenet AS jsonb)"),
                     {"imagenet": '{"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}'})
    strips, _ = strips_of(engine, "r18-half", tmp_path)
    assert strips.rendered == 0 and not strips.files
    assert "does not reproduce the activations stored with run" in strips.note


SWIN = "tests.test_report:tiny_swin_64"


def test_a_channels_last_layer_draws_its_strips(cli, engine, probe, tmp_path):
    ingest(cli, "swin", "--random-init", "--layer", "features.3", arch=SWIN)
    strips, settings = strips_of(engine, "swin", tmp_path, allowed_archs=(SWIN,))  # code: drawn when named only
    assert (settings["layout"], settings["source"]) == ("nhwc", "function")
    assert_drawn(strips)
    assert len(unit_masks(dissected_run(engine, "swin"), 31, device="cpu", allowed_archs=(SWIN,))) == 10  # of 32
    # Read as nchw instead (all an older report knew), its (B, 8, 8, 32) blocks would hold 8 units, not 32.
    with engine.begin() as conn:
        conn.execute(text("UPDATE run SET settings = settings || '{\"layout\": \"nchw\"}'"))
    strips, _ = strips_of(engine, "swin", tmp_path, allowed_archs=(SWIN,))
    assert not strips.files and strips.note == ("Strips not drawn: the rebuilt model's layer features.3 cannot be "
                                                "read as it was dissected: it has 8 units, fewer than the run stores.")


@pytest.mark.slow  # a timm or Hugging Face model dissected
def test_a_hugging_face_run_draws_from_its_directory_and_says_when_it_is_gone(cli, engine, probe, tmp_path):
    transformers = pytest.importorskip("transformers")
    directory = tmp_path / "hf-vit"
    torch.manual_seed(4)
    config = transformers.ViTConfig(image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64)
    transformers.ViTModel(config).save_pretrained(directory)
    ingest(cli, "hf-vit", "--layer", "layers.1", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5",
           arch=f"hf:{directory}")
    strips, settings = strips_of(engine, "hf-vit", tmp_path)
    assert (settings["checkpoint"], settings["layout"], settings["prefix_tokens"]) == (None, "tokens", 1)
    assert_drawn(strips)
    (tmp_path / "home" / "cache" / "report").rename(tmp_path / "old-cache")  # nothing cached to fall back on
    shutil.rmtree(directory)
    strips, _ = strips_of(engine, "hf-vit", tmp_path)
    assert not strips.files
    assert strips.note == (f"Strips not drawn: the model's directory {directory.resolve()} is gone (the model "
                           "cannot be run again).")


# ---- in a browser -------------------------------------------------------------------------------------------

def colours_near(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    return int((np.abs(pixels.astype(int) - colour).max(axis=-1) <= tolerance).sum())


@pytest.mark.slow  # a headless browser
def test_the_report_opens_in_headless_chromium_and_shows_the_plot(cli, engine, paper_data, tmp_path):
    embed_paper(cli, tmp_path)
    out = tmp_path / "report"
    assert cli("report", "--out", out).exit_code == 0
    with Browser(tmp_path) as browser:
        visit = browser.open(out / "index.html")
        assert visit.errors == []
        assert browser.evaluate("document.images.length") == 4
        assert browser.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        box = browser.evaluate("(() => { const r = document.querySelector('#embedding img').getBoundingClientRect();"
                               " return [r.left, r.top, r.right, r.bottom]; })()")
        shot = np.asarray(Image.open(io.BytesIO(browser.screenshot())).convert("RGB"))
        left, top, right, bottom = (int(round(v)) for v in box)
        assert right - left > 600 and top < shot.shape[0] - 300  # the plot is wide and on the first screen
        region = shot[top:min(bottom, shot.shape[0]), left:right]
        assert len(Counter(map(tuple, region.reshape(-1, 3)))) > 200  # a drawn figure, not a blank area
        for colour in CLUSTER_RGB:  # the three clusters' markers
            assert colours_near(region, colour) > 50, colour
        outside = shot[:max(top - 5, 1)]
        assert all(colours_near(outside, colour, 4) < 20 for colour in CLUSTER_RGB[1:])

        # A run page: no errors, and its units table sorts by IoU when the header is clicked.
        run_id = run_ids(engine)["MoCoV1(R)"]
        visit = browser.open(out / "runs" / f"run-{run_id}.html")
        assert visit.errors == []
        with paper_data.open(newline="") as handle:
            ious = {int(row["unit"]): float(row["iou"]) for row in csv.DictReader(handle)
                    if row["name"] == "MoCoV1(R)" and row["iou"]}
        first_unit = "document.querySelector('#units tbody tr').dataset.unit"
        header = "document.querySelectorAll('#units thead th')[3]"
        browser.evaluate(f"{header}.click()")
        assert int(browser.evaluate(first_unit)) == min(ious, key=lambda u: (ious[u], u))
        browser.evaluate(f"{header}.click()")
        assert ious[int(browser.evaluate(first_unit))] == max(ious.values())
        assert browser.evaluate("document.querySelectorAll('#units tbody tr').length") == 2048


@pytest.mark.slow  # a headless browser
def test_a_dissected_report_with_strips_opens_without_errors(engine, dissected, tmp_path):
    out = tmp_path / "report"
    write_report(ReportSettings(out=out, strip_units=20))
    run_id = dissected_run(engine).run_id
    with Browser(tmp_path) as browser:
        assert browser.open(out / "index.html").errors == []
        visit = browser.open(out / "runs" / f"run-{run_id}.html")
        assert visit.errors == []
        loaded = ("(async () => { const i = document.querySelector('#units img'); i.scrollIntoView();"
                  " await i.decode(); return [i.naturalWidth, i.naturalHeight]; })()")
        assert browser.evaluate(loaded) == [10 * 64 + 9 * 2, 64]
