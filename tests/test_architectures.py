"""Every model family through `lce ingest`, read with the right layout: conv nets (NCHW), channels-last blocks
(Swin, ConvNeXt's MLP: NHWC), ViTs' tokens with their class, distillation and register tokens dropped; the same
planted detectors give the same results in every layout; an output whose layout cannot be known is refused.

All models are random initialisations at their smallest configuration (a few channels, one or two blocks) on a
30-image, 64-px synthetic probe; the Hugging Face ViT is saved by the test itself. Nothing is downloaded.
"""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torchvision
from timm.models import deit, swin_transformer, vision_transformer
from torch import nn
from torchvision.models.convnext import CNBlockConfig

from lce.dissect.engine import DissectSettings, dissect
from lce.models.layout import MapLayout
from lce.probe.broden import Broden
from lce.probe.cache import DecodeCache
from lce.probe.dataset import ProbeDataset
from tests.test_dissect_planted import Detectors, planted_model
from tests.test_ingest import ingest, one

pytestmark = pytest.mark.slow  # timm and Hugging Face models through lce ingest

SIZE = 64  # the probe's images: 64 x 64
REGISTERS = 4


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    """The synthetic probe of tests/test_ingest.py (30 images, 64 px, seed 2), written once for the module."""
    from lce.probe.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("architectures") / "probe", images=30, size=SIZE, seed=2)


@pytest.fixture
def synth(cli, probe, tmp_path_factory, monkeypatch):
    """`probe` registered as 'synth' in this test's database; LCE_HOME (the decode cache) shared by the module."""
    monkeypatch.setenv("LCE_HOME", str(tmp_path_factory.getbasetemp() / "architectures-home"))
    assert cli("probe", "add", "synth", probe.path).exit_code == 0
    return probe.path


# The families, each at its smallest configuration; built by `--arch tests.test_architectures:NAME`.

def tiny_densenet() -> nn.Module:
    return torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2)


def tiny_convnext() -> nn.Module:
    return torchvision.models.ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)])


def tiny_swin() -> nn.Module:
    return torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[1, 1],
                                              window_size=[4, 4])


def tiny_maxvit() -> nn.Module:
    return torchvision.models.MaxVit(input_size=(SIZE, SIZE), stem_channels=8, partition_size=2,
                                     block_channels=[16, 32], block_layers=[1, 1], head_dim=8,
                                     stochastic_depth_prob=0.0)


def tiny_vit() -> nn.Module:
    return torchvision.models.VisionTransformer(image_size=SIZE, patch_size=16, num_layers=2, num_heads=2,
                                                hidden_dim=32, mlp_dim=64)


TIMM_VIT = dict(img_size=SIZE, patch_size=16, embed_dim=32, depth=2, num_heads=2)


def timm_vit_class_token() -> nn.Module:
    return vision_transformer.VisionTransformer(**TIMM_VIT)


def timm_vit_distilled() -> nn.Module:
    return deit.VisionTransformerDistilled(**TIMM_VIT)


def timm_vit_registers() -> nn.Module:
    return vision_transformer.VisionTransformer(**TIMM_VIT, reg_tokens=REGISTERS)


def timm_vit_global_pool() -> nn.Module:
    return vision_transformer.VisionTransformer(**TIMM_VIT, class_token=False, global_pool="avg")


def timm_swin() -> nn.Module:
    return swin_transformer.SwinTransformer(img_size=SIZE, patch_size=4, window_size=4, embed_dim=16, depths=(1, 1),
                                            num_heads=(1, 1))


def architecture(arch: str) -> nn.Module:
    """`arch` built here, independently of lce, to read its channel counts off the modules: on the meta device,
    where nothing is allocated or initialised (VGG's classifier alone has 100M weights)."""
    try:
        with torch.device("meta"):
            return _build(arch)
    except NotImplementedError:  # a constructor that reads its own weights (RegNet's init)
        return _build(arch)


def _build(arch: str) -> nn.Module:
    if arch.startswith("timm:"):
        return timm.create_model(arch.removeprefix("timm:"), pretrained=False, img_size=SIZE)
    if ":" in arch:
        return globals()[arch.partition(":")[2]]()
    return torchvision.models.get_model(arch)


def said(result) -> str:
    """The command's standard output with its line wrapping undone (rich wraps long lines at the terminal's
    width)."""
    return " ".join(result.stdout.split())


def _last_conv(module: nn.Module) -> int:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


OWN = "tests.test_architectures:"
FAMILIES = [  # (arch, layer, layout, prefix tokens, the layer's channels read off the model)
    pytest.param("resnet18", "layer2", "nchw", 0, lambda m: m.layer2[-1].conv2.out_channels, id="resnet"),
    pytest.param("vgg11", "features.3", "nchw", 0, lambda m: m.features[3].out_channels, id="vgg"),
    pytest.param(OWN + "tiny_densenet", "features.denseblock2", "nchw", 0,
                 lambda m: m.features.norm5.num_features, id="densenet"),
    pytest.param("mobilenet_v3_small", "features.4", "nchw", 0, lambda m: _last_conv(m.features[4]),
                 id="mobilenet"),
    pytest.param("efficientnet_b0", "features.3", "nchw", 0, lambda m: _last_conv(m.features[3]),
                 id="efficientnet"),
    pytest.param("regnet_x_400mf", "trunk_output.block2", "nchw", 0,
                 lambda m: _last_conv(m.trunk_output.block2), id="regnet"),
    pytest.param(OWN + "tiny_convnext", "features.3", "nchw", 0, lambda m: m.features[3][-1].block[5].out_features,
                 id="convnext"),
    pytest.param(OWN + "tiny_convnext", "features.3.0.block.3", "nhwc", 0,
                 lambda m: m.features[3][0].block[3].out_features, id="convnext-mlp"),
    pytest.param(OWN + "tiny_swin", "features.3", "nhwc", 0, lambda m: m.norm.normalized_shape[0], id="swin"),
    pytest.param(OWN + "tiny_maxvit", "blocks.1", "nchw", 0, lambda m: m.classifier[2].normalized_shape[0],
                 id="maxvit"),
    pytest.param(OWN + "tiny_vit", "encoder.layers.encoder_layer_1", "tokens", 1, lambda m: m.hidden_dim,
                 id="vit"),
    pytest.param(OWN + "timm_vit_class_token", "blocks.1", "tokens", 1, lambda m: m.embed_dim,
                 id="timm-vit-class-token"),
    pytest.param(OWN + "timm_vit_distilled", "blocks.1", "tokens", 2, lambda m: m.embed_dim,
                 id="timm-vit-distilled"),
    pytest.param(OWN + "timm_vit_registers", "blocks.1", "tokens", 1 + REGISTERS, lambda m: m.embed_dim,
                 id="timm-vit-registers"),
    pytest.param(OWN + "timm_vit_global_pool", "blocks.1", "tokens", 0, lambda m: m.embed_dim,
                 id="timm-vit-global-pool"),
    pytest.param(OWN + "timm_swin", "layers.1", "nhwc", 0, lambda m: m.layers[1].blocks[-1].mlp.fc2.out_features,
                 id="timm-swin"),
    pytest.param("timm:vit_tiny_patch16_224", "blocks.11", "tokens", 1, lambda m: m.blocks[11].mlp.fc2.out_features,
                 id="timm-name"),
]


@pytest.mark.parametrize("arch, layer, layout, prefix, channels", FAMILIES)
def test_every_family_is_dissected_with_its_layout(cli, engine, synth, arch, layer, layout, prefix, channels):
    result = ingest(cli, "m", "--arch", arch, "--random-init", "--layer", layer)
    assert result.exit_code == 0, result.output
    units = channels(architecture(arch))
    expected = f"tokens, {prefix} prefix" if layout == "tokens" else layout
    assert f"m {layer}: created run" in said(result) and f"{units} units" in said(result)
    assert f"layout {expected} (from " in said(result)
    run = one(engine, "SELECT unit_count, settings->>'layout' AS layout, (settings->>'prefix_tokens')::int AS prefix,"
                      " settings->>'architecture' AS architecture FROM run")
    assert tuple(run) == (units, layout, prefix, arch)
    assert one(engine, "SELECT count(*) FROM unit")[0] == units


def test_a_hugging_face_vit_is_read_with_its_class_token_and_its_own_normalisation(cli, engine, synth, tmp_path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    mean, std = [0.5, 0.25, 0.125], [0.25, 0.5, 0.75]
    directory = tmp_path / "hf-vit"
    torch.manual_seed(0)
    config = ViTConfig(image_size=SIZE, patch_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64)
    model = ViTModel(config)
    model.save_pretrained(directory)
    ViTImageProcessor(image_mean=mean, image_std=std).save_pretrained(directory)
    assert json.loads((directory / "preprocessor_config.json").read_text())["image_mean"] == mean

    layer = "layers.1" if hasattr(model, "layers") else "encoder.layer.1"  # transformers 5 / 4
    result = ingest(cli, "hf-vit", "--arch", f"hf:{directory}", "--layer", layer)
    assert result.exit_code == 0, result.output
    assert "layout tokens, 1 prefix (from the model (Hugging Face ViTModel: cls_token 1))" in said(result)
    run = one(engine, "SELECT unit_count, checkpoint_sha256, settings FROM run")
    assert run.unit_count == config.hidden_size == 32
    assert (run.settings["layout"], run.settings["prefix_tokens"]) == ("tokens", 1)
    assert (run.settings["mean"], run.settings["std"]) == (mean, std)
    assert run.settings["normalization_source"] == "preprocessor_config.json"
    assert run.settings["source"] == "hf" and run.settings["random_init"] is False
    assert run.checkpoint_sha256 and run.settings["checkpoint_layout"] == "Hugging Face (model.safetensors)"


# Planted detectors emitted in every layout: the prefix tokens carry values far above any map's, so a prefix
# token read as a patch would change every threshold.

class LaidOutDetectors(Detectors):
    """The planted maps (B, U, S, S) as `layout`: nhwc (B, S, S, U), or tokens (B, P + S*S, U), P prefix tokens
    first, then the patches row-major."""

    def __init__(self, detectors: Detectors, layout: MapLayout):
        super().__init__(detectors.fingerprints, detectors.maps)
        self.layout = layout

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        maps = super().forward(images)
        if self.layout.kind == "nhwc":
            return maps.permute(0, 2, 3, 1).contiguous()
        patches = maps.flatten(2).transpose(1, 2)
        prefix = torch.full((maps.shape[0], self.layout.prefix_tokens, maps.shape[1]), 1e3)
        return torch.cat([prefix, patches], dim=1)


@pytest.fixture(scope="module")
def probe_cache(probe, tmp_path_factory):
    return DecodeCache.build(Broden.open(probe.path), tmp_path_factory.mktemp("architectures-cache"))


@pytest.mark.parametrize("variant", ["netdissect", "dissect"])
def test_planted_detectors_give_the_same_labels_and_ious_in_every_layout(probe, probe_cache, variant):
    broden = Broden.open(probe.path)
    settings = DissectSettings.for_variant(variant, batch_size=8)
    dataset = ProbeDataset(broden, seg_size=settings.seg_size_for(SIZE, broden.rows[0].sh), cache=probe_cache)
    model = planted_model(probe, dataset)
    nchw = dissect(model, ["detectors"], dataset, settings, torch.device("cpu"))["detectors"]
    labels = nchw.tally.iou().argmax(dim=1)
    planted = nchw.tally.iou()[torch.arange(4), labels[:4]]
    assert bool((planted > 0.04).all()), planted  # the comparison is of real labels, not of empty masks
    planted_detectors = model.detectors
    for layout in (MapLayout("nhwc"), MapLayout("tokens", 1), MapLayout("tokens", 5), MapLayout("tokens", 0)):
        model.detectors = LaidOutDetectors(planted_detectors, layout)
        read = dissect(model, ["detectors"], dataset, settings, torch.device("cpu"),
                       layouts={"detectors": layout})["detectors"]
        assert torch.equal(read.thresholds, nchw.thresholds), layout
        for mine, theirs in zip(read.tally.counts(), nchw.tally.counts()):
            assert torch.equal(mine, theirs), layout
        assert torch.equal(read.tally.iou(), nchw.tally.iou()), layout
        assert torch.equal(read.tally.iou().argmax(dim=1), labels), layout
        assert torch.equal(read.top_images, nchw.top_images), layout


# Outputs whose layout neither the model nor the shape says.

class Pooled(nn.Module):
    """(B, 8, 8, 8) whatever the input's size: channels, height and width cannot be told apart."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(8)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(images))


POOLED = ("pooled", "--arch", OWN + "Pooled", "--random-init", "--layer", "pool")


def test_an_ambiguous_output_is_refused_until_its_layout_is_given(cli, engine, synth):
    refused = ingest(cli, *POOLED)
    assert refused.exit_code == 1, refused.output
    assert "Layer 'pool' returns [1, 8, 8, 8]" in refused.stderr and "--layout nchw|nhwc|tokens" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert one(engine, "SELECT count(*) FROM run")[0] == 0
    for layout in ("nchw", "nhwc"):
        result = ingest(cli, *POOLED, "--layout", layout, "--replace")
        assert result.exit_code == 0, result.output
        assert "8 units" in said(result) and f"layout {layout} (from --layout)" in said(result)
        run = one(engine, "SELECT unit_count, settings->>'layout', settings->>'layout_origin' FROM run")
        assert tuple(run) == (8, layout, "--layout")


@pytest.mark.parametrize("args, message", [
    (["--layout", "tokens"], "returns [1, 8, 8, 8], which cannot be read as --layout tokens: tokens need a 3-d output"
                             " (B, tokens, C)"),
    (["--layout", "tokens", "--prefix-tokens", "1"], "tokens need a 3-d output (B, tokens, C), not [1, 8, 8, 8]"),
    (["--prefix-tokens", "0"], "tokens need a 3-d output (B, tokens, C), not [1, 8, 8, 8]"),
    (["--layout", "nchw", "--prefix-tokens", "1"], "--prefix-tokens 1: a count of 0 or more, and only with --layout"
                                                   " tokens"),
    (["--layout", "tokens", "--prefix-tokens", "-1"], "--prefix-tokens -1: a count of 0 or more"),
    (["--layout", "nwhc"], "--layout must be one of nchw, nhwc, tokens, not 'nwhc'"),
])
def test_a_layout_the_output_cannot_have_is_refused(cli, engine, synth, args, message):
    result = ingest(cli, *POOLED, *args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.stderr
    assert one(engine, "SELECT count(*) FROM run")[0] == 0


@pytest.mark.parametrize("stored, change, differs", [
    (["--layout", "nchw"], ["--layout", "nhwc"], "layout nchw -> nhwc"),
    (["--layout", "nchw"], ["--layout", "nchw", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5"],
     "mean [0.485, 0.456, 0.406] -> [0.5, 0.5, 0.5]"),
])
def test_a_stored_run_read_another_way_needs_replace(cli, engine, synth, stored, change, differs):
    assert ingest(cli, *POOLED, *stored).exit_code == 0
    first = one(engine, "SELECT id FROM run")[0]
    again = ingest(cli, *POOLED, *stored)
    assert again.exit_code == 0, again.output
    assert f"already ingested with this checkpoint and settings (run {first}); skipped" in said(again)
    other = ingest(cli, *POOLED, *change)
    assert other.exit_code == 1 and "skipped" not in other.stdout, other.output
    assert differs in other.stderr and "pass --replace" in other.stderr
    assert one(engine, "SELECT id FROM run")[0] == first
    replaced = ingest(cli, *POOLED, *change, "--replace")
    assert replaced.exit_code == 0 and "replaced run" in replaced.stdout, replaced.output
    assert one(engine, "SELECT count(*), min(id) FROM run") == (1, first + 1)
    same = ingest(cli, *POOLED, *change)
    assert same.exit_code == 0 and "skipped" in same.stdout, same.output
    assert one(engine, "SELECT count(*), min(id) FROM run") == (1, first + 1)
