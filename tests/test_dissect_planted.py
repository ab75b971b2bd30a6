"""Dissection labels units that are planted detectors of known concepts with those concepts (docs/method.md section 1).

The model here does not learn anything: its `detectors` module looks up which probe image it was given (by a
fingerprint of the normalised image) and returns, per unit, a map built from that image's ground truth (the
synthetic probe's own label maps). So the test is of the engine's labelling alone: thresholds, masks, tallies and
IoU must name every planted unit's concept, by a clear margin, under both published variants.

Geometry. The feature grid equals each variant's segmentation size S (netdissect: the probe's sh; dissect:
image_size // 4), so both upsamplers return the maps unchanged and a unit's mask is exactly its top-q cells.
A pixel-level unit is the fraction of its concept in each feature cell times (1 + a small random ramp), and 0
elsewhere: the top-q cells are a random sample of the concept's interior (or all of it, if it covers less than q
of all pixels), spread evenly over its instances. Then IoU(concept) = |M| / G, while a concept that merely
overlaps it gets about IoU(concept) * P(concept | other): the planted concepts are chosen so that no other concept
lies mostly inside them (a ring has no parts; the centre of a cross is a small share of the cross).

A scene covers 1/6 of the images on average, which caps its IoU at q * images / (images of the scene): below the
0.04 cut-off for netdissect (0.005 * 6 = 0.03). The probe's seed is chosen so that forest-s is rare (3 images in
80), and the scene unit fires on the top band of those images only (always sky or shapes: never the ground, whose
material, grass, occurs only in forests and would otherwise score like the scene).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lce.dissect.engine import IOU_CUTOFF, DissectSettings, dissect
from lce.probe.broden import Broden
from lce.probe.cache import DecodeCache
from lce.probe.dataset import ProbeDataset

SIZE = 128  # images 128 x 128, segmentations 64 x 64: S = 64 (netdissect) or 32 (dissect)
IMAGES = 80
SEED = 3  # forest-s shows in 3 of the 80 images (see the module docstring)
PLANTED = (
    ("color", "red-c"),  # only ever a shape's colour, never sky or ground
    ("object", "ring"),  # the one shape without parts
    ("part", "cross-centre"),  # about a sixth of its cross, and the cross has no overlapping part layer
    ("material", "wood"),  # shapes only
    ("scene", "forest-s"),
)
DISTRACTORS = ("constant", "noise")
MARGIN = 1.5  # IoU of the planted concept over the unit's runner-up concept
WELL_ABOVE = 2 * IOU_CUTOFF
SKY_BAND = 0.4  # the horizon of a synthetic landscape is never above 0.4 of the height
RAMP = 0.25  # activation = fraction * (1 + RAMP * uniform): a full cell always beats a partial one (<= 3/4)
EXACT = "donot_use_mm_for_euclid_dist"  # cdist without the matrix-product shortcut, which loses ~1e-3


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from lce.probe.synth import synthesize

    probe = synthesize(tmp_path_factory.mktemp("planted") / "probe", images=IMAGES, size=SIZE, seed=SEED)
    scenes = [probe.vocabulary[labels.whole["scene"][0]][0] for labels in probe.labels]
    # Precondition of the scene unit (the generator, not the engine): a rare scene keeps its IoU above the cut-off.
    assert scenes.count("forest-s") <= 4, f"forest-s shows in {scenes.count('forest-s')} images; pick another seed"
    return probe


@pytest.fixture(scope="module")
def cache(synth, tmp_path_factory):
    return DecodeCache.build(Broden.open(synth.path), tmp_path_factory.mktemp("planted-cache"))


def _fingerprint(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 48): the image's 4 x 4 mean colours, enough to tell the probe's images apart."""
    return F.adaptive_avg_pool2d(images.float(), 4).flatten(1)


class Detectors(torch.nn.Module):
    """Identifies each input image by its fingerprint and returns that image's precomputed unit maps."""

    def __init__(self, fingerprints: torch.Tensor, maps: torch.Tensor):
        super().__init__()
        self.register_buffer("fingerprints", fingerprints)  # (N, 48)
        self.register_buffer("maps", maps)  # (N, U, S, S)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        distance, index = torch.cdist(_fingerprint(images), self.fingerprints, compute_mode=EXACT).min(dim=1)
        assert bool((distance < 1e-4).all()), f"an input is not a probe image (distance {distance.max():.3g})"
        return self.maps[index]


class PlantedModel(torch.nn.Module):
    def __init__(self, fingerprints: torch.Tensor, maps: torch.Tensor):
        super().__init__()
        self.detectors = Detectors(fingerprints, maps)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.detectors(images)


def _concept_fraction(labels, category: str, number: int, seg: int, size: int) -> torch.Tensor:
    """(size, size): the share of each feature cell covered by the concept (0 where the image lacks the category)."""
    layers = labels.pixel.get(category, [])
    if not layers:
        return torch.zeros(size, size)
    present = np.zeros((seg, seg), dtype=bool)
    for layer in layers:
        present |= layer == number
    return F.avg_pool2d(torch.from_numpy(present).float()[None, None], seg // size)[0, 0]


def planted_model(synth, dataset: ProbeDataset) -> PlantedModel:
    size, seg = dataset.seg_size, synth.labels[0].pixel["color"][0].shape[0]
    assert seg % size == 0
    generator = torch.Generator().manual_seed(11)
    units = len(PLANTED) + len(DISTRACTORS)
    ramp = 1 + RAMP * torch.rand(len(dataset), units, size, size, generator=generator)
    maps = torch.zeros(len(dataset), units, size, size)
    band = ((torch.arange(size) + 0.5) / size < SKY_BAND).float()[:, None].expand(size, size)
    for index, labels in enumerate(synth.labels):
        for unit, (category, name) in enumerate(PLANTED):
            number = synth.number(name)
            if category == "scene":
                maps[index, unit] = band if number in labels.whole.get("scene", []) else 0.0
            else:
                maps[index, unit] = _concept_fraction(labels, category, number, seg, size)
    maps[:, : len(PLANTED)] *= ramp[:, : len(PLANTED)]
    constant, noise = (len(PLANTED) + DISTRACTORS.index(name) for name in ("constant", "noise"))
    maps[:, constant] = 1.0  # every value ties with its threshold: an empty mask
    maps[:, noise] = ramp[:, noise]  # a random top q, spread over every concept alike
    fingerprints = torch.stack([_fingerprint(dataset.image(i)[None])[0] for i in range(len(dataset))])
    closest = torch.cdist(fingerprints, fingerprints, compute_mode=EXACT).fill_diagonal_(float("inf")).min()
    assert closest > 1e-2, "two probe images share a fingerprint"
    return PlantedModel(fingerprints, maps)


def ranking(result, vocabulary, unit: int) -> list[tuple[tuple[str, str], float]]:
    """The unit's concepts, best IoU first, as ((category, name), IoU)."""
    tally = result.tally
    iou = tally.iou()[unit]
    order = torch.argsort(iou, descending=True, stable=True)[:5].tolist()
    return [((tally.categories[column // tally.stride],
              vocabulary[column % tally.stride].name if column % tally.stride else "-"), float(iou[column]))
            for column in order]


@pytest.mark.parametrize("variant", ["netdissect", "dissect"])
def test_planted_detectors_get_their_own_concepts_by_a_margin(synth, cache, variant):
    probe = Broden.open(synth.path)
    settings = DissectSettings.for_variant(variant)
    seg = settings.seg_size_for(SIZE, probe.rows[0].sh)
    assert seg == {"netdissect": SIZE // 2, "dissect": SIZE // 4}[variant]
    dataset = ProbeDataset(probe, seg_size=seg, cache=cache)
    assert [row.image for row in probe.rows] == synth.images  # the ground truth is in the dataset's order
    result = dissect(planted_model(synth, dataset), ["detectors"], dataset, settings,
                     torch.device("cpu"))["detectors"]

    assert result.threshold_exact
    report = {PLANTED[u] if u < len(PLANTED) else DISTRACTORS[u - len(PLANTED)]: ranking(result, probe.vocabulary, u)
              for u in range(len(PLANTED) + len(DISTRACTORS))}
    print(variant, *(f"{unit}: {ranked[:3]}" for unit, ranked in report.items()), sep="\n")
    for unit, concept in enumerate(PLANTED):
        (best, best_iou), (runner_up, runner_iou) = report[concept][:2]
        assert best == concept, f"{variant}: the {concept} detector is labelled {best}: {report[concept]}"
        assert best_iou >= WELL_ABOVE, f"{variant}: {concept} has IoU {best_iou:.3f}"
        assert best_iou >= MARGIN * runner_iou, \
            f"{variant}: {concept} IoU {best_iou:.3f} is not {MARGIN}x its runner-up {runner_up} ({runner_iou:.3f})"
    for name in DISTRACTORS:  # neither the constant nor the noise unit passes for interpretable
        assert report[name][0][1] < IOU_CUTOFF, f"{variant}: the {name} unit scores {report[name][0]}"


class PermutedDetectors(Detectors):
    """The same maps, returned as a view that is not contiguous: channels last (as a ConvNeXt block's output), or
    a permuted view of NHWC storage."""

    def __init__(self, fingerprints: torch.Tensor, maps: torch.Tensor, memory: str):
        super().__init__(fingerprints, maps)
        self.memory = memory

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = super().forward(images)
        if self.memory == "channels_last":
            return maps.contiguous(memory_format=torch.channels_last)
        return maps.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)


@pytest.mark.parametrize("memory", ["channels_last", "permuted view"])
@pytest.mark.parametrize("variant", ["netdissect", "dissect"])
def test_maps_that_are_not_contiguous_give_the_same_results(synth, cache, variant, memory):
    probe = Broden.open(synth.path)
    settings = DissectSettings.for_variant(variant)
    dataset = ProbeDataset(probe, seg_size=settings.seg_size_for(SIZE, probe.rows[0].sh), cache=cache)
    model = planted_model(synth, dataset)
    plain = dissect(model, ["detectors"], dataset, settings, torch.device("cpu"))["detectors"]
    model.detectors = PermutedDetectors(model.detectors.fingerprints, model.detectors.maps, memory)
    assert not model.detectors(dataset.image(0)[None]).is_contiguous()
    permuted = dissect(model, ["detectors"], dataset, settings, torch.device("cpu"))["detectors"]
    assert torch.equal(plain.thresholds, permuted.thresholds)
    for mine, theirs in zip(plain.tally.counts(), permuted.tally.counts()):
        assert torch.equal(mine, theirs)
    assert torch.equal(plain.top_images, permuted.top_images)
