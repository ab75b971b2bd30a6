"""Runs that could not be written because the database went away (or its disk is full), kept in a file until
they can be.

    path = save(records, replace=False)      # $LCE_HOME/pending/<time>-<model>.runs.json.gz, mode 0600
    kept = keep(records, replace=False)       # the same, and why $LCE_HOME/pending could not take it (kept.refused)
    check_pending_dir()                       # $LCE_PENDING_DIR, before a dissection: a writable directory
    pending_files()                           # every saved file, in both places, oldest first

A file appears whole or not at all (lce.disk.write_atomically): a full disk leaves no empty or truncated file
behind. When LCE_HOME's file system cannot take it, the file goes to $LCE_PENDING_DIR (another file system, set
beforehand and checked before the dissection starts); when neither can, the runs are lost and the message says so.

The file is gzip'd JSON: a format name and version, the `--replace` of the command that made it, and every
RunRecord field. JSON writes floats with repr, which Python reads back to the same double, so the resumed run is
stored bit for bit as the direct write would have stored it.

A file is read back as any input file is, by lce.importers.pending_runs (load, resume: `lce ingest --resume PATH`).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from dataclasses import replace as with_fields  # `replace` is also the --replace flag here
from pathlib import Path

from lce.config import PENDING_DIR_ENV, lce_home, pending_dir_override
from lce.disk import mounted, no_space, write_atomically
from lce.errors import LceError
from lce.home import private_folder
from lce.records import RunRecord

FORMAT = "lce-pending-runs"
VERSION = 1


def pending_dir() -> Path:
    """$LCE_HOME/pending: where runs are kept first."""
    return lce_home() / "pending"


def pending_dirs() -> list[Path]:
    """The places pending runs are kept, in the order they are tried: $LCE_HOME/pending, then $LCE_PENDING_DIR."""
    places = [pending_dir()]
    override = pending_dir_override()
    if override is not None and override.absolute() != places[0].absolute():
        places.append(override)
    return places


def pending_files() -> list[Path]:
    """Every file of pending runs in pending_dirs(), oldest first (their names begin with the time they were
    saved); what `lce db status` lists and a plan stores first."""
    found = [path for folder in pending_dirs() if folder.is_dir() for path in folder.glob("*.runs.json.gz")
             if _saved_by_this_user(path)]
    return sorted(found, key=lambda path: (path.name, str(path)))


def _saved_by_this_user(path: Path) -> bool:
    """Whether `path` (a link: the link itself) is this user's: LCE_PENDING_DIR may be a shared folder such as
    /tmp, where another local user could plant a file whose runs a plan would store as this user. Such a file is
    neither listed nor stored; `lce ingest --resume PATH` still takes a file named on purpose."""
    try:
        return path.lstat().st_uid == os.geteuid()
    except OSError:
        return False


def check_pending_dir() -> None:
    """An LceError, before a dissection starts, when $LCE_PENDING_DIR is set but is no directory this user can
    write to: the runs would have nowhere to go when the database and LCE_HOME cannot take them."""
    override = pending_dir_override()
    if override is None:
        return
    problem = None
    if not override.exists():
        problem = "no such directory"
    elif not override.is_dir():
        problem = "not a directory"
    else:
        try:  # os.access says yes to root on a read-only mount: a file made (and gone at once) says it for certain
            tempfile.TemporaryFile(dir=override).close()
        except OSError as error:
            problem = f"cannot be written to ({error.strerror})"
    if problem:
        raise LceError(f"{PENDING_DIR_ENV}={str(override)!r}: {problem}. It is where an ingest keeps its runs when "
                       "neither the database nor LCE_HOME can take them; make it a writable directory (on another "
                       f"file system than LCE_HOME's), or unset {PENDING_DIR_ENV}. Nothing was dissected.")


@dataclass
class Kept:
    path: Path  # the file the runs are in
    refused: list[str] = field(default_factory=list)  # why earlier places could not take it ("PLACE: reason")


class NotKept(LceError):
    """No place could take the runs; the message says why for each place, and what to do."""


def save(records: list[RunRecord], replace: bool) -> Path:
    """Write the records to a new file under $LCE_HOME/pending/ (directory 0700, file 0600), or under
    $LCE_PENDING_DIR when that one cannot take it, and return its path (NotKept when neither can)."""
    return keep(records, replace).path


def keep(records: list[RunRecord], replace: bool) -> Kept:
    """save(), saying also why the places before the one that took the runs refused them."""
    model = re.sub(r"[^A-Za-z0-9._-]+", "_", records[0].model.name)[:60] if records else "none"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    document = {"format": FORMAT, "version": VERSION, "replace": replace, "saved": stamp,
                "runs": [_document(record) for record in records]}
    payload = gzip.compress(json.dumps(document, allow_nan=True).encode(), compresslevel=6, mtime=0)
    refused = []
    for folder in pending_dirs():
        try:
            return Kept(_save_in(folder, f"{stamp}-{model}", payload), refused)
        except OSError as error:
            reason = f"no space left on its file system{mounted(folder)}" if no_space(error) else \
                f"{error.strerror or error} ({error.filename or folder})"
            refused.append(f"{folder}: {reason}")
    advice = (f"set {PENDING_DIR_ENV} to a writable directory on another file system (it is checked before the "
              "next dissection starts) or free space, then run the same command again") \
        if pending_dir_override() is None else "free space in one of them, then run the same command again"
    raise NotKept(f"The runs could not be kept in a file either ({'; '.join(refused)}): this dissection is lost; "
                  f"{advice}.")


def _save_in(folder: Path, name: str, payload: bytes) -> Path:
    """A new file (a name not taken) in `folder` that holds `payload` whole; nothing left behind on failure."""
    if folder == pending_dir():
        # 0700 whatever the umask; a link the user put there (pending runs kept elsewhere) is followed, and its
        # target, maybe a shared folder, keeps its mode.
        private_folder(folder)
    for suffix in range(1000):
        path = folder / f"{name}{f'-{suffix}' if suffix else ''}.runs.json.gz"
        try:
            write_atomically(path, payload, mode=0o600, clobber=False)
        except FileExistsError:
            continue
        return path
    raise LceError(f"Could not create a new file in {folder} for the pending runs.")


def _document(record: RunRecord) -> dict:
    """The record as JSON-ready values (tallies pair by pair, whether a list or numpy columns; replicate labels
    as nested lists)."""
    document = {**asdict(with_fields(record, tallies=[], bootstrap=None)),
                "tallies": [asdict(tally) for tally in record.tallies]}
    for unit in document["units"]:  # NaN, the arithmetic's mark of an unknown measure (runs._known), as null:
        unit.update({key: None for key, value in unit.items() if value != value})  # the reader takes no NaN
    bootstrap = record.bootstrap
    if bootstrap is not None:
        labels = bootstrap.labels
        document["bootstrap"] = {
            "replicates": bootstrap.replicates, "blocks": bootstrap.blocks, "seed": bootstrap.seed,
            "alternatives": [list(row) for row in bootstrap.alternatives],
            "labels": None if labels is None else {"concepts": labels.concepts, "label": labels.label.tolist(),
                                                   "iou": labels.iou.tolist()}}
    return document
