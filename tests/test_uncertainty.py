"""The arithmetic of label uncertainty (issue 16): blocks and replicates, bootstrap IoUs, stability, chance IoU."""

from __future__ import annotations

import hashlib
import itertools
from fractions import Fraction

import numpy as np
import pytest
import torch

from lce.dissect.uncertainty import (bootstrap_iou, chance_iou, expected_intersection, iou_lift, label_uncertainty,
                                     replicate_blocks, replicate_seed, replicate_weights)
from lce.errors import LceError

SHA_A = hashlib.sha256(b"probe a").hexdigest()
SHA_B = hashlib.sha256(b"probe b").hexdigest()


def block_sums(values: np.ndarray, blocks: np.ndarray, count: int) -> np.ndarray:
    """Per-image tallies (images, ...) summed per block: (blocks, ...)."""
    out = np.zeros((count,) + values.shape[1:], dtype=np.int64)
    np.add.at(out, blocks, values)
    return out


# --- blocks and replicates ---------------------------------------------------------------------------------------

def test_seed_is_the_first_64_bits_of_the_probe_hash():
    assert replicate_seed(SHA_A) == int(SHA_A[:15], 16)
    with pytest.raises(LceError, match="SHA-256"):
        replicate_seed("not a hash")


def test_blocks_are_a_seeded_random_partition_shared_by_every_run_on_a_probe():
    blocks = replicate_blocks(SHA_A, images=1234)
    assert np.array_equal(blocks, replicate_blocks(SHA_A, images=1234))
    assert not np.array_equal(blocks, replicate_blocks(SHA_B, images=1234))
    sizes = np.bincount(blocks)
    assert len(sizes) == 100 and sizes.min() == 12 and sizes.max() == 13 and sizes.sum() == 1234
    # not index order: the first 13 images do not make up block 0
    assert len(set(blocks[:13].tolist())) > 5
    # a probe smaller than the blocks: one image per block
    assert sorted(replicate_blocks(SHA_A, images=7).tolist()) == list(range(7))


def test_weights_are_seeded_multinomial_counts_of_blocks():
    weights = replicate_weights(replicate_seed(SHA_A), blocks=100)
    assert weights.shape == (1000, 100) and weights.dtype == np.int64
    assert (weights.sum(axis=1) == 100).all() and weights.min() >= 0
    assert np.array_equal(weights, replicate_weights(replicate_seed(SHA_A), blocks=100))
    assert not np.array_equal(weights, replicate_weights(replicate_seed(SHA_B), blocks=100))
    # each block drawn once per replicate on average; about 1 - 1/e of the blocks in each replicate
    assert abs(weights.mean() - 1.0) < 1e-12
    assert 0.62 < (weights > 0).mean() < 0.645


# --- bootstrap IoU -------------------------------------------------------------------------------------------------

def random_block_tallies(seed: int, blocks=20, units=3, concepts=4, per_concept_activation=False):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 50, (blocks, concepts))
    activation = rng.integers(0, 40, (blocks, units, concepts) if per_concept_activation else (blocks, units))
    full = activation if per_concept_activation else activation[:, :, None]
    intersection = np.minimum(rng.integers(0, 30, (blocks, units, concepts)), np.minimum(full, truth[:, None, :]))
    return intersection, activation, truth


@pytest.mark.parametrize("per_concept_activation", [False, True])
def test_bootstrap_iou_is_the_weighted_pooled_iou_whatever_the_chunks(per_concept_activation):
    intersection, activation, truth = random_block_tallies(1, per_concept_activation=per_concept_activation)
    weights = replicate_weights(7, blocks=20, replicates=50)
    iou = bootstrap_iou(intersection, activation, truth, weights)
    assert iou.shape == (50, 3, 4) and iou.dtype == torch.float64
    full = activation if per_concept_activation else np.broadcast_to(activation[:, :, None], intersection.shape)
    for r in (0, 17, 49):
        w = weights[r]
        i = np.einsum("b,buc->uc", w, intersection)
        union = np.einsum("b,buc->uc", w, full) + np.einsum("b,bc->c", w, truth)[None, :] - i
        expected = np.where(union > 0, i / np.where(union > 0, union, 1), 0.0)
        assert np.array_equal(iou[r].numpy(), expected)
    one_per_chunk = bootstrap_iou(intersection, activation, truth, weights, chunk_bytes=1)
    assert torch.equal(iou, one_per_chunk)
    # a replicate that draws every block once is the point estimate
    point = bootstrap_iou(intersection, activation, truth, np.ones((1, 20), dtype=np.int64))[0]
    pooled_i = intersection.sum(0)
    pooled_union = full.sum(0) + truth.sum(0)[None, :] - pooled_i
    assert np.array_equal(point.numpy(), np.where(pooled_union > 0, pooled_i / np.maximum(pooled_union, 1), 0.0))


def test_bootstrap_iou_is_zero_where_the_union_is_zero_and_rejects_misfit_shapes():
    intersection = np.zeros((2, 1, 1), dtype=np.int64)
    iou = bootstrap_iou(intersection, np.zeros((2, 1)), np.zeros((2, 1)), np.array([[2, 0]]))
    assert iou.tolist() == [[[0.0]]]
    with pytest.raises(LceError, match="do not fit"):
        bootstrap_iou(intersection, np.zeros((2, 3)), np.zeros((2, 1)), np.array([[2, 0]]))
    with pytest.raises(LceError, match="replicate weights"):
        bootstrap_iou(intersection, np.zeros((2, 1)), np.zeros((2, 1)), np.array([[1, 1, 0]]))


# --- coverage --------------------------------------------------------------------------------------------------

def simulated_images(rng: np.random.Generator, images: int):
    """Per-image tallies (I, A, G) of one unit and one concept drawn from a fixed distribution."""
    present = rng.random(images) < 0.3
    on_concept = present * rng.binomial(20, 0.5, images)  # active pixels where the concept could be
    intersection = rng.binomial(on_concept, 0.8)
    activation = on_concept + rng.binomial(30, 0.05, images)
    truth = intersection + present * rng.binomial(60, 0.5, images)
    return intersection, activation, truth


def test_the_95_percent_interval_holds_the_population_iou_in_90_to_98_percent_of_probes():
    rng = np.random.default_rng(2026)
    intersection, activation, truth = simulated_images(rng, 200_000)
    population_iou = intersection.sum() / (activation.sum() + truth.sum() - intersection.sum())
    assert 0.17 < population_iou < 0.19
    held, widths = 0, []
    for probe in range(200):
        chosen = rng.choice(len(intersection), 300, replace=False)
        sha = hashlib.sha256(f"simulated probe {probe}".encode()).hexdigest()
        blocks = replicate_blocks(sha, images=300)
        found = label_uncertainty(block_sums(intersection[chosen], blocks, 100)[:, None, None],
                                  block_sums(activation[chosen], blocks, 100)[:, None],
                                  block_sums(truth[chosen], blocks, 100)[:, None],
                                  replicate_weights(replicate_seed(sha), blocks=100))
        held += found.iou_low[0] <= population_iou <= found.iou_high[0]
        widths.append(found.iou_high[0] - found.iou_low[0])
    print(f"coverage {held / 200:.3f}, median width {np.median(widths):.4f}, population IoU {population_iou:.4f}")
    assert 0.90 <= held / 200 <= 0.98, held / 200
    assert 0.015 < np.median(widths) < 0.025  # 0.0196: about +-0.01 around 0.178


# --- stability, runner-up, alternatives ----------------------------------------------------------------------------

def planted_block_tallies():
    """Per-block tallies of 3 units x 4 concepts over 100 blocks of 5 images.

    unit 0: concept 0 dominates (IoU 0.74), concept 1 second (~0.3). unit 1: concepts 1 and 2 equally good
    (a coin flip: a tie at the point estimate, label 1, the first), concept 3 far behind. unit 2: dead (never
    active).
    """
    rng = np.random.default_rng(5)
    blocks, units, concepts = 100, 3, 4
    truth = rng.binomial(500, 0.2, (blocks, concepts))
    intersection = np.zeros((blocks, units, concepts), dtype=np.int64)
    activation = np.zeros((blocks, units), dtype=np.int64)
    intersection[:, 0, 0] = rng.binomial(truth[:, 0], 0.85)
    intersection[:, 0, 1] = rng.binomial(truth[:, 1], 0.35)
    activation[:, 0] = intersection[:, 0, 0] + rng.binomial(30, 0.5, blocks)
    # concept 2's blocks are concept 1's in another order: the same pooled tallies, so the same point IoU
    intersection[:, 1, 1] = rng.binomial(truth[:, 1], 0.6)
    shuffle = rng.permutation(blocks)
    truth[:, 2], intersection[:, 1, 2] = truth[shuffle, 1], intersection[shuffle, 1, 1]
    intersection[:, 1, 3] = rng.binomial(truth[:, 3], 0.1)
    activation[:, 1] = intersection[:, 1, 1] + intersection[:, 1, 2] + intersection[:, 1, 3] + 5
    return intersection, activation, truth


def test_a_dominant_label_is_stable_and_a_coin_flip_is_not():
    intersection, activation, truth = planted_block_tallies()
    weights = replicate_weights(replicate_seed(SHA_A), blocks=100)
    found = label_uncertainty(intersection, activation, truth, weights)
    iou = bootstrap_iou(intersection, activation, truth, np.ones((1, 100), dtype=np.int64))[0].numpy()
    assert found.replicates == 1000
    assert found.label.tolist() == [0, 1, -1] and iou[1, 1] == iou[1, 2]
    assert found.iou[0] == iou[0, 0] and 0.7 < found.iou[0] < 0.8
    assert found.stability[0] == 1.0
    assert found.iou_low[0] < found.iou[0] < found.iou_high[0] and found.iou_high[0] - found.iou_low[0] < 0.05
    assert found.runner_up[0] == 1 and found.runner_up_iou[0] == iou[0, 1]
    # the coin flip: its label wins about half the replicates, the other half goes to the runner-up
    coin_label, coin_other = 1, 2
    assert 0.4 < found.stability[1] < 0.6
    assert found.runner_up[1] == coin_other and found.runner_up_iou[1] == iou[1, coin_other]
    shares = {(unit, concept): share for unit, concept, share in found.alternatives}
    assert set(shares) == {(0, 0), (1, 1), (1, 2)}
    assert shares[(0, 0)] == 1.0 and shares[(1, coin_label)] == found.stability[1]
    assert shares[(1, 1)] + shares[(1, 2)] == pytest.approx(1.0)
    assert found.alternatives[1][0] == 1 and found.alternatives[1][2] >= found.alternatives[2][2]
    # the dead unit has no label, interval or runner-up
    assert np.isnan([found.iou[2], found.iou_low[2], found.iou_high[2], found.stability[2],
                     found.runner_up_iou[2]]).all()
    assert found.runner_up[2] == -1
    # deterministic: the same probe hash, the same intervals
    again = label_uncertainty(intersection, activation, truth, replicate_weights(replicate_seed(SHA_A), blocks=100))
    assert np.array_equal(found.iou_low, again.iou_low, equal_nan=True)
    assert np.array_equal(found.stability, again.stability, equal_nan=True)


def test_the_per_category_rule_counts_only_the_label_s_category():
    intersection, activation, truth = planted_block_tallies()
    weights = replicate_weights(replicate_seed(SHA_A), blocks=100)
    label = label_uncertainty(intersection, activation, truth, weights).label
    # put the coin-flip unit's label alone in its category: under netdissect's rule nothing competes with it
    category = np.zeros(4, dtype=np.int64)
    category[3 - label[1]] = 1
    found = label_uncertainty(intersection, activation, truth, weights, category, per_category=True)
    assert found.stability[1] == 1.0
    assert found.runner_up[1] == 3 and found.label[1] == label[1]
    assert found.stability[0] == 1.0
    with pytest.raises(LceError, match="concept_category"):
        label_uncertainty(intersection, activation, truth, weights, per_category=True)


def test_given_labels_are_kept_and_checked():
    intersection, activation, truth = planted_block_tallies()
    weights = replicate_weights(3, blocks=100, replicates=200)
    found = label_uncertainty(intersection, activation, truth, weights, labels=[1, 1, -1])
    assert found.label.tolist() == [1, 1, -1]
    assert found.stability[0] == 0.0 and found.runner_up[0] == 0
    with pytest.raises(LceError, match="point labels"):
        label_uncertainty(intersection, activation, truth, weights, labels=[9, 1, -1])


# --- chance IoU ------------------------------------------------------------------------------------------------

def tiny_probe(seed: int):
    """A 5-image probe on a 3x3 grid: masks of 2 units, label maps of 3 concepts (binary)."""
    rng = np.random.default_rng(seed)
    masks = rng.random((5, 2, 9)) < 0.35
    concept_maps = rng.random((5, 3, 9)) < 0.4
    return masks.astype(np.int64), concept_maps.astype(np.int64)


def test_expected_intersection_is_the_mean_over_every_permutation_dissect():
    masks, concept_maps = tiny_probe(11)
    total = np.zeros((2, 3), dtype=np.int64)
    permutations = list(itertools.permutations(range(5)))
    assert len(permutations) == 120
    for order in permutations:
        total += np.einsum("xup,xcp->uc", masks, concept_maps[list(order)])
    brute = total / len(permutations)
    expected = expected_intersection(masks.sum(0), concept_maps.sum(0), 5)
    assert np.array_equal(expected.numpy(), brute)
    assert (brute > 0).all() and not np.array_equal(brute, np.einsum("xup,xcp->uc", masks, concept_maps))

    # chance IoU at E[I] (three roundings, so to the last bits), with A and G the pooled counts
    activation, truth = masks.sum((0, 2)), concept_maps.sum((0, 2))
    chance = chance_iou(masks.sum(0), concept_maps.sum(0), 5, activation, truth).numpy()
    for u, c in itertools.product(range(2), range(3)):
        e = Fraction(int(total[u, c]), 120)
        assert chance[u, c] == pytest.approx(float(e / (int(activation[u]) + int(truth[c]) - e)), rel=1e-15)


def test_expected_intersection_permutes_only_the_images_annotating_the_category_netdissect():
    masks, concept_maps = tiny_probe(12)
    # concepts 0 and 1 are of category 0, annotated in images 0, 2, 3; concept 2 of category 1, in images 1..4
    category = np.array([0, 0, 1])
    annotating = [[0, 2, 3], [1, 2, 3, 4]]
    for c, k in enumerate(category):
        concept_maps[[x for x in range(5) if x not in annotating[k]], c] = 0
    active_by_position = np.stack([masks[annotating[k]].sum(0) for k in range(2)])  # (categories, units, positions)
    activation = np.stack([masks[annotating[k]].sum((0, 2)) for k in category], axis=1)  # (units, concepts)
    expected = expected_intersection(active_by_position, concept_maps.sum(0), [3, 3, 4], category).numpy()
    chance = chance_iou(active_by_position, concept_maps.sum(0), [3, 3, 4], activation,
                        concept_maps.sum((0, 2)), category).numpy()
    for c, k in enumerate(category):
        images = annotating[k]
        total, count = np.zeros(2, dtype=np.int64), 0
        # every permutation of the 5 images that keeps the annotating ones among themselves
        for order in itertools.permutations(range(5)):
            if sorted(order[x] for x in images) != images:
                continue
            total += np.einsum("xup,xp->u", masks[images], concept_maps[[order[x] for x in images], c])
            count += 1
        assert count == {3: 12, 4: 24}[len(images)]
        assert np.array_equal(expected[:, c], total / count)
        for u in range(2):
            e = Fraction(int(total[u]), count)
            union = int(activation[u, c]) + int(concept_maps[:, c].sum()) - e
            assert chance[u, c] == pytest.approx(float(e / union), rel=1e-15)


def test_lift_is_iou_over_chance_and_nan_where_chance_is_zero():
    lift = iou_lift(torch.tensor([0.3, 0.2, 0.0]), torch.tensor([0.1, 0.0, 0.0])).tolist()
    assert lift[0] == pytest.approx(3.0) and np.isnan(lift[1]) and np.isnan(lift[2])
    # nothing annotated: no chance, no division by zero
    assert expected_intersection(np.ones((1, 4)), np.zeros((1, 4)), 0).tolist() == [[0.0]]
    with pytest.raises(LceError, match="positions"):
        expected_intersection(np.ones((1, 4)), np.ones((1, 5)), 3)
