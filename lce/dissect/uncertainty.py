"""How sure a label is: a block bootstrap over the probe's images, and the IoU that chance alone would give.

    blocks = replicate_blocks(probe.sha256, images=len(probe))                  # (images,) block of each image
    weights = replicate_weights(replicate_seed(probe.sha256), blocks.max() + 1)  # (replicates, blocks) counts
    found = label_uncertainty(I_b, A_b, G_b, weights, concept_category, per_category=variant.label_per_category)
    chance = chance_iou(A_p, G_p, images_annotating, A, G); lift = iou_lift(iou, chance)

The method (issue 16, section 1):

- **Block bootstrap.** The probe's images are split into at least 100 blocks by a seeded random partition (not
  index.csv's order, which follows the source datasets and so would put one dataset in a block). Both the
  partition and the bootstrap's replicates are seeded from the probe's content hash: the seed is
  ``int(sha256[:15], 16)`` (the hash's first 60 bits, so that it fits
  PostgreSQL's bigint, run.bootstrap_seed), the partition draws from ``SeedSequence([seed, 0])`` and
  the replicates from ``SeedSequence([seed, 1])``, so every run on a probe, whatever its model, shares the same
  replicates and models move together as the probe sample does. A replicate draws `blocks` blocks with
  replacement (multinomial counts w_rb); its tallies are the weighted sums of the per-block tallies, and its
  IoU = sum_b w_rb I_b / (sum_b w_rb A_b + sum_b w_rb G_b - sum_b w_rb I_b), 0 where that denominator is 0.
- **Thresholds are held fixed.** T_u is the point estimate's in every replicate (re-estimating it would need
  every activation again). The interval so leaves out the threshold's own sampling noise; the coverage figure
  (tests/test_uncertainty.py on simulated tallies, bench/ on the real engine) shows what that costs.
- **Interval, stability, alternatives.** iou_low, iou_high: the 2.5% and 97.5% percentiles (linear
  interpolation, torch.quantile) of the point label's replicate IoUs. stability: the share of replicates whose
  best concept, within the variant's candidates (every concept for `dissect`; the point label's category for
  `netdissect`, whose label is the best of each category), is the point label. A replicate whose best IoU is 0
  has no winner. Alternatives: every candidate that wins at least 1% of replicates, with its share. runner_up:
  the candidate with the second-best point IoU.
- **Chance.** chance_iou is the IoU at the intersection expected if the concept's label maps were permuted among
  the N_k images that can carry them (all N images for `dissect`; those annotating the concept's category for
  `netdissect`, so A stays fixed): E[I] = (1/N_k) * sum_p A_p * G_p over the positions p of the S x S grid,
  then E[I] / (A + G - E[I]). It keeps the unit's and the concept's spatial biases (centre bias, whole-image
  labels) and removes only the pairing. It is a baseline to read lift = IoU / chance against, not a p-value: it
  says nothing of how often a permuted probe would reach the observed IoU.

Sums are taken in float64 on the tallies' device: the counts and weights are integers, exact in float64 up to
2**53 (float32 would not be: a scene label's G over a Broden-sized probe passes 2**24).

How the engine feeds it (lce.dissect.engine, lce.dissect.tally.BlockCounts; no third pass over the probe):

- dissect(..., bootstrap=Resampling.of(probe sha256, images, replicates, blocks)) (lce ingest passes the stored
  probe's hash; by default, with DissectSettings.replicates > 0, the probe's own). Pass 2 counts, from the same
  active pixels as the pooled tallies (which stay exactly as they were), I_b (blocks, units, concepts), A_b
  (blocks, units), or (blocks, units, categories) for `netdissect`'s A[u, k], read per concept through its
  category (label_uncertainty's activation_index), and G_b (blocks, concepts), as int32 counters over the
  probe's concepts only (its c_<category>.csv members: Broden's 1,197, not the tally's 7,188 columns). Their sums
  over the blocks are the pooled tallies of those columns, exactly (tests/test_uncertainty_engine.py).
- Also A_p (units, S*S), for `netdissect` (categories, units, S*S) over the images annotating each category, G_p
  (concepts, S*S), whole-image labels at every position, and the images annotating each category (N_k).
- Per-batch work stays on the device with sizes the host knows: no host sync added per batch
  (lce.instrument.syncs.SYNCS_PER_BATCH unchanged).
- LayerResult.uncertainty (layer_uncertainty) works it out once the passes are over, on first read: the point
  labels are the engine's own (the best IoU over the probe's concepts from the pooled tallies, first of equals,
  none where it is 0: as lce.ingest.run labels units), then label_uncertainty a slice of units at a time (each
  slice's float64 copy of I_b within CHUNK_BYTES), chance_iou and iou_lift at the label, and the first
  STORED_REPLICATES replicates' overall winners. lce.ingest.run stores them (unit columns, unit_alternative,
  unit_replicate, run.replicates / bootstrap_blocks / bootstrap_seed).
- Memory: lce.dissect.memory counts the counters ("bootstrap counters") and the replicates' working set
  ("bootstrap replicates"); for a ResNet-50 layer4 on Broden, 0.95 GiB of counters for `dissect` (S = 56) and
  1.55 GiB for `netdissect` (S = 112), and about 1.2 GiB while the replicates are worked out
  (bench/bench_uncertainty.py --memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from lce.errors import LceError
from lce.vocabulary import DEFAULT_BLOCKS, DEFAULT_REPLICATES  # issue 16: at least 100 blocks, 1,000 replicates

# Issue 16: a 95% interval; alternatives from 1%.
# Replicates whose labels are stored per unit (table unit_replicate) for `lce embed --uncertainty` (issue 16, 3).
STORED_REPLICATES = 200
INTERVAL = (0.025, 0.975)
ALTERNATIVE_SHARE = 0.01

# What one chunk of replicates may hold on the device (its IoUs and their temporaries), by default.
CHUNK_BYTES = 256 * 2**20


def replicate_seed(probe_sha256: str) -> int:
    """The seed every run on a probe shares: the first 60 bits (15 hex digits) of the probe's content hash, as an
    integer (below 2**63: it is stored in a bigint)."""
    text = str(probe_sha256).strip().lower()
    if len(text) < 15 or any(ch not in "0123456789abcdef" for ch in text):
        raise LceError(
            f"The probe's content hash {probe_sha256!r} is not a SHA-256 hex digest: the bootstrap's seed is taken "
            "from its first 15 hex digits so that every run on a probe shares the same replicates. Pass the "
            "probe's sha256 as stored with it (64 hex digits).")
    return int(text[:15], 16)


def replicate_blocks(probe_sha256: str, images: int, blocks: int = DEFAULT_BLOCKS) -> np.ndarray:
    """The block of each image, (images,) int64: a seeded random partition into `blocks` nearly equal blocks.

    Block sizes differ by at most one image. A probe with fewer images than `blocks` gets one image per block.
    """
    seed = replicate_seed(probe_sha256)
    if images < 1:
        raise LceError(f"The bootstrap needs a probe with at least one image, not {images}.")
    if blocks < 1:
        raise LceError(f"The bootstrap needs at least one block of images, not {blocks} (issue 16 asks for 100).")
    blocks = min(blocks, images)
    order = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 0]))).permutation(images)
    block_of_image = np.empty(images, dtype=np.int64)
    # The image at rank r of the shuffled order goes to block r * blocks // images: consecutive ranks, sizes
    # floor or ceil of images / blocks.
    block_of_image[order] = np.arange(images, dtype=np.int64) * blocks // images
    return block_of_image


def replicate_weights(seed: int, blocks: int, replicates: int = DEFAULT_REPLICATES) -> np.ndarray:
    """How often each block is drawn in each replicate, (replicates, blocks) int64; every row sums to `blocks`."""
    if blocks < 1 or replicates < 1:
        raise LceError(f"The bootstrap needs at least one block and one replicate, not {blocks} blocks and "
                       f"{replicates} replicates.")
    generator = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 1])))
    return generator.multinomial(blocks, np.full(blocks, 1.0 / blocks), size=replicates).astype(np.int64)


def _float64(values, device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values) if not torch.is_tensor(values) else values).to(device, torch.float64)


class _BlockTallies:
    """Per-block I, A and G as float64 matrices on one device, checked against each other; IoUs for weights."""

    def __init__(self, intersection_blocks, activation_blocks, truth_blocks, weights, device, activation_index=None):
        if device is None:
            device = intersection_blocks.device if torch.is_tensor(intersection_blocks) else "cpu"
        intersection = _float64(intersection_blocks, device)
        activation = _float64(activation_blocks, device)
        truth = _float64(truth_blocks, device)
        weight = _float64(weights, device)
        if intersection.dim() != 3:
            raise LceError("The per-block intersections must be (blocks, units, concepts), not "
                           f"{tuple(intersection.shape)}.")
        blocks, units, concepts = intersection.shape
        # A per category (blocks, units, categories), read for each concept through activation_index (concepts,):
        # netdissect's A[u, k] without a (blocks, units, concepts) copy.
        self.activation_index = None
        if activation_index is not None and activation.dim() == 3:
            self.activation_index = torch.as_tensor(np.asarray(activation_index)).to(device, torch.int64)
            if tuple(self.activation_index.shape) != (concepts,) or activation.shape[:2] != (blocks, units) or bool(
                    ((self.activation_index < 0) | (self.activation_index >= activation.shape[2])).any()):
                raise LceError(f"A per category {tuple(activation.shape)} needs one category index per concept "
                               f"({concepts}) among its {activation.shape[2] if activation.dim() == 3 else 0}.")
        elif tuple(activation.shape) not in ((blocks, units), (blocks, units, concepts)):
            activation = activation.new_empty(0)  # refused just below
        if activation.shape[:2] != (blocks, units) or tuple(truth.shape) != (blocks, concepts):
            raise LceError(
                f"The per-block tallies do not fit together: I is {tuple(intersection.shape)}, A is "
                f"{tuple(activation.shape)} and G is {tuple(truth.shape)}; A must be (blocks, units) or (blocks, "
                "units, concepts) and G (blocks, concepts).")
        if weight.dim() != 2 or weight.shape[1] != blocks:
            raise LceError(f"The replicate weights must be (replicates, {blocks}) for {blocks} blocks, not "
                           f"{tuple(weight.shape)}.")
        # A per unit stays (blocks, units) and G (blocks, concepts): the union is only formed per replicate, so no
        # second (blocks, units x concepts) matrix next to I.
        self.activation_columns = activation.shape[2] if activation.dim() == 3 else 1
        self.intersection = intersection.reshape(blocks, -1)
        self.activation = activation.reshape(blocks, -1)
        self.truth, self.weight, self.units, self.concepts = truth, weight, units, concepts
        # Whole non-negative counts with I <= A and I <= G (a dissection's): every union is 0 or at least 1, which
        # spares each chunk _ratio's masks.
        self.counts = all(bool(((t >= 0) & (t == t.round())).all()) for t in (intersection, activation, truth, weight)) \
            and activation.dim() == 2 and bool((intersection <= activation[:, :, None]).all()) \
            and bool((intersection <= truth[:, None, :]).all())
        self.device = intersection.device

    def iou(self, weight: torch.Tensor) -> torch.Tensor:
        """(len(weight), units, concepts): the IoU of the tallies weighted by each row of `weight` (blocks,)."""
        intersection = (weight @ self.intersection).reshape(-1, self.units, self.concepts)
        activation = (weight @ self.activation).reshape(-1, self.units, self.activation_columns)
        if self.activation_index is not None:
            activation = activation[:, :, self.activation_index]
        union = activation + (weight @ self.truth)[:, None, :] - intersection
        if self.counts:  # counts: a union of 0 has an intersection of 0, and 0 / 1 is the 0 _ratio would give
            return intersection.div_(union.clamp_(min=1))
        return _ratio(intersection, union)

    def chunks(self, chunk_bytes: int) -> Iterator[tuple[int, torch.Tensor]]:
        """(first replicate, IoUs (chunk, units, concepts)) for consecutive chunks of the replicates, each chunk
        sized to `chunk_bytes`."""
        step = _chunk(self.units, self.concepts, chunk_bytes)
        for start in range(0, self.weight.shape[0], step):
            yield start, self.iou(self.weight[start:start + step])


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, numerator / safe, torch.zeros_like(numerator))


def _chunk(units: int, concepts: int, chunk_bytes: int) -> int:
    # About four (units, concepts) float64 arrays per replicate live at once: the two sums, the IoU, a mask.
    return max(1, int(chunk_bytes) // (4 * 8 * max(1, units * concepts)))


def iter_bootstrap_iou(intersection_blocks, activation_blocks, truth_blocks, weights, *, device=None,
                       chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, torch.Tensor]]:
    """(first replicate, IoUs (chunk, units, concepts) float64) for consecutive chunks of replicates."""
    yield from _BlockTallies(intersection_blocks, activation_blocks, truth_blocks, weights, device).chunks(chunk_bytes)


def bootstrap_iou(intersection_blocks, activation_blocks, truth_blocks, weights, *, device=None,
                  chunk_bytes: int = CHUNK_BYTES) -> torch.Tensor:
    """The IoU of every replicate, (replicates, units, concepts) float64, 0 where the union is 0.

    I_b: (blocks, units, concepts); A_b: (blocks, units) or (blocks, units, concepts); G_b: (blocks, concepts);
    weights: (replicates, blocks). The result itself is replicates x units x concepts: for a whole layer use
    label_uncertainty, which keeps only what it needs from each chunk.
    """
    return torch.cat([iou for _, iou in iter_bootstrap_iou(
        intersection_blocks, activation_blocks, truth_blocks, weights, device=device, chunk_bytes=chunk_bytes)])


@dataclass
class LabelUncertainty:
    """Per unit (arrays of length units); -1 and NaN where a unit has no label or no runner-up."""

    label: np.ndarray  # the point label's concept index
    iou: np.ndarray  # its point IoU (from the summed tallies)
    iou_low: np.ndarray
    iou_high: np.ndarray
    stability: np.ndarray  # share of replicates whose best candidate is the label
    runner_up: np.ndarray  # the candidate with the second-best point IoU
    runner_up_iou: np.ndarray
    replicates: int
    # (unit, concept, share) for every candidate winning at least ALTERNATIVE_SHARE of the replicates, the label
    # included; by unit, then share (largest first), then concept.
    alternatives: list[tuple[int, int, float]] = field(default_factory=list)
    # The first `stored` replicates (label_uncertainty's argument): each unit's best concept over ALL concepts (the
    # label rule of both variants; -1 where every IoU is 0) and its IoU, (units, stored) int64 and float32. For
    # netdissect it may differ from the within-category winner that stability counts.
    replicate_label: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    replicate_iou: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))


def label_uncertainty(intersection_blocks, activation_blocks, truth_blocks, weights, concept_category=None, *,
                      per_category: bool = False, labels=None, device=None, chunk_bytes: int = CHUNK_BYTES,
                      activation_index=None, stored: int = 0) -> LabelUncertainty:
    """Interval, stability, runner-up and alternatives of each unit's label, from per-block tallies.

    concept_category: (concepts,) the category index of each concept; needed with per_category (the
    `netdissect` rule, Variant.label_per_category), where a unit's candidates are the concepts of its label's
    category. labels: (units,) the engine's point labels (-1: none); by default the best point IoU over all
    concepts (the label of both variants), -1 where that IoU is 0. Thresholds are the point estimate's (fixed).
    activation_index: (concepts,) with A_b per category (blocks, units, categories), each concept's category.
    stored: how many of the first replicates' overall winners to return (replicate_label, replicate_iou).
    """
    tallies = _BlockTallies(intersection_blocks, activation_blocks, truth_blocks, weights, device, activation_index)
    device, weight, units, concepts = tallies.device, tallies.weight, tallies.units, tallies.concepts
    # The point estimate: every block once (the pooled tallies, exact in float64).
    point = tallies.iou(torch.ones(1, weight.shape[1], dtype=torch.float64, device=device))[0]
    if labels is None:
        best, label = point.max(dim=1)
        label = torch.where(best > 0, label, torch.full_like(label, -1))
    else:
        label = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels).to(device, torch.int64)
        if tuple(label.shape) != (units,) or bool(((label < -1) | (label >= concepts)).any()):
            raise LceError(f"The point labels must be {units} concept indices in 0..{concepts - 1} (or -1 for "
                           "no label), one per unit.")
    labelled = label >= 0
    safe_label = label.clamp(min=0)

    if per_category:
        if concept_category is None:
            raise LceError("The per-category rule (netdissect) needs each concept's category (concept_category), "
                           "to take a unit's candidates from its label's category.")
        category = torch.as_tensor(np.asarray(concept_category)).to(device, torch.int64)
        if tuple(category.shape) != (concepts,):
            raise LceError(f"concept_category must give one category per concept ({concepts}), not "
                           f"{tuple(category.shape)}.")
        candidates = category[None, :] == category[safe_label][:, None]  # (units, concepts)
    else:
        candidates = torch.ones(units, concepts, dtype=torch.bool, device=device)

    replicates = weight.shape[0]
    label_iou = torch.empty(replicates, units, dtype=torch.float64, device=device)
    wins = torch.zeros(units, concepts, dtype=torch.int64, device=device)
    unit_index = torch.arange(units, device=device)
    stored = max(0, min(int(stored), replicates))
    stored_label = torch.full((stored, units), -1, dtype=torch.int64, device=device)
    stored_iou = torch.zeros(stored, units, dtype=torch.float32, device=device)
    for start, iou in tallies.chunks(chunk_bytes):
        label_iou[start:start + len(iou)] = iou[:, unit_index, safe_label]
        if start < stored:  # the overall winner (not only among the candidates), as the point label is taken
            kept = iou[:stored - start]
            top, overall = kept.max(dim=2)
            stored_label[start:start + len(kept)] = torch.where(top > 0, overall, torch.full_like(overall, -1))
            stored_iou[start:start + len(kept)] = top.to(torch.float32)
        # (chunk, units); every concept is a candidate unless per category
        best, winner = (torch.where(candidates, iou, torch.full_like(iou, -1.0)) if per_category else iou).max(dim=2)
        won = best > 0  # a replicate where every candidate's IoU is 0 has no winner
        flat = (unit_index[None, :] * concepts + winner)[won]
        wins.view(-1).index_add_(0, flat, torch.ones_like(flat))
        del iou, best, winner, won

    levels = torch.tensor(INTERVAL, dtype=torch.float64, device=device)
    # torch.quantile refuses inputs beyond 2**24 values: a few thousand units at a time.
    unit_step = max(1, 2**24 // replicates)
    interval = torch.cat([torch.quantile(label_iou[:, first:first + unit_step], levels, dim=0)
                          for first in range(0, units, unit_step)], dim=1)
    nan = torch.full((units,), float("nan"), dtype=torch.float64, device=device)
    stability = wins[unit_index, safe_label].to(torch.float64) / replicates

    others = torch.where(candidates, point, torch.full_like(point, -1.0))
    others[unit_index, safe_label] = -1.0
    second, runner_up = others.max(dim=1)
    has_runner_up = labelled & (second > 0)

    share = wins.to(torch.float64) / replicates
    alternatives = []
    keep = (share >= ALTERNATIVE_SHARE) & labelled[:, None]
    for unit, concept in keep.nonzero().tolist():
        alternatives.append((unit, concept, float(share[unit, concept])))
    alternatives.sort(key=lambda row: (row[0], -row[2], row[1]))

    def cpu(values: torch.Tensor) -> np.ndarray:
        return values.cpu().numpy()

    return LabelUncertainty(
        label=cpu(label),
        iou=cpu(torch.where(labelled, point[unit_index, safe_label], nan)),
        iou_low=cpu(torch.where(labelled, interval[0], nan)),
        iou_high=cpu(torch.where(labelled, interval[1], nan)),
        stability=cpu(torch.where(labelled, stability, nan)),
        runner_up=cpu(torch.where(has_runner_up, runner_up, torch.full_like(runner_up, -1))),
        runner_up_iou=cpu(torch.where(has_runner_up, second, nan)),
        replicates=replicates,
        alternatives=alternatives,
        replicate_label=cpu(stored_label.T.contiguous()),
        replicate_iou=cpu(stored_iou.T.contiguous()),
    )


def expected_intersection(active_by_position, concept_by_position, images_annotating, concept_category=None, *,
                          device=None) -> torch.Tensor:
    """E[I] (units, concepts) float64 when each concept's label maps are permuted among the images that can carry it.

    active_by_position: A_p, (units, positions), the number of images whose mask M_u covers p (for `netdissect`,
    (categories, units, positions), counted over the images annotating each category, with concept_category);
    concept_by_position: G_p, (concepts, positions); images_annotating: N_k, a number (every image) or one per
    concept. E[I] = (1/N_k) * sum_p A_p * G_p; 0 where N_k is 0.
    """
    if device is None:
        device = active_by_position.device if torch.is_tensor(active_by_position) else "cpu"
    active = _float64(active_by_position, device)
    truth = _float64(concept_by_position, device)
    if truth.dim() != 2 or active.dim() not in (2, 3) or active.shape[-1] != truth.shape[1]:
        raise LceError(
            f"A_p must be (units, positions) or (categories, units, positions) and G_p (concepts, positions) over "
            f"the same positions; they are {tuple(active.shape)} and {tuple(truth.shape)}.")
    concepts = truth.shape[0]
    if active.dim() == 2:
        summed = active @ truth.T  # (units, concepts)
    else:
        if concept_category is None:
            raise LceError("A_p per category needs each concept's category (concept_category) to pair them.")
        category = torch.as_tensor(np.asarray(concept_category)).to(device, torch.int64)
        if tuple(category.shape) != (concepts,) or bool(((category < 0) | (category >= active.shape[0])).any()):
            raise LceError(f"concept_category must give each of the {concepts} concepts a category among the "
                           f"{active.shape[0]} of A_p.")
        # Each concept's A_p is its category's; one matmul per category (gathering A_p per concept would take
        # concepts x units x positions, 60 GB for a ResNet-50 on Broden).
        summed = torch.zeros(active.shape[1], concepts, dtype=torch.float64, device=device)
        for k in torch.unique(category).tolist():
            columns = (category == k).nonzero().flatten()
            summed[:, columns] = active[k] @ truth[columns].T
    count = _float64(images_annotating, device).reshape(-1).expand(concepts)
    return _ratio(summed, count[None, :].expand_as(summed))


def chance_iou(active_by_position, concept_by_position, images_annotating, activation, truth, concept_category=None,
               *, device=None) -> torch.Tensor:
    """The IoU at E[I], (units, concepts) float64: E[I] / (A + G - E[I]), 0 where that union is 0.

    activation: the pooled A, (units,) or (units, concepts); truth: the pooled G, (concepts,). A baseline, not a
    p-value (see the module's docstring).
    """
    expected = expected_intersection(active_by_position, concept_by_position, images_annotating, concept_category,
                                     device=device)
    device = expected.device
    activation = _float64(activation, device)
    if activation.dim() == 1:
        activation = activation[:, None]
    union = activation + _float64(truth, device)[None, :] - expected
    return _ratio(expected, union)


def iou_lift(iou, chance) -> torch.Tensor:
    """IoU / chance IoU, float64; NaN where the chance IoU is 0 (stored as NULL)."""
    chance = torch.as_tensor(chance, dtype=torch.float64)
    iou = torch.as_tensor(iou, dtype=torch.float64).to(chance.device)
    return torch.where(chance > 0, iou / torch.where(chance > 0, chance, torch.ones_like(chance)),
                       torch.full_like(chance, float("nan")))


@dataclass(frozen=True)
class Resampling:
    """One probe's bootstrap as dissect() counts it: each image's block and each replicate's draw of the blocks.

        resampling = Resampling.of(probe_row.content_sha256, images=len(dataset), replicates=1000, blocks=100)
        dissect(model, ["layer4"], dataset, settings, device, bootstrap=resampling)
    """

    seed: int  # replicate_seed of the probe's hash (run.bootstrap_seed)
    block_of_image: np.ndarray  # (images,) int64, in the dataset's order
    weights: np.ndarray  # (replicates, blocks) int64

    @property
    def blocks(self) -> int:
        return int(self.weights.shape[1])

    @property
    def replicates(self) -> int:
        return int(self.weights.shape[0])

    @classmethod
    def of(cls, probe_sha256: str, images: int, replicates: int = DEFAULT_REPLICATES,
           blocks: int = DEFAULT_BLOCKS) -> Resampling:
        """The probe's partition into min(blocks, images) blocks and its `replicates` draws."""
        block_of_image = replicate_blocks(probe_sha256, images, blocks)
        seed = replicate_seed(probe_sha256)
        return cls(seed, block_of_image, replicate_weights(seed, int(block_of_image.max()) + 1, replicates))


@dataclass
class LayerUncertainty:
    """A layer's label uncertainty, what lce.ingest.run stores with its units (LayerResult.uncertainty)."""

    columns: np.ndarray  # (concepts,) the tally column of each concept index used below (the probe's concepts)
    found: LabelUncertainty  # labels, intervals, stability, runner-up, alternatives, replicate labels: indices
    chance_iou: np.ndarray  # (units,) the label's chance IoU, NaN without a label
    lift: np.ndarray  # (units,) IoU / chance IoU, NaN without a label or where chance is 0
    seed: int
    blocks: int
    replicates: int


def layer_uncertainty(tally, resampling: Resampling, *, per_category: bool,
                      chunk_bytes: int = CHUNK_BYTES) -> LayerUncertainty:
    """The uncertainty of a layer's labels from its pass-2 counters: `tally` is a lce.dissect.tally.Tally that
    counted per block (its `blocks`, a BlockCounts). The point labels are the engine's own: the best IoU over the
    probe's concepts from the pooled tallies (first of equals, as lce.ingest.run takes them), none where it is
    0; per_category: stability and runner-up within the label's category (netdissect)."""
    counts = tally.blocks
    device = counts.intersection.device
    columns = torch.from_numpy(counts.columns).to(device)
    point = tally.iou()[:, columns]  # float64, exactly what lce.ingest.run reads
    if point.shape[1]:
        best, label = point.max(dim=1)
        label = torch.where(best > 0, label, torch.full_like(label, -1))
    else:
        label = torch.full((tally.units,), -1, dtype=torch.int64, device=device)
    intersection, activation, truth = counts.block_tallies()
    category = torch.from_numpy(counts.concept_category).to(device)
    # Units a slice at a time (every figure is per unit): a slice's float64 copy of I_b stays within chunk_bytes.
    blocks, units, concepts = intersection.shape
    step = max(1, int(chunk_bytes) // (8 * max(1, blocks * concepts)))
    found = _joined([label_uncertainty(
        intersection[:, first:first + step], activation[:, first:first + step], truth, resampling.weights, category,
        per_category=per_category, labels=label[first:first + step], device=device, chunk_bytes=chunk_bytes,
        activation_index=category if activation.dim() == 3 else None,
        stored=min(STORED_REPLICATES, resampling.replicates)) for first in range(0, units, step)], step)
    del intersection, activation, truth
    pooled_activation = tally.activation[:, category] if tally.per_category else tally.activation
    active_by_position, truth_by_position, annotating = counts.positions_of()
    chance = chance_iou(active_by_position, truth_by_position, annotating, pooled_activation,
                        tally.truth[columns], category, device=device)  # (units, concepts)
    labelled = label >= 0
    unit_index = torch.arange(tally.units, device=device)
    label_chance = chance[unit_index, label.clamp(min=0)]
    label_iou = point[unit_index, label.clamp(min=0)] if point.shape[1] else torch.zeros_like(label_chance)
    nan = torch.full_like(label_chance, float("nan"))
    lift = iou_lift(label_iou, label_chance)
    return LayerUncertainty(
        columns=counts.columns.copy(), found=found,
        chance_iou=torch.where(labelled, label_chance, nan).cpu().numpy(),
        lift=torch.where(labelled, lift, nan).cpu().numpy(),
        seed=resampling.seed, blocks=resampling.blocks, replicates=resampling.replicates)


def _joined(slices: list[LabelUncertainty], step: int) -> LabelUncertainty:
    """LabelUncertainty of consecutive slices of `step` units, as one."""
    if len(slices) == 1:
        return slices[0]
    arrays = {name: np.concatenate([getattr(part, name) for part in slices]) for name in (
        "label", "iou", "iou_low", "iou_high", "stability", "runner_up", "runner_up_iou", "replicate_label",
        "replicate_iou")}
    alternatives = [(unit + index * step, concept, share) for index, part in enumerate(slices)
                    for unit, concept, share in part.alternatives]
    return LabelUncertainty(**arrays, replicates=slices[0].replicates, alternatives=alternatives)
