"""Architecture benchmark: a vision transformer's block against ResNet-50's layer4, dissected over the same probe in
the same run, as lce ingest dissects them.

    .venv/bin/python bench/bench_architectures.py                   # vit_b_16 block 11 vs resnet50 layer4, CPU
    .venv/bin/python bench/bench_architectures.py --images 500 --repeat 3
    .venv/bin/python bench/bench_architectures.py --model timm:vit_small_patch16_224=blocks.11

Each model (random init, seed 0, built for the probe's image size) is read with the layout lce ingest resolves
(lce.models.layout) and timed in two phases over one DataLoader: `forward only` (the forward pass with the layer's
capture: the floor) and `ingest` (lce.dissect.engine.dissect() with the default activation cache). Models and
phases run round-robin, --repeat times, so that drift on a noisy machine hits all alike. The table gives medians,
images/s, each ingest against its own forward pass, and every figure against the baseline (the first model,
ResNet-50 layer4 by default) measured in the same run. No pass/fail.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import forward_only, synchronize  # noqa: E402  (the ingest bench's floor, shared)

DEFAULT_MODELS = ("resnet50=layer4", "vit_b_16=encoder.layers.encoder_layer_11")


@dataclass
class Subject:
    arch: str
    layer: str
    model: object = None
    dataset: object = None
    layouts: dict = field(default_factory=dict)
    units: int = 0
    forward: list[float] = field(default_factory=list)
    ingest: list[float] = field(default_factory=list)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="ARCH=LAYER (repeatable; the first is the baseline); "
                                                         f"default: {' and '.join(DEFAULT_MODELS)}")
    parser.add_argument("--images", type=int, default=200, help="images of the synthetic probe")
    parser.add_argument("--size", type=int, default=224, help="image size of the synthetic probe")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    return parser.parse_args()


def timed(run, device) -> float:
    synchronize(device)
    started = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - started


def main() -> None:
    args = parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="lce-bench-arch-"))
    os.environ["LCE_HOME"] = str(scratch / "home")
    try:
        run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path) -> None:
    import torch

    from lce.config import pick_device
    from lce.dissect.engine import DissectSettings, dissect
    from lce.models.build import build_model
    from lce.models.layout import resolve_layouts
    from lce.probe.broden import Broden
    from lce.probe.cache import DecodeCache
    from lce.probe.dataset import ProbeDataset
    from lce.probe.synth import synthesize

    device = pick_device(args.device)
    synthesize(scratch / "probe", images=args.images, size=args.size, seed=0)
    probe = Broden.open(scratch / "probe")
    cache = DecodeCache.build(probe, scratch / "home" / "cache", workers=0)
    image_size = probe.rows[0].ih
    settings = DissectSettings.for_variant("dissect", batch_size=args.batch_size, workers=0)
    settings = replace(settings, seg_size=settings.seg_size_for(image_size, probe.rows[0].sh))

    subjects = [Subject(*spec.split("=", 1)) for spec in (args.model or DEFAULT_MODELS)]
    for subject in subjects:
        loaded = build_model(subject.arch, random_init=True, seed=0, image_size=image_size)
        subject.model = loaded.module.to(device).eval()
        subject.layouts = resolve_layouts(subject.model, [subject.layer], image_size, device)
        subject.dataset = ProbeDataset(probe, image_size=image_size, seg_size=settings.seg_size, mean=loaded.mean,
                                       std=loaded.std, cache=cache, uint8=True)
        with torch.inference_mode():  # warm-up, not counted
            subject.model(torch.zeros(args.batch_size, 3, image_size, image_size, device=device))

    print(f"{len(probe.rows)} images at {image_size} px, seg size {settings.seg_size}, batch {args.batch_size}; "
          f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"{args.repeat} repetition(s); load average {os.getloadavg()[0]:.2f}")
    for repetition in range(args.repeat):
        for subject in subjects:
            model, layer, dataset, layouts = subject.model, subject.layer, subject.dataset, subject.layouts
            subject.forward.append(timed(lambda: forward_only(model, layer, dataset, settings, device, layouts),
                                         device))
            results = {}
            subject.ingest.append(timed(lambda: results.update(
                dissect(model, [layer], dataset, settings, device, layouts=layouts)), device))
            subject.units = results[layer].thresholds.numel()
            print(f"  [{repetition + 1}/{args.repeat}] {subject.arch} {layer}: forward {subject.forward[-1]:.2f} s,"
                  f" ingest {subject.ingest[-1]:.2f} s", flush=True)

    base = subjects[0]
    print(f"\nload average after: {os.getloadavg()[0]:.2f}\n")
    header = (f"{'model':<44}{'layout':<18}{'units':>6}{'fwd s':>8}{'ingest s':>9}{'img/s':>8}{'ingest/fwd':>11}"
              f"{'fwd vs base':>12}{'ingest vs base':>15}")
    print(header)
    print("-" * len(header))
    for subject in subjects:
        forward, ingest = statistics.median(subject.forward), statistics.median(subject.ingest)
        # Paired: each repetition's figure against the baseline's in the same repetition.
        vs_forward = statistics.median(a / b for a, b in zip(subject.forward, base.forward))
        vs_ingest = statistics.median(a / b for a, b in zip(subject.ingest, base.ingest))
        layout = str(subject.layouts[subject.layer])
        print(f"{subject.arch + ' ' + subject.layer:<44}{layout:<18}{subject.units:>6}{forward:>8.2f}{ingest:>9.2f}"
              f"{len(probe.rows) / ingest:>8.1f}{ingest / forward:>10.2f}x{vs_forward:>11.2f}x{vs_ingest:>14.2f}x")


if __name__ == "__main__":
    sys.exit(main())
