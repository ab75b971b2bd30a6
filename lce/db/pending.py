"""Runs that could not be written because the database went away (or its disk is full), kept in a file until
they can be.

    path = save(records, replace=False)      # $LCE_HOME/pending/<time>-<model>.runs.json.gz, mode 0600
    kept = keep(records, replace=False)       # the same, and why $LCE_HOME/pending could not take it (kept.refused)
    check_pending_dir()                       # $LCE_PENDING_DIR, before a dissection: a writable directory
    pending_files()                           # every saved file, in both places, oldest first
    written = resume(path)                    # `lce ingest --resume PATH`: one transaction, then the file goes

A file appears whole or not at all (lce.disk.write_atomically): a full disk leaves no empty or truncated file
behind. When LCE_HOME's file system cannot take it, the file goes to $LCE_PENDING_DIR (another file system, set
beforehand and checked before the dissection starts); when neither can, the runs are lost and the message says so.

The file is gzip'd JSON: a format name and version, the `--replace` of the command that made it, and every
RunRecord field. JSON writes floats with repr, which Python reads back to the same double, so the resumed run is
stored bit for bit as the direct write would have stored it.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from dataclasses import replace as with_fields  # `replace` is also the --replace flag here
from pathlib import Path

import numpy as np

from lce.config import PENDING_DIR_ENV, lce_home, pending_dir_override, write_retry_s
from lce.db.runs import Bootstrap, ModelInfo, ReplicateLabels, RunRecord, TallyRow, UnitRow, WrittenRun, write_runs
from lce.disk import mounted, no_space, write_atomically
from lce.errors import LceError

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
    found = [path for folder in pending_dirs() if folder.is_dir() for path in folder.glob("*.runs.json.gz")]
    return sorted(found, key=lambda path: (path.name, str(path)))


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
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask, and the folder may exist already
    for suffix in range(1000):
        path = folder / f"{name}{f'-{suffix}' if suffix else ''}.runs.json.gz"
        try:
            write_atomically(path, payload, mode=0o600, clobber=False)
        except FileExistsError:
            continue
        return path
    raise LceError(f"Could not create a new file in {folder} for the pending runs.")


def load(path: Path) -> tuple[list[RunRecord], bool]:
    """(records, replace) from a file that save() wrote; one LceError naming the file for anything else."""
    try:
        document = json.loads(gzip.decompress(Path(path).read_bytes()))
    except FileNotFoundError:
        raise LceError(f"--resume {path}: no such file.") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as error:
        raise LceError(f"--resume {path}: not a file of pending runs that lce saved (it is not gzip'd JSON: "
                       f"{error}). Nothing was written.") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise LceError(f"--resume {path}: not a file of pending runs that lce saved (no format {FORMAT!r}). "
                       "Nothing was written.")
    if document.get("version") != VERSION:
        raise LceError(f"--resume {path}: pending-runs format version {document.get('version')!r}; this lce reads "
                       f"version {VERSION}. Nothing was written.")
    try:
        records = [_record(run) for run in document["runs"]]
        replace = bool(document["replace"])
    except (KeyError, TypeError, ValueError) as error:
        raise LceError(f"--resume {path}: a run in it is damaged or incomplete ({type(error).__name__}: {error}). "
                       "Nothing was written.") from None
    if not records:
        raise LceError(f"--resume {path}: the file holds no runs. Nothing was written.")
    return records, replace


def resume(path: Path, replace: bool | None = None, retry_s: float | None = None) -> list[WrittenRun]:
    """Write the file's runs in one transaction (the same replace / unchanged rules as the command that saved
    them, or `replace` when given), then delete the file. When the database is still away the file stays."""
    from lce.db.connection import connect
    from lce.db.outage import DatabaseFull, DatabaseLost

    records, saved_replace = load(path)
    replace = saved_replace if replace is None else replace
    try:
        written = write_runs(connect(), records, replace=replace,
                             retry_s=write_retry_s() if retry_s is None else retry_s)
    except DatabaseLost as error:
        raise LceError(f"{error.gone()} Nothing was written; the runs stay in {path} for `lce ingest --resume {path}` "
                       "once the database is back.") from None
    except DatabaseFull as error:
        raise LceError(f"{error.full()} Nothing was written; the runs stay in {path} for `lce ingest --resume "
                       f"{path}`: {error.remedy()}, then run it again.") from None
    Path(path).unlink()
    return written


def _document(record: RunRecord) -> dict:
    """The record as JSON-ready values (tallies pair by pair, whether a list or numpy columns; replicate labels
    as nested lists)."""
    document = {**asdict(with_fields(record, tallies=[], bootstrap=None)),
                "tallies": [asdict(tally) for tally in record.tallies]}
    bootstrap = record.bootstrap
    if bootstrap is not None:
        labels = bootstrap.labels
        document["bootstrap"] = {
            "replicates": bootstrap.replicates, "blocks": bootstrap.blocks, "seed": bootstrap.seed,
            "alternatives": [list(row) for row in bootstrap.alternatives],
            "labels": None if labels is None else {"concepts": labels.concepts, "label": labels.label.tolist(),
                                                   "iou": labels.iou.tolist()}}
    return document


def _bootstrap(document: dict | None, concept) -> Bootstrap | None:
    if document is None:
        return None
    labels = document["labels"]
    return Bootstrap(
        replicates=document["replicates"], blocks=document["blocks"], seed=document["seed"],
        alternatives=[(unit, concept(key), share) for unit, key, share in document["alternatives"]],
        labels=None if labels is None else ReplicateLabels(
            concepts=[concept(key) for key in labels["concepts"]],
            label=np.array(labels["label"], dtype=np.int64).reshape(len(labels["label"]), -1),
            iou=np.array(labels["iou"], dtype=np.float32).reshape(len(labels["iou"]), -1)))


def _record(run: dict) -> RunRecord:
    def concept(value) -> tuple[str, str] | None:
        if value is None:
            return None
        category, name = value
        return str(category), str(name)

    return RunRecord(
        model=ModelInfo(**run["model"]),
        probe=run["probe"], layer=run["layer"], variant=run["variant"], quantile=run["quantile"],
        iou_threshold=run["iou_threshold"], source=run["source"],
        units=[UnitRow(**{**u, "concept": concept(u["concept"]), "runner_up": concept(u.get("runner_up"))})
               for u in run["units"]],
        tallies=[TallyRow(unit=t["unit"], concept=concept(t["concept"]), intersection=t["intersection"],
                          activation=t["activation"], truth=t["truth"], iou=t["iou"]) for t in run["tallies"]],
        seg_size=run["seg_size"], settings=run["settings"],
        top_images=[tuple(row) for row in run["top_images"]],
        bootstrap=_bootstrap(run.get("bootstrap"), concept), control=bool(run.get("control", False)),
    )
