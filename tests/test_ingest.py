"""`lce ingest`: dissected runs in the store, re-ingest rules, bad input, and a process killed mid-way."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torchvision
from sqlalchemy import text

from lce.dissect.engine import DissectSettings
from lce.ingest.run import IngestRequest
from lce.ingest.run import ingest as run_ingest
from lce.errors import LceError
from lce.models.checkpoints import file_sha256


@pytest.fixture
def synth(cli, tmp_path, monkeypatch, synthetic_probe):
    """A 30-image, 64-px synthetic probe registered as 'synth' (LCE_HOME in tmp_path for its cache)."""
    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))
    out = synthetic_probe(tmp_path / "probe", images=30, size=64, seed=2)
    assert cli("probe", "add", "synth", out).exit_code == 0
    return out


def ingest(cli, *args):
    return cli("ingest", *args, "--probe", "synth", "--batch-size", "8")


def one(engine, query, **params):
    with engine.connect() as conn:
        return conn.execute(text(query), params).one()


@pytest.mark.slow  # seconds on two cores (dissections or embeddings with replicates)
def test_ingest_stores_units_tallies_top_images_and_provenance(cli, engine, synth):
    result = ingest(cli, "r18", "--arch", "resnet18", "--random-init", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "r18 layer4: created run" in result.stdout and "512 units" in result.stdout
    run = one(engine, "SELECT r.*, m.architecture FROM run r JOIN model m ON m.id = r.model_id")
    assert (run.layer, run.variant, run.quantile, run.iou_threshold, run.seg_size, run.source, run.unit_count,
            run.architecture) == ("layer4", "dissect", 0.01, 0.04, 16, "dissected", 512, "resnet18")
    assert run.checkpoint_sha256 is None and run.code_version.startswith("lce ")
    assert run.settings["random_init"] is True and run.settings["seed"] == 1
    assert run.settings["image_size"] == 64 and run.settings["probe_sha256"]
    units = one(engine, "SELECT count(*) AS n, count(threshold) AS t, count(concept_id) AS c FROM unit")
    overlapping = one(engine, "SELECT count(DISTINCT unit) FROM unit_concept")[0]
    assert units == (512, 512, overlapping) and overlapping > 400  # a unit overlapping nothing has no label
    assert one(engine, "SELECT count(*) FROM unit_top_image")[0] == 512 * 10
    top = one(engine, "SELECT min(image), max(image), bool_and(activation IS NOT NULL) FROM unit_top_image")
    assert top[0] >= 0 and top[1] < 30 and top[2]
    tallies = one(engine, "SELECT count(*), min(intersection), bool_and(iou = intersection::float8"
                          " / (activation + truth - intersection)) FROM unit_concept")
    assert tallies[0] > 512 and tallies[1] > 0 and tallies[2]
    # The unit's label is its best tally.
    best = one(engine, "SELECT count(*) FROM unit u JOIN LATERAL (SELECT concept_id, iou FROM unit_concept t"
                       " WHERE t.run_id = u.run_id AND t.unit = u.unit ORDER BY iou DESC LIMIT 1) b ON true"
                       " WHERE b.iou = u.iou AND b.concept_id = u.concept_id")
    assert best[0] == overlapping
    assert one(engine, "SELECT count(*) FROM unit_category_label")[0] > 512


@pytest.mark.slow  # seconds on two cores (dissections or embeddings with replicates)
def test_same_model_and_settings_are_skipped_and_replace_swaps(cli, engine, synth):
    args = ("r18", "--arch", "resnet18", "--random-init", "--seed", "1")
    assert ingest(cli, *args).exit_code == 0
    first = one(engine, "SELECT id FROM run")[0]
    again = ingest(cli, *args)
    assert again.exit_code == 0 and "already ingested with this checkpoint and settings" in again.stdout
    assert one(engine, "SELECT id FROM run")[0] == first
    replaced = ingest(cli, *args, "--replace")
    assert replaced.exit_code == 0 and "replaced run" in replaced.stdout
    assert one(engine, "SELECT count(*), min(id) FROM run") == (1, first + 1)
    netdissect = ingest(cli, *args, "--variant", "netdissect")
    assert netdissect.exit_code == 0, netdissect.output
    assert one(engine, "SELECT seg_size, quantile FROM run WHERE variant = 'netdissect'") == (32, 0.005)


@pytest.mark.slow  # seconds on two cores (dissections or embeddings with replicates)
def test_checkpoints_are_hashed_and_another_checkpoint_needs_replace(cli, engine, synth, tmp_path):
    paths = []
    for seed in (3, 4):
        torch.manual_seed(seed)
        path = tmp_path / f"r18-{seed}.pth"
        torch.save({"state_dict": {f"module.{k}": v for k, v in torchvision.models.resnet18().state_dict().items()}},
                   path)
        paths.append(path)
    assert ingest(cli, "mine", "--arch", "resnet18", "--checkpoint", paths[0]).exit_code == 0
    assert one(engine, "SELECT checkpoint_sha256 FROM model")[0] == file_sha256(paths[0])
    assert one(engine, "SELECT checkpoint_sha256 FROM run")[0] == file_sha256(paths[0])
    other = ingest(cli, "mine", "--arch", "resnet18", "--checkpoint", paths[1])
    assert other.exit_code == 1 and "from another checkpoint; pass --replace" in other.stderr
    assert ingest(cli, "mine", "--arch", "resnet18", "--checkpoint", paths[1], "--replace").exit_code == 0
    assert one(engine, "SELECT checkpoint_sha256 FROM run")[0] == file_sha256(paths[1])


@pytest.mark.parametrize("args, message", [
    (["r18", "--arch", "resnet18", "--random-init", "--layer", "layer5"], "layer5"),
    (["r18", "--arch", "resnet81", "--random-init"], "resnet18"),
    (["moco-v2"], "needs its checkpoint file"),
    (["nobody"], "nobody"),
    (["r18", "--arch", "resnet18"], "exactly one of the two"),
    (["r18", "--arch", "resnet18", "--random-init", "--variant", "gradcam"], "--variant must be one of"),
    (["r18", "--arch", "resnet18", "--random-init", "--cache-budget", "lots"], "--cache-budget 'lots'"),
])
def test_bad_input_is_one_clear_error_and_writes_nothing(cli, engine, synth, args, message):
    result = ingest(cli, *args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.stderr
    assert one(engine, "SELECT count(*) FROM run")[0] == 0


# Each bad option of lce ingest, and the same request built in Python: the library refuses it with the message
# that the command prints (the command only parses).
REFUSED = [
    (["--variant", "gradcam"], {"variant": "gradcam"},
     "--variant must be one of netdissect, dissect, not 'gradcam'."),
    (["--quantile", "0"], {"quantile": 0.0}, "--quantile must lie in (0, 1), not 0.0."),
    (["--quantile", "1.5"], {"quantile": 1.5}, "--quantile must lie in (0, 1), not 1.5."),
    (["--iou-threshold", "-0.1"], {"iou_threshold": -0.1}, "--iou-threshold must lie in [0, 1], not -0.1."),
    (["--batch-size", "0"], {"batch_size": 0},
     "--batch-size and --seg-size must be positive and --workers not negative."),
    (["--workers", "-1"], {"workers": -1},
     "--batch-size and --seg-size must be positive and --workers not negative."),
    (["--seg-size", "0"], {"seg_size": 0},
     "--batch-size and --seg-size must be positive and --workers not negative."),
    (["--layout", "chw"], {"layout": "chw"}, "--layout must be one of nchw, nhwc, tokens, not 'chw'."),
    (["--layout", "nchw", "--prefix-tokens", "1"], {"layout": "nchw", "prefix_tokens": 1},
     "--prefix-tokens 1: a count of 0 or more, and only with --layout tokens."),
    (["--prefix-tokens", "-1"], {"prefix_tokens": -1},
     "--prefix-tokens -1: a count of 0 or more, and only with --layout tokens."),
    (["--mean", "0.5,0.5"], {"mean": (0.5, 0.5)},
     "--mean '0.5,0.5' should be three numbers separated by commas, R,G,B (e.g. 0.485,0.456,0.406)."),
    (["--mean", "0.5,0.5,0.5", "--std", "0.2,0,0.2"], {"mean": (0.5, 0.5, 0.5), "std": (0.2, 0.0, 0.2)},
     "--std '0.2,0,0.2' should be three positive numbers separated by commas, R,G,B (e.g. 0.229,0.224,0.225)."),
    (["--mean", "0.5,0.5,0.5"], {"mean": (0.5, 0.5, 0.5)},
     "Give --mean and --std together (R,G,B each), or neither for the source's own."),
    (["--layer", "layer\t4"], {"layers": ["layer\t4"]}, "--layer"),
    (["--tf32", "yes"], {"tf32": "yes"}, "--tf32 must be on or off (TF32 in the GPU's float32 convolutions and "
                                         "matmuls; off for results that must match the CPU's), not 'yes'."),
]
SETTINGS = ("variant", "quantile", "iou_threshold", "batch_size", "workers", "seg_size")


@pytest.mark.parametrize("args, fields, message", REFUSED, ids=[" ".join(args) for args, _, _ in REFUSED])
def test_the_library_refuses_what_the_command_refuses_with_its_message(cli, engine, args, fields, message):
    result = cli("ingest", "r18", "--probe", "synth", "--arch", "resnet18", "--random-init", *args)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    printed = result.stderr.strip().removeprefix("error: ")
    assert message in printed
    with pytest.raises(LceError) as refused:
        settings = DissectSettings.for_variant(
            fields.get("variant", "dissect"), **{k: v for k, v in fields.items() if k in SETTINGS and k != "variant"})
        run_ingest(IngestRequest(model="r18", probe="synth", arch="resnet18", random_init=True, settings=settings,
                                 **{k: v for k, v in fields.items() if k not in SETTINGS}))
    assert str(refused.value) == printed
    assert one(engine, "SELECT count(*) FROM run")[0] == 0


@pytest.mark.slow  # seconds on two cores (dissections or embeddings with replicates)
def test_a_run_records_its_device_torch_cudnn_and_tf32(cli, engine, synth):
    from lce.config import device_settings

    assert ingest(cli, "r18-ieee", "--arch", "resnet18", "--random-init", "--tf32", "off", "--device", "cpu"
                  ).exit_code == 0
    run_ingest(IngestRequest(model="r18-tf32", probe="synth", arch="resnet18", random_init=True, device="cpu",
                             settings=DissectSettings(batch_size=8)))
    with engine.connect() as conn:
        recorded = dict(conn.execute(text("SELECT m.name, r.settings FROM run r JOIN model m ON m.id = r.model_id")
                                     ).all())
    on_the_cpu = device_settings("cpu")  # cpu, its model name, no TF32 in effect, torch's version, no cuDNN
    assert on_the_cpu["device_name"] and on_the_cpu["torch"] == torch.__version__ and on_the_cpu["cudnn"] is None
    for name, tf32 in (("r18-ieee", "off"), ("r18-tf32", "on")):
        assert {key: recorded[name].get(key) for key in ("tf32", *on_the_cpu)} == {"tf32": tf32, **on_the_cpu}


def channels_last_resnet18() -> torch.nn.Module:
    """resnet18 in channels_last memory; built by `--arch tests.test_ingest:channels_last_resnet18`."""
    return torchvision.models.resnet18().to(memory_format=torch.channels_last)


@pytest.mark.slow  # seconds on two cores (dissections or embeddings with replicates)
def test_a_channels_last_resnet_ingests_like_the_contiguous_one(cli, engine, synth):
    """The same draw of weights (seed 0), once in channels_last memory: its convolutions sum in another order on
    the CPU, so thresholds agree to rounding (tests/test_device_settings.py pins the engine's part bit for bit)."""
    for name, arch in (("plain", "resnet18"), ("nhwc", "tests.test_ingest:channels_last_resnet18")):
        result = ingest(cli, name, "--arch", arch, "--random-init", "--seed", "0")
        assert result.exit_code == 0 and "512 units" in result.stdout, result.output
    pairs = one(engine, "SELECT count(*), max(abs(a.threshold - b.threshold)), avg((a.concept_id IS NOT DISTINCT"
                        " FROM b.concept_id)::int) FROM unit a JOIN unit b USING (unit) JOIN run ra ON ra.id ="
                        " a.run_id JOIN run rb ON rb.id = b.run_id JOIN model ma ON ma.id = ra.model_id JOIN model"
                        " mb ON mb.id = rb.model_id WHERE ma.name = 'plain' AND mb.name = 'nhwc'")
    assert pairs[0] == 512 and pairs[1] < 1e-4 and pairs[2] > 0.98, pairs


def test_unknown_probe_is_named(cli, engine, synth):
    result = cli("ingest", "r18", "--probe", "broden", "--arch", "resnet18", "--random-init")
    assert result.exit_code == 1 and "No probe dataset named 'broden' is registered (registered: synth)" in \
        result.stderr


@pytest.mark.slow  # seconds on two cores (dissections or embeddings with replicates)
def test_embed_works_on_dissected_runs(cli, engine, synth, tmp_path):
    for seed in (1, 2, 3):
        assert ingest(cli, f"r18-{seed}", "--arch", "resnet18", "--random-init", "--seed", str(seed)).exit_code == 0
    out = tmp_path / "lce.csv"
    result = cli("embed", "--clusters", "2", "--components", "2", "--out", out, "--plot", tmp_path / "lce.png")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["model", "pc1", "pc2", "cluster"]
    assert [row["model"] for row in rows] == ["r18-1", "r18-2", "r18-3"]
    # The file is the stored embedding: the same points, rounded to 6 decimals, and the same clusters.
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT m.name, p.coordinates, p.cluster FROM embedding_point p"
                                   " JOIN model m ON m.id = p.model_id ORDER BY m.name")).all()
    assert [(row["model"], [float(row["pc1"]), float(row["pc2"])], int(row["cluster"])) for row in rows] == [
        (name, [pytest.approx(value, abs=5e-7) for value in coordinates], cluster)
        for name, coordinates, cluster in stored]
    assert sorted({int(row["cluster"]) for row in rows}) == [0, 1]  # three models in two clusters
    # PCA scores are centred, and the first component carries the most variance.
    pc1, pc2 = ([float(row[column]) for row in rows] for column in ("pc1", "pc2"))
    assert sum(pc1) == pytest.approx(0, abs=1e-5) and sum(pc2) == pytest.approx(0, abs=1e-5)
    assert sum(v * v for v in pc1) >= sum(v * v for v in pc2) > 0


@pytest.mark.slow  # seconds on two cores (dissections or embeddings with replicates)
def test_a_process_killed_during_ingest_leaves_no_rows(cli, engine, synth, database):
    """SIGKILL at several moments of an ingest: the database holds either nothing or the whole run."""
    env = {**os.environ, "LCE_DATABASE_URL": database, "COLUMNS": "200"}
    command = [sys.executable, "-m", "lce", "ingest", "victim", "--probe", "synth", "--arch", "resnet18",
               "--random-init", "--batch-size", "4", "--cache-budget", "0"]
    started = time.perf_counter()
    subprocess.run(command + ["--replace"], env=env, check=True, capture_output=True, timeout=300)
    full = time.perf_counter() - started
    for fraction in (0.3, 0.6, 0.8, 0.9, 0.97):
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM run"))
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(full * fraction)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        time.sleep(0.2)  # the server notices the dropped connection and rolls its transaction back
        runs = one(engine, "SELECT count(*) FROM run")[0]
        units = one(engine, "SELECT count(*) FROM unit")[0]
        tops = one(engine, "SELECT count(*) FROM unit_top_image")[0]
        assert (runs, units, tops) in ((0, 0, 0), (1, 512, 5120)), (fraction, runs, units, tops)


@pytest.mark.slow  # seconds on two cores (dissections or embeddings with replicates)
def test_a_block_whose_output_is_a_permuted_view_is_dissected(cli, engine, synth):
    """ConvNeXt's blocks return their NHWC computation permuted back to NCHW, a view that is not contiguous
    (lce 0.1.0 failed on it in the upsampling); the units are its 768 channels."""
    result = ingest(cli, "convnext", "--arch", "convnext_tiny", "--random-init", "--layer", "features.7")
    assert result.exit_code == 0, result.output
    assert "convnext features.7: created run" in result.stdout and "768 units" in result.stdout
    assert one(engine, "SELECT count(*) FROM unit")[0] == 768


def tiny_vit_64() -> torch.nn.Module:
    """A two-block ViT for the 64-px probe (a 4 x 4 patch grid); built by `--arch tests.test_ingest:tiny_vit_64`."""
    return torchvision.models.VisionTransformer(image_size=64, patch_size=16, num_layers=2, num_heads=2,
                                                hidden_dim=32, mlp_dim=64)


def test_a_vit_block_is_dissected_end_to_end(cli, engine, synth):
    """Its patch tokens, laid out on their grid (lce 0.1.0 failed on them in the upsampling)."""
    result = ingest(cli, "vit", "--arch", "tests.test_ingest:tiny_vit_64", "--random-init",
                    "--layer", "encoder.layers.encoder_layer_1")
    assert result.exit_code == 0, result.output
    assert "vit encoder.layers.encoder_layer_1: created run" in result.stdout and "32 units" in result.stdout
    assert one(engine, "SELECT count(*) FROM unit")[0] == 32
