"""The two passes of network dissection over a probe, for one or more layers of a model (method.md section 1).

    results = dissect(model, ["layer4"], dataset, DissectSettings.for_variant("dissect"), device)
    results["layer4"].tally.iou()  # (units, columns) IoU of every unit with every concept column

Pass 1 runs the model over the probe, keeps each unit's top images and streams its activations into its
threshold estimator: only the cells of the upsampled maps that can still exceed the estimator's floor are
upsampled (see lce.dissect.upsample). Pass 2 masks the upsampled activations at the thresholds and tallies I, A
and G, again upsampling only the cells that can exceed T_u. When a layer's activations fit `cache_budget` bytes
they are kept from pass 1 at full precision (on the device), pass 2 reads them instead of running the model
again, and exact thresholds are found after pass 1 from all the activations at once (fewer cells to upsample).
Thresholds depend only on the values, so the results are identical either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from lce.dissect import variants
from lce.dissect.tally import Tally
from lce.dissect.threshold import ThresholdEstimator
from lce.dissect.upsample import Cells, Upsampler
from lce.dissect.variants import IOU_CUTOFF, Variant
from lce.errors import LceError
from lce.probe.dataset import ProbeDataset

if TYPE_CHECKING:
    from lce.models.layout import MapLayout

TOP_IMAGES = 10


@dataclass(frozen=True)
class DissectSettings:
    variant: str = variants.DEFAULT_VARIANT  # a name in lce.dissect.variants
    quantile: float = variants.variant(variants.DEFAULT_VARIANT).quantile
    iou_threshold: float = IOU_CUTOFF
    seg_size: int | None = None  # None: the variant's default for the probe (see seg_size_for)
    batch_size: int = 32
    workers: int = 0
    cache_budget: int = 2 * 2**30  # bytes of activations kept from pass 1
    threshold_window: int | None = None  # bytes buffered in pass 1 for thresholds (_Window): 256 MiB, GPU 1 GiB

    def __post_init__(self) -> None:
        """Settings that cannot be dissected are an LceError here, whoever builds them (the messages name the
        options of lce ingest)."""
        if self.variant not in variants.NAMES:
            raise LceError(f"--variant must be one of {', '.join(variants.NAMES)}, not {self.variant!r}.")
        if not 0 < self.quantile < 1:
            raise LceError(f"--quantile must lie in (0, 1), not {self.quantile}.")
        if not 0 <= self.iou_threshold <= 1:
            raise LceError(f"--iou-threshold must lie in [0, 1], not {self.iou_threshold}.")
        if self.batch_size < 1 or self.workers < 0 or (self.seg_size is not None and self.seg_size < 1):
            raise LceError("--batch-size and --seg-size must be positive and --workers not negative.")

    @classmethod
    def for_variant(cls, variant: str, **overrides) -> DissectSettings:
        """The variant's settings: its quantile unless `quantile` is given (None: the variant's). An unknown
        variant is refused by __post_init__."""
        quantile = overrides.pop("quantile", None)
        if quantile is None and variant in variants.NAMES:
            quantile = variants.variant(variant).quantile
        return cls(variant=variant, quantile=0.0 if quantile is None else quantile,
                   **overrides)

    @property
    def spec(self) -> Variant:
        """The registered variant these settings name."""
        return variants.variant(self.variant)

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


Progress = Callable[[str, int, int], None]  # (pass name, images done, images in all)
_LABELS = ("layers", "whole", "annotated", "index")  # what pass 2 reads of a batch


def dissect(model: torch.nn.Module, layers: list[str], dataset: ProbeDataset, settings: DissectSettings,
            device: torch.device, progress: Progress | None = None,
            exact_limit: int | None = None, layouts: dict[str, MapLayout] | None = None) -> dict[str, LayerResult]:
    """Dissect `layers` of `model` over `dataset`, whose seg_size is the segmentation size S (build it with
    settings.seg_size_for(...), as lce.dissect.ingest does). `layouts` says how each layer's output holds its units
    (lce.models.layout.resolve_layouts; a layer left out is read as nchw). Thresholds stay exact while each
    layer's need at most `exact_limit` values (default 2**26 on the CPU, 2**29 on a GPU; see ThresholdEstimator)."""
    from lce.models.layers import LayerCapture

    model = model.to(device).eval()
    exact_limit = exact_limit or (2**29 if device.type == "cuda" else 2**26)
    window = settings.threshold_window or (2**30 if device.type == "cuda" else 2**28)
    seg_size = dataset.seg_size
    spec = settings.spec
    loader = _loader(dataset, settings)
    thresholds: dict[str, ThresholdEstimator] = {}
    tops: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    kept: dict[str, list[torch.Tensor] | None] = {}
    windows: dict[str, _Window] = {}
    labels: list[dict[str, torch.Tensor]] | None = None  # pass 1's labels, when pass 2 reads kept activations
    budget = settings.cache_budget
    done = 0
    with LayerCapture(model, layers, layouts) as capture, torch.inference_mode():
        for batch in loader:  # pass 1: thresholds and top images
            model(dataset.normalize(batch["image"].to(device, non_blocking=True)))
            first = not thresholds
            for name in layers:
                acts = capture.outputs[name].float()
                if name not in thresholds:
                    per_image = seg_size**2 if spec.threshold_upsampled else acts.shape[2] * acts.shape[3]
                    estimator = ThresholdEstimator(acts.shape[1], settings.quantile, device, exact_limit,
                                                   expected=len(dataset) * per_image)
                    thresholds[name] = estimator
                    size = acts[0].numel() * acts.element_size() * len(dataset)
                    kept[name] = [] if size <= budget else None  # else the model runs again in pass 2
                    budget -= size if kept[name] is not None else 0
                    # Exact thresholds do not depend on the windows: a kept layer's are found from all at once.
                    whole = kept[name] is not None and estimator.exact
                    windows[name] = _Window(estimator, seg_size, size if whole else window, exact_limit, spec)
                if kept[name] is not None:
                    kept[name].append(acts)  # on the device; LayerCapture's outputs are copies already
                if spec.threshold_upsampled:
                    windows[name].add(acts)
                else:  # raw values: the estimator takes them as they come
                    thresholds[name].add(acts.transpose(0, 1).reshape(acts.shape[1], -1))
                tops[name] = _top_images(tops.get(name), acts.amax(dim=(2, 3)), batch["index"].to(device))
            if first and all(kept[name] is not None for name in layers):
                size = sum(batch[key][0].numel() * batch[key].element_size() for key in _LABELS) * len(dataset)
                labels = [] if size <= budget else None  # else pass 2 loads them again
            if labels is not None:
                labels.append({key: batch[key] for key in _LABELS})
            done += len(batch["index"])
            if progress:
                progress("pass 1", done, len(dataset))

        for window in windows.values():
            window.flush()
        limits = {name: estimator.thresholds() for name, estimator in thresholds.items()}
        tallies = {name: Tally(len(limits[name]), dataset.categories, _max_label(dataset), spec, device)
                   for name in layers}
        layer_category = torch.tensor([dataset.categories.index(c) for c in dataset.layer_categories],
                                      dtype=torch.int64)
        whole_category = torch.tensor([dataset.categories.index(c) for c in dataset.whole_categories],
                                      dtype=torch.int64)
        cached_all = all(kept[name] is not None for name in layers)
        if labels is None:
            labels_only = ProbeDataset(dataset.probe, image_size=dataset.image_size, seg_size=seg_size,
                                       cache=dataset.cache, images=False) if cached_all else dataset
        done = 0
        for position, batch in enumerate(labels or _loader(labels_only, settings)):  # pass 2: tallies
            if not cached_all:
                model(dataset.normalize(batch["image"].to(device, non_blocking=True)))
            # The batch's label columns: the same for every layer's tally.
            columns = tallies[layers[0]].labels(batch["layers"], layer_category, batch["whole"], whole_category,
                                                batch["annotated"])
            for name in layers:
                acts = kept[name][position] if kept[name] is not None else capture.outputs[name].float()
                tally = tallies[name]
                tally.add_truth(columns)
                cells = Upsampler.of(acts, seg_size, spec).cells(acts)
                limit = limits[name].to(device)
                # Only the cells that can exceed T_u are upsampled (see lce.dissect.upsample): a few percent.
                selected = (cells.bounds() > limit[None, :, None, None]).nonzero(as_tuple=True)
                for chunk in _chunks(selected, device):
                    image, unit, cell_y, cell_x = chunk
                    values = cells.values(*chunk)
                    active, slot_y, slot_x = (values > limit[unit][:, None, None]).nonzero(as_tuple=True)
                    y, x = cells.positions(cell_y[active], cell_x[active], slot_y, slot_x)
                    tally.add_pixels(columns, image[active], unit[active], y, x)
            done += len(batch["index"])
            if progress:
                progress("pass 2", done, len(dataset))
    return {
        name: LayerResult(layer=name, thresholds=limits[name], tally=tallies[name], top_images=tops[name][1],
                          top_activations=tops[name][0], threshold_exact=thresholds[name].exact,
                          cached=kept[name] is not None)
        for name in layers
    }


def _loader(dataset: ProbeDataset, settings: DissectSettings) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, batch_size=settings.batch_size, shuffle=False,
                                       num_workers=settings.workers, pin_memory=torch.cuda.is_available(),
                                       worker_init_fn=_one_thread if settings.workers else None,
                                       prefetch_factor=4 if settings.workers else None)


def _one_thread(_worker: int) -> None:
    # Each worker decodes one image at a time: torch's own threads in every worker only oversubscribe the CPUs.
    torch.set_num_threads(1)


def _chunks(index: tuple[torch.Tensor, ...], device: torch.device):
    """Index tensors of selected cells, a bounded number at a time (each cell's values are a few dozen floats)."""
    step = 2**19 if device.type == "cuda" else 2**15
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

    def __init__(self, estimator: ThresholdEstimator, seg_size: int, size: int, round_values: int, spec: Variant):
        self.estimator, self.seg_size, self.size, self.round_values = estimator, seg_size, size, round_values
        self.spec = spec  # whose upsampling the values follow
        self.batches: list[torch.Tensor] = []
        self.bytes = 0

    def add(self, acts: torch.Tensor) -> None:
        self.batches.append(acts)
        self.bytes += acts.numel() * acts.element_size()
        if self.bytes >= self.size:
            self.flush()

    def flush(self) -> None:
        if not self.batches:
            return
        acts = torch.cat(self.batches)
        self.batches, self.bytes = [], 0
        estimator = self.estimator
        cells = Upsampler.of(acts, self.seg_size, self.spec).cells(acts)
        bounds = _unit_major(cells.bounds())  # a cell's bound becomes -inf once its values are in
        count = acts.shape[0] * self.seg_size**2  # values per unit in this window
        wanted = 0 if bool(torch.isfinite(estimator.floor).any()) else _FIRST_ROUNDS * estimator.keep
        per_unit = min(_FIRST_ROUNDS * estimator.keep, self.round_values // len(bounds))
        step = min(bounds.shape[1], -(-per_unit // cells.sampler.samples_per_cell))
        seen = 0
        while seen < wanted or not bool(torch.isfinite(estimator.floor).all()):
            highest, cell = bounds.topk(step, dim=1)
            if not bool(torch.isfinite(highest).any()):
                break  # every value of the window is in
            bounds.scatter_(1, cell, -math.inf)
            estimator.add(_values(cells, cell, highest > estimator.floor[:, None]), count=count)
            count, seen = 0, seen + step * cells.sampler.samples_per_cell
        selected = (bounds > estimator.floor[:, None]).nonzero(as_tuple=True)  # (unit, cell)
        for unit, cell in _chunks(selected, acts.device):
            image, cell_y, cell_x = _from_unit_major(cells, cell)
            values = cells.values(image, unit, cell_y, cell_x)
            row, slot_y, slot_x = (values > estimator.floor[unit][:, None, None]).nonzero(as_tuple=True)
            estimator.add_pairs(unit[row], values[row, slot_y, slot_x], count=count)
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


def _values(cells: Cells, cell: torch.Tensor, open_: torch.Tensor) -> torch.Tensor:
    """(U, n) upsampled values of the open cells of each unit's row of flat cell indices (over images, cells_y,
    cells_x), -inf in the other slots."""
    unit = torch.arange(len(cell), device=cell.device)[:, None].expand_as(cell)[open_]
    image, cell_y, cell_x = _from_unit_major(cells, cell[open_])
    index = (image, unit, cell_y, cell_x)
    dense = torch.full((*cell.shape, cells.sampler.samples_per_cell), -math.inf, device=cell.device)
    dense[open_] = torch.cat([cells.values(*chunk).flatten(1) for chunk in _chunks(index, cell.device)])
    return dense.flatten(1)


def _top_images(current, peaks: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Running top-k images per unit by the unit's largest activation in the image (peaks: (B, U))."""
    peaks = peaks.transpose(0, 1)  # (U, B)
    images = indices[None, :].expand_as(peaks)
    if current is not None:
        peaks = torch.cat([current[0], peaks], dim=1)
        images = torch.cat([current[1], images], dim=1)
    k = min(TOP_IMAGES, peaks.shape[1])
    values, order = peaks.topk(k, dim=1)
    return values, images.gather(1, order)


def _max_label(dataset: ProbeDataset) -> int:
    return max(dataset.probe.vocabulary, default=0)
