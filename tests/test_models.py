"""lce.models: zoo entries, checkpoint layouts, building, and capturing a layer (all on CPU, small models)."""

from __future__ import annotations

import re
import textwrap

import sys

import pytest
import torch
import torchvision

from lce.errors import LceError
from lce.models import (
    IMAGENET, LAYOUTS, LayerCapture, MapLayout, build_model, build_zoo_model, file_sha256, load_checkpoint,
    output_shapes, resolve_layer, resolve_layouts, zoo_entries, zoo_entry,
)


@pytest.fixture(scope="module")
def source():
    """The weights every layout is written from: a seeded random resnet18."""
    return build_model("resnet18", random_init=True, seed=0).module


def backbone(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value for key, value in model.state_dict().items() if not key.startswith("fc.")}


def prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + key: value for key, value in state.items()}


def moco_heads(prefix: str) -> dict[str, torch.Tensor]:
    # MoCo-v2's MLP head on encoder_q, the momentum encoder's copy and the queue of negatives.
    return {f"{prefix}fc.0.weight": torch.ones(512, 512), f"{prefix}fc.0.bias": torch.ones(512),
            f"{prefix}fc.2.weight": torch.ones(128, 512), f"{prefix}fc.2.bias": torch.ones(128),
            "module.encoder_k.conv1.weight": torch.ones(64, 3, 7, 7), "module.encoder_k.fc.0.weight": torch.ones(2),
            "module.queue": torch.ones(128, 16), "module.queue_ptr": torch.zeros(1, dtype=torch.long)}


def layouts(model: torch.nn.Module) -> dict[str, tuple[object, bool, int]]:
    """layout name -> (what torch.save writes, whether the model's fc is in it, head keys to drop)."""
    state, trunk = model.state_dict(), backbone(model)
    heads = {"module.projection_head.0.weight": torch.ones(2048, 512), "module.projection_head.0.bias": torch.ones(2048),
             "module.prototypes.weight": torch.ones(3000, 128)}
    infomin_heads = {"module.head.mlp.0.weight": torch.ones(4), "module.head_jig.fc.weight": torch.ones(4)}
    return {
        "torchvision": (dict(state), True, 0),
        "moco": ({"epoch": 200, "arch": "resnet18", "state_dict": prefixed(trunk, "module.encoder_q.")
                  | moco_heads("module.encoder_q."), "optimizer": {"state": {}, "param_groups": []}}, False, 8),
        "npid": ({"epoch": 200, "state_dict": prefixed(trunk, "module.") | {"module.fc.weight": torch.ones(128, 512)}},
                 False, 1),
        "swav": (prefixed(trunk, "module.") | heads, False, 3),
        "pycontrast": ({"model": prefixed(trunk, "module.encoder.") | infomin_heads,
                        "model_ema": {"x": torch.ones(1)}, "epoch": 800}, False, 2),
    }


@pytest.mark.parametrize("layout", ["torchvision", "moco", "npid", "swav", "pycontrast"])
def test_every_layout_loads_the_same_weights(source, tmp_path, layout):
    saved, has_fc, heads = layouts(source)[layout]
    path = tmp_path / f"{layout}.pth"
    torch.save(saved, path)
    model = build_model("resnet18", random_init=True, seed=1).module
    own_fc = {key: value.clone() for key, value in model.state_dict().items() if key.startswith("fc.")}

    info = load_checkpoint(model, path)

    assert info.layout == layout
    assert info.dropped == heads
    assert info.sha256 == file_sha256(path) and len(info.sha256) == 64
    expected = source.state_dict() if has_fc else backbone(source) | own_fc  # without fc, the model keeps its own
    loaded = model.state_dict()
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


def test_checkpoint_of_a_pre_0_4_bn_loads_without_batch_counters(source, tmp_path):
    path = tmp_path / "old.pth"
    torch.save({"state_dict": {f"module.{key}": value for key, value in backbone(source).items()
                               if not key.endswith("num_batches_tracked")}}, path)
    model = build_model("resnet18", random_init=True, seed=1).module
    assert load_checkpoint(model, path).layout == "npid"
    assert torch.equal(model.layer4[1].bn2.running_var, source.layer4[1].bn2.running_var)


def test_build_model_from_checkpoint_records_file_and_layout(source, tmp_path):
    path = tmp_path / "moco.pth.tar"
    torch.save(layouts(source)["moco"][0], path)
    loaded = build_model("resnet18", checkpoint=path)
    assert not loaded.module.training
    assert loaded.checkpoint_sha256 == file_sha256(path)
    assert loaded.checkpoint_layout == "moco"
    assert loaded.mean == IMAGENET.mean and loaded.std == IMAGENET.std
    assert "moco.pth.tar" in loaded.description and "layout moco" in loaded.description
    assert torch.equal(loaded.module.layer4[0].conv1.weight, source.layer4[0].conv1.weight)


def test_plain_checkpoint_with_another_classifier_keeps_the_models(source, tmp_path):
    # e.g. a Places365 ResNet: its 365-way fc does not fit, is dropped whole, and dissection never uses fc.
    path = tmp_path / "places.pth"
    torch.save(backbone(source) | {"fc.weight": torch.ones(365, 512), "fc.bias": torch.ones(365)}, path)
    model = build_model("resnet18", random_init=True, seed=1).module
    own_fc = model.fc.weight.clone()
    info = load_checkpoint(model, path)
    assert (info.layout, info.dropped) == ("torchvision", 2)
    assert torch.equal(model.fc.weight, own_fc)
    assert torch.equal(model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)


def test_checkpoint_missing_backbone_weights_lists_them(source, tmp_path):
    state = source.state_dict()
    gone = [key for key in state if key.startswith("layer4.")]
    for key in gone:
        del state[key]
    gone = [key for key in gone if not key.endswith("num_batches_tracked")]  # BN counters may be absent
    path = tmp_path / "truncated.pth"
    torch.save(state, path)
    with pytest.raises(LceError) as caught:
        load_checkpoint(build_model("resnet18", random_init=True, seed=1).module, path)
    message = str(caught.value)
    assert str(path) in message
    assert f"{len(gone)} weight(s) of the model are missing" in message
    assert "layer4.0.conv1.weight, layer4.0.bn1.weight" in message and "layer4.1.conv1.weight" not in message
    assert f"(and {len(gone) - 10} more)" in message


def test_checkpoint_unexpected_key_is_listed(source, tmp_path):
    path = tmp_path / "extra.pth"
    torch.save(prefixed(source.state_dict(), "module.") | {"module.layer5.0.conv1.weight": torch.ones(1)}, path)
    with pytest.raises(LceError, match=r"1 key\(s\) are neither weights of the model nor a known head: "
                                       r"module\.layer5\.0\.conv1\.weight"):
        load_checkpoint(build_model("resnet18", random_init=True, seed=1).module, path)


def test_checkpoint_shape_disagreement_is_listed(source, tmp_path):
    state = source.state_dict()
    state["conv1.weight"] = torch.ones(64, 3, 3, 3)
    path = tmp_path / "shape.pth"
    torch.save(state, path)
    with pytest.raises(LceError, match=r"conv1\.weight \[64, 3, 3, 3\] vs \[64, 3, 7, 7\]"):
        load_checkpoint(build_model("resnet18", random_init=True, seed=1).module, path)


def test_checkpoint_of_another_architecture_says_so(tmp_path):
    path = tmp_path / "squeezenet.pth"
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), path)
    with pytest.raises(LceError, match="another architecture"):
        load_checkpoint(build_model("resnet18", random_init=True, seed=1).module, path)


@pytest.mark.parametrize("content", [b"not a checkpoint\n", b""], ids=["text", "empty"])
def test_file_that_is_not_a_checkpoint_is_refused_by_name(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(LceError, match="notes.txt is not a readable PyTorch checkpoint"):
        load_checkpoint(torchvision.models.resnet18(weights=None), path)


def test_truncated_file_is_refused_by_name(source, tmp_path):
    whole = tmp_path / "whole.pth"
    torch.save(source.state_dict(), whole)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(LceError, match="cut.pth is not a readable PyTorch checkpoint"):
        load_checkpoint(torchvision.models.resnet18(weights=None), cut)


def test_checkpoint_with_python_objects_is_refused_without_running_them(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": {}, "callback": textwrap.dedent}, path)
    with pytest.raises(LceError, match=r"pickled.pth holds Python objects besides tensors \(first one: "
                                       r"textwrap.dedent\)"):
        load_checkpoint(torchvision.models.resnet18(weights=None), path)


def test_random_init_is_reproducible_from_the_seed():
    first = build_model("resnet18", random_init=True, seed=3)
    again = build_model("resnet18", random_init=True, seed=3)
    other = build_model("resnet18", random_init=True, seed=4)
    assert first.checkpoint_sha256 is None and first.description == "resnet18, random init (seed 3)"
    assert all(torch.equal(value, again.module.state_dict()[key]) for key, value in first.module.state_dict().items())
    assert not torch.equal(first.module.conv1.weight, other.module.conv1.weight)
    assert not torch.equal(first.module.layer4[1].conv2.weight, other.module.layer4[1].conv2.weight)


def test_random_init_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model("resnet18", random_init=True, seed=0)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("random_init, checkpoint", [(False, None), (True, "x.pth")], ids=["neither", "both"])
def test_weights_source_must_be_exactly_one(random_init, checkpoint):
    with pytest.raises(LceError, match="exactly one"):
        build_model("resnet18", checkpoint=checkpoint, random_init=random_init, seed=0)


def test_unknown_architecture_suggests_close_names():
    with pytest.raises(LceError, match=r"'resnet51' is not a torchvision classification architecture.*resnet50"):
        build_model("resnet51", random_init=True, seed=0)


def test_architecture_from_a_function_on_the_python_path(tmp_path, monkeypatch):
    package = tmp_path / "lce_test_nets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "small.py").write_text(textwrap.dedent("""
        from torch import nn

        def tiny():
            return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())

        NOT_A_MODEL = 3
        def number():
            return 3
    """))
    monkeypatch.syspath_prepend(tmp_path)  # as PYTHONPATH=DIR would: the current directory is not searched
    loaded = build_model("lce_test_nets.small:tiny", random_init=True, seed=0)
    assert loaded.architecture == "lce_test_nets.small:tiny"
    assert isinstance(loaded.module[0], torch.nn.Conv2d)
    again = build_model("lce_test_nets.small:tiny", random_init=True, seed=0)
    assert torch.equal(loaded.module[0].weight, again.module[0].weight)
    with pytest.raises(LceError, match="has no function 'absent'"):
        build_model("lce_test_nets.small:absent", random_init=True, seed=0)
    with pytest.raises(LceError, match=r"number\(\) returned a int, not a torch.nn.Module"):
        build_model("lce_test_nets.small:number", random_init=True, seed=0)
    with pytest.raises(LceError, match="module 'lce_test_nets.nowhere' is not importable"):
        build_model("lce_test_nets.nowhere:tiny", random_init=True, seed=0)


@pytest.mark.parametrize("spec, message", [
    ("os:system", "--arch 'os:system': os is a module of Python's standard library, not a package of models"),
    ("subprocess:getoutput", "--arch 'subprocess:getoutput': subprocess is a module of Python's standard library"),
    ("os.path:join", "--arch 'os.path:join': os is a module of Python's standard library"),
    ("builtins:print", "--arch 'builtins:print': builtins is a module of Python's standard library"),
    ("lce.db.server:stop", "--arch 'lce.db.server:stop': lce is this program's own package"),
    ("torch:zeros", "--arch 'torch:zeros': torch holds a builtin_function_or_method, not a Python function or "
                    "class, under 'zeros'."),
    ("torch:load", "--arch 'torch:load': load cannot be called without arguments (missing a required argument: "
                   "'f')"),
    ("torch.nn:Conv2d", "--arch 'torch.nn:Conv2d': Conv2d cannot be called without arguments"),
    ("lce_test_arch:make_number", "--arch 'lce_test_arch:make_number': make_number() returned a int, not a "
                                  "torch.nn.Module."),
    ("lce_test_arch:with_argument", "--arch 'lce_test_arch:with_argument': with_argument cannot be called without "
                                    "arguments"),
    ("lce_test_arch:NOT_A_MODEL", "--arch 'lce_test_arch:NOT_A_MODEL': lce_test_arch has no function 'NOT_A_MODEL'"),
])
def test_arch_runs_only_a_function_that_builds_a_module(tmp_path, monkeypatch, spec, message):
    (tmp_path / "lce_test_arch.py").write_text(textwrap.dedent("""
        import pathlib
        from torch import nn

        NOT_A_MODEL = 3
        def make_number():
            return 3
        def with_argument(width):
            return nn.Linear(width, width)
        def tiny():
            return nn.Sequential(nn.Conv2d(3, 4, 3))
    """))
    monkeypatch.syspath_prepend(tmp_path)
    with pytest.raises(LceError, match="^" + re.escape(message)):
        build_model(spec, random_init=True, seed=0)
    assert isinstance(build_model("lce_test_arch:tiny", random_init=True, seed=0).module[0], torch.nn.Conv2d)
    assert isinstance(build_model("torch.nn:Identity", random_init=True, seed=0).module, torch.nn.Identity)


def test_layers_resolve_by_dotted_name(source):
    assert resolve_layer(source, "layer4") is source.layer4
    assert resolve_layer(source, "layer4.1.conv2") is source.layer4[1].conv2


def test_unknown_layer_lists_the_nearest(source):
    with pytest.raises(LceError, match=r"Layer 'layer5' is not a module of this ResNet; the nearest are .*layer4"):
        resolve_layer(source, "layer5")


def test_capture_of_a_conv_layer(source):
    images = torch.rand(2, 3, 64, 64)
    with LayerCapture(source, ["layer4", "layer3.0.conv1"]) as capture, torch.no_grad():
        logits = source(images)
    assert capture.outputs["layer4"].shape == (2, 512, 2, 2)
    assert capture.outputs["layer3.0.conv1"].shape == (2, 256, 4, 4)
    assert capture.outputs["layer4"].dtype == torch.float32
    # Hooks are gone after exit: another pass leaves the stored map alone.
    kept = capture.outputs["layer4"]
    with torch.no_grad():
        source(torch.rand(2, 3, 64, 64))
    assert capture.outputs["layer4"] is kept
    assert all(not layer._forward_hooks for layer in source.modules())
    pooled = torch.flatten(kept.mean(dim=(2, 3)), 1)
    assert torch.allclose(source.fc(pooled), logits, atol=1e-5)


def tiny_vit() -> torchvision.models.VisionTransformer:
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                hidden_dim=16, mlp_dim=32).eval()


def test_capture_of_a_vit_block_drops_the_class_token():
    vit = tiny_vit()
    block = "encoder.layers.encoder_layer_1"
    tokens = {}
    vit.encoder.layers[1].register_forward_hook(lambda module, inputs, output: tokens.update(raw=output))
    layouts = resolve_layouts(vit, [block], 32, "cpu")
    assert layouts[block] == MapLayout("tokens", 1)
    assert "torchvision VisionTransformer" in layouts[block].origin
    with LayerCapture(vit, [block], layouts) as capture, torch.no_grad():
        vit(torch.rand(3, 3, 32, 32))
    units = capture.outputs[block]
    assert tokens["raw"].shape == (3, 17, 16)
    assert units.shape == (3, 16, 4, 4)
    # Unit d at grid cell (i, j) is hidden dimension d of patch token 1 + 4 i + j.
    for i, j in [(0, 0), (0, 3), (2, 1), (3, 3)]:
        assert torch.equal(units[:, :, i, j], tokens["raw"][:, 1 + 4 * i + j, :])
    assert torch.equal(units, tokens["raw"][:, 1:, :].reshape(3, 4, 4, 16).permute(0, 3, 1, 2))
    assert units.is_contiguous()  # the engine indexes maps by flat offsets


def test_vit_layers_resolve_and_report_their_shapes():
    vit = tiny_vit()
    assert resolve_layer(vit, "encoder.layers.encoder_layer_0") is vit.encoder.layers[0]
    shapes = output_shapes(vit, ["encoder.layers.encoder_layer_0", "conv_proj"], 32, "cpu")
    assert shapes == {"encoder.layers.encoder_layer_0": (16, 4, 4), "conv_proj": (16, 4, 4)}


def test_capture_refuses_outputs_its_layout_cannot_read():
    layer = torch.nn.Identity()
    with LayerCapture(layer, []) as capture:
        pass
    assert capture.outputs == {}
    model = torch.nn.Sequential(torch.nn.Identity())
    with pytest.raises(LceError, match="leave 11 patch tokens, not a square grid.*--layout nchw"):
        with LayerCapture(model, ["0"], {"0": MapLayout("tokens", 1)}):
            model(torch.zeros(1, 12, 8))
    with pytest.raises(LceError, match=r"nchw needs a 4-d output, not \[1, 8\]"):
        with LayerCapture(model, ["0"]):
            model(torch.zeros(1, 8))


def test_output_shapes_of_resnet18(source):
    source.train()
    assert output_shapes(source, ["layer4", "layer2"], 224, torch.device("cpu")) == {
        "layer4": (512, 7, 7), "layer2": (128, 28, 28)}
    assert source.training
    source.eval()


def test_zoo_has_every_model_of_the_paper():
    paper = [entry for entry in zoo_entries() if entry.in_paper]
    assert [entry.name for entry in paper] == [
        "insdis", "moco-v1", "pcl-v1", "pirl", "pcl-v2", "simclr-v1", "moco-v2", "simclr-v2", "sela-v2", "infomin",
        "byol", "deepcluster-v2", "swav", "sela-v1", "supervised", "random"]
    assert list(zoo_entries()[:len(paper)]) == paper  # the paper's first, in its order; test_zoo_vit.py: the rest
    for entry in paper:
        assert entry.architecture == "resnet50" and entry.layer == "layer4"
        assert entry.layout in LAYOUTS or (entry.name == "random" and entry.layout is None)
        assert entry.normalization == (None if entry.name.startswith("simclr") else IMAGENET)
        assert entry.family in {"contrastive", "clustering", "self-distillation", "supervised", "random"}
        assert entry.note
    assert zoo_entry("MoCo-v2").layout == "moco"
    assert zoo_entry("infomin").layout == "pycontrast"
    assert {zoo_entry(name).layout for name in ("swav", "deepcluster-v2", "sela-v2")} == {"swav"}


def test_unknown_zoo_name_lists_the_known():
    with pytest.raises(LceError, match=r"'mocov3' is not a model of the zoo; the known ones are insdis, moco-v1"):
        zoo_entry("mocov3")


def test_zoo_model_builds_from_its_layout(tmp_path):
    entry = zoo_entry("swav")
    resnet50 = build_model("resnet50", random_init=True, seed=5).module
    path = tmp_path / "swav_800ep_pretrain.pth.tar"
    torch.save(prefixed(backbone(resnet50), "module.") | {"module.prototypes.weight": torch.ones(3000, 128)}, path)
    loaded = build_zoo_model(entry, path)
    assert loaded.checkpoint_layout == "swav" and loaded.architecture == "resnet50"
    assert loaded.description.startswith("SwAV: resnet50 from swav_800ep_pretrain.pth.tar")
    assert torch.equal(loaded.module.layer4[2].conv3.weight, resnet50.layer4[2].conv3.weight)
    assert torch.equal(loaded.module.bn1.running_mean, resnet50.bn1.running_mean)
    with pytest.raises(LceError, match="needs its checkpoint file"):
        build_zoo_model(entry, None)


def test_random_zoo_entry_takes_a_seed_and_no_file(tmp_path):
    entry = zoo_entry("random")
    loaded = build_zoo_model(entry, None, seed=7)
    assert loaded.checkpoint_sha256 is None
    assert loaded.description == "Random: resnet50, random init (seed 7)"
    with pytest.raises(LceError, match="takes no checkpoint"):
        build_zoo_model(entry, tmp_path / "x.pth")


def test_simclr_zoo_model_takes_unnormalised_inputs(tmp_path):
    entry = zoo_entry("simclr-v2")
    assert entry.normalization is None
    images = torch.rand(1, 3, 4, 4)
    assert torch.allclose(IMAGENET.apply(images)[0, 0], (images[0, 0] - 0.485) / 0.229)


@pytest.mark.parametrize("arch, package, extra", [("timm:vit_tiny_patch16_224", "timm", "timm"),
                                                  ("hf:.", "transformers", "hf")])
def test_a_missing_optional_package_is_one_message(arch, package, extra, monkeypatch, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, package, None)  # what an environment without it gives: ImportError
    with pytest.raises(LceError, match=rf"needs the optional package {package}, which is not installed: pip "
                                       rf"install 'lce\[{extra}\]'"):
        build_model(arch, random_init=True)


@pytest.mark.slow  # imports timm and transformers
def test_timm_and_hf_prefixes_come_before_the_function_form(tmp_path):
    with pytest.raises(LceError, match="timm .* has no architecture 'no_such_net'"):
        build_model("timm:no_such_net", random_init=True)
    with pytest.raises(LceError, match="is not a saved Hugging Face model \\(no config.json"):
        build_model(f"hf:{tmp_path}", random_init=True)


def test_shapes_read_as_maps_only_when_they_grow_as_maps():
    from lce.models.layout import from_shapes

    assert from_shapes((1, 64, 8, 8), 64, (1, 64, 16, 16)).kind == "nchw"
    assert from_shapes((1, 8, 8, 64), 64, (1, 16, 16, 64)).kind == "nhwc"
    assert from_shapes((1, 512, 1, 1), 64, (1, 512, 1, 1)).kind == "nchw"  # adaptive pooling: the square pair
    assert from_shapes((1, 8, 8, 8), 64, (1, 8, 8, 8)) is None  # three equal sides: any reading
    # Attention weights over 1 + 16 tokens grow to 1 + 64: not a map, though their last two sides are equal.
    assert from_shapes((1, 6, 17, 17), 64, (1, 6, 65, 65)) is None
    assert from_shapes((1, 6, 17, 17), 64, None) is None  # one size: 17 is no stride of 64
    assert from_shapes((1, 512, 7, 7), 224, None).kind == "nchw"  # a fixed-size model's last stage
    assert from_shapes((1, 17, 32), 64, (1, 65, 32)) == MapLayout("tokens", 1)
    assert from_shapes((1, 21, 32), 64, (1, 69, 32)) == MapLayout("tokens", 5)
    assert from_shapes((1, 16, 32), 64, None) is None  # 0, 12 or 15 prefix tokens


def test_the_package_lists_and_gives_every_name_it_loads_on_demand():
    import lce.models

    assert set(lce.models.__all__) <= set(dir(lce.models))
    assert all(getattr(lce.models, name) is not None for name in lce.models.__all__)
