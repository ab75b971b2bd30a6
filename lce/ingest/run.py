"""`lce ingest`: dissect a model's layers over a registered probe and store every unit, one transaction per call.

    outcomes = ingest(IngestRequest(model="r18-a", probe="synth", layers=["layer4"], arch="resnet18",
                                    random_init=True, seed=1))

The model comes from the zoo (its name) or from --arch (torchvision, timm:NAME, hf:DIR, package.module:function)
with --checkpoint or --random-init. Each layer's layout (nchw, nhwc, tokens with prefix tokens) is known before
anything is dissected (lce.models.layout), or the ingest stops. A layer already ingested with the same checkpoint,
probe and settings is skipped; with another checkpoint, or another setting that changes what is dissected
(IDENTITY: architecture, random-init seed, layout, prefix tokens, mean and std), it needs --replace, which swaps
the run inside the transaction that writes the new one.

A database that goes away during the write is retried for $LCE_WRITE_RETRY_S seconds, each time on a new
connection (which starts the embedded server again); after that the runs are saved under $LCE_HOME/pending/ for
`lce ingest --resume FILE` (lce.db.pending). So are the first connections (the probe check, the run lock): a
server restarting as the command starts is waited for. A database whose disk is full is not retried: the runs are
saved at once, under $LCE_HOME/pending/ or, when LCE_HOME's file system is full too, $LCE_PENDING_DIR (checked
before the dissection starts). Before dissecting, the space the runs will take is estimated, and a warning said
when the database's or LCE_HOME's file system has less free.

With `random_control` (--random-control), the model's architecture with random weights (seed `control_seed`) is
dissected too, as model random:ARCH:sSEED, unless stored, and written as a control (ingest_with_control).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from sqlalchemy import text

from lce.config import (check_tf32, code_version, device_settings, external_database_url, lce_home, pick_device, tf32,
                        write_retry_s)
from lce.db import pending
from lce.db.controls import set_control
from lce.db.connection import connect
from lce.db.locks import dissection_lock
from lce.db.outage import DatabaseFull, DatabaseLost, retrying
from lce.db.runs import WAL_FACTOR, find_run, stored_bytes, write_runs
from lce.disk import existing, file_system, free_bytes, size
from lce.dissect.engine import DissectSettings, LayerResult, Progress, dissect
from lce.dissect.memory import plan_dissection
from lce.dissect.uncertainty import STORED_REPLICATES, LayerUncertainty, Resampling
from lce.errors import LceError
from lce.models import build, zoo
from lce.models.layers import resolve_layer
from lce.models.layout import KINDS, MapLayout, resolve_layouts
from lce.models.sources import parse_arch
from lce.names import check_options
from lce.probe.cache import DecodeCache
from lce.probe.dataset import ProbeDataset, UnreadableImage
from lce.probe.registry import open_registered_probe
from lce.records import Bootstrap, ModelInfo, ReplicateLabels, RunIdentity, RunRecord, TallyColumns, UnitRow
from lce.resources import read_sql
from lce.vocabulary import TOP_IMAGES

SOURCE = "dissected"
DEFAULT_LAYER = "layer4"  # ResNets' last block, the layer of every published comparison
# Settings that change what is dissected: a stored run that differs in one of them is not "already ingested".
IDENTITY = ("architecture", "random_init", "seed", "layout", "prefix_tokens", "mean", "std")


@dataclass
class IngestRequest:
    model: str
    probe: str
    layers: list[str] = field(default_factory=list)  # empty: the zoo entry's layer, else DEFAULT_LAYER
    settings: DissectSettings = field(default_factory=DissectSettings)
    arch: str | None = None
    checkpoint: Path | None = None
    random_init: bool = False
    seed: int = 0
    device: str = "auto"
    split: str = "all"
    replace: bool = False
    layout: str | None = None  # nchw | nhwc | tokens; None: the model's or the shape's (lce.models.layout)
    prefix_tokens: int | None = None  # with layout tokens (or alone, which implies it)
    mean: tuple[float, float, float] | None = None  # with std: overrides the source's normalisation
    std: tuple[float, float, float] | None = None
    tf32: str = "on"  # on | off: TF32 in the GPU's float32 convolutions and matmuls (lce.config.tf32)
    # --random-control: the same architecture with random weights (seed control_seed) dissected too, unless stored
    random_control: bool = False
    control_seed: int = 0
    as_control: bool = False  # this request is such a control: its runs are written as controls (run_control)

    def validate(self) -> None:
        """An LceError for a request that cannot be ingested as given, said before anything is loaded or dissected
        (the settings check their own fields when built). The messages name the options of lce ingest."""
        check_options(model=self.model, probe=self.probe, architecture=self.arch)
        for name in self.layers:
            check_options(layer=name)
        write_retry_s()  # a bad LCE_WRITE_RETRY_S is said now, not after the dissection
        pending.check_pending_dir()  # and an LCE_PENDING_DIR that could not take the runs
        if self.layout is not None and self.layout not in KINDS:
            raise LceError(f"--layout must be one of {', '.join(KINDS)}, not {self.layout!r}.")
        if self.prefix_tokens is not None and (self.prefix_tokens < 0 or self.layout not in (None, "tokens")):
            raise LceError(f"--prefix-tokens {self.prefix_tokens}: a count of 0 or more, and only with --layout "
                           "tokens.")
        for option, values in (("--mean", self.mean), ("--std", self.std)):
            if values is not None:
                check_rgb(option, values)
        if (self.mean is None) != (self.std is None):
            raise LceError("Give --mean and --std together (R,G,B each), or neither for the source's own.")
        check_tf32(self.tf32)
        if not -2**63 <= self.seed < 2**64:  # what torch's generator takes; 10**20 was a ValueError traceback
            raise LceError(f"--seed {self.seed}: a seed from -2^63 to 2^64 - 1.")
        if not 0 <= self.control_seed < 2**63:
            raise LceError(f"--control-seed {self.control_seed}: a seed from 0 to 2^63 - 1.")


def check_rgb(option: str, values: tuple[float, ...], given: str | None = None) -> None:
    """--mean: three finite numbers R,G,B; --std: three positive ones. `given`: the text they were read from."""
    values = tuple(values)
    if len(values) != 3 or not all(math.isfinite(v) for v in values) or (option == "--std" and min(values) <= 0):
        kind = "positive numbers" if option == "--std" else "numbers"
        given = ",".join(f"{v:g}" for v in values) if given is None else given
        raise LceError(f"{option} {given!r} should be three {kind} separated by commas, R,G,B (e.g. "
                       f"{'0.229,0.224,0.225' if option == '--std' else '0.485,0.456,0.406'}).")


@dataclass
class IngestOutcome:
    layer: str
    status: str  # created | replaced | skipped
    run_id: int | None
    units: int = 0
    interpretable: int = 0
    top_concepts: list[tuple[str, int]] = field(default_factory=list)
    seconds: float = 0.0
    threshold_exact: bool = True
    cached: bool = False
    layout: str = ""  # how the layer's output was read, and who said so
    plan: str = ""  # the memory plan, in lce.dissect.memory.MemoryPlan.describe()'s words (status "planned")
    model: str = ""  # whose layer: the request's model, or its random-weights control (--random-control)


def ingest(request: IngestRequest, progress: Progress | None = None,
           warn: Callable[[str], None] | None = None, dry_run: bool = False) -> list[IngestOutcome]:
    """Dissect and store the request's layers (see the module docstring); `warn` hears what the user should
    know before the results (a normalisation that is only a default). With `dry_run`, everything is checked and
    the model built, and the layers to dissect come back "planned" with the memory plan (lce.dissect.memory):
    nothing is dissected or written (an LceError when the plan does not fit the device)."""
    request.validate()
    if request.random_control:
        return ingest_with_control(request, progress, warn, dry_run)
    started = time.perf_counter()
    window = write_retry_s()
    # The first connections wait for a server that is restarting, as the write does.
    engine, (probe_row, probe) = retrying(
        lambda engine, retried: (engine, open_registered_probe(engine, request.probe, request.split)), None, window)
    image_size = probe.rows[0].ih
    spec, loaded, default_layer, family = _load_model(request, image_size)
    layers = request.layers or [default_layer]
    settings = request.settings
    seg_size = settings.seg_size_for(image_size, probe.rows[0].sh)
    settings = replace(settings, seg_size=seg_size)

    device = pick_device(request.device)
    layouts = layer_layouts(request, loaded.module, layers, image_size, device)
    run_settings = spec.settings(loaded)
    if loaded.warning and warn:
        warn(loaded.warning)

    # From the check of what is stored to the end of the write, no other process dissects these runs: a second
    # ingest of the same model waits here, then finds them stored (lce.db.locks).
    identities = [] if dry_run else [RunIdentity(request.model, layer, request.probe, settings.variant,
                                                 settings.quantile, settings.seg_size, SOURCE) for layer in layouts]
    with dissection_lock(engine, identities, on_wait=warn, retry_s=window):
        outcomes, todo = retrying(lambda engine, retried: stored_runs(
            engine, request, settings, loaded.checkpoint_sha256, run_settings, layouts), engine, window)
        if not todo:
            return outcomes
        # The memory plan before any work: a dissection that cannot fit the device stops here.
        shape = ProbeDataset(probe, image_size=image_size, seg_size=seg_size)
        plan = plan_dissection(loaded.module, todo, shape, settings, device,
                               layouts={layer: layouts[layer] for layer in todo})
        if dry_run:
            return outcomes + [IngestOutcome(layer, "planned", None, layout=_described(layouts[layer]),
                                             plan=plan.describe()) for layer in todo]
        if warn:  # a disk that cannot take the runs is said before the minutes of dissection, not after
            needed = stored_bytes(sum(layer.units for layer in plan.layers.values()), len(shape.concepts),
                                  len(shape.categories), TOP_IMAGES, min(settings.replicates, STORED_REPLICATES))
            for said in space_warnings(needed):
                warn(said)
        # Sizes and mtimes of the label PNGs against the cache's manifest: changed files are named, never read
        # stale.
        cache = DecodeCache.open(probe, lce_home() / "cache", workers=settings.workers, name=request.probe)
        dataset = ProbeDataset(probe, image_size=image_size, seg_size=seg_size, mean=loaded.mean, std=loaded.std,
                               cache=cache, uint8=True)
        # Before the dissection: afterwards, only the write needs the database.
        concepts = retrying(lambda engine, retried: _concepts(engine, probe_row.id), engine, window)
        try:
            # The bootstrap's partition and replicates come from the probe's stored hash: every run on it shares them.
            bootstrap = Resampling.of(probe_row.content_sha256, len(dataset), settings.replicates,
                                      settings.blocks) if settings.replicates > 0 else None
            with tf32(request.tf32):
                results = dissect(loaded.module, todo, dataset, settings, device, progress,
                                  layouts={layer: layouts[layer] for layer in todo}, plan=plan, bootstrap=bootstrap)
                computed_on = device_settings(device)  # the TF32 switches as the dissection had them
        except UnreadableImage as error:  # perhaps from a DataLoader worker, with its traceback in the message
            raise LceError(error.user_message()) from None
        model = ModelInfo(name=request.model, architecture=loaded.architecture,
                          checkpoint_sha256=loaded.checkpoint_sha256, family=family,
                          notes=loaded.description)
        run_settings.update({
            "probe_sha256": probe_row.content_sha256, "split": request.split, "image_size": image_size,
            "batch_size": settings.batch_size, "cache_budget": settings.cache_budget, "tf32": request.tf32,
            "replicates": settings.replicates, "blocks": settings.blocks,
            **computed_on, "code": code_version(),
        })
        records = [_record(model, request.probe, results[layer], settings, concepts,
                           {**run_settings, **_layout_settings(layouts[layer])}) for layer in todo]
        if request.as_control:  # written as controls in the same transaction (lce.db.controls.set_control)
            records = [replace(record, control=True) for record in records]
        try:
            written = write_runs(engine, records, replace=request.replace, retry_s=window)
        except (DatabaseLost, DatabaseFull) as error:
            raise kept_for_resume(records, request.replace, error) from None
        seconds = time.perf_counter() - started
        for item, layer in zip(written, todo):
            result = results[layer]
            interpretable = item.record.interpretable_units()  # its iou_threshold is settings.iou_threshold
            counts: dict[str, int] = {}
            for row in interpretable:
                counts[row.concept[1]] = counts.get(row.concept[1], 0) + 1
            top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
            outcomes.append(IngestOutcome(layer, item.outcome.value, item.run_id, len(item.record.units),
                                          len(interpretable), top, seconds, result.threshold_exact, result.cached,
                                          _described(layouts[layer])))
        return outcomes


def kept_for_resume(records: list[RunRecord], replace: bool, error: DatabaseLost | DatabaseFull) -> LceError:
    """The error to raise when the database could not take the runs (`error`): minutes of dissection are not
    thrown away, the runs wait in a file for `lce ingest --resume` (lce.db.pending), and the message says where
    and when to store them; or, when no place could take the file either, that the dissection is lost and why."""
    full = isinstance(error, DatabaseFull)
    said = error.full() if full else error.gone()
    try:
        kept = pending.keep(records, replace=replace)
    except pending.NotKept as lost:
        return LceError(f"{said} {lost}")
    instead = f" ({'; '.join(kept.refused)})" if kept.refused else ""
    when = f"once the database has room: {error.remedy()}" if full else "once the database is back"
    return LceError(f"{said} The dissection is kept in {kept.path}{instead}; store it with `lce ingest --resume "
                    f"{kept.path}` {when}.")


def space_warnings(needed: int) -> list[str]:
    """What to warn of before a dissection whose runs take about `needed` bytes (runs.stored_bytes): the embedded
    server's data directory and LCE_HOME's pending folder on file systems with less free (the data directory's
    counting the write-ahead log too). An external server's disk cannot be seen from here."""
    places = [] if external_database_url() else [(lce_home() / "postgres", WAL_FACTOR * needed, "the database")]
    places.append((pending.pending_dir(), needed, "the pending file, should the database be unable to take it"))
    said, seen = [], set()
    for path, wanted, what in places:
        try:
            device, free = existing(path).stat().st_dev, free_bytes(path)
        except OSError:
            continue
        if device in seen:
            continue  # one file system: its warning is the first place's, which needs more
        seen.add(device)
        if free < wanted:
            said.append(f"the runs of this dissection may take about {size(wanted)} in {what}, and "
                        f"{file_system(path)}, has less: the write may find the disk full. Free space there first (or "
                        "set LCE_PENDING_DIR to a directory on another file system, where the runs are kept if "
                        "neither the database nor LCE_HOME can take them).")
    return said


def ingest_with_control(request: IngestRequest, progress: Progress | None = None,
                        warn: Callable[[str], None] | None = None, dry_run: bool = False) -> list[IngestOutcome]:
    """ingest() of `request` (--random-control), then of its random-weights control (control_request): the model's
    layers first, in their own transaction, then the control's layers that are not stored yet, in another, written
    as controls; a control stored before is "skipped", and named a control if it was not one. Two transactions, so
    that a control failing (out of memory, a stored control with other settings) keeps the model's runs, and a
    control that many models share is dissected once; the same command again dissects only what is missing. The
    outcomes come back with their model's name: the model's, then the control's."""
    model = [replace(outcome, model=request.model)
             for outcome in ingest(replace(request, random_control=False), progress, warn, dry_run)]
    control = control_request(request, [outcome.layer for outcome in model])
    if warn and _same_weights(request, control):
        warn(f"{request.model!r} has the random weights of seed {request.seed}, the same as its control "
             f"{control.model!r} (--control-seed {request.control_seed}): the control only repeats the model. Pass "
             "another --control-seed for a control that says something.")
    try:
        controls = ingest(control, progress, warn, dry_run)
    except LceError as error:
        done = "; ".join(f"{outcome.layer} {outcome.status} run {outcome.run_id}" for outcome in model
                         if outcome.run_id is not None) or "nothing to store"
        raise LceError(f"{request.model}: {done}. Its random-weights control {control.model!r} was not dissected: "
                       f"{error} (A stored control is never redone by --random-control: ingest {control.model!r} "
                       f"--arch {control.arch} --random-init --seed {control.seed} --replace, then lce control set "
                       "RUN.)") from None
    if not dry_run:
        _name_controls([outcome.run_id for outcome in controls if outcome.status == "skipped"])
    return model + [replace(outcome, model=control.model) for outcome in controls]


def control_name(architecture: str, seed: int) -> str:
    """The model name of `architecture`'s random-weights control drawn from `seed`: random:resnet18:s0."""
    return f"random:{architecture}:s{seed}"


def control_request(request: IngestRequest, layers: list[str]) -> IngestRequest:
    """The request that dissects `request`'s random-weights control: the same architecture (the zoo entry's, or
    --arch) with weights drawn from --control-seed, under control_name(); the same `layers`, probe, settings,
    layout, split and device. The architecture's own normalisation, not the model's --mean/--std or zoo entry's,
    so that one control serves every model of the architecture; never --replace (a stored control is kept)."""
    architecture = parse_arch(request.arch or zoo.zoo_entry(request.model).architecture).spec
    return IngestRequest(model=control_name(architecture, request.control_seed), probe=request.probe,
                         layers=list(layers), settings=request.settings, arch=architecture, random_init=True,
                         seed=request.control_seed, device=request.device, split=request.split,
                         layout=request.layout, prefix_tokens=request.prefix_tokens, tf32=request.tf32,
                         as_control=True)


def missing_controls(engine, request: IngestRequest, settings: DissectSettings, layers: list[str]) -> list[str]:
    """The `layers` whose random-weights control (control_request) is not stored: what --random-control would
    dissect. `settings` carries the seg_size the probe gives (lce ingest --plan's check)."""
    control = control_request(request, layers)
    return [layer for layer in layers
            if find_run(engine, RunIdentity(control.model, layer, request.probe, settings.variant,
                                            settings.quantile, settings.seg_size, SOURCE)) is None]


def _same_weights(request: IngestRequest, control: IngestRequest) -> bool:
    """Whether the model's weights are the control's: random from the same seed (--random-init, or the zoo's
    random entry)."""
    drawn = request.random_init or (request.arch is None and zoo.zoo_entry(request.model).layout is None)
    return drawn and request.seed == control.seed


def _name_controls(run_ids: list[int]) -> None:
    """Name the stored runs that --random-control found (random weights of the architecture, dissected before,
    perhaps without it) controls, those that are not yet, in one transaction."""
    if not run_ids:
        return
    with connect().begin() as conn:
        named = set(conn.execute(text(read_sql("queries/control_runs"))).scalars())
        for run_id in run_ids:
            if run_id not in named:
                set_control(conn, run_id)


def layer_layouts(request: IngestRequest, module, layers: list[str], image_size: int, device) -> dict:
    """Each layer's MapLayout (lce.models.layout), the layers checked to be modules of `module` first (an LceError
    naming the nearest otherwise); `module` is moved to `device`."""
    for layer in layers:
        resolve_layer(module, layer)
    # A full layout from the user (nchw, nhwc, tokens with --prefix-tokens), or only `tokens`, whose prefix the
    # model or the shape then says.
    given = MapLayout(request.layout or "tokens", request.prefix_tokens or 0) \
        if request.prefix_tokens is not None or request.layout in ("nchw", "nhwc") else None
    return resolve_layouts(module.to(device), layers, image_size, device, given=given,
                           given_kind=request.layout if given is None else None)


def stored_runs(engine, request: IngestRequest, settings: DissectSettings, checkpoint_sha256: str | None,
                run_settings: dict, layouts: dict) -> tuple[list[IngestOutcome], list[str]]:
    """(outcomes "skipped" for the layers already stored with this checkpoint and settings, the layers to dissect)
    over `layouts`' layers, in their order; an LceError for a layer stored otherwise, unless --replace. `settings`
    carries the seg_size the probe gives."""
    todo, outcomes = [], []
    for layer, layout in layouts.items():
        stored = find_run(engine, RunIdentity(request.model, layer, request.probe, settings.variant,
                                              settings.quantile, settings.seg_size, SOURCE))
        if stored is not None and not request.replace:
            differences = _differences(stored, checkpoint_sha256, {**run_settings, **_layout_settings(layout)})
            if not differences:
                outcomes.append(IngestOutcome(layer, "skipped", stored.id, layout=_described(layout)))
                continue
            raise LceError(f"Model {request.model!r} layer {layer!r} is already dissected on probe "
                           f"{request.probe!r} (run {stored.id}) {' and '.join(differences)}; pass --replace to "
                           "dissect it again and swap it.")
        todo.append(layer)
    return outcomes, todo


def _load_model(request: IngestRequest, image_size: int):
    """(ModelSpec, LoadedModel, default layer, family) for the request: a zoo entry by name, or --arch; built for
    the probe's `image_size`, with --mean/--std when given."""
    spec, default_layer, family = model_spec(request, image_size)
    return spec, spec.build(), default_layer, family


def model_spec(request: IngestRequest, image_size: int):
    """(ModelSpec, default layer, family) of the request, nothing built: a zoo entry by name (an unknown name is an
    LceError listing the zoo), or --arch."""
    normalization, origin = build.FROM_SOURCE, "given"
    if request.mean is not None:  # validate() saw to it that std comes with it
        normalization, origin = zoo.Normalization(tuple(request.mean), tuple(request.std)), "--mean/--std"
    common = dict(checkpoint=request.checkpoint, random_init=request.random_init, seed=request.seed,
                  image_size=image_size, normalization=normalization, normalization_source=origin)
    if request.arch is not None:
        return build.ModelSpec(request.arch, **common), DEFAULT_LAYER, None
    entry = zoo.zoo_entry(request.model)
    return build.ModelSpec(entry.architecture, zoo=entry.name, **common), entry.layer, entry.family


def _differences(stored, checkpoint_sha256: str | None, ours: dict) -> list[str]:
    """How the stored run differs from the one this ingest would make (checkpoint, IDENTITY settings); settings a
    run of an older lce does not record are taken as the same."""
    changed = [f"{key} {stored.settings[key]} -> {ours[key]}" for key in IDENTITY
               if key in stored.settings and stored.settings[key] != ours[key]]
    differences = [f"with other settings ({'; '.join(changed)})"] if changed else []
    if stored.checkpoint_sha256 != checkpoint_sha256:
        differences.insert(0, "from another checkpoint")
    return differences


def _described(layout) -> str:
    return f"{layout} (from {layout.origin})"


def _layout_settings(layout) -> dict:
    return {"layout": layout.kind, "prefix_tokens": layout.prefix_tokens, "layout_origin": layout.origin}


def _concepts(engine, probe_id: int) -> dict[tuple[str, int], str]:
    with engine.connect() as conn:
        rows = conn.execute(text(read_sql("queries/probe_concepts")), {"probe": probe_id})
        return {(row.category, row.number): row.name for row in rows}


def _record(model: ModelInfo, probe_name: str, result: LayerResult, settings: DissectSettings,
            concepts: dict[tuple[str, int], str], run_settings: dict) -> RunRecord:
    tally = result.tally
    # The columns that are concepts of the probe (a category's label numbers per c_<category>.csv).
    columns = np.array(sorted(tally.column(c, n) for c, n in concepts if c in tally.categories), dtype=np.int64)
    names = {tally.column(c, n): (c, name) for (c, n), name in concepts.items() if c in tally.categories}
    # Each tensor comes to the host once (one copy each, then numpy): reading a device tensor element by element
    # would wait for the device at every element.
    intersection, activation, truth = (t.cpu().numpy() for t in tally.counts())
    iou = tally.iou().cpu().numpy()
    valid_iou = iou[:, columns]
    best = columns[valid_iou.argmax(axis=1)] if len(columns) else np.zeros(tally.units, dtype=np.int64)
    thresholds = result.thresholds.double().cpu().numpy()
    best_iou = iou[np.arange(tally.units), best] if len(columns) else np.zeros(tally.units)
    # A unit that overlaps no concept at all has no label (its IoU is 0 with every one).
    units = [
        UnitRow(unit=u, concept=names[int(best[u])] if best_iou[u] > 0 else None, iou=float(best_iou[u]),
                threshold=float(thresholds[u]))
        for u in range(tally.units)
    ]
    uncertainty = result.uncertainty  # worked out from the per-block counters, which it then lets go of
    bootstrap = None
    if uncertainty is not None:
        units, bootstrap = _uncertain_units(units, best, uncertainty, names)
    # Every pair with a non-zero intersection, as columns (no Python object per pair).
    unit_index, column_index = np.nonzero(intersection[:, columns])
    pair_column = columns[column_index]
    tallies = TallyColumns(
        concepts=[names[int(col)] for col in columns], unit=unit_index.astype(np.int64), concept=column_index,
        intersection=intersection[unit_index, pair_column].astype(np.int64),
        activation=activation[unit_index, pair_column].astype(np.int64), truth=truth[pair_column].astype(np.int64),
        iou=iou[unit_index, pair_column].astype(np.float64))
    top_images, top_activations = result.top_images.cpu().numpy(), result.top_activations.cpu().numpy()
    top = [(u, rank, int(top_images[u, rank]), float(top_activations[u, rank]))
           for u in range(tally.units) for rank in range(top_images.shape[1])]
    return RunRecord(
        model=model, probe=probe_name, layer=result.layer, variant=settings.variant, quantile=settings.quantile,
        iou_threshold=settings.iou_threshold, source=SOURCE, units=units, tallies=tallies,
        seg_size=settings.seg_size, top_images=top, bootstrap=bootstrap,
        settings={**run_settings, "threshold_exact": result.threshold_exact, "activation_cache": result.cached},
    )


def _uncertain_units(units: list[UnitRow], best: np.ndarray, uncertainty: LayerUncertainty,
                     names: dict[int, tuple[str, str]]) -> tuple[list[UnitRow], Bootstrap]:
    """The units with their interval, stability, runner-up, chance IoU and lift from the layer's uncertainty, and
    the run's Bootstrap (alternatives, the first replicates' labels). The engine labels
    units by the same rule over the probe's concepts; a unit whose label differs (a probe stored with other
    concepts than its files list) keeps None."""
    found, columns = uncertainty.found, uncertainty.columns

    def number(value) -> float | None:
        return None if value is None or not np.isfinite(value) else float(value)

    filled = []
    for row in units:
        u = row.unit
        label = int(found.label[u])
        if row.concept is None or label < 0 or int(columns[label]) != int(best[u]) or int(columns[label]) not in names:
            filled.append(row)
            continue
        runner_up = int(found.runner_up[u])
        runner_up = names.get(int(columns[runner_up])) if runner_up >= 0 else None
        filled.append(replace(row, iou_low=number(found.iou_low[u]), iou_high=number(found.iou_high[u]),
                              stability=number(found.stability[u]), runner_up=runner_up,
                              runner_up_iou=number(found.runner_up_iou[u]) if runner_up else None,
                              chance_iou=number(uncertainty.chance_iou[u]), lift=number(uncertainty.lift[u])))
    known = np.array([int(column) in names for column in columns], dtype=bool)
    # Concept indices of the probe's concepts as the database names them (the replicate labels' vocabulary).
    kept = np.flatnonzero(known)
    renumber = np.full(len(columns) + 1, -1, dtype=np.int64)  # the last slot: -1 stays -1
    renumber[kept] = np.arange(len(kept))
    replicate_label = renumber[found.replicate_label]
    labels = ReplicateLabels(concepts=[names[int(columns[k])] for k in kept], label=replicate_label,
                             iou=np.where(replicate_label >= 0, found.replicate_iou, 0).astype(np.float32))
    labelled = {row.unit for row in filled if row.stability is not None}
    alternatives = [(unit, names[int(columns[concept])], share) for unit, concept, share in found.alternatives
                    if unit in labelled and known[concept]]
    return filled, Bootstrap(replicates=uncertainty.replicates, blocks=uncertainty.blocks, seed=uncertainty.seed,
                             alternatives=alternatives, labels=labels)
