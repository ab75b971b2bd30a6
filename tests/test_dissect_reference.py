"""The engine against a plain reference written here (loops, exact quantiles), on a tiny synthetic probe.

The reference follows docs/method.md section 1 literally: T_u = torch.quantile of all of u's values (raw for
netdissect, upsampled for dissect), M_u = upsampled activation > T_u, and per image and concept the counts
I, A (dissect: all of M_u; netdissect: only images annotating the concept's category) and G, with whole-image
labels covering every pixel. The upsampling itself is checked against its formula in its own test. Every
registered variant (lce.vocabulary) goes through the reference, which reads the variant's properties.
"""

import math

import numpy as np
import pytest
import torch

from lce.dissect.engine import DissectSettings, dissect
from lce.dissect.upsample import upsample
from lce.vocabulary import CLAMPED, NAMES, ZERO_PADDED, variant
from lce.probe.broden import Broden
from lce.probe.cache import DecodeCache
from lce.probe.dataset import ProbeDataset


class TinyNet(torch.nn.Module):
    """A fixed random conv net: 64-px images -> 6 units on an 8 x 8 grid."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 6, kernel_size=8, stride=8), torch.nn.ReLU())

    def forward(self, x):
        return self.features(x)


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory):
    from lce.probe.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("ref") / "probe", images=24, size=64, seed=7).path


def reference(model, dataset: ProbeDataset, name: str, quantile: float, batch_size: int,
              device: torch.device = torch.device("cpu")):
    """I (U, columns), A (U, columns), G (columns,), thresholds (on `device`), with the engine's column numbering.
    The model runs on `device` in batches of `batch_size`, as the engine's, so that a GPU picks the same
    convolution algorithms and gives the same activations."""
    spec = variant(name)
    categories = dataset.categories
    stride = max(dataset.probe.vocabulary) + 1
    items = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([item["image"] for item in items]).to(device)
    with torch.no_grad():
        acts = torch.cat([model.to(device)(batch) for batch in images.split(batch_size)]).float()
    size = dataset.seg_size
    up = upsample(acts, size, name)
    units = acts.shape[1]
    values = up if spec.threshold_upsampled else acts
    thresholds = torch.stack([torch.quantile(values[:, u].reshape(-1), 1 - quantile) for u in range(units)])
    up = up.cpu()
    columns = len(categories) * stride
    intersection = np.zeros((units, columns), dtype=np.int64)
    activation = np.zeros((units, columns), dtype=np.int64)
    truth = np.zeros(columns, dtype=np.int64)
    for i, item in enumerate(items):
        labels = dataset.labels_of(i)
        masks = (up[i] > thresholds.cpu()[:, None, None]).numpy()  # (U, S, S)
        present = {}  # column -> (S, S) bool pixels of that concept in this image
        for category, layers in labels.pixel.items():
            for layer in layers:
                from lce.probe.dataset import resize_nearest

                layer = resize_nearest(layer, size)
                for number in np.unique(layer[layer > 0]):
                    column = categories.index(category) * stride + int(number)
                    present[column] = present.get(column, np.zeros((size, size), bool)) | (layer == number)
        for category, numbers in labels.whole.items():
            for number in numbers:
                present[categories.index(category) * stride + number] = np.ones((size, size), bool)
        for column, pixels in present.items():
            truth[column] += pixels.sum()
            for u in range(units):
                intersection[u, column] += (masks[u] & pixels).sum()
        for u in range(units):
            for column in range(columns):
                category = categories[column // stride]
                if not spec.activation_per_category or category in labels.categories:
                    activation[u, column] += masks[u].sum()
    return intersection, activation, truth, thresholds


@pytest.mark.parametrize("variant", NAMES)
@pytest.mark.parametrize("budget", [0, 2**30], ids=["two-passes", "activation-cache"])
@pytest.mark.parametrize("compact", [True, False], ids=["compacted", "fixed-sizes"])
def test_engine_equals_the_reference(probe_dir, tmp_path, variant, budget, compact, device, monkeypatch):
    """Both ways of the engine (lce.config.DeviceBudget.compact: boolean compaction, the CPU's; fixed sizes with
    a spare slot, a GPU's) on the device under test."""
    from dataclasses import replace

    from lce import config

    for name in ("_CPU_BUDGET", "_GPU_BUDGET"):
        monkeypatch.setattr(config, name, replace(getattr(config, name), compact=compact))
    probe = Broden.open(probe_dir)
    settings = DissectSettings.for_variant(variant, batch_size=5, cache_budget=budget,
                                          threshold_window=5 * 6 * 8 * 8 * 4)  # one batch a window
    seg = settings.seg_size_for(64, probe.rows[0].sh)
    dataset = ProbeDataset(probe, seg_size=seg, cache=DecodeCache.build(probe, tmp_path / "cache"))
    model = TinyNet()
    result = dissect(model, ["features"], dataset, settings, device)["features"]
    assert result.cached == (budget > 0)
    assert result.threshold_exact
    intersection, activation, truth, thresholds = reference(model, dataset, variant, settings.quantile,
                                                            settings.batch_size, device)
    assert torch.equal(result.thresholds, thresholds)
    found_i, found_a, found_g = (t.cpu().numpy() for t in result.tally.counts())
    assert np.array_equal(found_g, truth)
    assert np.array_equal(found_i, intersection)
    assert np.array_equal(found_a, activation)
    assert intersection.sum() > 0 and (truth > 0).sum() > 20
    union = activation + truth[None, :] - intersection
    expected = np.where(union > 0, intersection / np.maximum(union, 1), 0.0)
    assert np.allclose(result.tally.iou().cpu().numpy(), expected, atol=1e-6, rtol=0)


def test_cache_and_two_passes_store_the_same_numbers(probe_dir, tmp_path, device):
    probe = Broden.open(probe_dir)
    dataset = ProbeDataset(probe, seg_size=16)
    runs = [dissect(TinyNet(), ["features"], dataset,
                    DissectSettings.for_variant("dissect", batch_size=7, cache_budget=budget),
                    device)["features"] for budget in (0, 2**30)]
    assert torch.equal(runs[0].thresholds, runs[1].thresholds)
    for a, b in zip(runs[0].tally.counts(), runs[1].tally.counts()):
        assert torch.equal(a, b)
    assert torch.equal(runs[0].top_images, runs[1].top_images)


def _bilinear(values: np.ndarray, y: float, x: float, clamp: bool) -> float:
    height, width = values.shape
    if clamp:
        y, x = min(max(y, 0.0), height - 1), min(max(x, 0.0), width - 1)
    y0, x0 = math.floor(y), math.floor(x)
    total = 0.0
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < height and 0 <= xx < width:
                total += wy * wx * values[yy, xx]
            elif clamp and wy * wx > 0:
                total += wy * wx * values[min(yy, height - 1), min(xx, width - 1)]
    return total


@pytest.mark.parametrize("name", NAMES)
def test_upsampling_follows_each_variants_formula(name):
    """ZERO_PADDED (dissect): feature pixel i at target i*s + (s-1)/2, zero beyond the edge; CLAMPED (netdissect):
    half-pixel centres, clamped edges."""
    grid = variant(name).upsampling
    torch.manual_seed(0)
    acts = torch.rand(1, 2, 4, 4, dtype=torch.float64)
    size, scale = 14, 14 / 4
    up = upsample(acts, size, name)[0].numpy()
    for unit in range(2):
        for y in range(size):
            for x in range(size):
                if grid == ZERO_PADDED:
                    sy, sx = (y - (scale - 1) / 2) / scale, (x - (scale - 1) / 2) / scale
                else:
                    sy, sx = (y + 0.5) / scale - 0.5, (x + 0.5) / scale - 0.5
                expected = _bilinear(acts[0, unit].numpy(), sy, sx, clamp=grid == CLAMPED)
                assert up[unit, y, x] == pytest.approx(expected, abs=1e-9)
    if grid == ZERO_PADDED:  # the corners lie beyond the outer feature centres: they fade
        assert up[0, 0, 0] < acts[0, 0, 0, 0]


def test_pruned_histogram_thresholds_keep_the_share_above_within_one_percent(probe_dir, device):
    """Beyond the exact limit, pass 1 streams only the cells that can still reach the top q into a histogram:
    the share of upsampled values above T_u stays within 1% of q (exact thresholds give 62 / 6144 here)."""
    probe = Broden.open(probe_dir)
    dataset = ProbeDataset(probe, seg_size=16)
    settings = DissectSettings.for_variant("dissect", batch_size=5)
    model = TinyNet()
    result = dissect(model, ["features"], dataset, settings, device, exact_limit=500)["features"]
    assert not result.threshold_exact
    with torch.no_grad():
        values = torch.cat([upsample(model(batch["image"].to(device)), 16, "dissect")
                            for batch in torch.utils.data.DataLoader(dataset, batch_size=5)])
    values = values.transpose(0, 1).reshape(6, -1)
    share = (values > result.thresholds[:, None]).double().mean(dim=1) / settings.quantile
    assert ((share - 1).abs() < 0.01).all(), share


@pytest.mark.parametrize("variant", NAMES)
@pytest.mark.parametrize("shape,size", [((7, 7), 56), ((4, 5), 14), ((1, 3), 8)])
def test_cells_give_the_whole_maps_values_bit_for_bit_within_their_bounds(variant, shape, size, device):
    """The engine upsamples only some cells of a map: their values are exactly those of upsample(), every target
    pixel lies in one cell, and no value exceeds its cell's bound."""
    from lce.dissect.upsample import Upsampler

    torch.manual_seed(1)
    acts = torch.randn(2, 3, *shape).to(device)
    whole = upsample(acts, size, variant)
    cells = Upsampler.of(acts, size, variant).cells(acts)
    bounds = cells.bounds()
    image, unit, cell_y, cell_x = torch.nonzero(bounds > -math.inf, as_tuple=True)
    values = cells.values(image, unit, cell_y, cell_x)
    k, slot_y, slot_x = torch.nonzero(values > -math.inf, as_tuple=True)
    y, x = cells.positions(cell_y[k], cell_x[k], slot_y, slot_x)
    assert torch.equal(values[k, slot_y, slot_x], whole[image[k], unit[k], y, x])
    covered = torch.zeros_like(whole, dtype=torch.int64).index_put_((image[k], unit[k], y, x),
                                                                     torch.ones_like(y), accumulate=True)
    assert (covered == 1).all()
    assert (values <= bounds[image, unit, cell_y, cell_x][:, None, None]).all()


def test_threshold_rounds_stay_within_their_budget_of_values(probe_dir, monkeypatch):
    """Pass 1 upsamples a window's highest cells in rounds of at most `round_values` values (the exact limit), in
    the histogram as in the running top: a full Broden's keep (about 2M values per unit) must not make them wider."""
    from lce.dissect.threshold import ThresholdEstimator

    widest = []
    add = ThresholdEstimator.add

    def recording_add(self, values, count=None):
        widest.append(values.numel())
        return add(self, values, count)

    monkeypatch.setattr(ThresholdEstimator, "add", recording_add)
    probe = Broden.open(probe_dir)
    dataset = ProbeDataset(probe, seg_size=16)
    settings = DissectSettings.for_variant("dissect", batch_size=5)
    result = dissect(TinyNet(), ["features"], dataset, settings, torch.device("cpu"), exact_limit=600)["features"]
    assert not result.threshold_exact
    # keep is 63 values per unit: 4 x keep of each of 6 units would be 1,512 values in one round.
    units, samples_per_cell = 6, 4  # 8 x 8 maps to 16 x 16: cells of 2 x 2 samples
    assert len(widest) >= 3 and max(widest) <= 600 + units * samples_per_cell
