"""The memory plan of a dissection: the peak bytes of each phase on the device, and the block sizes that keep them
under what the device has (issue 13).

    plan = plan_memory({"layer4": (2048, 7, 7)}, images=63_305, image_size=224, seg_size=56, settings=settings,
                       device="cuda:0", model=footprint(model, 224, device))
    plan.phases          # {"pass 1": bytes, "thresholds": bytes, "pass 2": bytes} on the device
    print(plan.describe())                       # what `lce ingest --dry-run` prints
    dissect(model, ["layer4"], dataset, settings, device, plan=plan)

The engine's sizes used to be fixed per device type (a GPU took blocks sized for 80 GB). Here they start from the
device type's preference (lce.config.DeviceBudget: large blocks on a GPU, each costing a host sync; cache-sized
ones on the CPU) and are halved, largest first, until every phase fits `DEVICE_SHARE` of the device: the CUDA
device's free memory (torch.cuda.mem_get_info) plus what the model already holds there, or the host's available
memory for the CPU. The activation cache is counted at its true cost (the kept activations, the kept labels, and
the whole-probe window's copies when thresholds are found from all of them at once), against --cache-budget and
against the device. When even the smallest blocks do not fit, plan_memory refuses with the sizes at fault.

Phases, as the engine runs them (lce.dissect.engine):
- pass 1: the model's forward pass on a batch, each layer's captured output, each layer's threshold window
  (or the kept activations), and the threshold estimators;
- thresholds: one layer's window being flushed (its values, padded maps, cell bounds, the cells selected, one round
  or chunk of upsampled values) while the other layers' windows wait;
- pass 2: a batch's labels as tally columns, one layer's cells of the batch and a chunk of them upsampled, and
  the tallies (I, A, G), beside the forward pass when the activations were not kept; with --replicates > 0 also
  every layer's "bootstrap counters" (lce.dissect.tally.BlockCounts: I_b, A_b, G_b per block of images, A_p and
  G_p per position, int32; made with the tallies, so counted in the thresholds phase too) and, once the passes are
  over, the "bootstrap replicates" of one layer (lce.dissect.uncertainty.layer_uncertainty's working set, beyond
  what the batches held). They grow with --blocks and the probe's concepts; a refusal names --blocks and
  --replicates.
The per-value costs of rounds and chunks were measured on the CPU with lce.instrument.allocations.AllocationWatch;
tests/test_memory_plan.py checks that the engine stays within every phase. What the engine itself declares is taken
from where it is declared, not copied: the histogram's bins and the top images per unit (lce.vocabulary), the values
a running top keeps (lce.dissect.threshold.values_read_by_quantile), the bootstrap's chunk and stored replicates
(lce.dissect.uncertainty).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

import torch

from lce.config import DeviceBudget
from lce.dissect.threshold import values_read_by_quantile
from lce.dissect.uncertainty import CHUNK_BYTES, STORED_REPLICATES
from lce.errors import LceError
from lce.models.layers import LayerCapture
from lce.vocabulary import HISTOGRAM_BINS, TOP_IMAGES

# The share of the device a plan may fill: the rest is for the CUDA caching allocator's rounding and
# fragmentation, cuDNN's workspaces and whatever else runs there.
DEVICE_SHARE = 0.75
FLOAT, INDEX = 4, 8  # bytes of a float32 value, of an int64 index
# Bytes of temporaries per value, measured with AllocationWatch on the CPU (tests/test_memory_plan.py checks them):
ROUND_BYTES = 48  # a threshold round: dense upsampled values, the running top's concatenation, topk's values+indices
CELL_BYTES = 80  # a chunk of upsampled cells: values, masks, pixel positions, label columns, pairs for a GPU
HISTOGRAM_BYTES = 48  # a histogram chunk (44.5 measured: bin indices, masks, scatter results)
RUNNING_TOP_BYTES = 96  # per kept value of a running top: the top, pending pairs (a GPU keeps every slot), compaction, topk
SELECTED_CELL_BYTES = 4 * INDEX  # nonzero's (image, unit, y, x) of a cell that can exceed T_u, counted for all cells
# The bootstrap's per value of a chunk: the concept, block cell and position of each slot (int64) and their masks.
BOOTSTRAP_CELL_BYTES = 48
COUNTER = 4  # bytes of an int32 counter of lce.dissect.tally.BlockCounts
# The smallest blocks a plan goes down to: below them the passes would crawl.
SMALLEST = DeviceBudget(exact_limit=2**16, threshold_window=0, cell_chunk=2**10, histogram_chunk=2**18,
                        compact=False)


@dataclass(frozen=True)
class ModelFootprint:
    """What the model costs on the device: its parameters and buffers, and its forward pass per image."""

    weights: int  # bytes of parameters and buffers
    forward_per_image: int  # bytes alive at the forward pass's peak, per image of the batch
    on_device: bool = True  # the weights already sit on the device (their bytes are not in its free memory)


class FootprintHooks:
    """Forward hooks on every leaf module that note the largest output of the forward passes run inside:

        with FootprintHooks(model) as hooks:
            model(images)
        hooks.footprint(images=len(images), image_size=224)    # a ModelFootprint
    """

    def __init__(self, model: torch.nn.Module):
        self.model, self.largest, self._handles = model, 0, []

    def __enter__(self) -> FootprintHooks:
        leaves = [m for m in self.model.modules() if not list(m.children())]
        self._handles = [m.register_forward_hook(self._record) for m in leaves]
        return self

    def __exit__(self, *exc_info) -> None:
        for handle in self._handles:
            handle.remove()

    def _record(self, module, inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            self.largest = max(self.largest, output.numel() * output.element_size())

    def footprint(self, images: int, image_size: int) -> ModelFootprint:
        """The model's weights, and per image three times its largest module output (under inference mode a block's
        input waits for its skip connection while two of its outputs are alive) plus the input (uint8, float)."""
        weights = sum(t.numel() * t.element_size() for t in [*self.model.parameters(), *self.model.buffers()])
        return ModelFootprint(weights, 3 * (self.largest // images) + 3 * image_size**2 * (FLOAT + 1))


def footprint(model: torch.nn.Module, image_size: int, device: torch.device | str) -> ModelFootprint:
    """The model's footprint at `image_size` (FootprintHooks), from one zero image on `device`, where the model
    must be."""
    was_training = model.training
    model.eval()
    try:
        with FootprintHooks(model) as hooks, torch.inference_mode():
            model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        model.train(was_training)
    return hooks.footprint(1, image_size)


@dataclass(frozen=True)
class DeviceMemory:
    """Bytes the device has for a dissection: `free` (what is not in use now) and `total`."""

    name: str
    free: int
    total: int

    @staticmethod
    def of(device: torch.device | str) -> DeviceMemory:
        device = torch.device(device)
        if device.type == "cuda":
            free, total = torch.cuda.mem_get_info(device)
            return DeviceMemory(str(device), free, total)
        return DeviceMemory("cpu", *_host_memory())


def _host_memory() -> tuple[int, int]:
    """(available, total) bytes of the host, from /proc/meminfo (elsewhere: sysconf, all taken as available)."""
    try:
        with open("/proc/meminfo") as meminfo:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in meminfo}
        return fields["MemAvailable"], fields["MemTotal"]
    except (OSError, KeyError, ValueError, IndexError):
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return total, total


@dataclass(frozen=True)
class LayerPlan:
    """One layer's share: kept activations, how its thresholds are found, and its window."""

    name: str
    units: int
    height: int
    width: int
    keep: int  # each unit's largest values the quantile reads
    kept: bool  # pass 1's activations kept on the device for pass 2
    whole_window: bool  # thresholds from all the kept activations at once (else windows of `window` bytes)
    window: int  # bytes of activations buffered per flush (the whole probe's when whole_window)
    exact: bool  # a running top (exact thresholds) rather than a histogram
    exact_limit: int  # the threshold estimator's exact limit (lce.dissect.threshold.choose)
    estimator: int  # bytes the threshold estimator holds
    estimator_peak: int  # bytes while it compacts or counts a chunk
    batch: int  # bytes of one batch of the layer's activations
    kept_bytes: int  # bytes of all its activations over the probe


@dataclass(frozen=True)
class MemoryPlan:
    device: str
    budget: int  # bytes the plan may fill: DEVICE_SHARE of the device's capacity
    capacity: int  # free bytes plus what the model already holds there
    layers: dict[str, LayerPlan]
    keep_labels: bool  # pass 1's label batches kept (on the device) for pass 2
    sizes: DeviceBudget  # the engine's block sizes: cell_chunk, histogram_chunk (exact_limit, window per layer)
    round_values: int  # values a threshold round upsamples at once, all units together
    phases: dict[str, int] = field(default_factory=dict)  # phase -> peak bytes on the device
    host: dict[str, int] = field(default_factory=dict)  # what the data loading holds on the host
    parts: dict[str, dict[str, int]] = field(default_factory=dict)  # phase -> its largest parts, for describe()

    @property
    def peak(self) -> int:
        return max(self.phases.values())

    def describe(self) -> str:
        """The plan in a few lines: each phase's peak and its parts, the sizes chosen, each layer's choices."""
        lines = [f"memory plan on {self.device}: peak {_size(self.peak)} of {_size(self.budget)} planned "
                 f"({DEVICE_SHARE:.0%} of {_size(self.capacity)})"]
        for phase, total in self.phases.items():
            parts = ", ".join(f"{name} {_size(size)}" for name, size in self.parts.get(phase, {}).items() if size)
            lines.append(f"  {phase:<11} {_size(total):>10}  ({parts})")
        for layer in self.layers.values():
            how = "exact (running top)" if layer.exact else "histogram"
            cache = ("kept, thresholds from all at once" if layer.whole_window else "kept") if layer.kept \
                else "not kept (the model runs again in pass 2)"
            lines.append(f"  layer {layer.name}: {layer.units} units of {layer.height}x{layer.width}; activations "
                         f"{_size(layer.kept_bytes)} over the probe, {cache}; thresholds {how}, windows of "
                         f"{_size(layer.window)}")
        lines.append(f"  blocks: threshold rounds of {self.round_values:,} values, cell chunks of "
                     f"{self.sizes.cell_chunk:,}, histogram chunks of {self.sizes.histogram_chunk:,} values; labels "
                     f"{'kept' if self.keep_labels else 'loaded again'} for pass 2")
        if self.host:
            lines.append("  host: " + ", ".join(f"{name} {_size(size)}" for name, size in self.host.items()))
        return "\n".join(lines)


@dataclass(frozen=True)
class ProbeShape:
    """What the plan needs of the probe: its images, their side, the segmentation size, and the label bytes of one
    image as a batch holds them (label layers, whole-image slots, annotated categories)."""

    images: int
    image_size: int
    seg_size: int
    label_bytes: int
    label_layers: int  # label-layer slots (pass 2 makes a column tensor of int64 per slot and pixel)
    columns: int  # tally columns: categories x (largest label number + 1)
    # The probe's concepts (the bootstrap's counters have a column each) and categories. A shape made without its
    # concepts (0) plans no bootstrap: ProbeShape.of always counts them.
    concepts: int = 0
    categories: int = 6

    @staticmethod
    def of(dataset) -> ProbeShape:
        """From a lce.probe.dataset.ProbeDataset."""
        layers, whole = len(dataset.layer_categories), len(dataset.whole_categories)
        per_image = layers * dataset.seg_size**2 * 4 + whole * INDEX + len(dataset.categories) + INDEX
        columns = len(dataset.categories) * (max(dataset.probe.vocabulary, default=0) + 1)
        return ProbeShape(len(dataset), dataset.image_size, dataset.seg_size, per_image, layers, columns,
                          len(dataset.concepts), len(dataset.categories))


def plan_dissection(model: torch.nn.Module, layers: list[str], dataset, settings, device: torch.device | str,
                    layouts=None, exact_limit: int | None = None, memory: DeviceMemory | None = None) -> MemoryPlan:
    """The plan for dissect(model, layers, dataset, settings, device) before it runs (`lce ingest --dry-run`): the
    layers' shapes and the model's footprint from one zero image on the device (where the model must be), the
    probe's from `dataset` (a ProbeDataset). dissect() itself plans from its first batch."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        with LayerCapture(model, layers, layouts) as capture, FootprintHooks(model) as hooks, torch.inference_mode():
            model(torch.zeros(1, 3, dataset.image_size, dataset.image_size, device=device))
    finally:
        model.train(was_training)
    model_footprint = hooks.footprint(1, dataset.image_size)
    shapes = {name: tuple(capture.outputs[name].shape[1:]) for name in layers}
    return plan_memory(shapes, ProbeShape.of(dataset), settings, device, model_footprint, memory, exact_limit)


def plan_memory(layers: dict[str, tuple[int, int, int]], probe: ProbeShape, settings, device: torch.device | str,
                model: ModelFootprint, memory: DeviceMemory | None = None, exact_limit: int | None = None,
                workers: int | None = None) -> MemoryPlan:
    """The plan for dissecting `layers` (name -> (units, height, width)) of a model with `model`'s footprint over
    `probe` with `settings` (lce.dissect.engine.DissectSettings) on `device`, whose memory is `memory` (default:
    measured now). `exact_limit` overrides the device's (tests and benchmarks). LceError when even the smallest
    plan does not fit."""
    device = torch.device(device)
    memory = memory or DeviceMemory.of(device)
    preferred = DeviceBudget.for_device(device)
    capacity = memory.free + (model.weights if model.on_device else 0)
    budget = int(DEVICE_SHARE * capacity)
    fixed_limit = exact_limit
    spec = settings.spec
    sizes = replace(preferred, threshold_window=settings.threshold_window or preferred.threshold_window)
    round_values = fixed_limit or preferred.exact_limit
    # The activation cache at its true cost: each layer's activations, in order while they fit; then the
    # whole-probe window's copies (a kept layer's thresholds from all of them at once); then the labels.
    cache_left = settings.cache_budget
    kept_layers: set[str] = set()
    whole: dict[str, bool] = {}
    for name, (units, height, width) in layers.items():
        size = probe.images * units * height * width * FLOAT
        if size <= cache_left:
            kept_layers.add(name)
            cache_left -= size
    for name in kept_layers:
        units, height, width = layers[name]
        copies = _whole_window_copies(probe.images * units * height * width * FLOAT, height, width)
        whole[name] = copies <= cache_left
        cache_left -= copies if whole[name] else 0
    keep_labels = len(kept_layers) == len(layers) and probe.images * probe.label_bytes <= cache_left

    for _ in range(200):  # each step halves something or gives up a cache; 200 is never reached
        plan = _plan(layers, probe, settings, spec, device, model, memory, capacity, budget, sizes, round_values,
                     fixed_limit, kept_layers, whole, keep_labels, workers)
        if plan.peak <= budget:
            return plan
        # What to give up first: a whole-probe window, then the kept labels, then kept activations (each only costs
        # speed), then the largest block.
        wholes = [name for name in kept_layers if whole[name]]
        if wholes:
            whole[max(wholes, key=lambda n: plan.layers[n].kept_bytes)] = False
        elif keep_labels:
            keep_labels = False
        elif kept_layers:
            kept_layers = kept_layers - {max(kept_layers, key=lambda n: plan.layers[n].kept_bytes)}
        else:
            shrunk = _shrink(plan, sizes, round_values, fixed_limit)
            if shrunk is None:
                raise LceError(_too_small(plan, memory, settings))
            sizes, round_values = shrunk
    raise LceError(_too_small(plan, memory, settings))


def _plan(layers, probe, settings, spec, device, model, memory, capacity, budget, sizes, round_values, fixed_limit,
          kept_layers, whole, keep_labels, workers) -> MemoryPlan:
    batch = settings.batch_size
    layer_plans: dict[str, LayerPlan] = {}
    for name, (units, height, width) in layers.items():
        per_image = probe.seg_size**2 if spec.threshold_upsampled else height * width
        keep = values_read_by_quantile(settings.quantile, probe.images * per_image)
        layer_batch = batch * units * height * width * FLOAT
        kept = name in kept_layers
        kept_bytes = probe.images * units * height * width * FLOAT
        limit = fixed_limit or _exact_limit(sizes.exact_limit, units, keep, budget)
        exact = 2 * units * keep <= limit
        if exact:
            estimator = units * keep * FLOAT * 3 // 2  # the top and up to a quarter of it pending, and then some
            estimator_peak = units * keep * RUNNING_TOP_BYTES
        else:  # each add at most a round (upsampled values) or a batch (raw values)
            estimator = units * HISTOGRAM_BINS * INDEX + 3 * units * FLOAT
            added = round_values if spec.threshold_upsampled else layer_batch // FLOAT
            estimator_peak = histogram_peak(units, added, sizes.histogram_chunk)
        is_whole = kept and whole.get(name, False) and spec.threshold_upsampled and exact
        # A window holds at most the probe's activations (the last one flushes at the end of pass 1).
        window = kept_bytes if is_whole else min(max(layer_batch, sizes.threshold_window), kept_bytes)
        layer_plans[name] = LayerPlan(name, units, height, width, keep, kept, is_whole, window, exact, limit,
                                      estimator, estimator_peak, layer_batch, kept_bytes)

    all_kept = len(kept_layers) == len(layers)
    forward = batch * model.forward_per_image
    # The uint8 batch, its int32 indices into the normalisation's table (ProbeDataset.normalize) and the floats.
    inputs = batch * 3 * probe.image_size**2 * (1 + 4 + FLOAT)
    label_batch = batch * probe.label_bytes
    columns = batch * probe.seg_size**2 * probe.label_layers * INDEX  # BatchLabels.layers, int64 columns
    kept = sum(p.kept_bytes for p in layer_plans.values() if p.kept)
    kept_labels = probe.images * probe.label_bytes if keep_labels else 0
    estimators = sum(p.estimator for p in layer_plans.values())
    tops = sum(p.units * TOP_IMAGES * (FLOAT + INDEX) * 3 for p in layer_plans.values())
    captures = sum(2 * p.batch for p in layer_plans.values())  # the model's output and LayerCapture's copy
    windows = {name: _window_bytes(p, spec) for name, p in layer_plans.items()}
    raw = 0 if spec.threshold_upsampled else max(p.batch for p in layer_plans.values())  # (U, B*h*w) copy
    pass_1 = {"model": model.weights, "kept": kept + kept_labels + tops, "forward": forward + inputs,
              "captures": captures + raw, "windows": sum(windows.values()),
              "estimators": estimators + max(p.estimator_peak - p.estimator for p in layer_plans.values())}

    cell = {name: _cell_values(p, probe.seg_size) for name, p in layer_plans.items()}
    flushes = {name: _flush_bytes(p, cell[name], round_values, sizes.cell_chunk)
               for name, p in layer_plans.items() if spec.threshold_upsampled}
    # A window's flush (upsampled thresholds, during pass 1 or at its end), or the estimators' last compaction (raw
    # values); then every layer's tally is made.
    tally = sum(_tally_bytes(p, probe) for p in layer_plans.values())
    # The bootstrap (lce.dissect.uncertainty): every layer's counters from its tally on; during pass 2 each batch's
    # block and position indices; after it, one layer's replicates worked out (LayerResult.uncertainty).
    counters = sum(bootstrap_counter_bytes(p.units, probe, settings) for p in layer_plans.values())
    replicates = max(bootstrap_work_bytes(p.units, probe, settings) for p in layer_plans.values())
    finishing = {name: flushes.get(name, 0) + p.estimator_peak - p.estimator for name, p in layer_plans.items()}
    busiest = max(finishing, key=lambda n: finishing[n] - windows[n])
    thresholds = {"model": model.weights, "kept": kept + kept_labels + tops, "captures": captures,
                  "estimators": estimators, "windows": sum(windows.values()) - windows[busiest],
                  "flush": finishing[busiest], "tallies": tally, "bootstrap counters": counters,
                  "next batch": label_batch + inputs}  # loaded for pass 2 (or the next window) meanwhile

    bootstrap = settings.replicates > 0 and probe.concepts > 0
    pass_2 = {"model": model.weights, "kept": kept + kept_labels + tops,
              "forward": 0 if all_kept else forward + inputs + captures,
              "labels": label_batch + columns * (4 if bootstrap else 1), "tallies": tally,
              "cells": max(_pass_2_bytes(p, cell[name], batch, sizes.cell_chunk, probe, bootstrap)
                           for name, p in layer_plans.items()),
              "bootstrap counters": counters}
    # After pass 2 its batches are gone and one layer's replicates are worked out: what that needs beyond them.
    pass_2["bootstrap replicates"] = max(0, replicates - pass_2["forward"] - pass_2["labels"] - pass_2["cells"])
    parts = {"pass 1": pass_1, "thresholds": thresholds, "pass 2": pass_2}
    phases = {phase: sum(values.values()) for phase, values in parts.items()}
    host = _host_bytes(probe, batch, workers if workers is not None else settings.workers, device)
    return MemoryPlan(str(device), budget, capacity, layer_plans, keep_labels, sizes, round_values, phases, host,
                      parts)


def histogram_peak(units: int, added: int, chunk: int) -> int:
    """Bytes a Histogram (lce.dissect.threshold) of `units` units holds while it counts `added` values at once in
    chunks of `chunk` values (whole units: at least one unit's values): its counts, their growth's temporaries,
    and a chunk's."""
    return 5 * units * HISTOGRAM_BINS * INDEX + max(min(chunk, added), added // units) * HISTOGRAM_BYTES


def _exact_limit(preferred: int, units: int, keep: int, budget: int) -> int:
    """The device's exact limit, lowered while a running top of this layer would take more than a quarter of the
    budget (its compaction's temporaries included)."""
    limit = preferred
    while limit > SMALLEST.exact_limit and limit // 2 * RUNNING_TOP_BYTES > budget // 4 and 2 * units * keep <= limit:
        limit //= 2
    return limit


def _whole_window_copies(kept_bytes: int, height: int, width: int) -> int:
    """What flushing all of a layer's kept activations at once adds to them: padded maps and cell bounds (with
    their temporaries) of every image; the cells selected are counted in the plan's thresholds phase."""
    area = height * width
    return kept_bytes * ((height + 2) * (width + 2) + 4 * (height + 1) * (width + 1)) // area


def _window_bytes(layer: LayerPlan, spec) -> int:
    """What a layer's window holds between flushes: up to `window` bytes plus the batch that overflows it (a
    whole-probe window holds the kept activations themselves: nothing more)."""
    if not spec.threshold_upsampled or layer.whole_window:
        return 0
    return layer.window + layer.batch


def _cell_values(layer: LayerPlan, seg_size: int) -> int:
    """Target samples in the widest cell of the layer's upsampling (lce.dissect.upsample), an upper bound."""
    return (math.ceil(seg_size / layer.height) + 1) * (math.ceil(seg_size / layer.width) + 1)


def _flush_bytes(layer: LayerPlan, cell_values: int, round_values: int, cell_chunk: int) -> int:
    """One window's flush: its values (joined from the batches), padded maps, cell bounds (and their temporaries),
    the cells that can still exceed the floor (all of them, at worst), then a round or a chunk of upsampled values."""
    values = layer.window
    area = layer.height * layer.width
    padded = values * (layer.height + 2) * (layer.width + 2) // area
    bounds = values * (layer.height + 1) * (layer.width + 1) // area
    joined = 0 if layer.whole_window else values  # the batches, while they are joined
    cells = bounds // FLOAT
    selected = cells * 2 * INDEX
    upsampled = max(min(round_values, layer.units * 4 * layer.keep, cells * cell_values) * ROUND_BYTES,
                    min(cell_chunk, cells) * cell_values * CELL_BYTES)
    return values + joined + padded + 4 * bounds + max(selected, upsampled)


def _pass_2_bytes(layer: LayerPlan, cell_values: int, batch: int, cell_chunk: int, probe: ProbeShape,
                  bootstrap: bool = False) -> int:
    """One layer's share of a pass-2 batch: its padded maps and cell bounds, the cells that can exceed T_u (all of
    them at worst), and a chunk of them upsampled with their label columns (and, with the bootstrap, their
    concepts, blocks and positions)."""
    cells = batch * layer.units * (layer.height + 1) * (layer.width + 1)
    padded = batch * layer.units * (layer.height + 2) * (layer.width + 2) * FLOAT
    per_value = CELL_BYTES + probe.label_layers * INDEX + (BOOTSTRAP_CELL_BYTES if bootstrap else 0)
    chunk = min(cell_chunk, cells) * cell_values * per_value
    return padded + 4 * cells * FLOAT + cells * SELECTED_CELL_BYTES + chunk


def _tally_bytes(layer: LayerPlan, probe: ProbeShape) -> int:
    """I (units x columns, int64), G (columns) and A (units x categories at most), and I's temporaries when
    lce.ingest.run reads it back (one copy)."""
    return 2 * (layer.units + 1) * (probe.columns + 1) * INDEX


def bootstrap_counter_bytes(units: int, probe: ProbeShape, settings) -> int:
    """What lce.dissect.tally.BlockCounts holds for a layer of `units` units (int32 counters): I_b (blocks x units x
    concepts), A_b, G_b, A_p (units x S*S, per category for netdissect), G_p (concepts x S*S); 0 without replicates."""
    if settings.replicates <= 0 or probe.concepts <= 0:
        return 0
    blocks, concepts = min(settings.blocks, probe.images), probe.concepts
    categories = probe.categories if settings.spec.activation_per_category else 1
    positions = probe.seg_size**2
    counters = COUNTER * (blocks * units * concepts + blocks * units * categories + blocks * concepts
                          + categories * units * positions + concepts * positions + concepts)
    # Each image's block and each column's concept, on the device for the whole of pass 2.
    return counters + INDEX * (probe.images + probe.columns + 2 * concepts + 2) + 2 * INDEX * probe.categories


def bootstrap_work_bytes(units: int, probe: ProbeShape, settings) -> int:
    """What lce.dissect.uncertainty.layer_uncertainty needs for one layer beside the counters: the pooled IoU
    (every tally column, twice), a slice of units' block tallies in float64 (at most CHUNK_BYTES) and a chunk of
    replicates (CHUNK_BYTES), each slice's replicate IoUs of its labels, and a few (units x concepts) float64
    matrices (point IoUs, wins, candidates, the chance IoU and E[I])."""
    if settings.replicates <= 0 or probe.concepts <= 0:
        return 0
    blocks, concepts = min(settings.blocks, probe.images), probe.concepts
    step = max(1, min(units, CHUNK_BYTES // (INDEX * max(1, blocks * concepts))))
    block_slice = INDEX * blocks * step * (concepts + probe.categories) + INDEX * blocks * concepts
    # A chunk of replicates: up to 2.2 times CHUNK_BYTES measured (its sums, the IoU, _ratio's temporaries, and for
    # netdissect A gathered per concept); 2.5 planned.
    chunk = 5 * max(CHUNK_BYTES, 4 * INDEX * step * concepts) // 2
    per_slice = settings.replicates * step * INDEX + STORED_REPLICATES * step * (INDEX + FLOAT)
    return 2 * units * probe.columns * INDEX + block_slice + chunk + per_slice + 6 * units * concepts * INDEX


def _host_bytes(probe: ProbeShape, batch: int, workers: int, device: torch.device) -> dict:
    """The data loading's batches in flight (each worker prefetches 4) and, on a GPU, pinned copies of them."""
    per_batch = batch * (3 * probe.image_size**2 + probe.label_bytes)
    in_flight = (4 * workers + 2) * per_batch
    host = {"batches in flight": in_flight}
    if device.type == "cuda":
        host["pinned"] = 2 * per_batch
    return host


def _shrink(plan: MemoryPlan, sizes: DeviceBudget, round_values: int, fixed_limit: int | None):
    """Halve the block that weighs most in the plan's largest phase; None when every block is at its smallest."""
    candidates = []
    windowed = [p for p in plan.layers.values() if not p.whole_window and p.window > p.batch]
    if windowed and sizes.threshold_window > 0:
        candidates.append((max(p.window for p in windowed) * 14, "window"))
    if round_values > SMALLEST.exact_limit:
        candidates.append((round_values * ROUND_BYTES, "rounds"))
    if sizes.cell_chunk > SMALLEST.cell_chunk:
        candidates.append((sizes.cell_chunk * 64 * CELL_BYTES, "cells"))
    if sizes.histogram_chunk > SMALLEST.histogram_chunk:
        candidates.append((sizes.histogram_chunk * HISTOGRAM_BYTES, "histogram"))
    if not candidates:
        return None
    _, block = max(candidates)
    if block == "window":
        largest = max(p.window for p in windowed)
        return replace(sizes, threshold_window=largest // 2), round_values
    if block == "rounds":
        return sizes, round_values // 2
    if block == "cells":
        return replace(sizes, cell_chunk=sizes.cell_chunk // 2), round_values
    return replace(sizes, histogram_chunk=sizes.histogram_chunk // 2), round_values


def _too_small(plan: MemoryPlan, memory: DeviceMemory, settings) -> str:
    largest = max(plan.phases, key=plan.phases.get)
    parts = ", ".join(f"{name} {_size(size)}" for name, size in plan.parts[largest].items() if size)
    bootstrap = sum(size for name, size in plan.parts[largest].items() if name.startswith("bootstrap"))
    return (f"The dissection does not fit {memory.name}: even with the smallest blocks its {largest} needs "
            f"{_size(plan.phases[largest])} ({parts}), and {_size(plan.budget)} is planned for it "
            f"({DEVICE_SHARE:.0%} of the {_size(plan.capacity)} free there). Lower --batch-size (now "
            f"{settings.batch_size}), dissect fewer layers at once, or use a device with more memory"
            + (f"; the bootstrap's counters and replicates take {_size(bootstrap)} of it: fewer --blocks (now "
               f"{settings.blocks}) shrink them, --replicates 0 leaves them out." if bootstrap else "."))


def _size(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"
