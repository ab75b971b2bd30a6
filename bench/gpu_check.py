"""The device check: everything a session lent a GPU should measure, in one script (at most 8 minutes on an H100 or
H200), so that the 15 minutes of a device session go to measuring, not to writing scripts.

    .venv/bin/python bench/gpu_check.py                         # on cuda: every section, then the figures
    .venv/bin/python bench/gpu_check.py --device cpu --small    # the same sections, tiny, on the CPU (a test runs it)

Sections, each timed:
  environment     torch, CUDA and cuDNN versions, the device, its TF32 switches and free memory
  memory          the memory plan's histogram phase against the measured peak: a ResNet-50-sized threshold
                  estimator (2,048 units, a full Broden's keep) counting 2,048 x 262,144 values at once with the
                  histogram chunk the plan chose for this device (--small: 64 x 4,096)
  reference       the engine's reference-equality tests on the device (pytest --lce-device): thresholds equal
                  torch.quantile on the device, tallies the plain reference's, bit for bit; the bootstrap's per-block
                  and per-position counts against the pooled tallies and a brute-force count, planted detectors'
                  intervals and stability (tests/test_uncertainty_engine.py)
  cpu vs device   resnet18 layer4 dissected on the CPU and on the device with TF32 on and off: the largest
                  threshold difference, the tallies and labels that differ
  syncs           the syncs of a dissection of 2 and of 4 batches: torch.cuda.set_sync_debug_mode("warn")'s
                  warnings on CUDA, lce.instrument.syncs.SyncCounter's count on the CPU; the extra per batch
  bench           bench/bench_ingest.py on resnet50 layer4 at 3,000 images (exact thresholds) and at 4,500 (the
                  histogram, as a full Broden needs), with peak allocated and reserved memory
                  (--small: resnet18 on 24 images at 64 px)

Exit status 1 when a check fails: the plan below the measured peak, a reference test failing, syncs per batch
above the engine's bound (tests/test_device_syncs.py states it). Throughput is printed against its targets
(>= 1000 images/s and >= 50% of forward-only on resnet50 layer4), never failed. Copy the figures into
bench/RESULTS.md with the card's name.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: lce from this checkout

FAILURES: list[str] = []


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (cuda:N) or cpu")
    parser.add_argument("--small", action="store_true", help="tiny sizes: a check that the script works")
    parser.add_argument("--workers", type=int, default=14, help="DataLoader workers of the bench (GPU)")
    parser.add_argument("--skip", action="append", default=[], help="a section to leave out (repeatable)")
    return parser.parse_args()


@contextmanager
def section(name: str):
    print(f"\n== {name}", flush=True)
    started = time.perf_counter()
    yield
    print(f"   ({name}: {time.perf_counter() - started:.1f} s)", flush=True)


def check(ok: bool, what: str) -> None:
    print(f"   {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        FAILURES.append(what)


def environment(device) -> None:
    import torch

    from lce.config import device_settings
    from lce.dissect.memory import DeviceMemory

    for key, value in device_settings(device).items():
        print(f"   {key}: {value}")
    memory = DeviceMemory.of(device)
    print(f"   free memory: {memory.free / 2**30:.1f} of {memory.total / 2**30:.1f} GiB; torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} CPUs")


def memory_check(device, small: bool) -> None:
    """The histogram's measured peak against the plan's estimate, with the plan's chunk for a full Broden."""
    import torch

    from lce.instrument.allocations import AllocationWatch
    from lce.dissect.engine import DissectSettings
    from lce.dissect.memory import DeviceMemory, ModelFootprint, ProbeShape, histogram_peak, plan_memory
    from lce.dissect.threshold import ThresholdEstimator

    units, per_unit = (64, 4096) if small else (2048, 262_144)
    broden = ProbeShape(images=63_305, image_size=224, seg_size=56, label_bytes=6 * 56 * 56 * 4, label_layers=6,
                        columns=6 * 1198)
    plan = plan_memory({"layer4": (units, 7, 7)}, broden, DissectSettings.for_variant("dissect", batch_size=256),
                       device, ModelFootprint(102_441_032, 10_386_432), DeviceMemory.of(device))
    chunk = plan.sizes.histogram_chunk
    expected = 63_305 * 56 * 56
    estimator = ThresholdEstimator(units, 0.01, device, exact_limit=2**16, expected=expected,
                                   histogram_chunk=chunk)
    generator = torch.Generator(device).manual_seed(0)
    values = torch.rand(units, per_unit, device=device, generator=generator)
    predicted = histogram_peak(units, values.numel(), chunk)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        estimator.add(values, count=per_unit)
        torch.cuda.synchronize(device)
        measured = torch.cuda.max_memory_allocated(device) - before
        reserved = torch.cuda.max_memory_reserved(device)
        print(f"   peak reserved by the caching allocator: {reserved / 2**30:.2f} GiB")
    else:
        with AllocationWatch() as watch:
            estimator.add(values, count=per_unit)
        measured = watch.peak
    print(f"   histogram of {units:,} units, {per_unit:,} values each, chunks of {chunk:,} values (the plan's for "
          f"a full Broden on {plan.device}): measured {measured / 2**20:,.1f} MiB, planned {predicted / 2**20:,.1f} "
          f"MiB ({measured / predicted:.0%} of the plan)")
    print(f"   the full-Broden plan on this device: peak {plan.peak / 2**30:.2f} GiB of {plan.budget / 2**30:.2f} "
          f"GiB planned; rounds of {plan.round_values:,} values")
    check(measured <= predicted, "the histogram's peak stays within the plan")


def reference_tests(device, small: bool) -> None:
    tests = ["tests/test_dissect_reference.py", "tests/test_dissect_threshold.py", "tests/test_uncertainty_engine.py"]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests, "--lce-device", str(device)]
    if small:
        command += ["-k", "engine_equals_the_reference or per_block or per_position"]
    with tempfile.TemporaryDirectory(prefix="lce-gpu-check-") as scratch:
        done = subprocess.run([*command, f"--basetemp={scratch}/pytest"], cwd=REPO, capture_output=True, text=True)
    print("   " + "\n   ".join(done.stdout.strip().splitlines()[-3:]))
    check(done.returncode == 0, f"reference-equality tests on {device}")


def _tiny_probe(scratch: Path, images: int, size: int):
    from lce.probe.broden import Broden
    from lce.probe.synth import synthesize

    root = scratch / f"probe-{images}-{size}"
    if not root.exists():
        synthesize(root, images=images, size=size, seed=0)
    return Broden.open(root)


def cpu_versus_device(device, small: bool, scratch: Path) -> None:
    """resnet18 layer4 on the CPU and on the device, TF32 on and off."""
    import torch

    from lce.config import tf32
    from lce.dissect.engine import DissectSettings, dissect
    from lce.models.build import build_model
    from lce.probe.dataset import ProbeDataset

    images, size = (16, 64) if small else (200, 224)
    probe = _tiny_probe(scratch, images, size)
    loaded = build_model("resnet18", random_init=True, seed=0, image_size=size)
    settings = DissectSettings.for_variant("dissect", batch_size=8 if small else 50)
    dataset = ProbeDataset(probe, seg_size=settings.seg_size_for(size, probe.rows[0].sh), mean=loaded.mean,
                           std=loaded.std, uint8=True)
    cpu = dissect(loaded.module, ["layer4"], dataset, settings, torch.device("cpu"))["layer4"]
    for switch in (True, False):
        with tf32("on" if switch else "off"):
            result = dissect(loaded.module, ["layer4"], dataset, settings, device)["layer4"]
        difference = (result.thresholds.cpu() - cpu.thresholds).abs().max().item()
        relative = difference / cpu.thresholds.abs().max().item()
        counts = [(a.cpu() != b).sum().item() for a, b in zip(result.tally.counts(), cpu.tally.counts())]
        labels = (result.tally.iou().cpu().argmax(1) != cpu.tally.iou().argmax(1)).sum().item()
        tops = (result.top_images.cpu() != cpu.top_images).sum().item()
        print(f"   TF32 {'on ' if switch else 'off'}: thresholds differ by at most {difference:.3g} ({relative:.2g} of "
              f"the largest); tallies differing: I {counts[0]:,}, A {counts[1]:,}, G {counts[2]:,}; best concepts "
              f"differing: {labels} of {len(cpu.thresholds)} units; top-image slots differing: {tops:,}")
        if device.type == "cpu":
            check(difference == 0 and not any(counts) and labels == 0, "the same device gives the same results")
        else:
            check(counts[2] == 0, "G (the labels' pixels) is the same on every device")


def sync_check(device, small: bool, scratch: Path) -> None:
    """Syncs of 2 and of 4 batches: the extra per batch is what the loops cost."""
    from lce.dissect.engine import DissectSettings, dissect
    from lce.models.build import build_model
    from lce.probe.dataset import ProbeDataset

    from lce.instrument.syncs import SYNCS_PER_BATCH

    size = 64 if small else 224
    batch = 4 if small else 32
    loaded = build_model("resnet18", random_init=True, seed=0, image_size=size)
    model = loaded.module.to(device)
    settings = DissectSettings.for_variant("dissect", batch_size=batch, cache_budget=0)
    counts = {}
    for batches in (2, 4):
        probe = _tiny_probe(scratch, batches * batch, size)
        dataset = ProbeDataset(probe, seg_size=settings.seg_size_for(size, probe.rows[0].sh), mean=loaded.mean,
                               std=loaded.std, uint8=True)
        counts[batches] = _syncs(lambda: dissect(model, ["layer4"], dataset, settings, device), device)
    per_batch = (counts[4] - counts[2]) / 2
    print(f"   syncs: {counts[2]} in 2 batches, {counts[4]} in 4: {per_batch:g} per batch (bound {SYNCS_PER_BATCH} "
          "per layer)")
    check(per_batch <= SYNCS_PER_BATCH, "syncs per batch within the engine's bound")


def _syncs(run, device) -> int:
    """The syncs of run(): CUDA's own count, or on the CPU SyncCounter's, with the engine working the GPU's way
    (fixed sizes: lce.config.DeviceBudget.compact off; the CPU compacts, where a host read costs nothing)."""
    from dataclasses import replace

    import torch

    from lce import config
    from lce.dissect import engine

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                run()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)
    from lce.instrument.syncs import SyncCounter

    counter, cpu_budget, loader = SyncCounter(), config._CPU_BUDGET, engine._loader
    config._CPU_BUDGET = replace(cpu_budget, compact=False)
    # The DataLoader's collation runs in the main process here; on a GPU host it is in workers, and host-only.
    engine._loader = lambda *args, **kwargs: counter.uncounted(loader(*args, **kwargs))
    try:
        with counter:
            run()
    finally:
        config._CPU_BUDGET, engine._loader = cpu_budget, loader
    return counter.total


def bench(device, small: bool, workers: int) -> None:
    script = str(REPO / "bench" / "bench_ingest.py")
    if small:
        runs = [["--arch", "resnet18", "--images", "24", "--size", "64", "--batch-size", "8", "--workers", "0"],
                ["--arch", "resnet18", "--images", "24", "--size", "64", "--batch-size", "8", "--workers", "0",
                 "--exact-limit", "4096"]]
    else:
        common = ["--arch", "resnet50", "--batch-size", "256", "--workers", str(workers)]
        runs = [[*common, "--images", "3000"], [*common, "--images", "4500"]]
    for arguments in runs:
        command = [sys.executable, script, "--device", str(device), *arguments]
        print("   $ " + " ".join(command[1:]), flush=True)
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        lines = done.stdout.strip().splitlines()
        table = [line for line in lines if line.startswith(("phase", "forward only", "two passes", "activation",
                                                            "memory plan", "  pass", "  thresholds", "units;"))]
        print("   " + "\n   ".join(table or lines[-12:]))
        if done.returncode:
            print(done.stderr[-3000:])
        check(done.returncode == 0 and "identical results: yes" in done.stdout, f"bench {' '.join(arguments)}")


def main() -> int:
    args = parse_args()
    import torch

    from lce.config import pick_device

    device = pick_device(args.device)
    started = time.perf_counter()
    print(f"lce device check on {device}{' (small)' if args.small else ''}, {time.strftime('%Y-%m-%d %H:%M')}")
    with tempfile.TemporaryDirectory(prefix="lce-gpu-check-") as scratch:
        os.environ["LCE_HOME"] = str(Path(scratch) / "home")
        steps = [("environment", lambda: environment(device)),
                 ("memory", lambda: memory_check(device, args.small)),
                 ("reference", lambda: reference_tests(device, args.small)),
                 ("cpu vs device", lambda: cpu_versus_device(device, args.small, Path(scratch))),
                 ("syncs", lambda: sync_check(device, args.small, Path(scratch))),
                 ("bench", lambda: bench(device, args.small, args.workers))]
        for name, step in steps:
            if name in args.skip:
                continue
            with section(name):
                step()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print(f"\n{len(FAILURES)} check(s) failed{': ' + '; '.join(FAILURES) if FAILURES else ''}; "
          f"{time.perf_counter() - started:.0f} s in all")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
