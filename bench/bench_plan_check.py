"""Plan check benchmark: the check of a 10,000-row plan (`lce ingest --plan --dry-run`'s work) as lce does it now,
each distinct model built once, against the check of each row by itself, as it was before (issue 23).

    .venv/bin/python bench/bench_plan_check.py                        # 10,000 rows of resnet18, 200 rows before
    .venv/bin/python bench/bench_plan_check.py --rows 2000 --before-rows 50 --models 4

The plan: `--rows` rows of `--models` distinct architectures (resnet18, squeezenet1_1, mobilenet_v3_small,
alexnet, in turn), each row a random init with its own seed, over a 64-px synthetic probe of 10 images. "after"
is lce.ingest.plan.check_plan over every row (timed from read_plan, the plan file read as the command reads it).
"before" is the check of main before issue 23 (commit 1dd31be), per row: build the model, find its layers'
layouts, look its runs up, collect garbage; it is timed over the first `--before-rows` rows (a full 10,000 took
longer than the 300 s the issue waited) and scaled to `--rows`, which the table says. Peak memory is the process's
ru_maxrss after each phase (a high-water mark; "after" runs first, so its figure is its own). There is no
pass/fail: the issue asks for each model built once and memory bounded, and keeps the time as a figure.

LCE_HOME is a fresh temporary directory (LCE_DATABASE_URL is removed): the probe and the embedded database live
there and are deleted at the end (the server is stopped first).
"""

from __future__ import annotations

import argparse
import gc
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
ARCHITECTURES = ("resnet18", "squeezenet1_1", "mobilenet_v3_small", "alexnet")
LAYERS = {"resnet18": "layer4", "squeezenet1_1": "features.12", "mobilenet_v3_small": "features.12",
          "alexnet": "features.12"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--before-rows", type=int, default=200, help="rows the per-row check is timed over")
    parser.add_argument("--models", type=int, default=1, choices=range(1, len(ARCHITECTURES) + 1))
    return parser.parse_args()


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check_each_row(rows):
    """The check as main did it before issue 23: every row builds its own model."""
    from lce.config import pick_device
    from lce.db.connection import connect
    from lce.ingest.plan import _Probes, build_request
    from lce.ingest.run import _load_model, layer_layouts, stored_runs

    engine = connect()
    probes = _Probes(engine)
    for row in rows:
        row.request = request = build_request(row.options)
        request.validate()
        pick_device(request.device)
        probe = probes(request.probe, request.split)
        image_size = probe.rows[0].ih
        spec, loaded, default_layer, _ = _load_model(request, image_size)
        row.layers = request.layers or [default_layer]
        settings = replace(request.settings, seg_size=request.settings.seg_size_for(image_size, probe.rows[0].sh))
        layouts = layer_layouts(request, loaded.module, row.layers, image_size, "cpu")
        _, todo = stored_runs(engine, request, settings, loaded.checkpoint_sha256, spec.settings(loaded), layouts)
        row.status = "to do" if todo else "done"
        del loaded
        gc.collect()
    return rows


def main() -> None:
    args = parse_args()
    from scratch_home import scratch_home

    with scratch_home("lce-bench-plan-check-") as scratch:
        probe = scratch / "probe"
        lce = [sys.executable, "-m", "lce"]
        subprocess.run([*lce, "probe", "synth", str(probe), "--images", "10", "--size", "64", "--seed", "0"],
                       check=True, capture_output=True, cwd=REPO)
        subprocess.run([*lce, "probe", "add", "bench", str(probe)], check=True, capture_output=True, cwd=REPO)
        from lce.ingest.plan import check_plan, read_plan
        from lce.models.build import ModelSpec

        plan = scratch / "plan.csv"
        architectures = ARCHITECTURES[: args.models]
        lines = [f"m-{index},{architectures[index % len(architectures)]},true,{index},"
                 f"{LAYERS[architectures[index % len(architectures)]]}\n" for index in range(args.rows)]
        plan.write_text("model,arch,random_init,seed,layer\n" + "".join(lines))
        builds = []
        original = ModelSpec.build
        ModelSpec.build = lambda spec: builds.append(spec.architecture) or original(spec)

        started = time.perf_counter()
        rows = check_plan(read_plan(plan, defaults={"probe": "bench"}))
        after = time.perf_counter() - started
        after_peak, after_builds = peak_mib(), len(builds)
        assert all(row.status == "to do" for row in rows), [row.reason for row in rows if row.reason][:3]

        sample = read_plan(plan, defaults={"probe": "bench"})[: args.before_rows]
        builds.clear()
        started = time.perf_counter()
        check_each_row(sample)
        before = (time.perf_counter() - started) * args.rows / len(sample)
        before_peak = peak_mib()

    print(f"{args.rows:,}-row plan, {len(architectures)} distinct model(s) ({', '.join(architectures)}), "
          "64-px probe, CPU")
    print(f"{'check':<34} {'seconds':>10} {'models built':>13} {'peak RSS MiB':>13}")
    print(f"{'after: each distinct model once':<34} {after:>10.1f} {after_builds:>13,} {after_peak:>13.0f}")
    print(f"{'before: every row (scaled from ' + format(len(sample), ',') + ')':<34} {before:>10.1f} "
          f"{args.rows:>13,} {before_peak:>13.0f}")
    print(f"ratio before / after: {before / after:.1f}x")


if __name__ == "__main__":
    main()
