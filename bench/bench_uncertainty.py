"""Label uncertainty (issue 16, section 1): what the bootstrap costs in time and memory, and its intervals' coverage.

    .venv/bin/python bench/bench_uncertainty.py --memory        # extra bytes, ResNet-50 layer4 on a Broden-sized probe
    .venv/bin/python bench/bench_uncertainty.py --cost          # ingest time, replicates 1000 against 0, paired
    .venv/bin/python bench/bench_uncertainty.py --coverage      # 300-image intervals against 3,000-image IoUs

--memory: the plan's figures (lce.dissect.memory.bootstrap_counter_bytes, bootstrap_work_bytes) for ResNet-50
layer4 (2048 units, 7 x 7) over 63,305 images and 1,197 concepts, S = 56 (dissect) and 112 (netdissect), and a
check of them against what the code allocates (lce.instrument.allocations.AllocationWatch) on simulated tallies of
--units units (the counters of BlockCounts, then layer_uncertainty's peak over them).
--cost: lce ingest's work without the database (dissect() then lce.ingest.run._record) of a random-init
resnet18 layer4 over --images synthetic images, with --replicates 1000 and 0, alternating in pairs on the same
probe; the ratio of each pair, and their median (issue 16's target: at most 1.15).
--coverage: a random-init resnet18 layer4 on --pairs pairs of independent synthetic probes (--small and --large
images, other seeds each); for each unit labelled on the small probe with an interval of non-zero width, whether
the interval holds the IoU of the same concept on the large probe (its thresholds its own). Target 90-98%.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lce.dissect.engine import DissectSettings, dissect  # noqa: E402
from lce.dissect.memory import ProbeShape, bootstrap_counter_bytes, bootstrap_work_bytes  # noqa: E402

BRODEN_IMAGES, BRODEN_CONCEPTS, BRODEN_MAX_LABEL = 63_305, 1_197, 1_197
GB = 2**30


def broden_shape(seg_size: int) -> ProbeShape:
    return ProbeShape(images=BRODEN_IMAGES, image_size=224, seg_size=seg_size, label_bytes=6 * seg_size**2 * 4 + 46,
                      label_layers=6, columns=6 * (BRODEN_MAX_LABEL + 1), concepts=BRODEN_CONCEPTS, categories=6)


def memory(units: int, device: str) -> None:
    from lce.instrument.allocations import AllocationWatch
    from lce.dissect.memory import DeviceMemory, ModelFootprint, plan_memory
    from lce.dissect.tally import Tally
    from lce.dissect.uncertainty import Resampling, layer_uncertainty

    print("ResNet-50 layer4 (2048 units, 7x7), 63,305 images, 1,197 concepts, 100 blocks, 1,000 replicates:")
    for variant, seg in (("dissect", 56), ("netdissect", 112)):
        settings = DissectSettings.for_variant(variant)
        probe = broden_shape(seg)
        counters, work = bootstrap_counter_bytes(2048, probe, settings), bootstrap_work_bytes(2048, probe, settings)
        off = DissectSettings.for_variant(variant, replicates=0)
        card = DeviceMemory("an 80 GB card", 80 * GB - 2**29, 80 * GB)
        model = ModelFootprint(weights=102_000_000, forward_per_image=40_000_000)
        with_plan = plan_memory({"layer4": (2048, 7, 7)}, probe, settings, "cuda", model, card)
        without = plan_memory({"layer4": (2048, 7, 7)}, probe, off, "cuda", model, card)
        print(f"  {variant:<10} S={seg:<3}: counters {counters / GB:.2f} GiB (kept through pass 2), replicates' "
              f"working set {work / GB:.2f} GiB (after it); plan's pass-2 peak on an 80 GB card "
              f"{with_plan.phases['pass 2'] / GB:.2f} GiB against {without.phases['pass 2'] / GB:.2f} GiB without "
              f"(+{(with_plan.phases['pass 2'] - without.phases['pass 2']) / GB:.2f} GiB)")

    print(f"Simulated allocation, {units} units (AllocationWatch on {device}) against the plan's formulas:")
    generator = torch.Generator().manual_seed(0)
    categories = ["object", "part", "material", "color", "scene", "texture"]
    for variant, seg in (("dissect", 56), ("netdissect", 112)):
        settings = DissectSettings.for_variant(variant)
        probe = broden_shape(seg)
        stride = BRODEN_MAX_LABEL + 1
        columns = np.sort(np.random.default_rng(0).choice(6 * stride, BRODEN_CONCEPTS, replace=False))
        resampling = Resampling.of("ab" * 32, BRODEN_IMAGES, settings.replicates, settings.blocks)
        with AllocationWatch() as watch:
            tally = Tally(units, categories, BRODEN_MAX_LABEL, variant, device)
            before = watch.current
            tally.count_blocks(columns, resampling.block_of_image, seg)
            counted = watch.current - before
        counts = tally.blocks
        # Simulated tallies: random counts, pooled I, A, G their sums (labels and chance IoUs to work out).
        counts.intersection[:-1] = torch.randint(0, 50, (counts.spare,), generator=generator, dtype=torch.int32)
        counts.activation[:] = torch.randint(50, 100, counts.activation.shape, generator=generator,
                                             dtype=torch.int32)
        counts.truth[:-1] = torch.randint(50, 100, (len(counts.truth) - 1,), generator=generator, dtype=torch.int32)
        block_i, block_a, block_g = counts.block_tallies()
        tally.intersection[:tally.spare].view(units, -1)[:, torch.from_numpy(counts.columns)] = block_i.sum(0).long()
        tally.activation[:] = block_a.sum(0).long()
        tally.truth[torch.from_numpy(counts.columns)] = block_g.sum(0).long()
        counts.active_by_position[:] = 1
        counts.truth_by_position[:] = 1
        counts.images = BRODEN_IMAGES
        started = time.perf_counter()
        with AllocationWatch() as watch:
            layer_uncertainty(tally, resampling, per_category=settings.spec.label_per_category)
        seconds = time.perf_counter() - started
        planned_counters = bootstrap_counter_bytes(units, probe, settings)
        planned_work = bootstrap_work_bytes(units, probe, settings)
        print(f"  {variant:<10}: counters {counted / 2**20:,.1f} MiB allocated, {planned_counters / 2**20:,.1f} MiB "
              f"planned ({'ok' if counted <= planned_counters else 'OVER'}); replicates' peak "
              f"{watch.peak / 2**20:,.1f} MiB, {planned_work / 2**20:,.1f} MiB planned "
              f"({'ok' if watch.peak <= planned_work else 'OVER'}); {seconds:.1f} s")
        del tally, counts, block_i, block_a, block_g


def _ingest_once(model, dataset, settings, concepts, device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one ingest without the database."""
    from lce.records import ModelInfo
    from lce.ingest.run import _record

    started, cpu = time.perf_counter(), time.process_time()
    result = dissect(model, ["layer4"], dataset, settings, device)["layer4"]
    record = _record(ModelInfo("bench"), "bench", result, settings, concepts, {})
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    assert (record.bootstrap is None) == (settings.replicates == 0)
    return time.perf_counter() - started, time.process_time() - cpu


def _probe(root: Path, images: int, size: int, seed: int):
    from lce.probe.broden import Broden
    from lce.probe.synth import synthesize

    return Broden.open(synthesize(root / f"probe-{images}-{size}-{seed}", images=images, size=size, seed=seed).path)


def _concepts(probe) -> dict:
    return {(category, member.number): probe.vocabulary[member.number].name
            for category, members in probe.members.items() for member in members}


def _model(device):
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18().to(device).eval()


def cost(images: int, size: int, pairs: int, device: torch.device) -> None:
    from lce.probe.dataset import ProbeDataset

    root = Path(tempfile.mkdtemp(prefix="lce-bench-uncertainty-"))
    probe = _probe(root, images, size, seed=1)
    settings = {replicates: DissectSettings.for_variant("dissect", replicates=replicates) for replicates in (1000, 0)}
    dataset = ProbeDataset(probe, seg_size=settings[0].seg_size_for(size, probe.rows[0].sh), uint8=True)
    concepts, model = _concepts(probe), _model(device)
    _ingest_once(model, dataset, settings[1000], concepts, device)  # warm-up: caches, upsamplers, allocator
    ratios, cpu_ratios = [], []
    print(f"resnet18 layer4 random init, {images} synthetic images of {size} px, {len(concepts)} concepts, on "
          f"{device}; ingest without the database (dissect + _record), wall s (CPU s of the process):")
    print("pair   replicates=1000        replicates=0           ratio (CPU)")
    for pair in range(pairs):
        order = (1000, 0) if pair % 2 == 0 else (0, 1000)  # alternate, so that drift hits both
        seconds = {replicates: _ingest_once(model, dataset, settings[replicates], concepts, device)
                   for replicates in order}
        ratios.append(seconds[1000][0] / seconds[0][0])
        cpu_ratios.append(seconds[1000][1] / seconds[0][1])
        print(f"{pair + 1:>4}   {seconds[1000][0]:>7.2f} ({seconds[1000][1]:>6.2f})   {seconds[0][0]:>7.2f} "
              f"({seconds[0][1]:>6.2f})   {ratios[-1]:.3f} ({cpu_ratios[-1]:.3f})")
    print(f"median ratio {statistics.median(ratios):.3f} wall, {statistics.median(cpu_ratios):.3f} CPU time "
          "(target <= 1.15)")


def coverage(small: int, large: int, size: int, pairs: int, device: torch.device) -> None:
    from lce.probe.dataset import ProbeDataset

    root = Path(tempfile.mkdtemp(prefix="lce-bench-coverage-"))
    model = _model(device)
    settings = DissectSettings.for_variant("dissect")
    held, counted, zero_width, unlabelled = 0, 0, 0, 0
    print(f"resnet18 layer4 random init (seed 0), {pairs} pairs of synthetic probes ({small} and {large} images of "
          f"{size} px), dissect variant, 1,000 replicates over 100 blocks, on {device}:")
    for pair in range(pairs):
        results = {}
        for images, seed in ((small, 100 + pair), (large, 200 + pair)):
            probe = _probe(root, images, size, seed)
            dataset = ProbeDataset(probe, seg_size=settings.seg_size_for(size, probe.rows[0].sh), uint8=True)
            results[images] = dissect(model, ["layer4"], dataset, settings, device)["layer4"]
        found = results[small].uncertainty
        large_iou = results[large].tally.iou().cpu().numpy()
        stride = results[small].tally.stride
        pair_held = pair_counted = 0
        for unit, label in enumerate(found.found.label):
            if label < 0:
                unlabelled += 1
                continue
            low, high = found.found.iou_low[unit], found.found.iou_high[unit]
            if not high > low:
                zero_width += 1
                continue
            column = int(found.columns[label])
            category, number = results[small].tally.categories[column // stride], column % stride
            truth = large_iou[unit, results[large].tally.column(category, number)]
            pair_counted += 1
            pair_held += bool(low <= truth <= high)
        held, counted = held + pair_held, counted + pair_counted
        print(f"  pair {pair + 1}: {pair_held}/{pair_counted} units' intervals hold the large probe's IoU "
              f"({pair_held / max(1, pair_counted):.1%})")
    print(f"coverage {held}/{counted} = {held / max(1, counted):.1%} (target 90-98%); left out: {zero_width} "
          f"zero-width intervals, {unlabelled} units without a label")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--cost", action="store_true")
    parser.add_argument("--coverage", action="store_true")
    parser.add_argument("--units", type=int, default=256, help="--memory: units of the simulated allocation")
    parser.add_argument("--images", type=int, default=500, help="--cost: probe images")
    parser.add_argument("--size", type=int, default=224, help="image side (--cost, --coverage)")
    parser.add_argument("--pairs", type=int, default=None, help="--cost: 3 pairs; --coverage: 5 pairs of probes")
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--large", type=int, default=3000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if not (args.memory or args.cost or args.coverage):
        parser.error("say what to measure: --memory, --cost and/or --coverage")
    if args.memory:
        memory(args.units, args.device)
    if args.cost:
        cost(args.images, args.size, args.pairs or 3, device)
    if args.coverage:
        coverage(args.small, args.large, args.size, args.pairs or 5, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
