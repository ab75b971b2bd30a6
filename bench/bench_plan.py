"""Plan benchmark: one four-model `lce ingest --plan` run one row after another, on two local worker processes, and
on a local Ray cluster, as ratios against the sequential run measured in the same run.

    .venv/bin/python bench/bench_plan.py                           # 4 x resnet18 layer4, 120 images of 112 px, CPU
    .venv/bin/python bench/bench_plan.py --devices cuda:0,cuda:0   # two workers sharing one GPU (--device cuda)
    .venv/bin/python bench/bench_plan.py --repeat 3 --images 300

Each figure is the wall clock of a real `python -m lce ingest --plan ... --replace` process (interpreter start, the
plan's check and every row; --replace so that every repetition dissects every row again), the three executors
interleaved repetition by repetition. Ray's overhead per model is (Ray's wall time - the local executor's) / models:
both run one worker per device (the same devices, the same torch threads per worker), so what differs is Ray
itself; the start and stop of a bare local cluster (ray.init + ray.shutdown, in this process) is timed apart, as
the part of it that does not grow with the plan.

LCE_HOME is a fresh temporary directory (LCE_DATABASE_URL is removed): the synthetic probe, its decode cache and
the embedded database live there and are deleted at the end (the server is stopped first).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's lce, also in this process (ray_start_stop)
MODELS = 4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--images", type=int, default=120, help="images of the synthetic probe")
    parser.add_argument("--size", type=int, default=112, help="image size of the synthetic probe")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="the sequential run's device")
    parser.add_argument("--devices", default="cpu,cpu", help="the local executor's and the Ray cluster's devices")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-ray", action="store_true", help="leave Ray out (not installed)")
    return parser.parse_args()


def lce(*args: str, env: dict) -> float:
    """Seconds of one `python -m lce ...` process; its output when it fails."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lce", *args], env=env, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"lce {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds


def ray_start_stop(cpus: int) -> float:
    from lce.ingest.executors import RAY_OBJECT_STORE_BYTES
    from lce.ingest.ray_cluster import import_ray, local_cluster

    ray = import_ray()
    started = time.perf_counter()
    # As lce starts it: on 127.0.0.1 only, with a token of its own.
    with local_cluster(ray, cpus, 0, object_store_memory=RAY_OBJECT_STORE_BYTES, configure_logging=False,
                       log_to_driver=False):
        ray.get(ray.remote(lambda: None).options(num_cpus=1).remote())  # one task: a worker process started
    return time.perf_counter() - started


def main() -> None:
    args = parse_args()
    home = Path(tempfile.mkdtemp(prefix="lce-bench-plan-"))
    env = {**os.environ, "LCE_HOME": str(home), "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}
    for name in ("LCE_DATABASE_URL", "LCE_DATABASE_READONLY_URL"):
        env.pop(name, None)
    try:
        probe = home / "probe"
        lce("probe", "synth", str(probe), "--images", str(args.images), "--size", str(args.size), "--seed", "0",
            env=env)
        lce("probe", "add", "bench", str(probe), env=env)
        plan = home / "plan.csv"
        plan.write_text("model,seed\n" + "".join(f"m{seed},{seed}\n" for seed in range(1, MODELS + 1)))
        common = ["ingest", "--plan", str(plan), "--probe", "bench", "--arch", args.arch, "--random-init",
                  "--layer", args.layer, "--batch-size", str(args.batch_size), "--replace"]
        executors = {"sequential": ["--device", args.device],
                     "local": ["--device", args.device, "--executor", "local", "--devices", args.devices]}
        if not args.no_ray:
            executors["ray"] = ["--device", args.device, "--executor", "ray", "--devices", args.devices]
        lce(*common, *executors["sequential"], env=env)  # warm-up: the decode cache, the server, the file cache
        seconds: dict[str, list[float]] = {name: [] for name in executors}
        for _ in range(args.repeat):
            for name, extra in executors.items():
                seconds[name].append(lce(*common, *extra, env=env))
        startup = None if args.no_ray else ray_start_stop(len(args.devices.split(",")))
        print(f"{MODELS} x {args.arch} {args.layer}, random init; probe {args.images} images of {args.size} px; "
              f"batch {args.batch_size}; {os.cpu_count()} CPU cores; devices {args.devices}; {args.repeat} "
              "repetition(s), wall clock of each `lce ingest --plan` process")
        # Paired: each repetition's ratio to its own sequential run (drift between repetitions cancels out).
        print("| executor | each repetition s | median s | median s per model | median of paired ratios |\n"
              "|---|---|---|---|---|")
        for name, values in seconds.items():
            median = statistics.median(values)
            paired = statistics.median(v / s for v, s in zip(values, seconds["sequential"]))
            print(f"| {name} | {', '.join(f'{v:.1f}' for v in values)} | {median:.1f} | {median / MODELS:.1f} | "
                  f"{paired:.2f} |")
        if startup is not None:
            overhead = (statistics.median(seconds["ray"]) - statistics.median(seconds["local"])) / MODELS
            print(f"Ray's overhead per model: {overhead:.1f} s ((Ray - local) / {MODELS}); a bare local cluster's "
                  f"start + one task + stop: {startup:.1f} s")
    finally:
        subprocess.run([sys.executable, "-m", "lce", "db", "stop"], env=env, cwd=REPO, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
