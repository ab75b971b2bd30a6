"""How large is a pending file of a real Broden run, once decompressed? The figure behind the limits of
lce.importers.pending_runs.load.

    .venv/bin/python bench/bench_pending_size.py            # ~10 s, no database, no GPU

Builds RunRecords of Broden's shape (broden1_224: 63,305 images at 224 px, segmentations at 112 px, 1,196
concepts) for a sample of 64 units with every (unit, concept) pair tallied (a Broden-sized ResNet-50 layer4 has
2.46M pairs, about all of them), counts of Broden's magnitudes, 10 top images and 200 stored replicate labels a unit,
serialises them as lce.db.pending.save does (its own _document and json.dumps), and scales the bytes per unit to
ResNet-50's layer4 (2,048 units), its four stages (3,840) and all 16 of its bottleneck blocks (15,104); it prints
the compression ratio that lce.importers.pending_runs.MAX_RATIO is measured against.
"""

from __future__ import annotations

import gzip
import json
import random

import numpy as np

from lce.db.pending import _document
from lce.importers.pending_runs import MAX_JSON_BYTES, MAX_RATIO
from lce.records import Bootstrap, ModelInfo, ReplicateLabels, RunRecord, TallyRow, UnitRow
from lce.vocabulary import DEFAULT_BLOCKS, DEFAULT_REPLICATES, IOU_CUTOFF

IMAGES, PIXELS, CONCEPTS, REPLICATES, TOP = 63_305, 112 * 112, 1_196, 200, 10
CATEGORIES = ("object", "part", "material", "scene", "texture", "color")
SAMPLE = 64
LAYOUTS = {"layer4": 2_048, "layer1-layer4": 256 + 512 + 1_024 + 2_048,
           "16 blocks": 3 * 256 + 4 * 512 + 6 * 1_024 + 3 * 2_048}


def broden_like(units: int, seed: int = 0) -> RunRecord:
    rng = random.Random(seed)
    concepts = [(CATEGORIES[number % 6], f"concept-{number}") for number in range(CONCEPTS)]
    rows, tallies, top = [], [], []
    for unit in range(units):
        activation = int(0.005 * IMAGES * PIXELS * rng.uniform(0.5, 1.5))
        for concept in concepts:
            truth = rng.randint(1_000, IMAGES * PIXELS // 10)
            intersection = rng.randint(1, min(activation, truth))
            tallies.append(TallyRow(unit, concept, intersection, activation, truth,
                                    intersection / (activation + truth - intersection)))
        rows.append(UnitRow(unit, concepts[unit], rng.random() * 0.3, rng.gauss(2, 1), iou_low=rng.random() * 0.1,
                            iou_high=rng.random() * 0.3 + 0.1, stability=rng.random(), runner_up=concepts[unit + 1],
                            runner_up_iou=rng.random() * 0.1, chance_iou=rng.random() * 0.05,
                            lift=rng.random() * 10))
        top.extend((unit, rank, rng.randrange(IMAGES), rng.gauss(5, 2)) for rank in range(TOP))
    generator = np.random.default_rng(seed)
    labels = ReplicateLabels(concepts, generator.integers(-1, CONCEPTS, (units, REPLICATES)),
                             generator.random((units, REPLICATES), dtype=np.float32) * 0.3)
    bootstrap = Bootstrap(DEFAULT_REPLICATES, DEFAULT_BLOCKS, 2**59, [(unit, concepts[unit], 0.5) for unit in range(units)], labels)
    return RunRecord(ModelInfo("resnet50", "resnet50", "0" * 64), "broden1_224", "layer4", "dissect", 0.005,
                     IOU_CUTOFF, "dissected", rows, tallies, 112, {"image_size": 224}, top, bootstrap)


def main() -> None:
    record = broden_like(SAMPLE)
    text = json.dumps({"runs": [_document(record)]}).encode()
    packed = gzip.compress(text, compresslevel=6, mtime=0)
    per_unit = len(text) / SAMPLE
    print(f"{SAMPLE} units: {len(text):,} bytes of JSON ({per_unit:,.0f} a unit), {len(packed):,} gzip'd "
          f"(ratio {len(text) / len(packed):.1f} to 1; MAX_RATIO {MAX_RATIO})")
    for name, units in LAYOUTS.items():
        size = per_unit * units
        print(f"ResNet-50 {name} ({units:,} units) over Broden: {size / 2**20:,.0f} MiB of JSON "
              f"({size / MAX_JSON_BYTES:.0%} of MAX_JSON_BYTES)")


if __name__ == "__main__":
    main()
