"""Train a model briefly to tell the scenes of a synthetic probe apart, and save its weights (for the demo).

    .venv/bin/python scripts/train_scene_classifier.py PROBE_DIR OUT.pth [--arch resnet18] [--steps 60] [--seed 0]

A random network and a trained one should sit apart in the Learned Concepts Embedding: this gives the demo a
model that has learned something about the probe's concepts, in about a minute on two cores. The checkpoint is a
plain torchvision state dict, which `lce ingest NAME --arch resnet18 --checkpoint OUT.pth` loads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lce.models.build import construct
from lce.probe.broden import Broden
from lce.probe.dataset import ProbeDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    probe = Broden.open(args.probe, split="train")
    data = ProbeDataset(probe)
    scenes = sorted({n for row in probe.rows for n in row.whole_labels("scene")})
    classes = {number: index for index, number in enumerate(scenes)}
    model = construct(args.arch)
    model.fc = torch.nn.Linear(model.fc.in_features, len(scenes))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True)
    slot = data.whole_categories.index("scene")
    model.train()
    step = 0
    while step < args.steps:
        for batch in loader:
            target = torch.tensor([classes[int(n)] for n in batch["whole"][:, slot]])
            loss = torch.nn.functional.cross_entropy(model(batch["image"]), target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            if step % 10 == 0:
                print(f"step {step}: loss {loss.item():.3f}", flush=True)
            if step >= args.steps:
                break
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
