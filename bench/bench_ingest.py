"""Ingest benchmark: the dissection engine's throughput against the model's forward pass alone, over one probe.

    .venv/bin/python bench/bench_ingest.py                                   # resnet18 layer4, 500 images, 224 px
    .venv/bin/python bench/bench_ingest.py --arch resnet50 --images 3000 --device cuda --with-db
    .venv/bin/python bench/bench_ingest.py --probe DIR --repeat 3           # an existing (synthetic) probe
    .venv/bin/python bench/bench_ingest.py --exact-limit 4194304            # thresholds from the histogram

Phases, all in this one process, over the same DataLoader (ProbeDataset: images, and labels from the decode cache;
same batch size and workers), with a randomly initialised model (--seed 0):

  forward only     the model's full forward pass with a LayerCapture on the layer, under torch.inference_mode:
                   the floor any ingest pays (the baseline of every ratio)
  two passes       lce.dissect.engine.dissect() with cache_budget=0: the model runs in both passes
  activation cache dissect() with a large cache_budget: pass 2 reads pass 1's activations (labels only loaded)
  --with-db        once: the run record built as lce ingest builds it, and lce.db.runs.write_runs() into a fresh
                   embedded PostgreSQL

With --repeat N the phases run round-robin N times (machines are noisy: drift hits every phase alike); the table
gives median and min seconds, the ratio of medians to forward only, and the median of each repetition's ratio
to its own forward pass (paired: drift between repetitions cancels out). On CUDA the clock stops after
torch.cuda.synchronize(). Peak memory is the process's ru_maxrss after each phase (a high-water mark: it never
goes down) and, on CUDA, torch.cuda.max_memory_allocated() and max_memory_reserved() of that phase, beside the
memory plan's peak for each dissection (lce.dissect.memory, printed before the phases). There is no pass/fail: the issue's
targets are printed beside the figures.

LCE_HOME is a fresh temporary directory (LCE_DATABASE_URL is removed): the decode cache, the synthetic probe and
the database live there and are deleted at the end (the embedded server is stopped first).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

# Everything lce reads from the environment is set before lce is imported (see main).
LARGE_CACHE = 8 * 2**30
PROBE_NAME = "bench"
CPU_TARGETS = {"two passes": "<= 2.5x", "activation cache": "<= 1.3x"}
GPU_TARGET = ">= 50%, >= 1000/s"
TARGETS = ("CPU: ingest <= 2.5x forward only with two passes, <= 1.3x with the activation cache.  "
           "GPU (resnet50 layer4, batch 256, a few thousand images, H100): ingest >= 50% of forward-only "
           "images/s and >= 1000 images/s.")


def parse_args() -> argparse.Namespace:
    from lce.vocabulary import DEFAULT_VARIANT, NAMES  # reads no environment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18", help="torchvision architecture or package.module:function")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--variant", default=DEFAULT_VARIANT, choices=NAMES)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random init (and of the synthetic probe)")
    parser.add_argument("--images", type=int, default=500, help="images of the synthetic probe")
    parser.add_argument("--size", type=int, default=224, help="image size of the synthetic probe")
    parser.add_argument("--batch-size", type=int, help="default: 32 on CPU, 256 on CUDA")
    parser.add_argument("--workers", type=int, help="DataLoader workers; default: 0 on CPU, 8 on CUDA")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--probe", type=Path, help="an existing Broden-format probe instead of a synthetic one")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (lce.config.pick_device)")
    parser.add_argument("--with-db", action="store_true", help="also time writing the run to PostgreSQL")
    parser.add_argument("--threshold-window", type=int,
                        help="bytes of activations pass 1 buffers for the thresholds (default: the engine's, 256 MiB "
                             "on the CPU); one batch's worth measures pure streaming")
    parser.add_argument("--exact-limit", type=int,
                        help="values a layer's exact thresholds may hold (default: the engine's, 2^26 on the CPU); "
                             "a smaller one measures the histogram that full-size probes need")
    return parser.parse_args()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_only(model, layer: str, dataset, settings, device, layouts=None) -> None:
    """The floor: the engine's DataLoader (as lce.dissect.engine._loader builds it) and the model's forward pass
    up to the layer's capture (read with its layout), nothing else."""
    import torch

    from lce.dissect.engine import _loader
    from lce.models.layers import LayerCapture

    with LayerCapture(model, [layer], layouts) as capture, torch.inference_mode():
        for batch in _loader(dataset, settings, device):
            model(dataset.normalize(batch["image"].to(device, non_blocking=True)))
            capture.outputs[layer]


class Phase:
    def __init__(self, name: str, run):
        self.name, self.run = name, run
        self.seconds: list[float] = []
        self.rss_mib = 0.0
        self.cuda_mib: float | None = None
        self.reserved_mib: float | None = None
        self.result = None  # dissect()'s LayerResult, for the dissection phases


def measure(phase: Phase, device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    started = time.perf_counter()
    result = phase.run()
    synchronize(device)
    phase.seconds.append(time.perf_counter() - started)
    phase.result = result if result is not None else phase.result
    phase.rss_mib = peak_rss_mib()
    if device.type == "cuda":
        phase.cuda_mib = max(phase.cuda_mib or 0.0, torch.cuda.max_memory_allocated(device) / 2**20)
        phase.reserved_mib = max(phase.reserved_mib or 0.0, torch.cuda.max_memory_reserved(device) / 2**20)
    del result


def same_results(first, second) -> bool:
    """The engine promises identical results with and without the activation cache."""
    import torch

    if first is None or second is None:
        return False
    return (torch.equal(first.thresholds, second.thresholds)
            and all(torch.equal(a, b) for a, b in zip(first.tally.counts(), second.tally.counts()))
            and torch.equal(first.top_images, second.top_images))


def main() -> None:
    args = parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="lce-bench-ingest-"))
    home = scratch / "home"
    os.environ["LCE_HOME"] = str(home)
    os.environ.pop("LCE_DATABASE_URL", None)
    try:
        run(args, scratch)
    except Exception as error:
        from lce.errors import LceError

        if isinstance(error, LceError):
            raise SystemExit(f"error: {error}") from None
        raise
    finally:
        if args.with_db:
            from lce.db.connection import dispose_all
            from lce.db.server import EmbeddedServer

            dispose_all()
            EmbeddedServer(home).stop()
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path) -> None:
    import torch

    from lce.config import lce_home, pick_device
    from lce.dissect.engine import DissectSettings, dissect
    from lce.dissect.memory import plan_dissection
    from lce.models.build import build_model
    from lce.models.layout import resolve_layouts
    from lce.probe.broden import Broden
    from lce.probe.cache import DecodeCache
    from lce.probe.dataset import ProbeDataset

    device = pick_device(args.device)
    cuda = device.type == "cuda"
    batch_size = args.batch_size or (256 if cuda else 32)
    workers = args.workers if args.workers is not None else (8 if cuda else 0)

    root = args.probe
    if root is None:
        from lce.probe.synth import synthesize

        root = scratch / "probe"
        started = time.perf_counter()
        synthesize(root, images=args.images, size=args.size, seed=args.seed)
        print(f"synthesised {args.images} images at {args.size} px in {time.perf_counter() - started:.1f} s")
    probe = Broden.open(root)

    probe_id = None
    if args.with_db:  # registering the probe also builds its decode cache under LCE_HOME
        from lce.probe.registry import add_probe

        started = time.perf_counter()
        probe_id = add_probe(PROBE_NAME, root, workers=workers).probe_id
        print(f"embedded PostgreSQL started, migrated and probe registered in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    cache = DecodeCache.build(probe, lce_home() / "cache", workers=workers)
    print(f"decode cache ready in {time.perf_counter() - started:.2f} s")

    image_size = probe.rows[0].ih
    loaded = build_model(args.arch, random_init=True, seed=args.seed, image_size=image_size)
    base = DissectSettings.for_variant(args.variant, batch_size=batch_size, workers=workers)
    base = replace(base, seg_size=base.seg_size_for(image_size, probe.rows[0].sh),
                   threshold_window=args.threshold_window)
    two_pass = replace(base, cache_budget=0)
    cached = replace(base, cache_budget=LARGE_CACHE)
    dataset = ProbeDataset(probe, image_size=image_size, seg_size=base.seg_size, mean=loaded.mean,
                           std=loaded.std, cache=cache, uint8=True)  # as lce ingest builds it
    model = loaded.module.to(device).eval()
    count = len(dataset)

    # Warm-up, not counted: one batch through the model (CUDA context, cuDNN's kernel choice, CPU allocator).
    with torch.inference_mode():
        warm = dataset.normalize(torch.stack([dataset[i]["image"] for i in range(min(batch_size, count))]).to(device))
        model(warm)
        del warm
    synchronize(device)
    rss_before = peak_rss_mib()

    layer, limit = args.layer, args.exact_limit
    layouts = resolve_layouts(model, [layer], image_size, device)  # as lce ingest reads the layer
    # The memory plans, as lce ingest makes them (and prints them with --dry-run).
    plans = {name: plan_dissection(model, [layer], dataset, settings, device, layouts, limit)
             for name, settings in (("two passes", two_pass), ("activation cache", cached))}
    for name, plan in plans.items():
        print(f"memory plan of {name}: " + plan.describe().split(": ", 1)[1])
    phases = [
        Phase("forward only", lambda: forward_only(model, layer, dataset, base, device, layouts)),
        Phase("two passes", lambda: dissect(model, [layer], dataset, two_pass, device, exact_limit=limit,
                                            layouts=layouts, plan=plans["two passes"])[layer]),
        Phase("activation cache", lambda: dissect(model, [layer], dataset, cached, device, exact_limit=limit,
                                                  layouts=layouts, plan=plans["activation cache"])[layer]),
    ]
    threads = torch.get_num_threads()
    gpu = f", {torch.cuda.get_device_name(device)}" if cuda else ""
    print(f"{args.arch} {layer} (random init, seed {args.seed}), variant {args.variant}, {count} images at "
          f"{image_size} px, seg size {base.seg_size}; device {device}{gpu}, torch {torch.__version__}, "
          f"{threads} threads, {os.cpu_count()} CPUs; batch {batch_size}, workers {workers}; "
          f"{args.repeat} repetition(s); load average {os.getloadavg()[0]:.2f}")
    for repetition in range(args.repeat):
        for phase in phases:
            measure(phase, device)
            print(f"  [{repetition + 1}/{args.repeat}] {phase.name}: {phase.seconds[-1]:.2f} s", flush=True)

    forward = statistics.median(phases[0].seconds)
    print(f"load average after: {os.getloadavg()[0]:.2f} (1 min; a busy host skews the ratios, see bench/README.md)")
    print()
    header = (f"{'phase':<18}{'median s':>9}{'min s':>8}{'images/s':>10}{'vs fwd':>8}{'paired':>8}{'fwd/s %':>8}"
              f"{'peak RSS MiB':>13}" + (f"{'CUDA alloc MiB':>15}{'reserved MiB':>13}{'plan MiB':>9}" if cuda else "")
              + f"  {'thresholds':<10}  {'cache':<5}  target")
    print(header)
    print("-" * len(header))
    for phase in phases:
        median = statistics.median(phase.seconds)
        result = phase.result
        mode = "-" if result is None else ("exact" if result.threshold_exact else "histogram")
        used = "-" if result is None else ("yes" if result.cached else "no")
        target = "-" if result is None else (GPU_TARGET if cuda else CPU_TARGETS[phase.name])
        # Each repetition's phase against that repetition's forward pass: drift between repetitions cancels out.
        paired = statistics.median(mine / base for mine, base in zip(phase.seconds, phases[0].seconds))
        print(f"{phase.name:<18}{median:>9.2f}{min(phase.seconds):>8.2f}{count / median:>10,.0f}"
              f"{median / forward:>7.2f}x{paired:>7.2f}x{100 * forward / median:>7.0f}%{phase.rss_mib:>13,.0f}"
              + (f"{phase.cuda_mib:>15,.0f}{phase.reserved_mib:>13,.0f}"
                 f"{plans[phase.name].peak / 2**20 if phase.name in plans else 0:>9,.0f}" if cuda else "")
              + f"  {mode:<10}  {used:<5}  {target}")
    units = phases[1].result.thresholds.numel()
    print(f"\n{units} units; the two dissections give identical results: "
          f"{'yes' if same_results(phases[1].result, phases[2].result) else 'NO'}")
    print(f"peak RSS is the process's high-water mark so far (ru_maxrss), so it never goes down between phases; "
          f"it was {rss_before:,.0f} MiB before them (imports, model, probe, warm-up)")
    if workers:
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"largest DataLoader worker's peak RSS: {children:,.0f} MiB (not in the process's figure)")
    print(f"targets (issue): {TARGETS}")
    if cuda and torch.cuda.get_device_name(device).find("H100") < 0:
        print("  (the GPU targets are for an H100; this is another card)")

    if args.with_db:
        db_phase(args, loaded, probe, phases[2].result, cached, device, probe_id)


def db_phase(args, loaded, probe, result, settings, device, probe_id: int) -> None:
    """Once: the run record as lce ingest builds it, and its write into the fresh embedded database."""
    from lce.config import code_version
    from lce.db.connection import connect
    from lce.db.runs import write_runs
    from lce.records import ModelInfo
    from lce.ingest.run import _concepts, _record

    engine = connect()
    model = ModelInfo(name=f"bench-{args.arch}", architecture=loaded.architecture,
                      checkpoint_sha256=loaded.checkpoint_sha256, family=None, notes=loaded.description)
    run_settings = {
        "probe_sha256": probe.content_sha256(), "split": "all", "image_size": probe.rows[0].ih,
        "batch_size": settings.batch_size, "cache_budget": settings.cache_budget, "device": str(device),
        "checkpoint": None, "random_init": True, "seed": args.seed, "code": code_version(),
    }
    started = time.perf_counter()
    concepts = _concepts(engine, probe_id)
    record = _record(model, PROBE_NAME, result, settings, concepts, run_settings)
    built = time.perf_counter() - started
    started = time.perf_counter()
    written = write_runs(engine, [record])
    wrote = time.perf_counter() - started
    print(f"\ndatabase (once): run record built in {built:.2f} s ({len(record.units):,} units, "
          f"{len(record.tallies):,} tallies, {len(record.top_images):,} top images); write_runs "
          f"{written[0].outcome.value} run {written[0].run_id} in {wrote:.2f} s; peak RSS {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
