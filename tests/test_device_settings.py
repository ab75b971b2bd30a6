"""GPU runs that say how they differ (issue 13): what a run records of its device, --tf32, `cuda:N` checked
against the devices present, /255 the same on every device, top images whose ties break by dataset index, a
channels_last model, the random-init seed that leaves the global generators alone, and one DataLoader for both
passes. Everything runs on the CPU; CUDA's part is its semantics (the same functions with device="cuda")."""

import pickle

import pytest
import torch
import torchvision

from lce import config
from lce.config import device_settings, pick_device, tf32, tf32_in_effect
from lce.dissect import engine
from lce.dissect.engine import DissectSettings, _top_images, dissect
from lce.dissect.upsample import Upsampler
from lce.errors import LceError
from lce.models.build import build_model
from lce.probe.broden import Broden
from lce.probe.dataset import IMAGENET_MEAN, IMAGENET_STD, ProbeDataset


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """A 12-image, 64-px synthetic probe."""
    from lce.probe.synth import synthesize

    return Broden.open(synthesize(tmp_path_factory.mktemp("device") / "probe", images=12, size=64, seed=3).path)


def resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


def dataset_of(probe, settings) -> ProbeDataset:
    return ProbeDataset(probe, seg_size=settings.seg_size_for(64, probe.rows[0].sh), uint8=True)


# --- what a run records, and --tf32 -------------------------------------------------------------------------------

def test_a_cpu_run_records_the_cpu_its_name_torch_and_no_tf32_or_cudnn():
    recorded = device_settings("cpu")
    assert recorded == {"device": "cpu", "device_name": config.cpu_name(), "tf32_matmul": False,
                        "tf32_cudnn_conv": False, "torch": torch.__version__, "cudnn": None}
    assert recorded["device_name"] and recorded["device_name"] != "unknown"


def test_a_cuda_run_records_its_numbered_device_name_tf32_and_cudnn(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"NVIDIA H200 #{index}")
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    with tf32("on"):
        on = device_settings("cuda")
    with tf32("off"):
        off = device_settings(torch.device("cuda:1"))
    assert on == {"device": "cuda:0", "device_name": "NVIDIA H200 #0", "tf32_matmul": True, "tf32_cudnn_conv": True,
                  "torch": torch.__version__, "cudnn": 91002}
    assert off == {**on, "device": "cuda:1", "device_name": "NVIDIA H200 #1", "tf32_matmul": False,
                   "tf32_cudnn_conv": False}


def test_tf32_switches_apply_inside_the_block_only_and_torch_defaults_read_as_conv_only():
    switches = (torch.backends.cuda.matmul, torch.backends.cudnn.conv)
    before = [switch.fp32_precision for switch in switches]
    # torch's defaults: TF32 for cuDNN convolutions, IEEE float32 for matmuls.
    assert tf32_in_effect() == {"tf32_matmul": False, "tf32_cudnn_conv": True}
    with tf32("off"):
        assert [switch.fp32_precision for switch in switches] == ["ieee", "ieee"]
        assert tf32_in_effect() == {"tf32_matmul": False, "tf32_cudnn_conv": False}
    with pytest.raises(RuntimeError), tf32("on"):
        assert tf32_in_effect() == {"tf32_matmul": True, "tf32_cudnn_conv": True}
        raise RuntimeError("the dissection failed")
    assert [switch.fp32_precision for switch in switches] == before
    with pytest.raises(LceError, match="--tf32 must be on or off .*, not 'yes'"), tf32("yes"):
        pass


def test_a_switch_left_to_none_inherits_its_backend_then_torch():
    conv, cudnn = torch.backends.cudnn.conv, torch.backends.cudnn
    before = conv.fp32_precision, cudnn.fp32_precision
    try:
        conv.fp32_precision, cudnn.fp32_precision = "none", "tf32"
        assert tf32_in_effect()["tf32_cudnn_conv"] is True
        cudnn.fp32_precision = "none"
        assert tf32_in_effect()["tf32_cudnn_conv"] is False  # "none" all the way up: IEEE
    finally:
        conv.fp32_precision, cudnn.fp32_precision = before


# --- --device cuda:N --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, count, message", [
    ("cuda:2", 2, "--device cuda:2: this machine has 2 CUDA devices (cuda:0 to cuda:1); name one of them"),
    ("cuda:1", 1, "--device cuda:1: this machine has 1 CUDA device (cuda:0); name one of them"),
    ("cuda:x", 1, "--device cuda:x: this machine has 1 CUDA device (cuda:0)"),
    ("cuda:-1", 2, "--device cuda:-1: this machine has 2 CUDA devices"),
])
def test_a_cuda_device_that_is_not_present_is_refused_naming_how_many_there_are(monkeypatch, name, count, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    with pytest.raises(LceError) as refused:
        pick_device(name)
    assert str(refused.value).startswith(message)


def test_a_cuda_device_that_is_present_is_picked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    assert pick_device("cuda") == torch.device("cuda")


# --- /255 the same on every device --------------------------------------------------------------------------------

@pytest.mark.parametrize("mean, std", [(IMAGENET_MEAN, IMAGENET_STD), (None, None), ((0.4, 0.5, 0.6), None)])
def test_normalize_gives_the_bits_of_the_division_on_the_cpu_for_every_uint8_value(probe, mean, std):
    dataset = ProbeDataset(probe, mean=mean, std=std, uint8=True)
    every = torch.arange(256, dtype=torch.uint8).repeat(2, 3, 4, 1)  # (2, 3, 4, 256): each value in each channel
    expected = every.float() / 255.0  # what normalize() computed before, pixel by pixel
    if mean is not None:
        expected = expected - torch.tensor(mean).view(3, 1, 1)
    if std is not None:
        expected = expected / torch.tensor(std).view(3, 1, 1)
    assert torch.equal(dataset.normalize(every), expected)
    assert torch.equal(dataset.normalize(every[0]), expected[0])  # one image (in a DataLoader worker)
    floats = torch.rand(1, 3, 2, 2)
    assert dataset.normalize(floats) is floats  # already normalised


def test_normalize_copies_its_constants_to_a_device_once_and_not_to_workers(probe):
    dataset = ProbeDataset(probe, uint8=True)
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    dataset.normalize(images)
    kept = dataset._levels_on["cpu"]
    dataset.normalize(images)
    assert list(dataset._levels_on) == ["cpu"] and dataset._levels_on["cpu"] is kept
    assert pickle.loads(pickle.dumps(dataset))._levels_on == {}


# --- top images: ties broken by dataset index ---------------------------------------------------------------------

def test_a_dead_units_top_images_are_the_first_ones_of_the_probe():
    top = None
    for start in range(0, 40, 8):  # five batches of 8 images, unit 0 dead (all zeros), unit 1 alive
        index = torch.arange(start, start + 8)
        peaks = torch.stack([torch.zeros(8), index.float() % 5], dim=1)  # (B, U)
        top = _top_images(top, peaks, index)
    assert torch.equal(top[1][0], torch.arange(10))
    assert torch.equal(top[0][0], torch.zeros(10))
    # Unit 1's peak 4 is reached by images 4, 9, 14, ...: the lowest first, then the 3s in the same way.
    assert top[1][1].tolist() == [4, 9, 14, 19, 24, 29, 34, 39, 3, 8]


def test_equal_peaks_keep_the_lower_index_first_across_batches():
    first = _top_images(None, torch.tensor([[1.0], [3.0], [2.0], [3.0]]), torch.tensor([0, 1, 2, 3]))
    assert first[1].tolist() == [[1, 3, 2, 0]]
    second = _top_images(first, torch.tensor([[3.0], [2.0], [5.0]]), torch.tensor([4, 5, 6]))
    assert second[1].tolist() == [[6, 1, 3, 4, 2, 5, 0]]
    assert second[0].tolist() == [[5.0, 3.0, 3.0, 3.0, 2.0, 2.0, 1.0]]


# --- channels_last ------------------------------------------------------------------------------------------------

def test_channels_last_maps_give_the_cells_of_contiguous_ones():
    torch.manual_seed(1)
    acts = torch.randn(3, 5, 7, 7)
    sampler = Upsampler.of(acts, 28, "dissect")
    plain, permuted = sampler.cells(acts), sampler.cells(acts.to(memory_format=torch.channels_last))
    assert torch.equal(plain.bounds(), permuted.bounds())
    index = (torch.tensor([0, 2, 1]), torch.tensor([4, 0, 3]), torch.tensor([0, 7, 3]), torch.tensor([7, 2, 5]))
    assert torch.equal(plain.values(*index), permuted.values(*index))


def test_a_channels_last_layer_is_dissected_exactly_as_its_contiguous_values(probe):
    """The engine's part, bit for bit: the same values of layer4, once contiguous and once channels_last (a
    forward hook hands LayerCapture a channels_last copy)."""
    settings = DissectSettings.for_variant("dissect", batch_size=4)
    dataset = dataset_of(probe, settings)
    plain = dissect(resnet18(), ["layer3", "layer4"], dataset, settings, torch.device("cpu"))
    model = resnet18()
    model.layer4.register_forward_hook(lambda module, inputs, output: output.to(memory_format=torch.channels_last))
    permuted = dissect(model, ["layer3", "layer4"], dataset, settings, torch.device("cpu"))
    for name in ("layer3", "layer4"):
        assert torch.equal(plain[name].thresholds, permuted[name].thresholds)
        assert all(torch.equal(a, b) for a, b in zip(plain[name].tally.counts(), permuted[name].tally.counts()))
        assert torch.equal(plain[name].top_images, permuted[name].top_images)
        assert torch.equal(plain[name].top_activations, permuted[name].top_activations)


def test_a_channels_last_resnet_dissects_like_the_contiguous_one(probe):
    """The whole model in channels_last: its convolutions sum in another order on the CPU (oneDNN's NHWC kernels;
    layer4 differs by about 6e-6), so its thresholds match to rounding, not bit for bit."""
    settings = DissectSettings.for_variant("dissect", batch_size=4)
    dataset = dataset_of(probe, settings)
    plain = dissect(resnet18(), ["layer4"], dataset, settings, torch.device("cpu"))["layer4"]
    permuted = dissect(resnet18().to(memory_format=torch.channels_last), ["layer4"], dataset, settings,
                       torch.device("cpu"))["layer4"]
    assert torch.allclose(plain.thresholds, permuted.thresholds, rtol=1e-4, atol=1e-5)
    # A pixel whose value sits at its unit's threshold may flip: counts differ by a few pixels (4 measured).
    for ours, theirs in zip(plain.tally.counts(), permuted.tally.counts()):
        assert (ours - theirs).abs().max() <= 8
    assert (plain.tally.iou().argmax(1) == permuted.tally.iou().argmax(1)).float().mean() > 0.99
    assert (plain.top_images == permuted.top_images).float().mean() > 0.99


# --- the random-init seed -----------------------------------------------------------------------------------------

def test_a_seeded_build_leaves_the_global_generators_as_they_were(monkeypatch):
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    torch.manual_seed(123)
    reseeded.clear()
    state = torch.get_rng_state()
    loaded = build_model("resnet18", random_init=True, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert reseeded == []  # CUDA's generators are not touched
    torch.manual_seed(3)  # the same weights as before the change: the CPU generator seeded with the seed
    assert all(torch.equal(a, b) for a, b in zip(loaded.module.state_dict().values(),
                                                 torchvision.models.resnet18().state_dict().values()))


# --- one DataLoader for both passes -------------------------------------------------------------------------------

def loaders_made(monkeypatch) -> list:
    made = []
    original = engine._loader

    def recording(dataset, settings, device, persistent=False):
        loader = original(dataset, settings, device, persistent)
        made.append((loader, dataset.load_images))
        return loader

    monkeypatch.setattr(engine, "_loader", recording)
    return made


def test_pass_2_reads_the_first_passes_loader_and_workers_when_it_runs_the_model_again(monkeypatch, probe):
    settings = DissectSettings.for_variant("dissect", batch_size=4, cache_budget=0)
    dataset = dataset_of(probe, settings)
    single = dissect(resnet18(), ["layer4"], dataset, settings, torch.device("cpu"))["layer4"]
    made = loaders_made(monkeypatch)
    workers = DissectSettings.for_variant("dissect", batch_size=4, cache_budget=0, workers=2)
    pooled = dissect(resnet18(), ["layer4"], dataset, workers, torch.device("cpu"))["layer4"]
    assert len(made) == 1
    loader = made[0][0]
    assert loader.persistent_workers and loader.num_workers == 2 and not loader.pin_memory  # pinned for CUDA only
    assert torch.equal(single.thresholds, pooled.thresholds) and torch.equal(single.top_images, pooled.top_images)
    assert all(torch.equal(a, b) for a, b in zip(single.tally.counts(), pooled.tally.counts()))


def test_pass_2_reads_labels_alone_from_a_second_loader_when_activations_are_kept(monkeypatch, probe):
    settings = DissectSettings.for_variant("dissect", batch_size=4)
    dataset = dataset_of(probe, settings)
    acts = 12 * 256 * 4 * 4 * 4  # layer3's activations over the probe: kept, with no room for the labels
    made = loaders_made(monkeypatch)
    dissect(resnet18(), ["layer3"], dataset, DissectSettings.for_variant("dissect", batch_size=4,
                                                                          cache_budget=acts), torch.device("cpu"))
    assert [images for _, images in made] == [True, False]
    made.clear()
    dissect(resnet18(), ["layer3"], dataset, settings, torch.device("cpu"))  # labels kept too: one loader
    assert [images for _, images in made] == [True]
