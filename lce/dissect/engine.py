"""The two passes of network dissection over a probe, for one or more layers of a model (docs/method.md section 1).

    results = dissect(model, ["layer4"], dataset, DissectSettings.for_variant("dissect"), device)
    results["layer4"].tally.iou()  # (units, columns) IoU of every unit with every concept column

Pass 1 runs the model over the probe, keeps each unit's top images and streams its activations into its
threshold estimator: only the cells of the upsampled maps that can still exceed the estimator's floor are
upsampled (see lce.dissect.upsample). Pass 2 masks the upsampled activations at the thresholds and tallies I, A
and G, again upsampling only the cells that can exceed T_u. When a layer's activations fit `cache_budget` bytes
they are kept from pass 1 at full precision (on the device), pass 2 reads them instead of running the model
again, and exact thresholds are found after pass 1 from all the activations at once (fewer cells to upsample).
Thresholds depend only on the values, so the results are identical either way.

dissect() is the outline (the loader, pass 1 over the layers, the thresholds, pass 2, the results); a
LayerDissection holds one layer's state and does its share of each pass; _Window streams a layer's upsampled
values into its ThresholdEstimator (lce.dissect.threshold). How much each step hands the device at once comes
lce.dissect.memory's plan (the device type's preferred sizes, lowered to fit the device's memory), made before
the first batch unless the caller gives one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from lce import vocabulary
from lce.dissect.memory import FootprintHooks, MemoryPlan, ProbeShape, plan_memory
from lce.dissect.tally import BatchLabels, Tally
from lce.dissect.threshold import ThresholdEstimator
from lce.dissect.uncertainty import LayerUncertainty, Resampling, layer_uncertainty
from lce.dissect.upsample import Cells, Upsampler
from lce.vocabulary import DEFAULT_BLOCKS, DEFAULT_REPLICATES, IOU_CUTOFF, TOP_IMAGES, Variant
from lce.errors import LceError
from lce.models.layers import LayerCapture
from lce.probe.dataset import ProbeDataset

if TYPE_CHECKING:
    from lce.models.layout import MapLayout


def max_workers() -> int:
    """The most DataLoader workers a dissection takes: the CPUs of the machine that checks its settings."""
    return os.cpu_count() or 1


@dataclass(frozen=True)
class DissectSettings:
    variant: str = vocabulary.DEFAULT_VARIANT  # a name in lce.vocabulary
    quantile: float = vocabulary.variant(vocabulary.DEFAULT_VARIANT).quantile
    iou_threshold: float = IOU_CUTOFF
    seg_size: int | None = None  # None: the variant's default for the probe (see seg_size_for)
    batch_size: int = 32
    workers: int = 0
    cache_budget: int = 2 * 2**30  # bytes of activations kept from pass 1
    threshold_window: int | None = None  # bytes buffered in pass 1 for thresholds (_Window); None: DeviceBudget's
    # The bootstrap of each label's uncertainty (lce.dissect.uncertainty): replicates 0 counts nothing more.
    replicates: int = DEFAULT_REPLICATES
    blocks: int = DEFAULT_BLOCKS

    def __post_init__(self) -> None:
        """Settings that cannot be dissected are an LceError here, whoever builds them (the messages name the
        options of lce ingest)."""
        if self.variant not in vocabulary.NAMES:
            raise LceError(f"--variant must be one of {', '.join(vocabulary.NAMES)}, not {self.variant!r}.")
        if not 0 < self.quantile < 1:
            raise LceError(f"--quantile must lie in (0, 1), not {self.quantile}.")
        if not 0 <= self.iou_threshold <= 1:
            raise LceError(f"--iou-threshold must lie in [0, 1], not {self.iou_threshold}.")
        if self.batch_size < 1 or self.workers < 0 or (self.seg_size is not None and self.seg_size < 1):
            raise LceError("--batch-size and --seg-size must be positive and --workers not negative.")
        if self.workers > max_workers():
            raise LceError(f"--workers {self.workers} is more than this machine's {max_workers()} CPU(s); "
                           "DataLoader workers beyond them only compete for the same cores, each with its own "
                           "memory.")
        if self.replicates < 0:
            raise LceError(f"--replicates must be 0 (no uncertainty) or more, not {self.replicates}; "
                           f"{DEFAULT_REPLICATES} is the default.")
        if self.blocks < 1:
            raise LceError(f"--blocks must be positive, not {self.blocks}: the probe's images are resampled in "
                           f"blocks, {DEFAULT_BLOCKS} by default (issue 16 asks for at least 100).")

    @classmethod
    def for_variant(cls, variant: str, **overrides) -> DissectSettings:
        """The variant's settings: its quantile unless `quantile` is given (None: the variant's). An unknown
        variant is refused by __post_init__."""
        quantile = overrides.pop("quantile", None)
        if quantile is None and variant in vocabulary.NAMES:
            quantile = vocabulary.variant(variant).quantile
        return cls(variant=variant, quantile=0.0 if quantile is None else quantile,
                   **overrides)

    @property
    def spec(self) -> Variant:
        """The registered variant these settings name."""
        return vocabulary.variant(self.variant)

    def seg_size_for(self, image_size: int, probe_seg_size: int) -> int:
        if self.seg_size:
            return self.seg_size
        return self.spec.seg_size(image_size, probe_seg_size)


@dataclass
class LayerResult:
    layer: str
    thresholds: torch.Tensor  # (U,)
    tally: Tally
    top_images: torch.Tensor  # (U, k) dataset indices, strongest first
    top_activations: torch.Tensor  # (U, k)
    threshold_exact: bool
    cached: bool
    resampling: Resampling | None = None  # the bootstrap counted in pass 2; None with replicates 0
    per_category: bool = False  # the variant's label rule: stability and runner-up within the label's category
    _uncertainty: LayerUncertainty | None = field(default=None, repr=False)

    @property
    def uncertainty(self) -> LayerUncertainty | None:
        """Each label's interval, stability, runner-up, alternatives, chance IoU and lift, and the first replicates'
        labels (lce.dissect.uncertainty.layer_uncertainty), from the per-block counters of pass 2; None without a
        bootstrap. Worked out on first read, after the passes: dissect()'s loops keep only their own host syncs
        (lce.instrument.syncs), and the counters are let go once read."""
        if self._uncertainty is None and self.resampling is not None and self.tally.blocks is not None:
            if self.tally.blocks.concepts:
                self._uncertainty = layer_uncertainty(self.tally, self.resampling, per_category=self.per_category)
            self.tally.blocks = None
        return self._uncertainty


Progress = Callable[[str, int, int], None]  # (pass name, images done, images in all)
_LABELS = ("layers", "whole", "annotated", "index")  # what pass 2 reads of a batch


def dissect(model: torch.nn.Module, layers: list[str], dataset: ProbeDataset, settings: DissectSettings,
            device: torch.device, progress: Progress | None = None,
            exact_limit: int | None = None, layouts: dict[str, MapLayout] | None = None,
            plan: MemoryPlan | None = None, bootstrap: Resampling | None = None) -> dict[str, LayerResult]:
    """Dissect `layers` of `model` over `dataset`, whose seg_size is the segmentation size S (build it with
    settings.seg_size_for(...), as lce.ingest.run does). `layouts` says how each layer's output holds its units
    (lce.models.layout.resolve_layouts; a layer left out is read as nchw). Thresholds stay exact while each
    layer's need at most `exact_limit` values (default: the plan's; see lce.dissect.threshold). `plan` sizes what
    is kept and how much is handed the device at once (default: lce.dissect.memory.plan_dissection's, for the
    device's memory now, made from the first batch; an LceError when it cannot fit). `bootstrap`: each image's block
    and the replicates (lce.dissect.uncertainty.Resampling), counted in pass 2; by default, with
    settings.replicates > 0, made from the probe's content hash. No third pass: see LayerResult.uncertainty."""
    if bootstrap is None and settings.replicates > 0:
        bootstrap = Resampling.of(dataset.probe.content_sha256(), len(dataset), settings.replicates, settings.blocks)
    if bootstrap is not None and len(bootstrap.block_of_image) != len(dataset):
        raise LceError(f"The bootstrap's partition covers {len(bootstrap.block_of_image)} images, the probe has "
                       f"{len(dataset)}: make it from this probe (and split).")

    model = model.to(device).eval()
    dissections: dict[str, LayerDissection] = {}
    # Pass 1's labels, when the plan keeps them for pass 2.
    kept_labels: list[dict[str, torch.Tensor]] | None = [] if plan is not None and plan.keep_labels else None
    # One loader for both passes: when pass 2 runs the model again it reads the same batches, from the same workers.
    loader = _loader(dataset, settings, device, persistent=True)
    with LayerCapture(model, layers, layouts) as capture, torch.inference_mode():
        # Pass 1: each layer's thresholds and top images (and its activations, when they fit the cache).
        done = 0
        for batch in loader:
            with _planning(model, plan) as hooks:
                model(dataset.normalize(batch["image"].to(device, non_blocking=True)))
            if plan is None:  # the first batch shows the layers' sizes and the model's footprint
                plan = _plan_from(hooks, capture, layers, dataset, settings, device, exact_limit)
                kept_labels = [] if plan.keep_labels else None
            index = batch["index"].to(device, non_blocking=True)
            for name in layers:
                acts = capture.outputs[name].float()
                if name not in dissections:  # the first batch shows the layer's size
                    dissections[name] = LayerDissection(name, acts, dataset, settings, device, plan, bootstrap)
                dissections[name].add(acts, index)
            if kept_labels is not None:
                # On the device, where pass 2 reads them (the cache budget counts them there): a pinned batch kept
                # for the whole run would hold page-locked host memory the loader's next batches need.
                kept_labels.append(_on_device(batch, device))
            done += len(batch["index"])
            if progress:
                progress("pass 1", done, len(dataset))

        for layer in dissections.values():
            layer.finish_thresholds(dataset)

        # Pass 2: the tallies, from the kept activations or from a second forward pass.
        all_kept = all(layer.kept is not None for layer in dissections.values())
        if kept_labels is not None:
            batches = kept_labels
        elif all_kept:  # the labels alone: another dataset, another loader
            batches = _loader(_labels_only(dataset), settings, device, persistent=False)
        else:
            batches = loader
        if batches is not loader:
            loader = None  # its workers are not needed any more: they end with it
        layer_category = _category_indices(dataset, dataset.layer_categories, device)
        whole_category = _category_indices(dataset, dataset.whole_categories, device)
        done = 0
        for position, batch in enumerate(batches):
            if not all_kept:
                model(dataset.normalize(batch["image"].to(device, non_blocking=True)))
            batch = _on_device(batch, device)
            # The batch's label columns: the same for every layer's tally.
            columns = dissections[layers[0]].tally.labels(batch["layers"], layer_category, batch["whole"],
                                                          whole_category, batch["annotated"], batch["index"])
            for name in layers:
                layer = dissections[name]
                acts = layer.kept[position] if layer.kept is not None else capture.outputs[name].float()
                layer.tally_batch(acts, columns)
            done += len(batch["index"])
            if progress:
                progress("pass 2", done, len(dataset))
    return {name: dissections[name].result() for name in layers}


def _planning(model: torch.nn.Module, plan: MemoryPlan | None):
    """FootprintHooks around the forward pass while there is no plan yet, else nothing."""
    return FootprintHooks(model) if plan is None else nullcontext()


def _plan_from(hooks, capture, layers: list[str], dataset: ProbeDataset, settings: DissectSettings,
               device: torch.device, exact_limit: int | None) -> MemoryPlan:
    images = next(iter(capture.outputs.values())).shape[0]
    shapes = {name: tuple(capture.outputs[name].shape[1:]) for name in layers}
    return plan_memory(shapes, ProbeShape.of(dataset), settings, device, hooks.footprint(images, dataset.image_size),
                       exact_limit=exact_limit)


class LayerDissection:
    """One layer's dissection, made from its first batch of activations (B, U, h, w).

    Pass 1, `add` each batch: the top images, the threshold estimator (the raw values, or the upsampled ones
    through a _Window), and the activations themselves in `kept` when the plan keeps them (they fit the cache
    budget and the device; else `kept` is None and pass 2 runs the model again). `finish_thresholds` then sets `thresholds` and a `tally`.
    Pass 2, `tally_batch` each batch's activations. `result` is the LayerResult."""

    def __init__(self, name: str, first: torch.Tensor, dataset: ProbeDataset, settings: DissectSettings,
                 device: torch.device, plan: MemoryPlan, bootstrap: Resampling | None = None):
        self.name, self.device, self.spec, self.seg_size = name, device, settings.spec, dataset.seg_size
        self.bootstrap = bootstrap
        layer = plan.layers[name]
        if (layer.units, layer.height, layer.width) != tuple(first.shape[1:]):
            raise RuntimeError(f"layer {name}: the plan was made for {layer.units} x {layer.height} x {layer.width} "
                               f"maps, the model gives {tuple(first.shape[1:])}")
        per_image = self.seg_size**2 if self.spec.threshold_upsampled else first.shape[2] * first.shape[3]
        self.estimator = ThresholdEstimator(first.shape[1], settings.quantile, device, layer.exact_limit,
                                            expected=len(dataset) * per_image,
                                            histogram_chunk=plan.sizes.histogram_chunk)
        self.kept: list[torch.Tensor] | None = [] if layer.kept else None
        self.cell_chunk = plan.sizes.cell_chunk
        self.compact = plan.sizes.compact  # boolean compaction (the CPU), or fixed sizes (a GPU): DeviceBudget
        self.window: _Window | None = None  # upsampled thresholds: the values go to the estimator through it
        if self.spec.threshold_upsampled:
            # Exact thresholds do not depend on the windows: a kept layer's are found from all at once when the
            # plan has room for it (layer.window is then all of them).
            self.window = _Window(self.estimator, self.seg_size, layer.window, plan.round_values, self.spec,
                                  self.cell_chunk, self.compact)
        self.top: tuple[torch.Tensor, torch.Tensor] | None = None  # (peaks, images), (U, k) each
        self.thresholds: torch.Tensor | None = None  # (U,), once pass 1 is over
        self.tally: Tally | None = None
        self._slot_index: tuple[torch.Tensor, torch.Tensor] | None = None  # pass 2's cell slots (_slots)

    def add(self, acts: torch.Tensor, index: torch.Tensor) -> None:
        """Pass 1 over a batch: acts (B, U, h, w) of the images `index` (dataset indices, on the device)."""
        if self.kept is not None:
            self.kept.append(acts)  # on the device; LayerCapture's outputs are copies already
        if self.window is not None:
            self.window.add(acts)
        else:  # raw values: the estimator takes them as they come
            self.estimator.add(acts.transpose(0, 1).reshape(acts.shape[1], -1))
        self.top = _top_images(self.top, acts.amax(dim=(2, 3)), index)

    def finish_thresholds(self, dataset: ProbeDataset) -> None:
        """After pass 1: the last window into the estimator, T_u from it, and an empty tally for pass 2."""
        if self.window is not None:
            self.window.flush()
        self.thresholds = self.estimator.thresholds()
        self.tally = Tally(len(self.thresholds), dataset.categories, _max_label(dataset), self.spec, self.device)
        if self.bootstrap is not None:
            self.tally.count_blocks(probe_concept_columns(dataset, self.tally), self.bootstrap.block_of_image,
                                    self.seg_size)

    def tally_batch(self, acts: torch.Tensor, columns: BatchLabels) -> None:
        """Pass 2 over a batch: G from its labels, I and A from the pixels of M_u, acts (B, U, h, w) upsampled
        and masked at T_u."""
        self.tally.add_truth(columns)
        cells = Upsampler.of(acts, self.seg_size, self.spec).cells(acts)
        limit = self.thresholds.to(self.device)
        # Only the cells that can exceed T_u are upsampled (see lce.dissect.upsample): a few percent. Their number
        # is the batch's one host read (it sizes the chunks). After it, on a GPU, every step has sizes the host
        # knows: each cell's slots go to the tally whole, with a mask of those above T_u; the CPU keeps only those.
        selected = (cells.bounds() > limit[None, :, None, None]).nonzero(as_tuple=True)
        slot_y, slot_x = self._slots(cells)
        for chunk in _chunks(selected, self.cell_chunk):
            image, unit, cell_y, cell_x = chunk
            values = cells.values(*chunk)  # (N, my, mx)
            active = values > limit[unit][:, None, None]
            if self.compact:
                k, active_y, active_x = active.nonzero(as_tuple=True)
                y, x = cells.positions(cell_y[k], cell_x[k], active_y, active_x)
                self.tally.add_pixels(columns, image[k], unit[k], y, x)
            else:
                y, x = cells.positions(cell_y[:, None, None], cell_x[:, None, None], slot_y, slot_x)
                self.tally.add_pixels(columns, image, unit, y, x, active)

    def _slots(self, cells: Cells) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, my, 1) and (1, 1, mx): the slots of a cell's values, made on the device once."""
        if self._slot_index is None:
            my, mx = cells.sampler.y.widest, cells.sampler.x.widest
            self._slot_index = (torch.arange(my, device=self.device)[None, :, None],
                                torch.arange(mx, device=self.device)[None, None, :])
        return self._slot_index

    def result(self) -> LayerResult:
        return LayerResult(layer=self.name, thresholds=self.thresholds, tally=self.tally, top_images=self.top[1],
                           top_activations=self.top[0], threshold_exact=self.estimator.exact,
                           cached=self.kept is not None, resampling=self.bootstrap,
                           per_category=self.spec.label_per_category)


def probe_concept_columns(dataset: ProbeDataset, tally: Tally) -> list[int]:
    """The tally columns of the probe's concepts: each (category, label) its c_<category>.csv lists (what `lce
    probe add` stores as concepts and lce.ingest.run names)."""
    return sorted(tally.column(category, number) for category, number in dataset.concepts)


def _loader(dataset: ProbeDataset, settings: DissectSettings, device: torch.device,
            persistent: bool = False) -> torch.utils.data.DataLoader:
    """The probe's batches, in order. Pinned when the dissection runs on a GPU (so that copies to it do not
    block), whatever else is present; pinned memory serves every CUDA device (torch pins for its current
    accelerator: pin_memory_device is deprecated). `persistent`: the workers stay for a second pass over it."""
    workers = settings.workers
    return torch.utils.data.DataLoader(dataset, batch_size=settings.batch_size, shuffle=False, num_workers=workers,
                                       pin_memory=torch.device(device).type == "cuda",
                                       worker_init_fn=_one_thread if workers else None,
                                       prefetch_factor=4 if workers else None,
                                       persistent_workers=persistent and workers > 0)


def _on_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """What pass 2 reads of a batch (_LABELS), on the device: copies that do not block when the batch is pinned
    (and nothing at all for a batch already there)."""
    return {key: batch[key].to(device, non_blocking=True) for key in _LABELS}


def _labels_only(dataset: ProbeDataset) -> ProbeDataset:
    """The probe without its images: what pass 2 loads when every layer's activations were kept."""
    return ProbeDataset(dataset.probe, image_size=dataset.image_size, seg_size=dataset.seg_size,
                        cache=dataset.cache, images=False)


def _category_indices(dataset: ProbeDataset, categories: list[str], device: torch.device) -> torch.Tensor:
    """Category indices of `categories`, on the device once for the whole of pass 2."""
    return torch.tensor([dataset.categories.index(c) for c in categories], dtype=torch.int64, device=device)


def _one_thread(_worker: int) -> None:
    # Each worker decodes one image at a time: torch's own threads in every worker only oversubscribe the CPUs.
    torch.set_num_threads(1)


def _chunks(index: tuple[torch.Tensor, ...], step: int):
    """Index tensors of selected cells, `step` at a time (each cell's values are a few dozen floats)."""
    for start in range(0, len(index[0]), step):
        yield tuple(part[start:start + step] for part in index)


# Values per unit, in keeps, that the first window's highest cells put into the thresholds before the other
# cells are filtered by the floor they set: 4 left the floor 3% under T_u on the median unit of a random
# resnet18 (2 left it 18% under, and twice the cells to upsample after).
_FIRST_ROUNDS = 4


class _Window:
    """Pass 1's activations of a layer, buffered up to `size` bytes, then streamed into the layer's threshold
    estimator (upsampled thresholds): first each unit's cells of highest bound, in rounds of at most `round_values`
    values in all, until every unit has a floor (the keep-th largest value so far, a lower bound of T_u; in the
    first window, until 4 * keep values of each unit are in); then, unit by unit, only the values of the other
    cells that exceed it. Most cells are never upsampled: with the values of a whole window at hand the first
    rounds put the floor close to T_u."""

    def __init__(self, estimator: ThresholdEstimator, seg_size: int, size: int, round_values: int, spec: Variant,
                 cell_chunk: int, compact: bool = False):
        self.estimator, self.seg_size, self.size, self.round_values = estimator, seg_size, size, round_values
        self.cell_chunk = cell_chunk  # cells upsampled at once
        self.compact = compact  # only the values that count, by boolean masks (the CPU): DeviceBudget
        self.spec = spec  # whose upsampling the values follow
        self.batches: list[torch.Tensor] = []
        self.bytes = 0

    def add(self, acts: torch.Tensor) -> None:
        self.batches.append(acts)
        self.bytes += acts.numel() * acts.element_size()
        if self.bytes >= self.size:
            self.flush()

    def flush(self) -> None:
        """The window into the estimator. Host reads (syncs on a GPU): one to know whether this is the first window,
        one per round (whether every unit has a floor), one for the number of cells left above the floors (which
        sizes the chunks), and one per compaction of a running top's pairs (lce.dissect.threshold._by_unit)."""
        if not self.batches:
            return
        acts = torch.cat(self.batches)
        self.batches, self.bytes = [], 0
        estimator = self.estimator
        cells = Upsampler.of(acts, self.seg_size, self.spec).cells(acts)
        samples_per_cell = cells.sampler.samples_per_cell
        bounds = _unit_major(cells.bounds())  # a cell's bound becomes -inf once its values are in
        count = acts.shape[0] * self.seg_size**2  # values per unit in this window
        wanted = 0 if bool(torch.isfinite(estimator.floor).any()) else _FIRST_ROUNDS * estimator.keep
        per_unit = min(_FIRST_ROUNDS * estimator.keep, self.round_values // len(bounds))
        step = min(bounds.shape[1], -(-per_unit // samples_per_cell))
        seen = 0
        # Invariant: the cells set to -inf in `bounds` are each unit's seen / samples_per_cell cells of highest
        # bound, every value of theirs that could exceed the floor is in the estimator (the rest cannot change T_u),
        # and `count` is the window's values per unit the estimator has still to count (all, until the first add).
        # Once every cell is in, the rounds stop (the host counts them: no read of the bounds).
        while seen < bounds.shape[1] * samples_per_cell and (
                seen < wanted or not bool(torch.isfinite(estimator.floor).all())):
            highest, cell = bounds.topk(step, dim=1)
            bounds.scatter_(1, cell, -math.inf)
            estimator.add(_values(cells, cell, highest > estimator.floor[:, None], self.cell_chunk, self.compact),
                          count=count)
            count, seen = 0, seen + step * samples_per_cell
        selected = (bounds > estimator.floor[:, None]).nonzero(as_tuple=True)  # (unit, cell)
        for unit, cell in _chunks(selected, self.cell_chunk):
            image, cell_y, cell_x = _from_unit_major(cells, cell)
            values = cells.values(image, unit, cell_y, cell_x).flatten(1)  # (N, samples_per_cell)
            above = values > estimator.floor[unit][:, None]
            if self.compact:  # only the values above the floor
                row, slot = above.nonzero(as_tuple=True)
                estimator.add_pairs(unit[row], values[row, slot], count=count, ascending=True)
            else:  # every slot, those at or below the floor as -inf (left out): no host read
                values = values.masked_fill(~above, -math.inf)
                estimator.add_pairs(unit[:, None].expand_as(values).reshape(-1), values.reshape(-1), count=count,
                                    ascending=True)  # nonzero's order
            count = 0
        if count:  # no cell could exceed the floor at all
            estimator.add_pairs(bounds.new_empty(0, dtype=torch.int64), bounds.new_empty(0), count=count)


def _unit_major(bounds: torch.Tensor) -> torch.Tensor:
    """(B, U, cells_y, cells_x) -> (U, B * cells_y * cells_x): each unit's cells in one row."""
    return bounds.transpose(0, 1).reshape(bounds.shape[1], -1)


def _from_unit_major(cells: Cells, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat cell indices of a _unit_major row -> (image, cell_y, cell_x)."""
    cells_y, cells_x = cells.sampler.empty.shape
    image, within = cell // (cells_y * cells_x), cell % (cells_y * cells_x)
    return image, within // cells_x, within % cells_x


def _values(cells: Cells, cell: torch.Tensor, open_: torch.Tensor, step: int, compact: bool = False) -> torch.Tensor:
    """(U, n) upsampled values of the open cells of each unit's row of flat cell indices (over images, cells_y,
    cells_x), -inf in the other slots. Every cell's values are computed (a size the host knows), then the closed
    ones masked; with `compact`, only the open cells' (their number read on the host)."""
    if compact:
        dense = torch.full((*cell.shape, cells.sampler.samples_per_cell), -math.inf, device=cell.device)
        unit = torch.arange(len(cell), device=cell.device)[:, None].expand_as(cell)[open_]
        image, cell_y, cell_x = _from_unit_major(cells, cell[open_])
        index = (image, unit, cell_y, cell_x)
        if len(unit):
            dense[open_] = torch.cat([cells.values(*chunk).flatten(1) for chunk in _chunks(index, step)])
        return dense.flatten(1)
    units, width = cell.shape
    unit = torch.arange(units, device=cell.device)[:, None].expand_as(cell).reshape(-1)
    image, cell_y, cell_x = _from_unit_major(cells, cell.reshape(-1))
    index = (image, unit, cell_y, cell_x)
    values = torch.cat([cells.values(*chunk).flatten(1) for chunk in _chunks(index, step)])
    values = values.view(units, width, -1).masked_fill_(~open_[:, :, None], -math.inf)
    return values.flatten(1)


def _top_images(current, peaks: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Running top-k images per unit by the unit's largest activation in the image (peaks: (B, U)); equal peaks
    keep the lower dataset index first, on every device (topk's order among ties is its kernel's: a dead unit's
    images would differ between the CPU and CUDA)."""
    peaks = peaks.transpose(0, 1)  # (U, B)
    images = indices[None, :].expand_as(peaks)
    if current is not None:  # the images so far come first: their indices are lower than the batch's
        peaks = torch.cat([current[0], peaks], dim=1)
        images = torch.cat([current[1], images], dim=1)
    k = min(TOP_IMAGES, peaks.shape[1])
    values, order = peaks.sort(dim=1, descending=True, stable=True)
    return values[:, :k].contiguous(), images.gather(1, order[:, :k])


def _max_label(dataset: ProbeDataset) -> int:
    return max(dataset.probe.vocabulary, default=0)
