"""The zoo's self-supervised ViTs: each entry loads a checkpoint written in its official release's layout and key
names (random weights, at the release's own image size; nothing downloaded), read at blocks.11 (all on CPU).

Every release is written from weights in timm's key names, renamed and wrapped as the release stores them (DINO's
bare backbone and its training checkpoint, DINOv2's mask_token and register_tokens, DeiT's and MAE's {"model": ...},
OpenAI CLIP's visual.* beside the text tower); the loaded model must hold those weights again.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from lce.errors import LceError
from lce.models import LAYOUTS, LayerCapture, MapLayout, build_zoo_model, load_checkpoint, resolve_layouts, zoo_entry
from lce.models.zoo import Normalization, zoo_entries
from tests.conftest import Cli

pytestmark = pytest.mark.slow  # timm ViTs at their releases' image sizes

CONVERTED = ", converted by timm's timm.models.vision_transformer.checkpoint_filter_fn"
IMAGENET = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
CLIP = Normalization(mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))


@dataclass(frozen=True)
class Release:
    """What an entry's official release is: the file, its layout, the size it was trained at, and the model that
    reads it (timm's, its patch, width and prefix tokens)."""

    file: str
    layout: str
    architecture: str
    native: int
    patch: int
    width: int
    prefix_tokens: int
    normalization: Normalization


RELEASES = {
    "dino-vits16": Release("dino_deitsmall16_pretrain.pth", "dino", "timm:vit_small_patch16_224", 224, 16, 384, 1,
                           IMAGENET),
    "dino-vitb16": Release("dino_vitbase16_pretrain.pth", "dino", "timm:vit_base_patch16_224", 224, 16, 768, 1,
                           IMAGENET),
    "dinov2-vits14": Release("dinov2_vits14_pretrain.pth", "dinov2", "timm:vit_small_patch14_dinov2", 518, 14, 384, 1,
                             IMAGENET),
    "dinov2-vits14-reg": Release("dinov2_vits14_reg4_pretrain.pth", "dinov2", "timm:vit_small_patch14_reg4_dinov2",
                                 518, 14, 384, 5, IMAGENET),
    "mae-vitb16": Release("mae_pretrain_vit_base.pth", "deit", "timm:vit_base_patch16_224", 224, 16, 768, 1,
                          IMAGENET),
    "deit-s": Release("deit_small_patch16_224-cd65a155.pth", "deit", "timm:deit_small_patch16_224", 224, 16, 384, 1,
                      IMAGENET),
    "clip-vitb16": Release("ViT-B-16.pth", "clip", "timm:vit_base_patch16_clip_quickgelu_224", 224, 16, 768, 1, CLIP),
}


def timm_weights(architecture: str, image_size: int, seed: int) -> dict[str, torch.Tensor]:
    """Random weights in timm's key names and shapes for `architecture` at `image_size` (shapes read from a model on
    the meta device: no initialisation to wait for)."""
    with torch.device("meta"):
        shapes = timm.create_model(architecture.removeprefix("timm:"), pretrained=False, img_size=image_size)
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.randn(value.shape, generator=generator) * 0.02 for key, value in shapes.state_dict().items()}


def without_head(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value for key, value in weights.items() if not key.startswith("head.")}


def openai_clip(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's CLIP image tower as OpenAI's model.py names it (the inverse of timm's _convert_openai_clip), beside
    a few keys of the text tower and the scalars of the TorchScript model's state dict."""
    renames = [("patch_embed.proj", "conv1"), ("norm_pre", "ln_pre"), ("blocks.", "transformer.resblocks."),
               ("norm1", "ln_1"), ("norm2", "ln_2"), ("attn.qkv.", "attn.in_proj_"), ("attn.proj", "attn.out_proj"),
               ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")]
    state = {}
    for key, value in weights.items():
        if key == "cls_token":
            state["visual.class_embedding"] = value[0, 0]
        elif key == "pos_embed":
            state["visual.positional_embedding"] = value[0]
        elif key == "head.weight":
            state["visual.proj"] = value.t().contiguous()
        elif key.startswith("norm."):
            state["visual.ln_post." + key.removeprefix("norm.")] = value
        elif key != "head.bias":  # CLIP's projection has no bias (timm's head gets zeros)
            for old, new in renames:
                key = key.replace(old, new)
            state["visual." + key] = value
    text = {"positional_embedding": torch.zeros(77, 512), "token_embedding.weight": torch.zeros(49408, 8),
            "transformer.resblocks.0.attn.in_proj_weight": torch.zeros(1536, 512), "ln_final.weight": torch.ones(512),
            "text_projection": torch.zeros(512, 512), "logit_scale": torch.tensor(4.6052),
            "input_resolution": torch.tensor(224), "context_length": torch.tensor(77),
            "vocab_size": torch.tensor(49408)}
    return state | text


def release_checkpoint(name: str, weights: dict[str, torch.Tensor]) -> object:
    """What the release's file holds, from `weights` in timm's names at the release's image size."""
    layout = RELEASES[name].layout
    if layout == "dino":  # the teacher's backbone alone, as DINO's ViT has no head (num_classes=0)
        return without_head(weights)
    if layout == "dinov2":
        state = without_head(weights) | {"mask_token": torch.full((1, RELEASES[name].width), 0.5)}
        if "reg_token" in state:  # DINOv2's own names: register_tokens, and the class token's position embedding
            state["register_tokens"] = state.pop("reg_token")
            state["pos_embed"] = torch.cat([torch.full_like(state["pos_embed"][:, :1], 0.25), state["pos_embed"]], 1)
        return state
    if layout == "deit":  # DeiT's file has its classifier, MAE's pretrained encoder none
        return {"model": weights if name == "deit-s" else without_head(weights)}
    return openai_clip(weights)


def expected_weights(name: str, weights: dict[str, torch.Tensor], image_size: int) -> dict[str, torch.Tensor]:
    """The weights the model built at `image_size` must hold: the release's, position embeddings resampled by timm
    when the grid differs, DINOv2's class token with its position embedding added (timm's register models give it
    none), and no classifier where the release has none."""
    release = RELEASES[name]
    expected = dict(weights) if name in ("deit-s", "clip-vitb16") else without_head(weights)
    if name == "clip-vitb16":
        expected["head.bias"] = torch.zeros(512)
    if name == "dinov2-vits14-reg":
        expected["cls_token"] = weights["cls_token"] + 0.25
    grid, native = image_size // release.patch, release.native // release.patch
    if grid != native:
        in_pos = 0 if name == "dinov2-vits14-reg" else 1  # prefix tokens that have a position embedding
        expected["pos_embed"] = resample_abs_pos_embed(weights["pos_embed"], new_size=[grid, grid],
                                                       old_size=[native, native], num_prefix_tokens=in_pos)
    return expected


@pytest.fixture(autouse=True)
def without_timms_init(monkeypatch):
    """Build the ViTs without timm's truncated-normal init (seconds for a ViT-B on a CPU): every weight these tests
    read comes from a checkpoint; the modules' own default init remains."""
    monkeypatch.setattr(VisionTransformer, "init_weights", lambda self, *args, **kwargs: None)


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """name -> (path of the release's file, its weights in timm's names); written once per module, on demand, and
    deleted after it (a ViT-B file is 350 MB)."""
    folder = tmp_path_factory.mktemp("releases")
    written = {}

    def write(name: str):
        if name not in written:
            release = RELEASES[name]
            weights = timm_weights(release.architecture, release.native, seed=len(written))
            path = folder / release.file
            torch.save(release_checkpoint(name, weights), path)
            written[name] = path, weights
        return written[name]

    yield write
    for path, _ in written.values():
        path.unlink()


def assert_holds(module: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = module.state_dict()
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


def test_zoo_lists_the_vits_after_the_papers_models():
    others = [entry for entry in zoo_entries() if not entry.in_paper]
    assert [entry.name for entry in others] == list(RELEASES)
    for entry in others:
        release = RELEASES[entry.name]
        assert (entry.architecture, entry.layer, entry.layout) == (release.architecture, "blocks.11", release.layout)
        assert entry.layout in LAYOUTS and release.file.split(".")[0] in entry.note
        assert entry.paper_name == entry.title and entry.normalization == release.normalization
        assert timm.is_model(entry.architecture.removeprefix("timm:"))
    assert {entry.name: entry.family for entry in others} == {
        "dino-vits16": "self-distillation", "dino-vitb16": "self-distillation", "dinov2-vits14": "self-distillation",
        "dinov2-vits14-reg": "self-distillation", "mae-vitb16": "masked-image-modeling", "deit-s": "supervised",
        "clip-vitb16": "language-supervised"}


def test_lce_zoo_prints_the_vits():
    result = Cli()("zoo")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    row = next(line for line in lines if "│ clip-vitb16 " in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[:6] == ["clip-vitb16", "timm:vit_base_patch16_clip_quickgelu_224", "blocks.11", "clip",
                         "CLIP mean/std", "language-supervised"]
    row = next(line for line in lines if "│ dinov2-vits14-reg " in line)
    assert [cell.strip() for cell in row.split("│")[1:6]] == [
        "dinov2-vits14-reg", "timm:vit_small_patch14_reg4_dinov2", "blocks.11", "dinov2", "ImageNet mean/std"]


@pytest.mark.parametrize("name", list(RELEASES))
def test_entry_loads_its_official_release(releases, name):
    entry, release = zoo_entry(name), RELEASES[name]
    path, weights = releases(name)
    size = 4 * release.patch  # a 4 x 4 grid: position embeddings resampled from the release's

    loaded = build_zoo_model(entry, path, image_size=size)

    assert loaded.architecture == release.architecture and loaded.image_size == size
    assert loaded.checkpoint_layout == release.layout + CONVERTED
    assert f"from {release.file} (layout {release.layout}," in loaded.description
    assert loaded.normalization == release.normalization and loaded.normalization_source == f"the zoo ({name})"
    expected = expected_weights(name, weights, size)
    assert expected["pos_embed"].shape[1] == 16 + (release.prefix_tokens if name != "dinov2-vits14-reg" else 0)
    assert_holds(loaded.module, expected)
    layouts = resolve_layouts(loaded.module, [entry.layer], size, "cpu")
    assert layouts[entry.layer] == MapLayout("tokens", release.prefix_tokens)
    with LayerCapture(loaded.module, [entry.layer], layouts) as capture, torch.no_grad():
        loaded.module(torch.rand(2, 3, size, size))
    units = capture.outputs[entry.layer]
    assert units.shape == (2, release.width, 4, 4) and torch.isfinite(units).all()


@pytest.mark.parametrize("name", ["dino-vits16", "dinov2-vits14-reg"])
def test_release_at_its_own_size_loads_exactly(releases, name):
    release = RELEASES[name]
    path, weights = releases(name)
    loaded = build_zoo_model(zoo_entry(name), path, image_size=release.native)
    expected = expected_weights(name, weights, release.native)
    if name == "dinov2-vits14-reg":  # the class token's position embedding moved into the class token
        assert torch.equal(expected["pos_embed"], torch.load(path, weights_only=True)["pos_embed"][:, 1:])
    else:
        assert torch.equal(expected["pos_embed"], torch.load(path, weights_only=True)["pos_embed"])
    assert_holds(loaded.module, expected)
    assert set(expected) == {key for key in loaded.module.state_dict() if not key.startswith("head.")}


def dino_training_checkpoint(weights: dict[str, torch.Tensor], student: dict[str, torch.Tensor]) -> dict:
    """main_dino.py's checkpoint.pth: the student (DistributedDataParallel: module.) and the teacher, each a
    MultiCropWrapper (backbone. and head.), beside the optimizer, the loss's center and the arguments."""
    head = {"head.mlp.0.weight": torch.ones(8, 384), "head.mlp.0.bias": torch.ones(8),
            "head.last_layer.weight_g": torch.ones(16, 1), "head.last_layer.weight_v": torch.ones(16, 8)}
    return {"student": {f"module.backbone.{key}": value for key, value in without_head(student).items()}
            | {f"module.{key}": value for key, value in head.items()},
            "teacher": {f"backbone.{key}": value for key, value in without_head(weights).items()} | head,
            "optimizer": {"state": {}, "param_groups": []}, "epoch": 100,
            "args": argparse.Namespace(arch="vit_small", patch_size=16, out_dim=16),
            "dino_loss": {"center": torch.zeros(1, 16)}}


def dinov2_teacher_checkpoint(weights: dict[str, torch.Tensor], student: dict[str, torch.Tensor]) -> dict:
    """DINOv2's eval/<iteration>/teacher_checkpoint.pth: the teacher's backbone, DINO head and iBOT head."""
    backbone = release_checkpoint("dinov2-vits14", weights)
    return {"teacher": {f"backbone.{key}": value for key, value in backbone.items()}
            | {"dino_head.mlp.0.weight": torch.ones(8, 384), "ibot_head.mlp.0.weight": torch.ones(8, 384)}}


@pytest.mark.parametrize("name, write, heads", [("dino-vits16", dino_training_checkpoint, 4),
                                                ("dinov2-vits14", dinov2_teacher_checkpoint, 2)],
                         ids=["dino", "dinov2"])
def test_training_checkpoint_loads_the_teachers_backbone(tmp_path, name, write, heads):
    release = RELEASES[name]
    weights = timm_weights(release.architecture, release.native, seed=10)
    student = {key: -value for key, value in weights.items()}  # other weights, which must not be the ones read
    path = tmp_path / "checkpoint.pth"
    torch.save(write(weights, student), path)

    loaded = build_zoo_model(zoo_entry(name), path, image_size=4 * release.patch)

    assert loaded.checkpoint_layout == "dino-train" + CONVERTED
    assert f"{heads} head key(s) dropped" in loaded.description
    assert_holds(loaded.module, expected_weights(name, weights, 4 * release.patch))


def test_mae_training_checkpoint_drops_the_decoder(tmp_path):
    # MAE's main_pretrain.py checkpoints hold the pixel decoder and its mask token beside the encoder; the same
    # layout as the released encoder ("deit"), at ViT-S width to stay fast.
    entry = dataclasses.replace(zoo_entry("mae-vitb16"), architecture="timm:vit_small_patch16_224")
    weights = timm_weights(entry.architecture, 224, seed=12)
    decoder = {"mask_token": torch.zeros(1, 1, 512), "decoder_pos_embed": torch.zeros(1, 197, 512),
               "decoder_embed.weight": torch.ones(512, 384), "decoder_blocks.0.norm1.weight": torch.ones(512),
               "decoder_norm.weight": torch.ones(512), "decoder_pred.weight": torch.ones(768, 512)}
    path = tmp_path / "checkpoint-799.pth"
    torch.save({"model": without_head(weights) | decoder, "optimizer": {"state": {}, "param_groups": []},
                "epoch": 799, "scaler": {"scale": 65536.0}, "args": argparse.Namespace(model="mae_vit_base_patch16")},
               path)
    loaded = build_zoo_model(entry, path, image_size=64)
    assert loaded.checkpoint_layout == "deit" + CONVERTED
    assert "5 head key(s) dropped" in loaded.description  # the decoder; timm's converter drops the mask token
    assert_holds(loaded.module, expected_weights("mae-vitb16", weights, 64))


@pytest.mark.parametrize("name, other, says", [
    ("dino-vits16", "dinov2-vits14", "would resample patch_embed.proj.weight [384, 3, 14, 14] to [384, 3, 16, 16]"),
    ("dinov2-vits14", "dino-vits16", "would resample patch_embed.proj.weight [384, 3, 16, 16] to [384, 3, 14, 14]"),
    ("dinov2-vits14-reg", "dinov2-vits14", "Is it a checkpoint of another architecture (another patch size, or "
                                           "another number of class and register tokens)?"),
], ids=["dinov2-for-dino", "dino-for-dinov2", "no-registers"])
def test_release_of_another_model_is_refused_naming_the_file(releases, name, other, says):
    path, _ = releases(other)
    with pytest.raises(LceError) as caught:
        build_zoo_model(zoo_entry(name), path, image_size=4 * RELEASES[name].patch)
    message = str(caught.value)
    assert message.startswith(f"Checkpoint {path} ") and says in message


def test_release_missing_a_block_lists_its_weights(releases, tmp_path):
    _, weights = releases("dinov2-vits14")
    path = tmp_path / "dinov2_vits14_truncated.pth"
    torch.save({key: value for key, value in release_checkpoint("dinov2-vits14", weights).items()
                if not key.startswith("blocks.11.")}, path)
    with pytest.raises(LceError, match=r"dinov2_vits14_truncated\.pth does not fit this VisionTransformer \(layout "
                                       r"read as dinov2, converted by .*\): 14 weight\(s\) of the model are missing "
                                       r"from it: blocks\.11\.norm1\.weight, blocks\.11\.norm1\.bias"):
        build_zoo_model(zoo_entry("dinov2-vits14"), path, image_size=56)


def test_release_of_another_patch_size_is_refused_not_resampled(tmp_path):
    # DINO's ViT-S/8 (dino_deitsmall8_pretrain.pth) has the key names and widths of ViT-S/16: timm's converter would
    # resample its patch embedding to 16 x 16 and load a model that was never trained.
    path = tmp_path / "dino_deitsmall8_pretrain.pth"
    torch.save(without_head(timm_weights("timm:vit_small_patch8_224", 224, seed=13)), path)
    with pytest.raises(LceError, match=r"dino_deitsmall8_pretrain\.pth does not fit this VisionTransformer: timm's "
                                       r".* would resample patch_embed\.proj\.weight \[384, 3, 8, 8\] to "
                                       r"\[384, 3, 16, 16\] to fit it\. Is it a checkpoint of another patch size"):
        build_zoo_model(zoo_entry("dino-vits16"), path, image_size=64)


def test_checkpoint_of_a_resnet_is_refused_as_another_architecture(tmp_path):
    with torch.device("meta"):
        shapes = timm.create_model("resnet50", pretrained=False).state_dict()
    path = tmp_path / "resnet50.pth"
    torch.save({key: torch.zeros(value.shape, dtype=value.dtype) for key, value in shapes.items()}, path)
    with pytest.raises(LceError, match=r"resnet50\.pth does not fit this VisionTransformer .*another architecture"):
        build_zoo_model(zoo_entry("deit-s"), path, image_size=64)


def test_torchscript_archive_is_refused_with_the_way_to_its_state_dict(tmp_path):
    # OpenAI's ViT-B-16.pt is a TorchScript archive: a model with its code, which weights_only never runs.
    path = tmp_path / "ViT-B-16.pt"
    torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)), str(path))
    with pytest.raises(LceError, match=r"ViT-B-16\.pt is a TorchScript archive .*torch\.jit\.load\(file, "
                                       r"map_location='cpu'\)\.state_dict\(\)"):
        load_checkpoint(torch.nn.Linear(2, 2), path)


def test_clip_release_of_another_patch_size_is_refused(tmp_path):
    # OpenAI's ViT-B/32 has ViT-B/16's key names and widths; timm's converter renames visual.conv1 to the patch
    # embedding and resamples it 32 -> 16 on the way, which the loader must see through the rename.
    path = tmp_path / "ViT-B-32.state_dict.pt"
    torch.save(openai_clip(timm_weights("timm:vit_base_patch32_clip_quickgelu_224", 224, seed=14)), path)
    with pytest.raises(LceError, match=r"would resample patch_embed\.proj\.weight \[768, 3, 32, 32\] to "
                                       r"\[768, 3, 16, 16\]"):
        build_zoo_model(zoo_entry("clip-vitb16"), path, image_size=64)
