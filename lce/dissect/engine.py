"""The two passes of network dissection over a probe, for one or more layers of a model (method.md section 1).

    results = dissect(model, ["layer4"], dataset, DissectSettings.for_variant("dissect"), device)
    results["layer4"].iou          # (units, columns) IoU of every unit with every concept column

Pass 1 runs the model over the probe and streams every unit's activations into its threshold estimator (and its
top images). Pass 2 upsamples the activations to the segmentation size, masks them at the thresholds and tallies
I, A and G. When a layer's activations fit `cache_budget` bytes they are kept from pass 1 at full precision and
pass 2 reads them instead of running the model again: the results are identical either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lce.dissect.tally import Tally
from lce.dissect.threshold import ThresholdEstimator
from lce.dissect.upsample import upsample
from lce.probe.dataset import ProbeDataset

# method.md section 1: NetDissect (CVPR 2017) thresholds the top 0.5% of raw activations at the probe's own
# segmentation size; Dissect (PNAS 2020) the top 1% of activations upsampled to 56 x 56 for 224-pixel images.
VARIANT_QUANTILE = {"netdissect": 0.005, "dissect": 0.01}
IOU_CUTOFF = 0.04  # every published tool
TOP_IMAGES = 10


@dataclass(frozen=True)
class DissectSettings:
    variant: str = "dissect"
    quantile: float = 0.01
    iou_threshold: float = IOU_CUTOFF
    seg_size: int | None = None  # None: the variant's default for the probe (see seg_size_for)
    batch_size: int = 32
    workers: int = 0
    cache_budget: int = 2 * 2**30  # bytes of activations kept from pass 1
    unit_chunk: int = 256  # units masked and tallied at once on the CPU (bounds pass 2's memory); 4x on a GPU

    @classmethod
    def for_variant(cls, variant: str, **overrides) -> DissectSettings:
        return cls(variant=variant, quantile=overrides.pop("quantile", None) or VARIANT_QUANTILE[variant],
                   **overrides)

    def seg_size_for(self, image_size: int, probe_seg_size: int) -> int:
        if self.seg_size:
            return self.seg_size
        return probe_seg_size if self.variant == "netdissect" else image_size // 4  # 56 for 224 (Dissect)


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


def dissect(model: torch.nn.Module, layers: list[str], dataset: ProbeDataset, settings: DissectSettings,
            device: torch.device, progress: Progress | None = None,
            exact_limit: int = 2**26) -> dict[str, LayerResult]:
    """Dissect `layers` of `model` over `dataset`, whose seg_size is the segmentation size S (build it with
    settings.seg_size_for(...), as lce.dissect.ingest does)."""
    from lce.models.layers import LayerCapture

    model = model.to(device).eval()
    seg_size = dataset.seg_size
    loader = _loader(dataset, settings)
    thresholds: dict[str, ThresholdEstimator] = {}
    tops: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    kept: dict[str, list[torch.Tensor] | None] = {}
    budget = settings.cache_budget
    done = 0
    with LayerCapture(model, layers) as capture, torch.inference_mode():
        for batch in loader:  # pass 1: thresholds and top images
            model(dataset.normalize(batch["image"].to(device, non_blocking=True)))
            for name in layers:
                acts = capture.outputs[name].float()
                units = acts.shape[1]
                if name not in thresholds:
                    per_image = seg_size**2 if settings.variant == "dissect" else acts.shape[2] * acts.shape[3]
                    thresholds[name] = ThresholdEstimator(units, settings.quantile, device, exact_limit,
                                                          expected=len(dataset) * per_image)
                    kept[name] = []
                peaks = acts.amax(dim=(2, 3))  # (B, U)
                _add_threshold_values(thresholds[name], acts, peaks, seg_size, settings)
                tops[name] = _top_images(tops.get(name), peaks, batch["index"].to(device))
                if kept[name] is not None:
                    size = acts.numel() * acts.element_size()
                    if size <= budget:
                        kept[name].append(acts.to("cpu", copy=True))
                        budget -= size
                    else:  # over budget: this layer runs the model again in pass 2
                        budget += sum(t.numel() * t.element_size() for t in kept[name])
                        kept[name] = None
            done += len(batch["index"])
            if progress:
                progress("pass 1", done, len(dataset))

        limits = {name: estimator.thresholds() for name, estimator in thresholds.items()}
        tallies = {name: Tally(len(limits[name]), dataset.categories, _max_label(dataset), settings.variant, device)
                   for name in layers}
        layer_category = torch.tensor([dataset.categories.index(c) for c in dataset.layer_categories],
                                      dtype=torch.int64)
        whole_category = torch.tensor([dataset.categories.index(c) for c in dataset.whole_categories],
                                      dtype=torch.int64)
        cached_all = all(kept[name] is not None for name in layers)
        labels_only = ProbeDataset(dataset.probe, image_size=dataset.image_size, seg_size=seg_size,
                                   cache=dataset.cache, images=False) if cached_all else dataset
        done = 0
        for position, batch in enumerate(_loader(labels_only, settings)):  # pass 2: tallies
            if not cached_all:
                model(dataset.normalize(batch["image"].to(device, non_blocking=True)))
            for name in layers:
                acts = kept[name][position].to(device) if kept[name] is not None else capture.outputs[name].float()
                tally = tallies[name]
                tally.add_truth(batch["layers"], layer_category, batch["whole"], whole_category)
                limit = limits[name].to(device)
                # Only maps whose upsampling can exceed T_u are upsampled: bilinear values never exceed the
                # map's peak (nor, with the dissect grid's zero padding, max(peak, 0)).
                bound = _upsampled_bound(acts.amax(dim=(2, 3)), settings.variant)
                image, unit = (bound > limit[None, :]).nonzero(as_tuple=True)
                step = settings.unit_chunk * settings.batch_size * (4 if device.type == "cuda" else 1)
                for start in range(0, len(image), step):
                    pairs = image[start:start + step], unit[start:start + step]
                    # The maps as channels of one image (cuDNN's sampler limits the batch, not the channels).
                    maps = upsample(acts[pairs][None], seg_size, settings.variant)[0]
                    mask = maps > limit[pairs[1]][:, None, None]
                    tally.add_pairs(mask, *pairs, batch["layers"], layer_category, batch["whole"],
                                    whole_category, batch["annotated"])
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


def _upsampled_bound(peaks: torch.Tensor, variant: str) -> torch.Tensor:
    """(B, U) from the maps' peaks: no upsampled value of a map exceeds this (its peak; max(peak, 0) with the
    dissect grid's zero padding)."""
    return peaks if variant == "netdissect" else peaks.clamp(min=0)


def _add_threshold_values(estimator: ThresholdEstimator, acts: torch.Tensor, peaks: torch.Tensor, seg_size: int,
                          settings: DissectSettings) -> None:
    """Stream one batch into a layer's threshold estimator: raw values (netdissect) or upsampled ones (dissect);
    once the estimator knows which values can no longer matter, only maps that can reach them are upsampled."""
    batch, units = peaks.shape
    if settings.variant == "netdissect":
        estimator.add(acts.transpose(0, 1).reshape(units, -1))
        return
    floor = estimator.floor
    if floor is None:
        estimator.add(upsample(acts, seg_size, "dissect").transpose(0, 1).reshape(units, -1))
        return
    image, unit = (_upsampled_bound(peaks, "dissect") >= floor[None, :]).nonzero(as_tuple=True)
    step = settings.unit_chunk * settings.batch_size
    for start in range(0, len(image), step):
        pairs = image[start:start + step], unit[start:start + step]
        maps = upsample(acts[pairs][None], seg_size, "dissect")[0]  # the maps as channels of one image
        estimator.add_rows(pairs[1], maps.reshape(len(maps), -1), count=0)
    estimator.count += batch * seg_size**2  # every unit had this many values, the maps left out included


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
