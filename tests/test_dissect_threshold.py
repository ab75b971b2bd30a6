"""Thresholds: exact while the values fit, then a histogram within 1% of the quantile (docs/method.md section 1)."""

import pytest
import torch

from lce.dissect.threshold import ThresholdEstimator


def stream(device: torch.device = torch.device("cpu")):
    torch.manual_seed(0)
    data = torch.relu(torch.randn(16, 120_000)) * torch.linspace(0.5, 5, 16)[:, None]
    data[3] -= 2.0  # negative values too
    data[5, 100_000:] *= 4  # a larger range arrives late: the histogram has to grow
    return data.to(device)  # the same values on every device (drawn on the CPU)


@pytest.mark.parametrize("quantile", [0.01, 0.005])
def test_exact_thresholds_equal_torch_quantile(quantile, device):
    data = stream(device)
    estimator = ThresholdEstimator(16, quantile, device, exact_limit=10**8)
    for chunk in data.split(7_000, dim=1):
        estimator.add(chunk)
    assert estimator.exact
    assert torch.equal(estimator.thresholds(), torch.quantile(data, 1 - quantile, dim=1))


@pytest.mark.parametrize("quantile", [0.01, 0.005])
def test_histogram_thresholds_keep_the_share_above_within_one_percent(quantile, device):
    data = stream(device)
    plain = ThresholdEstimator(16, quantile, device, exact_limit=10_000)
    informed = ThresholdEstimator(16, quantile, device, exact_limit=10_000, expected=data.shape[1])
    for chunk in data.split(7_000, dim=1):
        plain.add(chunk)
        informed.add(chunk)
    assert not plain.exact
    share = (data > plain.thresholds()[:, None]).double().mean(dim=1) / quantile
    assert ((share - 1).abs() < 0.01).all(), share
    # Skipping the values that can no longer matter changes nothing.
    assert torch.equal(plain.thresholds(), informed.thresholds())


@pytest.mark.parametrize("quantile", [0.01, 0.005])
def test_a_running_top_of_each_unit_gives_torch_quantile_exactly(quantile, device):
    """With the stream's length known, the estimator keeps only the values torch.quantile reads; values at or
    below its floor may be left out (as -inf), and the thresholds are still bit for bit those of torch.quantile."""
    data = stream(device)
    estimator = ThresholdEstimator(16, quantile, device, expected=data.shape[1])
    assert estimator.keep == (1_201 if quantile == 0.01 else 601)  # ranks floor(p) and ceil(p) from the top
    left_out = 0
    for chunk in data.split(7_000, dim=1):
        above = chunk > estimator.floor[:, None]
        left_out += int((~above).sum())
        estimator.add(chunk.masked_fill(~above, -torch.inf), count=chunk.shape[1])
    assert estimator.exact
    assert left_out > 0.8 * data.numel()  # most values never reach the estimator
    assert torch.equal(estimator.thresholds(), torch.quantile(data, 1 - quantile, dim=1))


@pytest.mark.parametrize("exact_limit", [10**8, 10_000], ids=["running-top", "histogram"])
def test_values_given_unit_by_unit_count_as_the_same_values_given_in_rows(exact_limit, device):
    """add_pairs takes a batch's values above the floor as (unit, value) pairs in any order: the thresholds are
    those of the same stream given in rows (torch.quantile's, bit for bit, while exact)."""
    data = stream(device)
    rows = ThresholdEstimator(16, 0.01, device, exact_limit=exact_limit, expected=data.shape[1])
    pairs = ThresholdEstimator(16, 0.01, device, exact_limit=exact_limit, expected=data.shape[1])
    shuffle = torch.Generator(device).manual_seed(3)
    for chunk in data.split(7_000, dim=1):
        rows.add(chunk)
        unit, column = (chunk > pairs.floor[:, None]).nonzero(as_tuple=True)
        order = torch.randperm(len(unit), generator=shuffle, device=device)
        pairs.add_pairs(unit[order], chunk[unit, column][order], count=chunk.shape[1])
    assert pairs.exact == rows.exact == (exact_limit == 10**8)
    assert torch.equal(pairs.thresholds(), rows.thresholds())
    if pairs.exact:
        assert torch.equal(pairs.thresholds(), torch.quantile(data, 0.99, dim=1))


@pytest.mark.parametrize("expected", [False, True], ids=["plain", "informed"])
def test_a_histogram_counts_the_same_compacted_or_by_weights(expected, device, monkeypatch):
    """The CPU counts only the values above the floor, a GPU every value with a weight of 0 or 1
    (lce.config.DeviceBudget.compact): the same counts, the same thresholds, rows or pairs."""
    from dataclasses import replace

    from lce import config

    data = stream(device)
    thresholds = []
    for compact in (True, False):
        for name in ("_CPU_BUDGET", "_GPU_BUDGET"):
            monkeypatch.setattr(config, name, replace(getattr(config, name), compact=compact))
        estimator = ThresholdEstimator(16, 0.01, device, exact_limit=10_000,
                                       expected=data.shape[1] if expected else None)
        for chunk in data.split(7_000, dim=1):
            if expected and estimator.count:  # pairs after the first chunk, as a window's flush gives them
                unit, column = (chunk > estimator.floor[:, None]).nonzero(as_tuple=True)
                estimator.add_pairs(unit, chunk[unit, column], count=chunk.shape[1])
            else:
                estimator.add(chunk)
        assert not estimator.exact
        thresholds.append(estimator.thresholds())
    assert torch.equal(thresholds[0], thresholds[1])
