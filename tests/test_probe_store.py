"""Registering probes (lce probe add|list|show|check), the decode cache, and the torch Dataset."""

import hashlib
import multiprocessing
import os

import numpy as np
import pytest
import torch
from sqlalchemy import text

from lce.probe.broden import Broden
from lce.probe.cache import DecodeCache
from lce.probe.dataset import ProbeDataset, resize_nearest
from lce.probe.manifest import FileEntry, Manifest
from tests.test_probe_broden import write_tiny


@pytest.fixture
def tiny(tmp_path):
    root = tmp_path / "tiny"
    return root, write_tiny(root)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def table_counts(engine):
    with engine.connect() as conn:
        return tuple(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in ("probe", "concept"))


def test_add_stores_the_probe_and_its_concepts(cli, engine, tiny, home):
    root, _ = tiny
    result = cli("probe", "add", "tiny", root)
    assert result.exit_code == 0, result.output
    assert "Stored probe 'tiny'" in result.stdout and "3 images, 8 concepts" in result.stdout
    with engine.connect() as conn:
        probe = conn.execute(text("SELECT * FROM probe")).mappings().one()
        assert (probe["path"], probe["image_count"], probe["image_size"], probe["seg_size"], probe["source"]) == \
            (str(root.resolve()), 3, 8, 4, "broden")
        assert probe["category_images"] == {"color": 2, "object": 3, "part": 1, "scene": 3, "texture": 1}
        assert len(probe["content_sha256"]) == 64
        striped = conn.execute(text(
            "SELECT category, number, primary_category, frequency FROM concept WHERE name = 'striped'"
            " ORDER BY category")).all()
        assert striped == [("part", 5, "texture", 1), ("texture", 5, "texture", 2)]
    # The cache is keyed by the manifest of its files (CSVs and label PNGs), not by the probe's CSV hash.
    [index] = (home / "cache").glob("*/index.npz")
    manifest = Manifest.read(index.parent / "manifest.json")
    assert index.parent.name == manifest.key != probe["content_sha256"]
    assert [entry.path for entry in manifest.entries] == [
        "index.csv", "label.csv", "category.csv", "c_part.csv", "images/0_color.png", "images/0_object.png",
        "images/0_part_1.png", "images/0_part_2.png", "images/1_color.png", "images/1_object.png",
        "images/2_object.png"]
    png = root / "images" / "0_object.png"
    assert manifest.entries[5] == FileEntry("images/0_object.png", png.stat().st_size, png.stat().st_mtime_ns,
                                            hashlib.sha256(png.read_bytes()).hexdigest())


def test_adding_again_is_a_no_op_and_other_content_needs_replace(cli, engine, tiny, home):
    root, _ = tiny
    assert cli("probe", "add", "tiny", root).exit_code == 0
    again = cli("probe", "add", "tiny", root)
    assert again.exit_code == 0 and "Already stored, unchanged" in again.stdout
    (root / "label.csv").write_text((root / "label.csv").read_text().replace("forest-s", "jungle-s"))
    refused = cli("probe", "add", "tiny", root)
    assert refused.exit_code == 1 and "already stored with other content" in refused.stderr
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM concept WHERE name = 'jungle-s'")).scalar() == 0
    replaced = cli("probe", "add", "tiny", root, "--replace")
    assert replaced.exit_code == 0 and "Replaced probe 'tiny'" in replaced.stdout
    with engine.connect() as conn:
        names = set(conn.execute(text("SELECT name FROM concept")).scalars())
    assert "jungle-s" in names and "forest-s" not in names
    assert table_counts(engine) == (1, 8)


def test_a_dataset_with_problems_is_refused_and_nothing_is_written(cli, engine, tiny, home):
    root, _ = tiny
    (root / "images" / "1.jpg").unlink()
    result = cli("probe", "add", "tiny", root)
    assert result.exit_code == 1
    assert "has 1 problem(s); nothing was stored" in result.stderr and "1.jpg is missing" in result.stderr
    assert table_counts(engine) == (0, 0)
    checked = cli("probe", "check", root)
    assert checked.exit_code == 1 and "1 problem(s)" in checked.stderr


def test_a_corrupt_label_file_stops_the_add_with_its_name(cli, engine, tiny, home):
    root, _ = tiny
    png = root / "images" / "2_object.png"
    png.write_bytes(png.read_bytes()[:60])  # the header survives: only decoding finds it
    assert cli("probe", "check", root).exit_code == 0
    result = cli("probe", "add", "tiny", root)
    assert result.exit_code == 1
    assert f"{png} cannot be decoded" in result.stderr
    assert table_counts(engine) == (0, 0)
    assert not list((home / "cache").glob("*/index.npz"))  # no half-built cache either
    assert cli("probe", "check", root, "--deep").exit_code == 1


def test_an_unknown_label_number_in_a_png_stops_the_add(cli, engine, tiny, home):
    from tests.test_probe_broden import label_png

    root, _ = tiny
    png = root / "images" / "1_color.png"
    label_png(png, np.full((4, 4), 300))
    result = cli("probe", "add", "tiny", root)
    assert result.exit_code == 1
    assert f"{png} holds label number(s) 300 that label.csv lacks" in result.stderr
    assert table_counts(engine) == (0, 0)


def test_list_and_show(cli, tiny, home):
    root, _ = tiny
    cli("probe", "add", "tiny", root)
    listed = cli("probe", "list")
    assert listed.exit_code == 0 and "tiny" in listed.stdout and "broden" in listed.stdout
    shown = cli("probe", "show", "tiny")
    assert shown.exit_code == 0, shown.output
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:4]]
            for line in shown.stdout.splitlines() if line.startswith("│")}
    assert rows["part"] == ["2", "1"] and rows["scene"] == ["2", "3"] and rows["color"] == ["2", "2"]
    missing = cli("probe", "show", "nope")
    assert missing.exit_code == 1 and "No probe named 'nope'; stored probes: tiny." in missing.stderr


def test_cache_gives_back_what_the_pngs_hold_and_is_built_once(tiny, tmp_path):
    root, truth = tiny
    probe = Broden.open(root)
    cache = DecodeCache.build(probe, tmp_path / "cache")
    for i, labels in enumerate(truth):
        assert cache.labels_of(i).same_as(labels), i
    stamp = (cache.directory / "layers.u16").stat().st_mtime_ns
    again = DecodeCache.build(Broden.open(root, split="val"), tmp_path / "cache")
    assert again.directory == cache.directory
    assert (cache.directory / "layers.u16").stat().st_mtime_ns == stamp
    assert again.positions(Broden.open(root, split="val")) == [1]
    # Changed content has another hash, hence another cache.
    (root / "label.csv").write_text((root / "label.csv").read_text() + "8,extra,object(0),0,0,\n")
    assert DecodeCache.build(Broden.open(root), tmp_path / "cache").directory != cache.directory


def _build(args):
    root, cache_root = args
    return str(DecodeCache.build(Broden.open(root), cache_root).directory)


def test_two_processes_building_the_same_cache_agree(tiny, tmp_path):
    root, truth = tiny
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        directories = pool.map(_build, [(root, tmp_path / "cache")] * 2)
    assert directories[0] == directories[1]
    caches = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.is_dir() and p.name != "probes")
    assert caches == [os.path.basename(directories[0])]  # no staging directory left behind
    cache = DecodeCache.load(tmp_path / "cache" / os.path.basename(directories[0]))
    assert all(cache.labels_of(i).same_as(labels) for i, labels in enumerate(truth))


def test_dataset_items_have_fixed_shapes_and_the_labels(tiny, tmp_path):
    root, truth = tiny
    probe = Broden.open(root)
    data = ProbeDataset(probe, image_size=8, seg_size=2, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                        cache=DecodeCache.build(probe, tmp_path / "cache"))
    assert data.layer_categories == ["color", "object", "part", "part"]
    assert data.whole_categories == ["scene", "texture", "texture"]
    item = data[0]
    assert item["image"].shape == (3, 8, 8) and item["image"].dtype == torch.float32
    assert item["layers"].shape == (4, 2, 2)
    assert np.array_equal(item["layers"][2].numpy(), resize_nearest(truth[0].pixel["part"][0], 2))
    assert item["whole"].tolist() == [6, 5, 5]
    assert item["annotated"].tolist() == [True, True, True, True, True]
    third = data[2]
    assert third["annotated"].tolist() == [False, True, False, True, False]
    assert third["layers"][0].abs().sum() == 0 and third["whole"].tolist() == [7, 0, 0]
    # Normalisation: (x / 255 - mean) / std.
    from PIL import Image

    raw = np.asarray(Image.open(root / "images" / "0.jpg").convert("RGB"), dtype=np.float32) / 255
    assert torch.allclose(item["image"], torch.from_numpy((raw - 0.5) / 0.25).permute(2, 0, 1), atol=1e-6)


def test_dataloader_workers_give_the_same_batches(tiny, tmp_path):
    root, _ = tiny
    probe = Broden.open(root)
    data = ProbeDataset(probe, cache=DecodeCache.build(probe, tmp_path / "cache"))
    serial = next(iter(torch.utils.data.DataLoader(data, batch_size=3)))
    parallel = list(torch.utils.data.DataLoader(data, batch_size=1, num_workers=2))
    for key in ("image", "layers", "whole", "annotated"):
        assert torch.equal(serial[key], torch.cat([batch[key] for batch in parallel])), key
    without_cache = next(iter(torch.utils.data.DataLoader(ProbeDataset(probe), batch_size=3)))
    assert torch.equal(serial["layers"], without_cache["layers"])


def test_resize_nearest_takes_pixel_centres():
    """Output pixel i takes the input pixel under its centre, (i + 0.5) * scale, like PIL and torch's
    'nearest-exact' (not 'nearest', which takes i * scale)."""
    layer = np.arange(16).reshape(4, 4)
    assert resize_nearest(layer, 2).tolist() == [[5, 7], [13, 15]]
    expected = torch.nn.functional.interpolate(torch.from_numpy(layer)[None, None].double(), size=(2, 2),
                                               mode="nearest-exact")
    assert resize_nearest(layer, 2).tolist() == expected[0, 0].long().tolist()
    assert resize_nearest(layer, 8)[::2, ::2].tolist() == layer.tolist()


def test_synth_check_add_show_from_the_command_line(cli, engine, tmp_path, home):
    out = tmp_path / "synth"
    made = cli("probe", "synth", out, "--images", "30", "--size", "64", "--seed", "1")
    assert made.exit_code == 0, made.output
    assert "Wrote 30 images (64 px)" in made.stdout
    assert cli("probe", "check", out, "--deep").exit_code == 0
    added = cli("probe", "add", "synth", out)
    assert added.exit_code == 0, added.output
    with engine.connect() as conn:
        categories = dict(conn.execute(text("SELECT category, count(*) FROM concept GROUP BY 1")).all())
        assert set(categories) == {"color", "object", "part", "material", "scene", "texture"}
        assert conn.execute(text("SELECT primary_category FROM concept WHERE name = 'striped'"
                                 " AND category = 'material'")).scalar() == "texture"
    again = cli("probe", "synth", out)
    assert again.exit_code == 1 and str(out) in again.stderr


def test_synth_rejects_nonsense_sizes(cli, tmp_path):
    result = cli("probe", "synth", tmp_path / "x", "--images", "0")
    assert result.exit_code == 1 and "--images must be at least 1" in result.stderr


def test_uint8_images_normalised_by_the_consumer_equal_the_workers_normalisation(tiny, tmp_path):
    root, _ = tiny
    probe = Broden.open(root)
    floats = ProbeDataset(probe, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4))
    raw = ProbeDataset(probe, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4), uint8=True)
    assert raw[1]["image"].dtype == torch.uint8
    batch = torch.stack([raw[i]["image"] for i in range(3)])
    assert torch.allclose(raw.normalize(batch), torch.stack([floats[i]["image"] for i in range(3)]), atol=1e-6)
