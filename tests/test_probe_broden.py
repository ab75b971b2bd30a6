"""Reading and checking Broden-format datasets, on a tiny one written by hand in the test."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lce.errors import LceError
from lce.probe.broden import Broden, display_name
from lce.probe.check import check_probe
from lce.probe.labels import ImageLabels

CATEGORIES = ["color", "object", "part", "scene", "texture"]
LABELS = [  # number, name, category cell
    (1, "red-c", "color(2)"),
    (2, "blue-c", "color(1)"),
    (3, "disc", "object(2)"),
    (4, "disc-rim", "part(2)"),
    (5, "striped", "part(1);texture(2)"),  # in two categories; texture is primary
    (6, "beach-s", "scene(2)"),
    (7, "forest-s", "scene(1)"),
]


def label_png(path: Path, numbers: np.ndarray) -> str:
    rgb = np.zeros((*numbers.shape, 3), dtype=np.uint8)
    rgb[..., 0] = numbers % 256
    rgb[..., 1] = numbers // 256
    Image.fromarray(rgb, "RGB").save(path)
    return path.name


def write_tiny(root: Path) -> list[ImageLabels]:
    """Three 8x8 images with 4x4 labels; returns the truth the reader must give back."""
    images = root / "images"
    images.mkdir(parents=True)
    (root / "category.csv").write_text("name,first,last,count,frequency\n" + "".join(
        f"{c},1,7,2,3\n" for c in CATEGORIES))
    (root / "label.csv").write_text("number,name,category,frequency,coverage,syns\n" + "".join(
        f'{n},{name},"{cats}",2,0.25,\n' for n, name, cats in LABELS))
    (root / "c_part.csv").write_text("code,number,name,frequency,coverage\n1,4,disc-rim,2,0.2\n2,5,striped,1,0.1\n")
    truth, rows = [], []
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(images / f"{i}.jpg")
        color = rng.choice([0, 1, 2], size=(4, 4))
        obj = rng.choice([0, 3], size=(4, 4))
        part1, part2 = rng.choice([0, 4], size=(4, 4)), rng.choice([0, 5], size=(4, 4))
        labels = ImageLabels(pixel={"color": [color], "object": [obj]}, whole={"scene": [6 if i < 2 else 7]})
        cells = {"color": label_png(images / f"{i}_color.png", color),
                 "object": label_png(images / f"{i}_object.png", obj), "scene": str(labels.whole["scene"][0])}
        if i == 0:  # two part layers, two textures
            labels.pixel["part"] = [part1, part2]
            cells["part"] = f"{label_png(images / '0_part_1.png', part1)};{label_png(images / '0_part_2.png', part2)}"
            labels.whole["texture"] = [5, 5]
            cells["texture"] = "5;5"
        if i == 2:  # partial annotation: no colour
            del labels.pixel["color"], cells["color"]
        truth.append(labels)
        rows.append(f"{i}.jpg,{'val' if i == 1 else 'train'},8,8,4,4," + ",".join(cells.get(c, "") for c in CATEGORIES))
    (root / "index.csv").write_text("image,split,ih,iw,sh,sw," + ",".join(CATEGORIES) + "\n" + "\n".join(rows) + "\n")
    return truth


@pytest.fixture
def tiny(tmp_path) -> tuple[Path, list[ImageLabels]]:
    root = tmp_path / "tiny"
    return root, write_tiny(root)


def test_reader_returns_exactly_what_was_written(tiny):
    root, truth = tiny
    probe = Broden.open(root)
    assert len(probe) == 3 and probe.categories == CATEGORIES
    for i, labels in enumerate(truth):
        found = probe.labels_of(i)
        assert found.same_as(labels), i
        assert found.categories == labels.categories
    assert [row.split for row in Broden.open(root, split="val").rows] == ["val"]
    assert len(Broden.open(root, split="train")) == 2


def test_vocabulary_primary_categories_and_display_names(tiny):
    root, _ = tiny
    probe = Broden.open(root)
    striped = probe.vocabulary[5]
    assert striped.counts == {"part": 1, "texture": 2}
    assert striped.primary_category == "texture"
    assert probe.vocabulary[1].name == "red-c" and probe.vocabulary[1].display_name == "red"
    assert display_name("beach-s") == "beach" and display_name("disc-rim") == "disc-rim"
    # c_part.csv lists codes; categories without a c_ file fall back to label.csv.
    assert [(m.code, m.number) for m in probe.members["part"]] == [(1, 4), (2, 5)]
    assert [m.number for m in probe.members["scene"]] == [6, 7]
    assert probe.max_layers() == {"color": 1, "object": 1, "part": 2, "scene": 0, "texture": 0}


def test_a_clean_dataset_has_no_problems(tiny):
    root, _ = tiny
    assert check_probe(root) == []
    assert check_probe(root, deep=True) == []


def test_check_lists_every_problem_with_file_and_line(tiny):
    root, _ = tiny
    images = root / "images"
    (images / "1.jpg").unlink()  # missing image
    label_png(images / "0_object.png", np.zeros((5, 4), dtype=np.int64))  # wrong size
    label_png(images / "1_color.png", np.full((4, 4), 99))  # unknown label number (only a deep check sees it)
    data = (images / "2_object.png").read_bytes()
    (images / "2_object.png").write_bytes(data[: len(data) // 2])  # truncated
    index = (root / "index.csv").read_text().replace(",,7", ",,8")  # whole-image label absent from label.csv
    (root / "index.csv").write_text(index)
    fast = [str(p) for p in check_probe(root)]
    assert any("1.jpg is missing" in p and "index.csv, line 3" in p for p in fast)
    assert any("0_object.png: is 4x5, but index.csv line 2 gives sh,sw 4,4" in p for p in fast)
    assert any("index.csv, line 4: scene label 8 is absent from label.csv" in p for p in fast)
    deep = [str(p) for p in check_probe(root, deep=True)]
    assert any("1_color.png: label number(s) 99 absent from label.csv" in p for p in deep)
    assert any("2_object.png: cannot be read" in p for p in deep)
    assert len(deep) > len(fast)


def test_malformed_headers_and_unknown_categories_are_named(tiny):
    root, _ = tiny
    (root / "label.csv").write_text("number,title\n1,red-c\n")
    (root / "index.csv").write_text((root / "index.csv").read_text().replace(",texture", ",smell", 1))
    problems = [str(p) for p in check_probe(root)]
    assert any("label.csv, line 1: malformed header: lacks name, category, frequency, coverage" in p
               for p in problems)
    assert any("index.csv, line 1: column 'smell' is not a category of category.csv" in p for p in problems)


@pytest.mark.parametrize("damage, message", [
    (None, "is not a directory"),
    (lambda root: (root / "index.csv").unlink(), "index.csv is missing"),
    (lambda root: (root / "index.csv").write_text("image,split,ih,iw,sh,sw,color\n"), "lists no images"),
])
def test_unusable_datasets_are_one_clear_error(tmp_path, damage, message):
    root = tmp_path / "d"
    if damage is not None:
        write_tiny(root)
        damage(root)
    with pytest.raises(LceError, match=message):
        Broden.open(root)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from lce.probe.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("synth") / "probe", images=60, size=64, seed=3)


def test_reader_returns_the_synthetic_ground_truth(synthetic):
    """The generator's drawn truth and the reader's output are the same, image by image, layer by layer."""
    probe = Broden.open(synthetic.path)
    assert len(probe) == 60 and [row.image for row in probe.rows] == synthetic.images
    assert [row.split for row in probe.rows] == synthetic.splits
    for i, truth in enumerate(synthetic.labels):
        assert probe.labels_of(i).same_as(truth), i
    assert {n: (label.name, label.primary_category) for n, label in probe.vocabulary.items()} == synthetic.vocabulary
    assert check_probe(synthetic.path, deep=True) == []


def test_synthetic_probe_exercises_every_part_of_the_format(synthetic):
    probe = Broden.open(synthetic.path)
    assert set(probe.categories) == {"color", "object", "part", "material", "scene", "texture"}
    assert probe.max_layers()["part"] == 2
    assert any(len(labels.whole.get("texture", [])) == 2 for labels in synthetic.labels)
    assert any(len(labels.categories) < 6 for labels in synthetic.labels)  # partial annotation
    assert any(len(label.counts) == 2 for label in probe.vocabulary.values())
    assert {row.split for row in probe.rows} == {"train", "val"}
