"""The dissection's batch loops make the host wait for the device only a fixed few times (issue 13, item 2).

Counted on the CPU with lce.instrument.syncs.SyncCounter (the operations that would synchronise with a CUDA device)
around dissect() on a small synthetic probe, for both variants, with and without the activation cache, with exact
thresholds and in histogram mode. The DataLoader's host-side work (collation, in workers on a GPU) is not counted.
"""

from dataclasses import replace

import pytest
import torch

from lce import config

from lce.dissect import engine
from lce.dissect.engine import DissectSettings, dissect
from lce.instrument.syncs import SYNCS_PER_BATCH, SYNCS_PER_WINDOW, SyncCounter
from lce.probe.broden import Broden
from lce.probe.dataset import ProbeDataset
from tests.test_dissect_reference import TinyNet  # 64-px images -> 6 units on an 8 x 8 grid

BATCH = 4  # images per batch; the probes have 2 and 4 batches

# Once a run: the category indices to the device (2), the running top's final lerp weight (1), and the windows
# flushed at the end of pass 1.
SYNCS_PER_RUN = 3 + SYNCS_PER_WINDOW

# Histogram mode: an exact limit under twice the units' kept values (6 units; keep is 22 values per unit for
# dissect's 16 x 16 maps, 4 for netdissect's raw 8 x 8 ones, at 8 images; more at 16).
HISTOGRAM_LIMIT = {"dissect": 250, "netdissect": 20}
ONE_BATCH_WINDOW = BATCH * 6 * 8 * 8 * 4  # bytes of one batch of activations: a flush every batch
WHOLE_WINDOW = 100 * ONE_BATCH_WINDOW  # one window for the whole probe: flushed once, at the end of pass 1


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    from lce.probe.synth import synthesize

    root = tmp_path_factory.mktemp("syncs")
    return {batches: Broden.open(synthesize(root / f"probe{batches}", images=batches * BATCH, size=64, seed=7).path)
            for batches in (2, 4)}


def counted(probe, variant: str, cache_budget: int, histogram: bool, window: int, monkeypatch) -> SyncCounter:
    """The syncs of one dissection of `probe`, its DataLoader left out, done the GPU's way (fixed sizes, no boolean
    compaction: lce.config.DeviceBudget.compact) on the CPU."""
    monkeypatch.setattr(config, "_CPU_BUDGET", replace(config._CPU_BUDGET, compact=False))
    counter = SyncCounter()
    loader = engine._loader

    def quiet_loader(*args, **kwargs):
        with counter.paused():
            return counter.uncounted(loader(*args, **kwargs))

    monkeypatch.setattr(engine, "_loader", quiet_loader)
    settings = DissectSettings.for_variant(variant, batch_size=BATCH, cache_budget=cache_budget,
                                          threshold_window=window)
    dataset = ProbeDataset(probe, seg_size=16)
    with counter:
        result = dissect(TinyNet(), ["features"], dataset, settings, torch.device("cpu"),
                         exact_limit=HISTOGRAM_LIMIT[variant] if histogram else None)["features"]
    assert result.threshold_exact != histogram and result.cached == (cache_budget > 0)
    return counter


@pytest.mark.parametrize("histogram", [False, True], ids=["exact", "histogram"])
@pytest.mark.parametrize("cache_budget", [0, 2**30], ids=["two-passes", "activation-cache"])
@pytest.mark.parametrize("variant", ["dissect", "netdissect"])
def test_batches_add_at_most_a_fixed_number_of_host_syncs(probes, variant, cache_budget, histogram, monkeypatch):
    counted(probes[2], variant, cache_budget, histogram, WHOLE_WINDOW, monkeypatch)  # builds the cached upsamplers
    flushes = engine.vocabulary.variant(variant).threshold_upsampled  # raw values (netdissect) need no window
    for window, per_window in ((WHOLE_WINDOW, 0), (ONE_BATCH_WINDOW, SYNCS_PER_WINDOW if flushes else 0)):
        two, four = (counted(probes[batches], variant, cache_budget, histogram, window, monkeypatch)
                     for batches in (2, 4))
        assert two.total <= SYNCS_PER_RUN + 2 * (SYNCS_PER_BATCH + per_window), two.counts
        assert four.total - two.total <= 2 * (SYNCS_PER_BATCH + per_window), (two.counts, four.counts)
        assert four.total >= two.total + 2 * SYNCS_PER_BATCH  # pass 2's read per batch is counted: the count works


def test_the_counter_counts_what_would_wait_for_the_device():
    values = torch.arange(-3.0, 5.0)
    with SyncCounter() as counter:
        values.nonzero()
        _ = values[values > 0]
        bool(values.sum() > 0)
        torch.where(values > 0, values, 0.0)  # three arguments: no sync
        _ = values + 1
        _ = values[torch.tensor([1, 2])]  # an integer index: sizes known (the tensor itself is host data)
        values.to(torch.float64)
    assert counter.counts == {"nonzero": 1, "__getitem__[bool]": 1, "__bool__": 1, "tensor": 1}
    assert counter.total == 4
    with counter, counter.paused():
        values.nonzero()
    assert counter.total == 4
