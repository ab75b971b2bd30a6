"""The decode cache: every label PNG of a probe decoded once, kept as uint16 arrays in a memory-mapped file.

    cache = DecodeCache.build(probe, lce_home() / "cache")      # hash the files; reuse a cache of the same content
    cache = DecodeCache.open(probe, lce_home() / "cache")       # ingest: a stat of each file instead of hashing
    cache.labels_of(position)                                    # the same ImageLabels as probe.labels_of()

Published tools decode the label PNGs again for every model and every pass; on a GPU, where the forward pass is
fast, that becomes the wall. The cache lives in <cache root>/<manifest key>/: `layers.u16` (every label layer of
every image, in index order, sh x sw each), `index.npz` (where each image's layers and whole-image labels start,
and the category of each) and `manifest.json` (path, size, mtime and sha256 of every CSV and label PNG it was
built from, lce/probe/manifest.py). A changed PNG or CSV has another key and so another cache: labels are never
stale. `probes/<hash of the probe's path>.json` says which cache the probe at that path was last checked against,
so that `open` can compare sizes and mtimes without hashing. Two processes building the same cache at once are
serialised by a lock file, and a cache appears only complete (it is built in a temporary directory and renamed
into place). Everything under the cache root is its OS user's alone (folders 0700, files 0600: lce/home.py): the
pointers name probe paths. A full disk is one LceError naming the file system, and leaves nothing half-written
behind: the layers are written with write(), never through a memory map (whose pages a full file system would
answer with SIGBUS, killing the process), and the temporary directory goes.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lce.disk import full_message, no_space, write_atomically
from lce.errors import LceError
from lce.home import make_private, open_private, private_folder
from lce.probe.broden import Broden, read_label_png, unknown_labels
from lce.probe.labels import ImageLabels
from lce.probe.manifest import FileEntry, Manifest, file_entry, manifest_files

LAYERS = "layers.u16"
INDEX = "index.npz"
MANIFEST = "manifest.json"
POINTERS = "probes"
SHOWN_FILES = 10

Progress = Callable[[str, int, int], None]  # (phase, done, total)


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
    built: bool = False  # this call decoded the labels (False: a cache of the same content existed)
    _layers: np.ndarray | None = None

    @classmethod
    def build(cls, probe: Broden, cache_root: Path, workers: int = 0, progress: Progress | None = None,
              images: bool = False, trust_stat: bool = False) -> DecodeCache:
        """The probe's cache. Every CSV and label PNG is hashed (with `trust_stat`, only those whose size or mtime
        differ from the manifest this probe's path was last checked against); a cache of the same content is
        reused, else the PNGs are decoded into a new one. `images`: decode every image as well, in the same pass,
        so that a truncated JPEG is an LceError naming it and its index.csv line."""
        if probe.split != "all":  # the cache holds every image; a split is a selection of them
            probe = Broden.open(probe.root)
        private_folder(cache_root)
        files = manifest_files(probe)
        trusted: dict[str, FileEntry] = {}
        previous = _last_checked(probe.root, cache_root)
        if trust_stat and previous is not None:
            changed = set(previous[1].stat_changes(probe.root, files))
            trusted = {entry.path: entry for entry in previous[1].entries if entry.path not in changed}
        try:
            return cls._build(probe, cache_root, workers, progress, images, trusted, files)
        except OSError as error:
            if not no_space(error):
                raise
            raise LceError(full_message(error if error.filename else cache_root,
                                        f"The decode cache of the probe at {probe.root}",
                                        "Nothing of it is kept, and nothing was stored.")) from None

    @classmethod
    def _build(cls, probe: Broden, cache_root: Path, workers: int, progress: Progress | None, images: bool,
               trusted: dict[str, FileEntry], files: list[str]) -> DecodeCache:
        built = False
        with _mapper(workers) as mapper:
            manifest = _scan(probe, files, trusted, images, mapper, progress)
            directory = cache_root / manifest.key
            if not (directory / INDEX).exists():
                with _locked(cache_root, directory.name):  # a second builder waits here, then finds it complete
                    if not (directory / INDEX).exists():
                        staging = Path(tempfile.mkdtemp(prefix=f"{directory.name}.", dir=cache_root))
                        try:
                            _write(probe, staging, manifest, mapper, progress)
                            manifest.write(staging / MANIFEST)
                            make_private(staging)  # np.memmap and np.savez create files by the umask
                            os.rename(staging, directory)
                            built = True
                        finally:
                            shutil.rmtree(staging, ignore_errors=True)
        _refresh(directory, manifest)
        _point(probe.root, cache_root, directory.name)
        cache = cls.load(directory)
        cache.built = built
        return cache

    @classmethod
    def open(cls, probe: Broden, cache_root: Path, workers: int = 0, name: str = "NAME") -> DecodeCache:
        """The cache last built or checked for the probe at this path, once the sizes and mtimes of its files
        match the manifest (a stat each, no hashing). Files that differ are hashed: the same content only
        refreshes the manifest; other content is an LceError naming the files (`lce probe add` again checks them
        and builds a new cache), never stale labels. With no cache yet for this path, one is built."""
        if probe.split != "all":
            probe = Broden.open(probe.root)
        previous = _last_checked(probe.root, cache_root)
        if previous is None:
            return cls.build(probe, cache_root, workers)
        directory, manifest = previous
        changed = manifest.stat_changes(probe.root, manifest_files(probe))
        if changed:
            known = {entry.path: entry for entry in manifest.entries}
            same, differ = [], []
            for relative in changed:
                try:
                    entry = file_entry(probe.root, relative)
                except OSError:
                    differ.append(f"{relative} (missing)")
                    continue
                old = known.get(relative)
                if old is None:
                    differ.append(f"{relative} (new)")
                elif (old.size, old.sha256) != (entry.size, entry.sha256):
                    differ.append(f"{relative} ({old.size} -> {entry.size} bytes)")
                else:
                    same.append(entry)
            if differ:
                shown = ", ".join(differ[:SHOWN_FILES]) + (f" and {len(differ) - SHOWN_FILES} more"
                                                            if len(differ) > SHOWN_FILES else "")
                raise LceError(f"{len(differ)} file(s) of the probe at {probe.root} changed since its decode cache "
                               f"was built: {shown}. Run `lce probe add {name} {probe.root}` to check them and "
                               "build a new cache; stale labels are never read. Nothing was written.")
            _refresh(directory, manifest.with_entries(same))
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
    def manifest(self) -> Manifest:
        return Manifest.read(self.directory / MANIFEST)

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


def _pointer(root: Path, cache_root: Path) -> Path:
    return cache_root / POINTERS / f"{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:32]}.json"


def _last_checked(root: Path, cache_root: Path) -> tuple[Path, Manifest] | None:
    """(directory, manifest) of the cache the probe at `root` was last built or checked against, if still there."""
    try:
        directory = cache_root / json.loads(_pointer(root, cache_root).read_text())["cache"]
        if (directory / INDEX).exists():
            return directory, Manifest.read(directory / MANIFEST)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _point(root: Path, cache_root: Path, name: str) -> None:
    pointer = _pointer(root, cache_root)
    private_folder(pointer.parent)
    write_atomically(pointer, json.dumps({"root": str(root.resolve()), "cache": name}).encode())


def _refresh(directory: Path, manifest: Manifest) -> None:
    """Record the files' current mtimes in a cache of the same content (after a copy or a touch)."""
    if Manifest.read(directory / MANIFEST).entries != manifest.entries:
        with _locked(directory.parent, directory.name):
            manifest.write(directory / MANIFEST)
            make_private(directory / MANIFEST)


@contextmanager
def _locked(cache_root: Path, name: str):
    with open_private(cache_root / f"{name}.lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@contextmanager
def _mapper(workers: int):
    """map(), or a process pool's map when workers > 0."""
    if workers <= 0:
        yield map
        return
    pool = ProcessPoolExecutor(workers)
    try:
        yield lambda function, jobs: pool.map(function, jobs, chunksize=16)
    finally:
        pool.shutdown(cancel_futures=True)


def _scan(probe: Broden, files: list[str], trusted: dict[str, FileEntry], images: bool, mapper,
          progress: Progress | None) -> Manifest:
    """The manifest of `files` (hashing all but the trusted ones), decoding every image too when `images`."""
    entries = {path: file_entry(probe.root, path) for path in files if not path.startswith("images/")}
    entries.update(trusted)
    jobs, claimed = [], set(entries)
    for row in probe.rows:
        paths = [f"images/{name}" for c in probe.categories for name in row.label_files(c)]
        paths = [path for path in dict.fromkeys(paths) if path not in claimed]
        claimed.update(paths)
        jobs.append((probe.root, row.image if images else None, row.line, paths))
    phase = "decoding images, hashing labels" if images else "hashing label files"
    for done, found in enumerate(mapper(_scan_row, jobs), start=1):
        entries.update((entry.path, entry) for entry in found)
        if progress is not None:
            progress(phase, done, len(jobs))
    return Manifest([entries[path] for path in files])


def _scan_row(job: tuple[Path, str | None, int, list[str]]) -> list[FileEntry]:
    """The manifest entries of one row's label files, after decoding its image if given (run in workers)."""
    from PIL import Image

    root, image, line, paths = job
    if image is not None:
        path = root / "images" / image
        try:
            with Image.open(path) as picture:
                picture.load()
        except (OSError, SyntaxError, ValueError) as error:
            raise LceError(f"{path} (index.csv line {line}) cannot be decoded ({error}); `lce probe check --deep` "
                           "lists every such file.")
    entries = []
    for relative in paths:
        try:
            entries.append(file_entry(root, relative))
        except OSError as error:
            raise LceError(f"{root / relative} (index.csv line {line}) cannot be read ({error}).")
    return entries


def _decode_row(job: tuple[Path, list[str], list[str], tuple[int, int], np.ndarray, int]) -> list[np.ndarray]:
    """The label layers of one image (run in worker processes); a corrupt or mis-sized PNG, one with label numbers
    that label.csv lacks, or one whose bytes no longer match the manifest, is an LceError."""
    images, files, hashes, shape, known, line = job
    layers = []
    for name, sha256 in zip(files, hashes):
        path = images / name
        try:
            content = path.read_bytes()
            if hashlib.sha256(content).hexdigest() != sha256:
                raise LceError(f"{path} changed while the decode cache was being built from it; run the command "
                               "again.")
            layer = read_label_png(io.BytesIO(content))
        except (OSError, SyntaxError, ValueError) as error:
            raise LceError(f"{path} cannot be decoded ({error}; index.csv line {line}); `lce probe check --deep` "
                           "lists every such file.")
        if layer.shape != shape:
            raise LceError(f"{path} is {layer.shape[1]}x{layer.shape[0]}, but index.csv says {shape[1]}x{shape[0]}.")
        unknown = unknown_labels(layer, known)
        if unknown.size:
            raise LceError(f"{path} holds label number(s) {', '.join(map(str, unknown[:5]))} that label.csv lacks.")
        if layer.max(initial=0) > np.iinfo(np.uint16).max:
            raise LceError(f"{path} holds label numbers above 65535, which the decode cache cannot store.")
        layers.append(layer.astype(np.uint16))
    return layers


def _write(probe: Broden, directory: Path, manifest: Manifest, mapper, progress: Progress | None) -> None:
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
    known = np.array(sorted(probe.vocabulary), dtype=np.int64)
    sha256 = {entry.path: entry.sha256 for entry in manifest.entries}
    jobs = [(probe.root / "images", [name for _, name in files], [sha256[f"images/{name}"] for _, name in files],
             shape, known, row.line) for files, row in zip(layer_files, probe.rows)]
    # Written in order (the mapper keeps the images' order, each image's layers are consecutive), with write():
    # a full disk is then an OSError here, where through a memory map it would be SIGBUS.
    with open(directory / LAYERS, "wb") as layers:
        for position, image_layers in enumerate(mapper(_decode_row, jobs)):
            for layer in image_layers:
                layers.write(np.ascontiguousarray(layer, dtype=np.uint16).tobytes())
            if progress is not None:
                progress("decoding labels", position + 1, len(jobs))
        if total == 0:  # one blank layer, as the memory map this replaced made (never read: no layer starts there)
            layers.write(bytes(2 * shape[0] * shape[1]))
        layers.flush()
        os.fsync(layers.fileno())
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
