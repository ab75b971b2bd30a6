"""`lce layers`: every module's output shape at an input size, and the layout, units and map lce reads it with."""

import pytest
import torch
import torchvision
from torch import nn

from lce.errors import LceError
from lce.models.catalog import AMBIGUOUS, layer_table
from lce.models.layout import resolve_layouts
from tests.conftest import Cli
from tests.test_ingest import synth, tiny_vit_64  # noqa: F401  (the registered 64-px probe; a two-block ViT)


@pytest.fixture(scope="module")
def lce():
    """The command line without a database: only --probe needs one."""
    return Cli()


def tiny_swin() -> nn.Module:
    """A two-stage Swin for 64-px images (16 x 16 then 8 x 8 patches); `--arch tests.test_layers_command:tiny_swin`."""
    return torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=24, depths=[1, 1], num_heads=[1, 2],
                                              window_size=[4, 4])


class Oddities(nn.Module):
    """One module of each kind lce cannot read: windows folded into the batch, a dict, one never called, logits,
    and a fixed 6 x 7 map whose shape says nothing about which axes are the map."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 4, stride=4)
        self.windows = nn.Identity()
        self.fixed = nn.AdaptiveAvgPool2d((6, 7))
        self.unused = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.shape
        self.windows(x.reshape(b, c, 2, h // 2, 2, w // 2).permute(0, 2, 4, 1, 3, 5).reshape(b * 4, c, h // 2,
                                                                                              w // 2))
        self.fixed(x)
        return self.head(x.mean(dim=(2, 3)))


def cells(output: str, name: str) -> list[str]:
    """The table row whose module column is `name`, cell by cell."""
    for line in output.splitlines():
        parts = [part.strip() for part in line.split("│")[1:-1]]
        if parts and parts[0] == name:
            return parts
    raise AssertionError(f"no row {name!r} in:\n{output}")


def modules_listed(output: str) -> list[str]:
    return [line.split("│")[1].strip() for line in output.splitlines() if line.startswith("│")]


def test_resnet18_layer4_is_512_nchw_units_on_2x2_maps_and_fc_has_no_map(lce):
    result = lce("layers", "resnet18", "--size", "64")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("resnet18, random init (seed 0) at 64 px:")
    assert cells(result.stdout, "layer4") == ["layer4", "Sequential", "(1, 512, 2, 2)", "nchw", "512", "2x2"]
    assert cells(result.stdout, "conv1") == ["conv1", "Conv2d", "(1, 64, 32, 32)", "nchw", "64", "32x32"]
    fc = cells(result.stdout, "fc")
    assert fc[:3] == ["fc", "Linear", "(1, 1000)"] and fc[3].startswith("2-d: no map") and fc[4:] == ["-", "-"]
    assert "lce ingest MODEL --arch resnet18 (--checkpoint PATH | --random-init) --probe NAME --layer NAME" \
        in result.stdout


def test_depth_lists_only_modules_that_many_dots_deep(lce):
    result = lce("layers", "resnet18", "--size", "64", "--depth", "1")
    assert result.exit_code == 0, result.output
    assert modules_listed(result.stdout) == [
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer1.0", "layer1.1", "layer2", "layer2.0", "layer2.1",
        "layer3", "layer3.0", "layer3.1", "layer4", "layer4.0", "layer4.1", "avgpool", "fc"]


def test_swin_stages_read_channels_last_and_unrun_modules_show_only_with_all(lce):
    result = lce("layers", "tests.test_layers_command:tiny_swin", "--size", "64")
    assert result.exit_code == 0, result.output
    assert cells(result.stdout, "features.1") == ["features.1", "Sequential", "(1, 16, 16, 24)", "nhwc", "24",
                                                  "16x16"]
    assert cells(result.stdout, "features.3") == ["features.3", "Sequential", "(1, 8, 8, 48)", "nhwc", "48", "8x8"]
    assert cells(result.stdout, "permute")[2:] == ["(1, 48, 8, 8)", "nchw", "48", "8x8"]
    # torchvision's window attention calls its qkv and proj weights functionally: those modules never run.
    assert "features.1.0.attn.qkv" not in modules_listed(result.stdout)
    assert "4 module(s) that return no tensor or do not run are hidden; --all lists them." in result.stdout
    everything = lce("layers", "tests.test_layers_command:tiny_swin", "--size", "64", "--all")
    assert cells(everything.stdout, "features.1.0.attn.qkv") == [
        "features.1.0.attn.qkv", "Linear", "-", "did not run in the forward pass", "-", "-"]
    assert len(modules_listed(everything.stdout)) == len(modules_listed(result.stdout)) + 4


def test_vit_blocks_read_as_tokens_after_one_class_token(lce):
    result = lce("layers", "tests.test_ingest:tiny_vit_64", "--size", "64")
    assert result.exit_code == 0, result.output
    assert cells(result.stdout, "encoder.layers.encoder_layer_1") == [
        "encoder.layers.encoder_layer_1", "EncoderBlock", "(1, 17, 32)", "tokens, 1 prefix", "32", "4x4"]
    assert cells(result.stdout, "conv_proj")[2:] == ["(1, 32, 4, 4)", "nchw", "32", "4x4"]


def test_a_zoo_model_marks_its_default_layer(lce):
    result = lce("layers", "moco-v2", "--size", "64", "--depth", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("MoCo-v2: resnet50, random init (seed 0) at 64 px")
    assert cells(result.stdout, "layer4 (default)")[2:] == ["(1, 2048, 2, 2)", "nchw", "2048", "2x2"]
    assert "lce ingest moco-v2 --checkpoint PATH --probe NAME --layer layer4 ..." in result.stdout


def test_a_checkpoint_is_loaded(lce, tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    result = lce("layers", "resnet18", "--checkpoint", path, "--size", "64", "--depth", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("resnet18 from r18.pth (layout torchvision) at 64 px")
    assert cells(result.stdout, "layer4")[2:] == ["(1, 512, 2, 2)", "nchw", "512", "2x2"]
    assert f"--checkpoint {path} --probe NAME" in result.stdout


def test_probe_gives_the_size_and_an_unknown_one_is_named_with_the_registered_ones(cli, synth):
    result = cli("layers", "resnet18", "--probe", "synth", "--depth", "0")
    assert result.exit_code == 0, result.output
    assert "at probe synth's 64 px" in result.stdout
    assert cells(result.stdout, "layer4")[2:] == ["(1, 512, 2, 2)", "nchw", "512", "2x2"]
    assert "--probe synth --layer NAME" in result.stdout
    unknown = cli("layers", "resnet18", "--probe", "nope")
    assert unknown.exit_code == 1 and unknown.stderr.count("\n") == 1 and not unknown.stdout, unknown.output
    assert "No probe dataset named 'nope' is registered (registered: synth)" in unknown.stderr


@pytest.mark.parametrize("args, words", [
    (["resnet1800"], ["'resnet1800' is not a torchvision classification architecture", "resnet18"]),
    (["resnet18", "--checkpoint", "{tmp}/missing.pth"], ["missing.pth does not exist"]),
    (["resnet18", "--checkpoint", "{tmp}/garbage.pth"], ["garbage.pth"]),
    (["resnet18", "--size", "4"], ["--size 4 is too small", "at least 8"]),
    (["resnet18", "--size", "64", "--probe", "synth"], ["Give --size or --probe, not both"]),
    (["resnet18", "--depth", "-1"], ["--depth -1"]),
    (["tests.test_ingest:tiny_vit_64", "--size", "48"], ["VisionTransformer does not run on a 48 x 48 image"]),
])
def test_bad_input_is_one_paragraph_and_exit_1(lce, tmp_path, args, words):
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    result = lce("layers", *(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output and not result.stdout
    for word in words:
        assert word in result.stderr, (word, result.stderr)


def test_rows_say_why_a_module_cannot_be_read():
    rows = {row.name: row for row in layer_table(Oddities(), image_size=32)}
    assert (rows["conv"].shape, rows["conv"].layout.kind, rows["conv"].units, rows["conv"].grid) == \
        ((1, 8, 8, 8), "nchw", 8, (8, 8))
    assert rows["windows"].shape == (4, 8, 4, 4) and rows["windows"].reason.startswith("batch dim folded (4 ")
    assert rows["fixed"].shape == (1, 8, 6, 7) and rows["fixed"].reason == AMBIGUOUS
    assert rows["unused"].shape is None and rows["unused"].reason == "did not run in the forward pass"
    assert rows["head"].shape == (1, 2) and rows["head"].reason.startswith("2-d: no map")
    assert [row.readable for row in rows.values()] == [True, False, False, False, False]


@pytest.mark.parametrize("build", [tiny_swin, tiny_vit_64, Oddities])
def test_every_row_agrees_with_the_layout_ingest_resolves(build):
    """What lce layers says is what lce ingest --layer NAME reads: the same layout, or a refusal."""
    model = build().eval()
    for row in layer_table(model, image_size=64):
        if row.readable:
            assert resolve_layouts(model, [row.name], 64, "cpu") == {row.name: row.layout}, row.name
        else:
            with pytest.raises(LceError):
                resolve_layouts(model, [row.name], 64, "cpu")
