"""A synthetic probe in the Broden format, drawn together with its ground truth.

    probe = synthesize(Path("synth"), images=500, size=224, seed=0)
    probe.labels[0].pixel["object"][0]   # what a correct reader returns for the first row of index.csv
    probe.vocabulary[7]                  # ("disc", "object")

Each image is a landscape (sky above a horizon, ground below: the scene) whose background carries one or two
whole-image textures, with 1-4 shapes on it (objects), each shape a named colour, some filled with a material
pattern, and most with parts. The label maps are drawn at S/2 x S/2 from the same geometry as the S x S JPEG,
so a model could see every concept it is asked about.

Decisions a reader must agree with (the ground truth pins them):

- Label PNGs are 8-bit RGB, label = R + 256 * G, B = 0. Parts have one or two layers (`_part_1.png`,
  `_part_2.png`): layer 1 splits each shape into halves or ends (`disc-top`, `square-bottom`, `cross-arm`),
  layer 2 holds the parts that overlap them (`disc-rim`, `square-frame`); a layer that would be all zero is not
  written, so an image has two part files only where a disc or square shows.
- index.csv lists texture numbers in the order drawn; `ImageLabels.whole["texture"]` keeps that order.
- label.csv holds only labels that occur; numbers are 1..N with no gaps, in the order of `_NAMES`. The category
  cell lists a label's categories by image count, largest first (ties: index.csv column order). Its primary
  category is the one with the largest coverage in c_<category>.csv (ties: the earlier category), as NetDissect
  decides. `striped` is both a material (pixel) and a texture (whole image: coverage 1.0, so primary).
- category.csv `first`/`last` are the smallest and largest numbers in the category, not a contiguous range
  (`striped` sits among the materials and is also a texture): c_<category>.csv is the map.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lce import vocabulary
from lce.errors import LceError
from lce.probe.labels import ImageLabels

# Broden's categories (lce.vocabulary) in its index.csv column order, which puts color first.
CATEGORIES = ("color", *(category for category in vocabulary.CATEGORIES if category != "color"))
PIXEL_CATEGORIES = ("color", "object", "part", "material")

COLORS = {
    "red-c": (200, 30, 30),
    "orange-c": (240, 140, 20),
    "yellow-c": (240, 220, 40),
    "green-c": (40, 160, 50),
    "blue-c": (40, 80, 210),
    "purple-c": (130, 50, 170),
    "pink-c": (240, 130, 180),
    "brown-c": (120, 70, 30),
    "white-c": (240, 240, 240),
    "gray-c": (128, 128, 128),
    "black-c": (20, 20, 20),
}
SHAPES = ("disc", "square", "triangle", "ring", "bar", "cross")
# Part names of each shape kind, in order, and their layer (0: halves or ends, 1: the parts that overlap them).
PARTS = {
    "disc": (("disc-top", 0), ("disc-bottom", 0), ("disc-rim", 1)),
    "square": (("square-top", 0), ("square-bottom", 0), ("square-frame", 1)),
    "triangle": (("triangle-apex", 0), ("triangle-base", 0)),
    "ring": (),
    "bar": (("bar-end", 0),),
    "cross": (("cross-centre", 0), ("cross-arm", 0)),
}
# Materials a shape may be filled with, and how often; striped is rare so that its texture count dominates.
SHAPE_MATERIALS = ("wood", "metal", "fabric", "stone", "striped")
SHAPE_MATERIAL_WEIGHTS = (0.25, 0.25, 0.2, 0.2, 0.1)
SHAPE_MATERIAL_CHANCE = 0.5
# Scene -> (sky colours, ground colours, ground material or None).
SCENES = {
    "desert-s": (("blue-c", "orange-c"), ("yellow-c", "orange-c", "brown-c"), "sand"),
    "ocean-s": (("blue-c", "white-c", "gray-c"), ("blue-c",), "water"),
    "forest-s": (("blue-c", "gray-c"), ("green-c", "brown-c"), "grass"),
    "street-s": (("gray-c", "blue-c"), ("gray-c", "black-c"), "asphalt"),
    "snowfield-s": (("gray-c", "blue-c"), ("white-c",), "snow"),
    "night-s": (("black-c",), ("black-c", "purple-c"), None),
}
GROUND_MATERIALS = ("sand", "water", "grass", "asphalt", "snow")
TEXTURES = ("striped", "dotted", "checkered", "zigzagged", "grid", "blotchy")
TWO_TEXTURES_CHANCE = 0.3

# Every label name once, in numbering order (a name in two categories appears once).
_NAMES = tuple(
    dict.fromkeys(
        [*COLORS, *SHAPES, *(name for parts in PARTS.values() for name, _ in parts), *SHAPE_MATERIALS,
         *GROUND_MATERIALS, *SCENES, *TEXTURES]
    )
)
_CODE = {name: code for code, name in enumerate(_NAMES, start=1)}  # internal code, before unused labels drop out

VAL_FRACTION = 0.2  # a fifth of the images are `val`
PARTIAL_CHANCE = 0.2  # images that leave some categories unannotated (Broden annotates images partially)
# What a partially annotated image leaves out, drawn uniformly.
DROPPED = (("material",), ("part",), ("part", "material"), ("color",), ("object", "part"))
JPEG_QUALITY = 90
PNG_COMPRESS_LEVEL = 6
MATERIAL_CONTRAST = 110.0  # peak-to-peak brightness of a material pattern, in 8-bit levels
TEXTURE_CONTRAST = 80.0


@dataclass
class SynthProbe:
    """A synthetic probe on disk, and what a correct reader must return for it, in index.csv row order."""

    path: Path
    images: list[str]  # image paths relative to images/, as in index.csv
    splits: list[str]
    labels: list[ImageLabels]
    vocabulary: dict[int, tuple[str, str]]  # label number -> (name, primary category)
    categories: tuple[str, ...] = field(default=CATEGORIES)

    def number(self, name: str) -> int:
        """The label number of a name."""
        return next(number for number, (label, _) in self.vocabulary.items() if label == name)


@dataclass
class _Shape:
    kind: str
    cx: float
    cy: float
    r: float
    vertical: bool  # bars only: the long axis runs up-down
    color: str
    material: str | None
    pattern: dict | None


@dataclass
class _Drawn:
    """One image before label numbers are final: label maps in internal codes (uint8)."""

    rgb: np.ndarray
    pixel: dict[str, list[np.ndarray]]
    whole: dict[str, list[int]]


def synthesize(out: Path, images: int = 500, size: int = 224, seed: int = 0) -> SynthProbe:
    """Write a Broden-format probe of `images` images of `size` x `size` into `out`, and return its ground truth.

    The same arguments give byte-identical files. `out` must be missing or an empty directory.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LceError(f"{out} already exists and is not an empty directory; the synthetic probe needs a new one.")
    if images < 1:
        raise LceError(f"A synthetic probe needs at least one image (asked for {images}).")
    if size < 8 or size % 2:
        raise LceError(f"The image size must be even and at least 8 (asked for {size}).")
    rng = np.random.default_rng(seed)
    half = size // 2
    width = max(5, len(str(images - 1)))
    names = [f"synth/{i:0{width}d}" for i in range(images)]
    splits = ["train"] * images
    for i in rng.permutation(images)[: round(VAL_FRACTION * images)]:
        splits[i] = "val"

    folder = out / "images" / "synth"
    folder.mkdir(parents=True, exist_ok=True)
    drawn = []
    for name in names:
        image = _draw(rng, size, half)
        Image.fromarray(image.rgb).save(out / "images" / f"{name}.jpg", format="JPEG", quality=JPEG_QUALITY)
        image.rgb = None  # the pixels are on disk; keep only the label maps
        drawn.append(image)

    tally = _Tally(half * half)
    for image in drawn:
        tally.add(image)
    used = [code for code in range(1, len(_NAMES) + 1) if tally.frequency[code]]
    number_of = np.zeros(len(_NAMES) + 1, dtype=np.int32)
    number_of[used] = np.arange(1, len(used) + 1, dtype=np.int32)

    labels = []
    rows = []
    for name, split, image in zip(names, splits, drawn):
        truth = ImageLabels(
            pixel={c: [number_of[layer] for layer in layers] for c, layers in image.pixel.items()},
            whole={c: [int(number_of[code]) for code in codes] for c, codes in image.whole.items()},
        )
        cells = []
        for category in CATEGORIES:
            if category in truth.pixel:
                layers = truth.pixel[category]
                files = _layer_files(name, category, len(layers))
                for file, layer in zip(files, layers):
                    _write_label_png(out / "images" / file, layer)
                cells.append(";".join(files))
            else:
                cells.append(";".join(str(number) for number in truth.whole.get(category, [])))
        rows.append([f"{name}.jpg", split, size, size, half, half, *cells])
        labels.append(truth)

    vocabulary = _write_tables(out, tally, used, rows)
    return SynthProbe(path=out, images=[f"{n}.jpg" for n in names], splits=splits, labels=labels,
                      vocabulary=vocabulary)


def _layer_files(name: str, category: str, layers: int) -> list[str]:
    # Part layers are numbered (`_part_1.png`, `_part_2.png`) even when there is one, as in Broden.
    if category != "part":
        return [f"{name}_{category}.png"]
    return [f"{name}_{category}_{k}.png" for k in range(1, layers + 1)]


def _write_label_png(path: Path, numbers: np.ndarray) -> None:
    rgb = np.zeros((*numbers.shape, 3), dtype=np.uint8)
    rgb[..., 0] = numbers & 0xFF
    rgb[..., 1] = (numbers >> 8) & 0xFF
    Image.fromarray(rgb).save(path, format="PNG", compress_level=PNG_COMPRESS_LEVEL)


# --- drawing one image -------------------------------------------------------------------------------------------


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in [0, 1]: X as a (1, n) row, Y as an (n, 1) column, to broadcast into (n, n)."""
    centres = (np.arange(n, dtype=np.float32) + 0.5) / n
    return centres[None, :], centres[:, None]


def _draw(rng: np.random.Generator, size: int, half: int) -> _Drawn:
    scene = list(SCENES)[rng.integers(len(SCENES))]
    skies, grounds, ground_material = SCENES[scene]
    sky = skies[rng.integers(len(skies))]
    ground = grounds[rng.integers(len(grounds))]
    horizon = float(rng.uniform(0.4, 0.7))
    textures = [TEXTURES[i] for i in rng.choice(len(TEXTURES), 1 + (rng.random() < TWO_TEXTURES_CHANCE), replace=False)]
    shape_colors = [c for c in COLORS if c not in (sky, ground)]
    shapes = []
    for _ in range(rng.integers(1, 5)):
        kind = SHAPES[rng.integers(len(SHAPES))]
        cx, cy = (float(v) for v in rng.uniform(0.15, 0.85, 2))
        r = float(rng.uniform(0.12, 0.3))
        vertical = bool(rng.random() < 0.5)
        color = shape_colors[rng.integers(len(shape_colors))]
        material = None
        if rng.random() < SHAPE_MATERIAL_CHANCE:
            material = SHAPE_MATERIALS[rng.choice(len(SHAPE_MATERIALS), p=SHAPE_MATERIAL_WEIGHTS)]
        pattern = _pattern_params(rng, material) if material else None
        shapes.append(_Shape(kind, cx, cy, r, vertical, color, material, pattern))
    texture_patterns = [_pattern_params(rng, t) for t in textures]
    ground_pattern = _pattern_params(rng, ground_material) if ground_material else None
    annotated = set(CATEGORIES)
    if rng.random() < PARTIAL_CHANCE:
        annotated -= set(DROPPED[rng.integers(len(DROPPED))])

    rgb = _render(size, horizon, sky, ground, textures, texture_patterns, ground_material, ground_pattern, shapes)

    X, Y = _grid(half)
    owner, parts = _layout(shapes, X, Y)  # owner: 0 background, k = shape k - 1
    below = np.broadcast_to(Y >= horizon, owner.shape)
    code = np.zeros(len(shapes) + 1, dtype=np.uint8)
    maps = {}
    code[1:] = [_CODE[s.color] for s in shapes]
    maps["color"] = [np.where(owner > 0, code[owner], np.where(below, _CODE[ground], _CODE[sky])).astype(np.uint8)]
    code[1:] = [_CODE[s.kind] for s in shapes]
    maps["object"] = [np.where(owner > 0, code[owner], 0).astype(np.uint8)]
    maps["part"] = [layer for layer in parts if layer.any()]
    code[1:] = [_CODE[s.material] if s.material else 0 for s in shapes]
    material = np.where(owner > 0, code[owner], 0).astype(np.uint8)
    if ground_material:
        material[(owner == 0) & below] = _CODE[ground_material]
    maps["material"] = [material]

    pixel = {c: [m for m in maps[c] if m.any()] for c in PIXEL_CATEGORIES if c in annotated}
    return _Drawn(
        rgb=rgb,
        pixel={c: layers for c, layers in pixel.items() if layers},
        whole={"scene": [_CODE[scene]], "texture": [_CODE[t] for t in textures]},
    )


def _shape_geometry(shape: _Shape, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The shape's mask and one mask per part (in PARTS order), in shape-relative coordinates u, v (y down)."""
    u = (X - shape.cx) / shape.r
    v = (Y - shape.cy) / shape.r
    kind = shape.kind
    if kind == "disc":
        d = u * u + v * v
        return d <= 1, [v < 0, v >= 0, d >= 0.6**2]
    if kind == "square":
        a, b = np.abs(u), np.abs(v)
        return (a <= 0.85) & (b <= 0.85), [v < 0, v >= 0, np.maximum(a, b) >= 0.55]
    if kind == "triangle":
        inside = (v >= -1) & (v <= 0.8) & (np.abs(u) <= (v + 1) * 0.5)
        return inside, [v < -0.4, v > 0.4]
    if kind == "ring":
        d = u * u + v * v
        return (d <= 1) & (d >= 0.55**2), []
    if kind == "bar":
        along, across = (v, u) if shape.vertical else (u, v)
        return (np.abs(along) <= 1) & (np.abs(across) <= 0.3), [np.abs(along) > 0.7]
    if kind == "cross":
        a, b = np.abs(u), np.abs(v)
        inside = ((a <= 1) & (b <= 0.3)) | ((b <= 1) & (a <= 0.3))
        centre = (a <= 0.3) & (b <= 0.3)
        return inside, [centre, ~centre]
    raise ValueError(kind)


def _layout(shapes: list[_Shape], X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Which shape shows at each pixel (later shapes on top), and the two part layers of what shows."""
    shape = (Y.shape[0], X.shape[1])
    owner = np.zeros(shape, dtype=np.intp)
    geometry = []
    for k, s in enumerate(shapes, start=1):
        inside, part_masks = _shape_geometry(s, X, Y)
        owner[inside] = k
        geometry.append(part_masks)
    layers = [np.zeros(shape, dtype=np.uint8), np.zeros(shape, dtype=np.uint8)]
    for k, (s, part_masks) in enumerate(zip(shapes, geometry), start=1):
        mine = owner == k
        for (name, layer), mask in zip(PARTS[s.kind], part_masks):
            layers[layer][mine & mask] = _CODE[name]
    return owner, layers


def _render(size, horizon, sky, ground, textures, texture_patterns, ground_material, ground_pattern, shapes):
    """The S x S picture: background with its textures (and ground material), shapes with colour and material."""
    X, Y = _grid(size)
    owner, _ = _layout(shapes, X, Y)
    below = np.broadcast_to(Y >= horizon, owner.shape)
    palette = np.array([COLORS[sky], COLORS[ground]] + [COLORS[s.color] for s in shapes], dtype=np.float32)
    region = np.where(owner > 0, owner + 1, below.astype(np.intp))
    rgb = palette[region]
    background = owner == 0
    # The first texture covers the sky, the last the ground (one texture covers both).
    sky_texture = _pattern(textures[0], texture_patterns[0], X, Y)
    ground_texture = _pattern(textures[-1], texture_patterns[-1], X, Y)
    if ground_material:
        ground_texture = 0.5 * ground_texture + 0.5 * _pattern(ground_material, ground_pattern, X, Y)
    shade = np.where(below, ground_texture, sky_texture) - 0.5
    rgb += (TEXTURE_CONTRAST * np.where(background, shade, 0))[..., None]
    for k, s in enumerate(shapes, start=1):
        if s.material:
            mine = owner == k
            if mine.any():
                shade = _pattern(s.material, s.pattern, X, Y) - 0.5
                rgb += (MATERIAL_CONTRAST * np.where(mine, shade, 0))[..., None]
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


# --- procedural patterns (materials and textures), in [0, 1] ----------------------------------------------------

# Coarse noise grid sizes (rows, columns) of the noise-based patterns.
_NOISE_GRID = {"stone": (10, 10), "sand": (64, 64), "grass": (14, 70), "asphalt": (90, 90), "snow": (6, 6),
               "blotchy": (7, 7)}


def _pattern_params(rng: np.random.Generator, name: str) -> dict:
    angle = float(rng.uniform(0, np.pi))
    params = {"cos": np.cos(angle), "sin": np.sin(angle), "phase": float(rng.uniform(0, 2 * np.pi)),
              "freq": float(rng.uniform(6, 12))}
    if name in _NOISE_GRID:
        rows, cols = _NOISE_GRID[name]
        params["noise"] = rng.random((rows + 1, cols + 1), dtype=np.float32)
    return params


def _value_noise(grid: np.ndarray, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a coarse random grid over the unit square."""
    rows, cols = grid.shape[0] - 1, grid.shape[1] - 1
    gx, gy = X * cols, Y * rows
    ix = np.minimum(gx.astype(np.intp), cols - 1)
    iy = np.minimum(gy.astype(np.intp), rows - 1)
    fx, fy = gx - ix, gy - iy
    top = grid[iy, ix] * (1 - fx) + grid[iy, ix + 1] * fx
    bottom = grid[iy + 1, ix] * (1 - fx) + grid[iy + 1, ix + 1] * fx
    return top * (1 - fy) + bottom * fy


def _pattern(name: str, p: dict, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    tau = 2 * np.pi
    along = X * p["cos"] + Y * p["sin"]
    across = X * p["sin"] - Y * p["cos"]
    f = p["freq"]
    shape = (Y.shape[0], X.shape[1])
    if name == "striped":
        out = np.sin(tau * f * along + p["phase"]) > 0
    elif name == "wood":
        out = 0.5 + 0.5 * np.sin(tau * f * 2 * (along + 0.03 * np.sin(tau * 4 * across)) + p["phase"])
    elif name == "metal":
        out = 0.5 + 0.5 * np.cos(tau * (1.5 * along) + p["phase"]) ** 3
    elif name == "fabric":
        n = 4 * f
        out = (np.floor(X * n) + np.floor(Y * n)) % 2
    elif name == "water":
        out = 0.5 + 0.5 * np.sin(tau * f * 2 * (Y + 0.015 * np.sin(tau * 6 * X + p["phase"])))
    elif name == "dotted":
        n = f
        out = ((X * n) % 1 - 0.5) ** 2 + ((Y * n) % 1 - 0.5) ** 2 < 0.07
    elif name == "checkered":
        n = f * 0.7
        out = (np.floor(along * n) + np.floor(across * n)) % 2
    elif name == "zigzagged":
        out = (f * Y + 2 * np.abs((X * f) % 1 - 0.5)) % 1 < 0.5
    elif name == "grid":
        n = f
        out = ((X * n) % 1 < 0.15) | ((Y * n) % 1 < 0.15)
    elif name in _NOISE_GRID:
        out = _value_noise(p["noise"], X, Y)
        if name == "blotchy":
            out = out > 0.5
        elif name == "snow":
            out = 0.75 + 0.25 * out
    else:
        raise ValueError(name)
    return np.broadcast_to(np.asarray(out, dtype=np.float32), shape)


# --- tables ------------------------------------------------------------------------------------------------------


class _Tally:
    """Per-label image counts and coverage, overall and per category, in internal codes."""

    def __init__(self, pixels: int):
        size = len(_NAMES) + 1
        self.pixels = pixels
        self.frequency = np.zeros(size, dtype=np.int64)
        self.coverage = np.zeros(size, dtype=np.float64)
        self.category_frequency = {c: np.zeros(size, dtype=np.int64) for c in CATEGORIES}
        self.category_coverage = {c: np.zeros(size, dtype=np.float64) for c in CATEGORIES}
        self.annotating = dict.fromkeys(CATEGORIES, 0)  # images whose cell for the category is non-empty

    def add(self, image: _Drawn) -> None:
        fraction = {}  # code -> fraction of the image it covers, over all its categories
        for category, layers in image.pixel.items():
            self.annotating[category] += 1
            stack = np.stack(layers)
            for code in np.unique(stack[stack > 0]).tolist():
                share = np.any(stack == code, axis=0).sum() / self.pixels
                self.category_frequency[category][code] += 1
                self.category_coverage[category][code] += share
                fraction[code] = max(fraction.get(code, 0.0), share)
        for category, codes in image.whole.items():
            self.annotating[category] += 1
            for code in codes:
                self.category_frequency[category][code] += 1
                self.category_coverage[category][code] += 1.0
                fraction[code] = 1.0
        for code, share in fraction.items():
            self.frequency[code] += 1
            self.coverage[code] += share


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _write_tables(out: Path, tally: _Tally, used: list[int], rows: list[list]) -> dict[int, tuple[str, str]]:
    """index.csv, label.csv, category.csv and c_<category>.csv; returns number -> (name, primary category)."""
    _write_csv(out / "index.csv", ["image", "split", "ih", "iw", "sh", "sw", *CATEGORIES], rows)
    vocabulary = {}
    label_rows = []
    members = {c: [] for c in CATEGORIES}  # category -> [(number, code)]
    for number, code in enumerate(used, start=1):
        counts = [(c, int(tally.category_frequency[c][code])) for c in CATEGORIES if tally.category_frequency[c][code]]
        counts.sort(key=lambda item: (-item[1], CATEGORIES.index(item[0])))  # stable: ties keep column order
        for c, _ in counts:
            members[c].append((number, code))
        # Primary category: the largest per-category coverage (c_<category>.csv), as NetDissect's loader decides;
        # ties go to the earlier category.
        shares = {c: tally.category_coverage[c][code] / tally.category_frequency[c][code] for c, _ in counts}
        vocabulary[number] = (_NAMES[code - 1], max(shares, key=lambda c: (shares[c], -CATEGORIES.index(c))))
        coverage = tally.coverage[code] / tally.frequency[code]
        label_rows.append([number, _NAMES[code - 1], ";".join(f"{c}({n})" for c, n in counts),
                           int(tally.frequency[code]), f"{coverage:.6f}", ""])
    _write_csv(out / "label.csv", ["number", "name", "category", "frequency", "coverage", "syns"], label_rows)

    category_rows = []
    for category in CATEGORIES:
        entries = members[category]
        numbers = [number for number, _ in entries]
        category_rows.append([category, min(numbers, default=0), max(numbers, default=0), len(entries),
                              tally.annotating[category]])
        code_rows = []
        for dense, (number, code) in enumerate(entries, start=1):
            frequency = int(tally.category_frequency[category][code])
            coverage = tally.category_coverage[category][code] / frequency
            code_rows.append([dense, number, _NAMES[code - 1], frequency, f"{coverage:.6f}"])
        _write_csv(out / f"c_{category}.csv", ["code", "number", "name", "frequency", "coverage"], code_rows)
    _write_csv(out / "category.csv", ["name", "first", "last", "count", "frequency"], category_rows)
    return vocabulary
