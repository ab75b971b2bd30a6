"""Decode cache benchmark: images per second reading every image's labels from the PNGs versus from the cache.

    .venv/bin/python bench/bench_probe_cache.py [--probe DIR] [--images 500] [--size 224] [--repeat 3]

Without --probe it synthesises a probe (lce probe synth) in a temporary directory. Both readers run in this one
process, alternated repetition by repetition, over every image of the probe; the figure is the ratio of their
medians. Also timed: building the cache (one decode of everything, then written), and the Dataset's label
tensors at segmentation size 56 (the dissect variant's) from PNGs and from the cache.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from lce.probe.broden import Broden
from lce.probe.cache import DecodeCache
from lce.probe.dataset import ProbeDataset


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def read_all(reader, count: int) -> None:
    for index in range(count):
        reader(index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", type=Path)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lce-bench-cache-") as scratch:
        scratch = Path(scratch)
        root = args.probe
        if root is None:
            from lce.probe.synth import synthesize

            root = scratch / "probe"
            seconds = timed(lambda: synthesize(root, images=args.images, size=args.size, seed=0))
            print(f"synthesised {args.images} images at {args.size} px in {seconds:.1f} s")
        probe = Broden.open(root)
        count = len(probe)
        build = timed(lambda: DecodeCache.build(probe, scratch / "cache"))
        cache = DecodeCache.build(probe, scratch / "cache")
        png_data = ProbeDataset(probe, seg_size=56)
        cache_data = ProbeDataset(probe, seg_size=56, cache=cache)
        figures = {"labels from PNGs": [], "labels from cache": [], "Dataset layers, PNGs": [],
                   "Dataset layers, cache": []}
        for _ in range(args.repeat):
            figures["labels from PNGs"].append(timed(lambda: read_all(probe.labels_of, count)))
            figures["labels from cache"].append(timed(lambda: read_all(cache.labels_of, count)))
            figures["Dataset layers, PNGs"].append(
                timed(lambda: read_all(lambda i: png_data._layers(png_data.labels_of(i)), count)))
            figures["Dataset layers, cache"].append(
                timed(lambda: read_all(lambda i: cache_data._layers(cache_data.labels_of(i)), count)))
    medians = {name: statistics.median(values) for name, values in figures.items()}
    print(f"{count} images, {args.repeat} repetitions; cache built in {build:.2f} s "
          f"({count / build:,.0f} images/s, decoding every PNG once)")
    print(f"{'reader':<24}{'median s':>10}{'images/s':>12}{'vs PNGs':>10}")
    for name, seconds in medians.items():
        baseline = medians["labels from PNGs" if name.startswith("labels") else "Dataset layers, PNGs"]
        print(f"{name:<24}{seconds:>10.3f}{count / seconds:>12,.0f}{baseline / seconds:>9.1f}x")


if __name__ == "__main__":
    main()
