"""The manifest of the files a decode cache is built from: every CSV and label PNG, to the byte.

    manifest = Manifest([file_entry(probe.root, path) for path in manifest_files(probe)])
    manifest.key                                            # names the decode cache's directory
    manifest.stat_changes(probe.root, manifest_files(probe))  # files whose size or mtime differ (a stat each)

An entry is (path relative to the probe root, size, modification time in ns, sha256). The key hashes paths, sizes
and content only, so a copy or a `touch` finds the same cache after its files are hashed again; the sizes and
mtimes are for the cheap check `lce ingest` makes before reading labels from the cache. Kept apart from the probe
table's content_sha256 (a hash of the CSV files alone), so stored probes keep their hash.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from lce.disk import write_atomically
from lce.input_files import check_input
from lce.probe.broden import Broden

CSV_FILES = ("index.csv", "label.csv", "category.csv")


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the probe root, '/'-separated
    size: int
    mtime_ns: int
    sha256: str


def manifest_files(probe: Broden) -> list[str]:
    """The files a decode cache of `probe` is derived from: its CSVs, then every label PNG in index order."""
    csvs = [name for name in CSV_FILES if (probe.root / name).is_file()]
    csvs += sorted(path.name for path in probe.root.glob("c_*.csv"))
    labels = dict.fromkeys(f"images/{name}" for row in probe.rows for c in probe.categories
                           for name in row.label_files(c))
    return csvs + list(labels)


def file_entry(root: Path, relative: str, content: bytes | None = None) -> FileEntry:
    """The entry of one file; `content` when the caller has already read its bytes (stat first: a file written
    in between then differs by mtime and is hashed again later, never trusted)."""
    path = root / relative
    stat = check_input(path)  # a regular file: a FIFO named c_*.csv or images/*.png would wait for a writer
    if content is None:
        content = path.read_bytes()
    return FileEntry(relative, len(content), stat.st_mtime_ns, hashlib.sha256(content).hexdigest())


@dataclass
class Manifest:
    entries: list[FileEntry]

    @property
    def key(self) -> str:
        digest = hashlib.sha256()
        for entry in sorted(self.entries, key=lambda e: e.path):
            digest.update(f"{entry.path}\0{entry.size}\0{entry.sha256}\n".encode())
        return digest.hexdigest()

    def stat_changes(self, root: Path, expected: list[str]) -> list[str]:
        """Paths (relative) that are missing, have another size or mtime, or that `expected` (the files the probe
        names now) and the manifest do not share."""
        known = {entry.path: entry for entry in self.entries}
        changed = [path for path in expected if path not in known]
        listed = set(expected)
        for entry in self.entries:
            if entry.path not in listed:
                changed.append(entry.path)
                continue
            try:
                stat = os.stat(root / entry.path)
            except OSError:
                changed.append(entry.path)
                continue
            if stat.st_size != entry.size or stat.st_mtime_ns != entry.mtime_ns:
                changed.append(entry.path)
        return changed

    def with_entries(self, updated: list[FileEntry]) -> Manifest:
        by_path = {entry.path: entry for entry in updated}
        return Manifest([by_path.get(entry.path, entry) for entry in self.entries])

    def write(self, path: Path) -> None:
        """Written to a temporary file and renamed, so a reader sees the old manifest or the new one."""
        write_atomically(path, json.dumps({"files": [[e.path, e.size, e.mtime_ns, e.sha256]
                                                     for e in self.entries]}).encode(), mode=0o644)

    @classmethod
    def read(cls, path: Path) -> Manifest:
        return cls([FileEntry(*item) for item in json.loads(path.read_text())["files"]])
