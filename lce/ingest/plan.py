"""Many models from one plan: a CSV with a row per model, every row checked before any work, then run.

    rows = check_plan(read_plan(Path("plan.csv"), defaults={"probe": "synth"}, shard=(1, 2)))
    print([(row.line, row.model, row.status, row.reason) for row in rows])   # to do | done | invalid
    results = run_plan(rows, progress)   # each "to do" row through lce.ingest.run.ingest, failures isolated
    results = run_plan(rows, progress, executor="local", devices=["cuda:0", "cuda:1"])   # or "ray" (executors.py)

A plan's columns are `model` and the per-model options of `lce ingest`, long names with underscores (`layer`
holds several layers separated by `;`); an empty cell takes the command line's value (`defaults`). A row already
stored with the same checkpoint and settings is "done" and is not dissected again, so a plan killed midway and run
again does only what is missing (each run is written in one transaction by ingest()).
"""

from __future__ import annotations

import csv
import gc
import io
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from lce.config import pick_device
from lce.db.connection import connect
from lce.db.pending import pending_files
from lce.dissect.engine import DissectSettings, Progress
from lce.errors import LceError
from lce.ingest.executors import run_rows
from lce.ingest.resume import store_file
from lce.ingest.rows import PlanRow, RowResult
from lce.ingest.run import IngestRequest, check_rgb, layer_layouts, missing_controls, model_spec, stored_runs
from lce.input_files import PLAN_LIMITS, read_text
from lce.probe.registry import open_registered_probe
from lce.vocabulary import DEFAULT_BLOCKS, DEFAULT_REPLICATES, DEFAULT_VARIANT, IOU_CUTOFF

TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no")
# lce ingest's own defaults, under the `defaults` a caller gives.
OPTION_DEFAULTS = {"variant": DEFAULT_VARIANT, "iou_threshold": IOU_CUTOFF, "batch_size": 32, "workers": 0,
                   "cache_budget": "2G", "random_init": False, "seed": 0, "device": "auto", "split": "all",
                   "replace": False, "tf32": "on", "replicates": DEFAULT_REPLICATES, "blocks": DEFAULT_BLOCKS,
                   "random_control": False, "control_seed": None}
LAYER_SEPARATOR = ";"


def parse_bytes(text: str) -> int:
    """'2G', '512M', '100k' or a plain number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)i?[bB]?\s*", text)
    if not match:
        raise LceError(f"--cache-budget {text!r} is not a size such as 2G, 512M or 0.")
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


def parse_rgb(option: str, text: str | None) -> tuple[float, ...] | None:
    """'0.485,0.456,0.406' as floats (checked by the library: three, std positive); None stays None."""
    if text is None:
        return None
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    check_rgb(option, values, given=text)  # here too, so that the message quotes what was typed
    return values


def parse_bool(option: str, text: str) -> bool:
    if text.strip().lower() in TRUE:
        return True
    if text.strip().lower() in FALSE:
        return False
    raise LceError(f"{option} {text!r} should be true or false (or 1/0, yes/no).")


def _number(kind: type) -> Callable[[str, str], object]:
    def parse(option: str, text: str):
        try:
            return kind(text.strip())
        except ValueError:
            raise LceError(f"{option} {text!r} is not {'an integer' if kind is int else 'a number'}.") from None
    return parse


def _text(option: str, text: str) -> str:
    return text.strip()


def _layers(option: str, text: str) -> list[str]:
    return [name.strip() for name in text.split(LAYER_SEPARATOR) if name.strip()]


# Every column a plan may have, with how its cell is read: the options of `lce ingest` that belong to one model.
COLUMNS: dict[str, Callable[[str, str], object]] = {
    "model": _text, "probe": _text, "arch": _text, "checkpoint": lambda option, text: Path(text.strip()),
    "layer": _layers, "variant": _text, "quantile": _number(float), "iou_threshold": _number(float),
    "seg_size": _number(int), "random_init": parse_bool, "seed": _number(int), "layout": _text,
    "prefix_tokens": _number(int), "mean": _text, "std": _text, "tf32": _text, "batch_size": _number(int),
    "workers": _number(int), "cache_budget": _text, "split": _text, "device": _text, "replace": parse_bool,
    "random_control": parse_bool, "control_seed": _number(int), "replicates": _number(int),
    "blocks": _number(int),
}


def build_request(options: dict) -> IngestRequest:
    """The IngestRequest of `lce ingest`'s options (names as COLUMNS; layer a list, cache_budget, mean and std as
    typed), parsed as the command parses them; the settings check their own values."""
    if not options.get("probe"):
        raise LceError("Missing --probe NAME: the registered probe dataset to dissect over (lce probe list), on the "
                       "command line or in a probe column.")
    settings = DissectSettings.for_variant(
        options["variant"], quantile=options.get("quantile"), iou_threshold=options["iou_threshold"],
        seg_size=options.get("seg_size"), batch_size=options["batch_size"], workers=options["workers"],
        cache_budget=parse_bytes(options["cache_budget"]), replicates=options["replicates"],
        blocks=options["blocks"])
    return IngestRequest(
        model=options["model"], probe=options["probe"], layers=list(options.get("layer") or []), settings=settings,
        arch=options.get("arch"), checkpoint=options.get("checkpoint"), random_init=options["random_init"],
        seed=options["seed"], device=options["device"], split=options["split"], replace=options["replace"],
        layout=options.get("layout"), prefix_tokens=options.get("prefix_tokens"),
        mean=parse_rgb("--mean", options.get("mean")), std=parse_rgb("--std", options.get("std")),
        tf32=options["tf32"],
        random_control=options.get("random_control", False), control_seed=options.get("control_seed") or 0)


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' (1 <= K <= N) as (K, N)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise LceError(f"--shard {text!r} should be K/N with 1 <= K <= N (e.g. 1/4): this process runs every N-th "
                       "row of the plan, from its K-th.")
    return int(match.group(1)), int(match.group(2))


def read_plan(path: Path, defaults: dict, shard: tuple[int, int] | None = None) -> list[PlanRow]:
    """The plan's data rows (only shard K of N: row i, from 0 in file order, when i % N == K - 1), each with its
    options: `defaults` (the command line's) under the row's non-empty cells. One LceError naming the file for a
    file that is not a readable CSV, has no `model` column, or a column that is no option of lce ingest."""
    rows: list[PlanRow] = []
    text = read_text(path, PLAN_LIMITS, name=f"Plan {path}")  # a regular file, within the limits, UTF-8
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        unknown = [name for name in header if name.strip() not in COLUMNS]
        if unknown:
            raise LceError(f"Plan {path}: column {unknown[0]!r} is not an option of lce ingest; the columns are "
                           f"model and any of {', '.join(name for name in COLUMNS if name != 'model')} (long "
                           "option names with underscores).")
        if "model" not in [name.strip() for name in header]:
            raise LceError(f"Plan {path}: no 'model' column; its first line should name the columns, e.g. "
                           "model,arch,checkpoint,layer.")
        for index, cells in enumerate(reader):
            if shard is not None and index % shard[1] != shard[0] - 1:
                continue
            options, error = {**OPTION_DEFAULTS, **defaults}, ""
            if None in cells:
                error = f"the row has {len(header) + len(cells[None])} cells for {len(header)} columns"
            for name, cell in cells.items():
                if name is None or cell is None or not cell.strip():
                    continue
                try:
                    options[name.strip()] = COLUMNS[name.strip()](f"--{name.strip().replace('_', '-')}", cell)
                except LceError as bad:
                    error = error or str(bad)
            rows.append(PlanRow(reader.line_num, str(options.get("model") or ""), options, error))
    except csv.Error as error:
        raise LceError(f"Plan {path} is not a readable CSV file ({error}).") from None
    return rows


class _Probes:
    """Each probe (and split) registered, opened and its content checked once for the whole plan."""

    def __init__(self, engine):
        self.engine, self.opened = engine, {}

    def __call__(self, name: str, split: str):
        if (name, split) not in self.opened:
            self.opened[(name, split)] = open_registered_probe(self.engine, name, split)[1]
        return self.opened[(name, split)]


def check_plan(rows: list[PlanRow]) -> list[PlanRow]:
    """Check every row as ingest() would before it dissects (the request's values, the probe, the zoo entry or
    architecture, the checkpoint loaded, the layers in the built model and their layouts) and say whether its runs
    are stored already: status "to do", "done" or "invalid" with the reason (the LceError's message, or the
    exception of a checkpoint that does not load). The rows come back, filled in.

    Each distinct model (architecture or zoo entry, checkpoint, random init, normalisation, input size) is built
    once, however many rows name it, and dropped before the next is built: a plan of 10,000 rows of a few models
    builds a few, and holds one at a time. A random init's seed changes the weights, not what is checked."""
    engine = connect()
    probes = _Probes(engine)
    models: dict = {}  # the model's key -> the rows that name it, each with its request, spec and default layer
    for row in rows:
        try:
            prepared = _prepare(row, probes)
        except Exception as error:  # noqa: BLE001 (said as the row's reason, as below)
            _invalid(row, error)
            continue
        models.setdefault(_model_key(prepared[1]), []).append(prepared)
    for prepared in models.values():
        _check_model(engine, prepared)
    return rows


def _prepare(row: PlanRow, probes: _Probes):
    """(row, ModelSpec, default layer, image size, probe): everything checked that needs no model."""
    if row.error:
        raise LceError(row.error)
    if not row.model:
        raise LceError("the model cell is empty.")
    row.request = request = build_request(row.options)
    request.validate()
    pick_device(request.device)  # an unknown or absent device is said now
    probe = probes(request.probe, request.split)
    image_size = probe.rows[0].ih
    spec, default_layer, _ = model_spec(request, image_size)
    return row, spec, default_layer, image_size, probe


def _model_key(spec):
    """What a model's check depends on: its spec with the checkpoint's absolute path and without the seed."""
    checkpoint = spec.checkpoint.absolute() if spec.checkpoint is not None else None
    return replace(spec, seed=0, checkpoint=checkpoint)


def _check_model(engine, prepared: list) -> None:
    """Build the rows' model once (the first row's spec), find each distinct list of layers and layout in it, then
    settle each row against the store. A model that does not build makes every row of it invalid."""

    first_row, first_spec = prepared[0][:2]
    try:
        loaded = first_spec.build()
    except Exception as error:  # noqa: BLE001 (a checkpoint that is no checkpoint fails inside torch or pickle)
        for row, *_ in prepared:
            _invalid(row, error)
        return
    built = replace(loaded, module=None)  # what the rows' settings need of it, without the weights
    layouts: dict = {}  # (layers, layout, prefix tokens) -> layouts or the error of finding them
    for row, spec, default_layer, image_size, probe in prepared:
        request = row.request
        try:
            row.layers = layers = request.layers or [default_layer]
            key = (tuple(layers), request.layout, request.prefix_tokens)
            if key not in layouts:
                try:
                    # Layouts come from shapes, the same on any device: the check keeps the accelerator free.
                    layouts[key] = layer_layouts(request, loaded.module, layers, image_size, "cpu")
                except Exception as error:  # noqa: BLE001 (kept for every row of these layers)
                    layouts[key] = error
            if isinstance(layouts[key], Exception):
                raise layouts[key]
            settings = replace(request.settings, seg_size=request.settings.seg_size_for(image_size,
                                                                                        probe.rows[0].sh))
            _, todo = stored_runs(engine, request, settings, built.checkpoint_sha256, spec.settings(built),
                                  layouts[key])
            if request.random_control and not todo:  # the model stored, its control perhaps not yet
                todo = missing_controls(engine, request, settings, row.layers)
            row.status = "to do" if todo else "done"
        except Exception as error:  # noqa: BLE001
            _invalid(row, error)
    del loaded
    gc.collect()  # one model alive at a time


def _invalid(row: PlanRow, error: Exception) -> None:
    reason = str(error) if isinstance(error, LceError) else f"{type(error).__name__}: {error}"
    row.status, row.reason = "invalid", reason


def run_plan(rows: list[PlanRow], progress: Progress | None = None, warn: Callable[[str], None] | None = None,
             report: Callable[[RowResult], None] | None = None, executor: str = "sequential",
             devices: list[str] | None = None, ray_address: str | None = None) -> list[RowResult]:
    """Ingest the checked rows that are "to do", each in ingest()'s own transaction(s): one after another here
    (`executor` "sequential"), in one worker process per device of `devices` ("local"), or one Ray task per row
    ("ray", on the cluster at `ray_address`, else a local one); see lce.ingest.executors. A row that fails (an
    LceError, any exception such as running out of memory, or its worker's death) is noted and the others go on.
    `progress` hears ("models", done, total) besides each ingest's passes; `report` hears each row as it ends.
    One result per row, in the plan's order."""
    todo = [row for row in rows if row.status == "to do"]
    results = {id(row): result for row, result in zip(todo, run_rows(
        todo, executor, devices=devices, ray_address=ray_address, progress=progress, warn=warn, report=report))}
    return [results.get(id(row)) or RowResult(row, "skipped" if row.status == "done" else "invalid",
                                              reason=row.reason) for row in rows]


def store_pending() -> list[tuple[Path, str]]:
    """Store the runs that ingests saved under $LCE_HOME/pending/ or $LCE_PENDING_DIR when their database went
    away or was full (as `lce ingest --resume` does, each file with its own --replace); (file, what happened) for
    each file, oldest first."""
    done = []
    for path in pending_files():
        try:
            written = store_file(path)
            done.append((path, "stored " + ", ".join(f"{item.record.model.name} {item.record.layer} "
                                                      f"({item.outcome.value} run {item.run_id})" for item in written)))
        except LceError as error:
            done.append((path, f"not stored: {error}"))
    return done


def refuse_invalid(path: Path, rows: list[PlanRow], skip_invalid: bool) -> None:
    """An LceError when rows are invalid and --skip-invalid was not given: nothing is dissected then."""
    invalid = [row for row in rows if row.status == "invalid"]
    if invalid and not skip_invalid:
        lines = ", ".join(str(row.line) for row in invalid)
        raise LceError(f"Plan {path}: {len(invalid)} invalid row(s) (line {lines}); nothing was dissected. Fix "
                       "them, or pass --skip-invalid to run the others.")


def exit_code(rows: list[PlanRow], skip_invalid: bool, results: list[RowResult] | None = None) -> int:
    """lce ingest --plan's exit status. Checked only (--dry-run, `results` None): 0 when every row is valid, else 2
    with --skip-invalid (the valid ones would run) and 1 without. Run: 1 when a row failed, 2 when invalid rows
    were skipped, else 0."""
    invalid = any(row.status == "invalid" for row in rows)
    if results is None:
        return (2 if skip_invalid else 1) if invalid else 0
    if any(result.outcome == "failed" for result in results):
        return 1
    return 2 if invalid else 0
