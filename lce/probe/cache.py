"""The decode cache: every label PNG of a probe decoded once, kept as uint16 arrays in a memory-mapped file.

    cache = DecodeCache.build(probe, lce_home() / "cache")   # or reuse: built once per content hash
    cache.labels_of(position)                                 # the same ImageLabels as probe.labels_of()

Published tools decode the label PNGs again for every model and every pass; on a GPU, where the forward pass is
fast, that becomes the wall. The cache lives in <cache root>/<probe content hash>/: `layers.u16` (every label
layer of every image, in index order, sh x sw each) and `index.npz` (where each image's layers and whole-image
labels start, and the category of each). A changed dataset has another hash and so another cache. Two processes
building the same cache at once are serialised by a lock file, and a cache appears only complete (it is built
in a temporary directory and renamed into place).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lce.errors import LceError
from lce.probe.broden import Broden, read_label_png, unknown_labels
from lce.probe.labels import ImageLabels

LAYERS = "layers.u16"
INDEX = "index.npz"


@dataclass
class DecodeCache:
    directory: Path
    categories: list[str]
    lines: np.ndarray  # index.csv line of each cached image
    layer_start: np.ndarray  # (images + 1,) offsets into the layers
    layer_category: np.ndarray  # (layers,) index into categories
    whole_start: np.ndarray  # (images + 1,) offsets into whole_labels
    whole_labels: np.ndarray
    whole_category: np.ndarray
    seg_shape: tuple[int, int]
    _layers: np.ndarray | None = None

    @classmethod
    def path_for(cls, probe: Broden, cache_root: Path) -> Path:
        return cache_root / probe.content_sha256()

    @classmethod
    def build(cls, probe: Broden, cache_root: Path, workers: int = 0, progress=None) -> DecodeCache:
        """The probe's cache, decoding every label PNG first if no complete cache exists for its content."""
        if probe.split != "all":  # the cache holds every image; a split is a selection of them
            probe = Broden.open(probe.root)
        directory = cls.path_for(probe, cache_root)
        if (directory / INDEX).exists():
            return cls.load(directory)
        cache_root.mkdir(parents=True, exist_ok=True)
        with open(cache_root / f"{directory.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a second builder waits here, then finds the cache complete
            if not (directory / INDEX).exists():
                staging = Path(tempfile.mkdtemp(prefix=f"{directory.name}.", dir=cache_root))
                try:
                    _write(probe, staging, workers, progress)
                    os.rename(staging, directory)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
        return cls.load(directory)

    @classmethod
    def load(cls, directory: Path) -> DecodeCache:
        with np.load(directory / INDEX) as index:
            return cls(
                directory=directory,
                categories=[str(c) for c in index["categories"]],
                lines=index["lines"],
                layer_start=index["layer_start"],
                layer_category=index["layer_category"],
                whole_start=index["whole_start"],
                whole_labels=index["whole_labels"],
                whole_category=index["whole_category"],
                seg_shape=tuple(int(v) for v in index["seg_shape"]),
            )

    @property
    def layers(self) -> np.ndarray:
        """All label layers, memory-mapped (opened on first use, so the cache pickles cheaply to workers)."""
        if self._layers is None:
            count = int(self.layer_start[-1])
            self._layers = np.memmap(self.directory / LAYERS, dtype=np.uint16, mode="r",
                                     shape=(count, *self.seg_shape)) if count else np.zeros((0, *self.seg_shape),
                                                                                            np.uint16)
        return self._layers

    def __getstate__(self):
        return {**self.__dict__, "_layers": None}

    def __len__(self) -> int:
        return len(self.lines)

    def positions(self, probe: Broden) -> list[int]:
        """Where each image of `probe` (any split) sits in the cache."""
        by_line = {int(line): position for position, line in enumerate(self.lines)}
        return [by_line[row.line] for row in probe.rows]

    def labels_of(self, position: int) -> ImageLabels:
        labels = ImageLabels()
        start, end = self.layer_start[position], self.layer_start[position + 1]
        for slot in range(start, end):
            category = self.categories[self.layer_category[slot]]
            labels.pixel.setdefault(category, []).append(self.layers[slot].astype(np.int32))
        start, end = self.whole_start[position], self.whole_start[position + 1]
        for slot in range(start, end):
            category = self.categories[self.whole_category[slot]]
            labels.whole.setdefault(category, []).append(int(self.whole_labels[slot]))
        return labels


def _decode_row(job: tuple[Path, list[str], tuple[int, int], np.ndarray]) -> list[np.ndarray]:
    """The label layers of one image (run in worker processes); a corrupt or mis-sized PNG, or one with label
    numbers that label.csv lacks, is an LceError."""
    images, files, shape, known = job
    layers = []
    for name in files:
        path = images / name
        try:
            layer = read_label_png(path)
        except (OSError, SyntaxError, ValueError) as error:
            raise LceError(f"{path} cannot be decoded ({error}); `lce probe check --deep` lists every such file.")
        if layer.shape != shape:
            raise LceError(f"{path} is {layer.shape[1]}x{layer.shape[0]}, but index.csv says {shape[1]}x{shape[0]}.")
        unknown = unknown_labels(layer, known)
        if unknown.size:
            raise LceError(f"{path} holds label number(s) {', '.join(map(str, unknown[:5]))} that label.csv lacks.")
        if layer.max(initial=0) > np.iinfo(np.uint16).max:
            raise LceError(f"{path} holds label numbers above 65535, which the decode cache cannot store.")
        layers.append(layer.astype(np.uint16))
    return layers


def _write(probe: Broden, directory: Path, workers: int, progress) -> None:
    shapes = {(row.sh, row.sw) for row in probe.rows}
    if len(shapes) != 1:
        raise LceError(f"{probe.root / 'index.csv'} mixes segmentation sizes {sorted(shapes)}; the decode cache "
                       "needs one.")
    shape = shapes.pop()
    category_code = {category: code for code, category in enumerate(probe.categories)}
    layer_files = [[(c, name) for c in probe.categories for name in row.label_files(c)] for row in probe.rows]
    layer_start = np.zeros(len(probe.rows) + 1, dtype=np.int64)
    layer_start[1:] = np.cumsum([len(files) for files in layer_files])
    layer_category = np.array([category_code[c] for files in layer_files for c, _ in files], dtype=np.int8)
    whole = [[(c, n) for c in probe.categories for n in row.whole_labels(c)] for row in probe.rows]
    whole_start = np.zeros(len(probe.rows) + 1, dtype=np.int64)
    whole_start[1:] = np.cumsum([len(items) for items in whole])

    total = int(layer_start[-1])
    layers = np.memmap(directory / LAYERS, dtype=np.uint16, mode="w+", shape=(max(total, 1), *shape))
    known = np.array(sorted(probe.vocabulary), dtype=np.int64)
    jobs = [(probe.root / "images", [name for _, name in files], shape, known) for files in layer_files]
    pool = ProcessPoolExecutor(workers) if workers > 0 else None
    try:
        decoded = pool.map(_decode_row, jobs, chunksize=16) if pool else map(_decode_row, jobs)
        for position, image_layers in enumerate(decoded):
            start = layer_start[position]
            for offset, layer in enumerate(image_layers):
                layers[start + offset] = layer
            if progress is not None:
                progress(position + 1, len(jobs))
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    layers.flush()
    del layers
    np.savez(
        directory / INDEX,
        categories=np.array(probe.categories),
        lines=np.array([row.line for row in probe.rows], dtype=np.int64),
        layer_start=layer_start,
        layer_category=layer_category,
        whole_start=whole_start,
        whole_labels=np.array([n for items in whole for _, n in items], dtype=np.int32),
        whole_category=np.array([category_code[c] for items in whole for c, _ in items], dtype=np.int8),
        seg_shape=np.array(shape),
    )
