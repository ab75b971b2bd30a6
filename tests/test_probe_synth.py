"""The synthetic Broden probe: deterministic files that decode, independently of lce's reader, to its ground truth."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lce.errors import LceError
from lce.probe.labels import ImageLabels
from lce.probe.synth import CATEGORIES, synthesize

IMAGES, SIZE = 40, 64


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("synth") / "probe", images=IMAGES, size=SIZE, seed=0)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def decode_png(path: Path) -> np.ndarray:
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(np.int32)
    return pixels[..., 0] + 256 * pixels[..., 1]


def label_categories(cell: str) -> dict[str, int]:
    """'texture(105);material(66)' -> {'texture': 105, 'material': 66}, in the cell's order."""
    return {part.split("(")[0]: int(part.split("(")[1].rstrip(")")) for part in cell.split(";")}


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(probe, tmp_path):
    again = synthesize(tmp_path / "again", images=IMAGES, size=SIZE, seed=0)
    other = synthesize(tmp_path / "other", images=IMAGES, size=SIZE, seed=1)
    files = tree(probe.path)
    assert len(files) > 3 * IMAGES
    assert tree(again.path) == files
    assert tree(other.path) != files
    assert all(a.same_as(b) for a, b in zip(again.labels, probe.labels))


def test_index_csv_and_pngs_decode_to_the_ground_truth(probe):
    rows = read_csv(probe.path / "index.csv")
    assert list(rows[0]) == ["image", "split", "ih", "iw", "sh", "sw", *CATEGORIES]
    assert len(rows) == len(probe.labels) == IMAGES
    for i, row in enumerate(rows):
        assert row["image"] == probe.images[i] == f"synth/{i:05d}.jpg"
        assert row["split"] == probe.splits[i]
        assert (row["ih"], row["iw"], row["sh"], row["sw"]) == (str(SIZE), str(SIZE), str(SIZE // 2), str(SIZE // 2))
        with Image.open(probe.path / "images" / row["image"]) as jpeg:
            assert (jpeg.format, jpeg.mode, jpeg.size) == ("JPEG", "RGB", (SIZE, SIZE))
        decoded = ImageLabels()
        for category in CATEGORIES:
            if not row[category]:
                continue
            items = row[category].split(";")
            if items[0].endswith(".png"):
                for item in items:
                    with Image.open(probe.path / "images" / item) as png:
                        assert (png.mode, png.size) == ("RGB", (SIZE // 2, SIZE // 2))
                        assert not np.asarray(png)[..., 2].any()
                decoded.pixel[category] = [decode_png(probe.path / "images" / item) for item in items]
            else:
                decoded.whole[category] = [int(item) for item in items]
        assert decoded.same_as(probe.labels[i]), f"row {i}"
        for layers in probe.labels[i].pixel.values():
            assert all(layer.dtype == np.int32 and layer.shape == (SIZE // 2, SIZE // 2) for layer in layers)


def test_about_a_fifth_of_the_images_are_val(probe):
    assert set(probe.splits) == {"train", "val"}
    assert probe.splits.count("val") == round(0.2 * IMAGES)


def test_every_image_has_one_scene_and_one_or_two_textures(probe):
    for labels in probe.labels:
        assert len(labels.whole["scene"]) == 1
        assert len(labels.whole["texture"]) in (1, 2)
        assert len(set(labels.whole["texture"])) == len(labels.whole["texture"])
        assert probe.vocabulary[labels.whole["scene"][0]][0].endswith("-s")
    assert any(len(labels.whole["texture"]) == 2 for labels in probe.labels)


def test_parts_come_in_one_or_two_layers_and_some_images_have_two(probe):
    layers = Counter(len(labels.pixel["part"]) for labels in probe.labels if "part" in labels.pixel)
    assert set(layers) == {1, 2}
    for labels in probe.labels:
        for layer in labels.pixel.get("part", []):
            assert layer.any()
            named = {probe.vocabulary[n][0] for n in np.unique(layer[layer > 0]).tolist()}
            assert all("-" in name and probe.vocabulary[probe.number(name)][1] == "part" for name in named)


def test_some_images_leave_categories_unannotated(probe):
    missing = Counter(c for labels in probe.labels for c in set(CATEGORIES) - labels.categories)
    assert {"part", "material"} <= set(missing)
    assert "scene" not in missing and "texture" not in missing
    partial = sum(1 for labels in probe.labels if labels.categories != set(CATEGORIES))
    assert 0 < partial < IMAGES // 2


def test_every_label_number_in_the_files_is_in_label_csv(probe):
    numbers = {int(row["number"]) for row in read_csv(probe.path / "label.csv")}
    assert numbers == set(range(1, len(numbers) + 1)) == set(probe.vocabulary)
    assert 40 <= len(numbers) <= 70
    seen = set()
    for labels in probe.labels:
        for layers in labels.pixel.values():
            for layer in layers:
                seen |= set(np.unique(layer).tolist())
        for codes in labels.whole.values():
            seen |= set(codes)
    assert seen - {0} == numbers


def test_label_csv_counts_and_coverage_match_the_ground_truth(probe):
    pixels = (SIZE // 2) ** 2
    per_category = {c: Counter() for c in CATEGORIES}
    frequency, coverage = Counter(), Counter()
    for labels in probe.labels:
        shares = {}
        for category, layers in labels.pixel.items():
            stack = np.stack(layers)
            for n in np.unique(stack[stack > 0]).tolist():
                per_category[category][n] += 1
                shares[n] = max(shares.get(n, 0.0), np.any(stack == n, axis=0).sum() / pixels)
        for category, numbers in labels.whole.items():
            for n in numbers:
                per_category[category][n] += 1
                shares[n] = 1.0
        for n, share in shares.items():
            frequency[n] += 1
            coverage[n] += share
    for row in read_csv(probe.path / "label.csv"):
        n = int(row["number"])
        counts = label_categories(row["category"])
        assert counts == {c: per_category[c][n] for c in CATEGORIES if per_category[c][n]}
        assert int(row["frequency"]) == frequency[n]
        assert float(row["coverage"]) == pytest.approx(coverage[n] / frequency[n], abs=1e-6)
        assert row["syns"] == ""
        assert probe.vocabulary[n][0] == row["name"]


def test_a_label_in_two_categories_takes_the_larger_coverage_as_primary(probe):
    rows = read_csv(probe.path / "label.csv")
    shared = [row for row in rows if ";" in row["category"]]
    assert [row["name"] for row in shared] == ["striped"]
    number = int(shared[0]["number"])
    counts = label_categories(shared[0]["category"])
    assert set(counts) == {"material", "texture"}
    coverage = {c: float(next(r["coverage"] for r in read_csv(probe.path / f"c_{c}.csv") if int(r["number"]) == number))
                for c in counts}
    assert coverage["texture"] == 1.0 > coverage["material"]  # a whole-image label covers every pixel
    assert probe.vocabulary[number] == ("striped", "texture")


def test_category_tables_agree_with_label_csv_and_index_csv(probe):
    labels = read_csv(probe.path / "label.csv")
    index = read_csv(probe.path / "index.csv")
    categories = read_csv(probe.path / "category.csv")
    assert [row["name"] for row in categories] == list(CATEGORIES)
    for row in categories:
        category = row["name"]
        members = {int(r["number"]): r for r in labels if category in label_categories(r["category"])}
        assert int(row["count"]) == len(members)
        assert (int(row["first"]), int(row["last"])) == (min(members), max(members))
        assert int(row["frequency"]) == sum(1 for r in index if r[category])
        codes = read_csv(probe.path / f"c_{category}.csv")
        assert [int(r["code"]) for r in codes] == list(range(1, len(members) + 1))
        assert [int(r["number"]) for r in codes] == sorted(members)
        for r in codes:
            number = int(r["number"])
            assert r["name"] == members[number]["name"]
            assert int(r["frequency"]) == label_categories(members[number]["category"])[category]
            if category in ("scene", "texture"):
                assert float(r["coverage"]) == 1.0
    names = {row["name"]: label_categories(row["category"]) for row in labels}
    assert all(name.endswith("-c") for name, c in names.items() if "color" in c)
    assert all(name.endswith("-s") for name, c in names.items() if "scene" in c)
    assert sum(1 for c in names.values() if "color" in c) >= 8
    assert sum(1 for c in names.values() if "object" in c) >= 5
    assert sum(1 for c in names.values() if "scene" in c) >= 5
    assert sum(1 for c in names.values() if "texture" in c) >= 5


def test_a_non_empty_output_directory_is_refused_with_its_path(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "index.csv").write_text("")
    with pytest.raises(LceError, match=re.escape(str(out))):
        synthesize(out, images=2, size=16)
    assert [p.name for p in out.iterdir()] == ["index.csv"]


def test_an_empty_output_directory_is_accepted(tmp_path):
    probe = synthesize(tmp_path, images=3, size=16)
    assert (tmp_path / "index.csv").exists() and len(probe.labels) == 3
