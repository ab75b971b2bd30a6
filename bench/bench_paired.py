"""The engine of this checkout against another commit's, paired: bench_ingest.py run alternately from each tree.

    .venv/bin/python bench/bench_paired.py --base main                 # 3 pairs, resnet18 layer4, 200 images
    .venv/bin/python bench/bench_paired.py --base 7871035 --pairs 5 -- --images 500 --repeat 1

A change to the engine must not slow the CPU path: each pair runs bench_ingest.py (with the arguments after `--`,
default `--images 200 --repeat 3`) once from a detached worktree of `--base` and once from this checkout, in
alternating order, each in its own process with that tree's lce on PYTHONPATH. The figure compared is each run's
"paired" ratio (median over its repetitions of the phase's time over the same repetition's forward pass), so that
drift of the host between runs cancels out; the table gives both trees' ratios per pair, their change in percent,
and the median change. The worktree is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHASES = ("two passes", "activation cache")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the commit to compare against (default: main)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("bench", nargs="*", help="bench_ingest.py's arguments (after --)")
    return parser.parse_args()


def paired_ratios(tree: Path, arguments: list[str]) -> dict[str, float]:
    """bench_ingest.py from `tree`: its "paired" ratio of each dissection phase."""
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, str(tree / "bench" / "bench_ingest.py"), *arguments], cwd=tree,
                          env=environment, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"bench_ingest.py failed in {tree}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    ratios = {}
    for phase in PHASES:
        # "two passes    27.54   25.10   18  2.26x   2.15x ...": the second ratio is the paired one.
        match = re.search(rf"^{phase}\s+[\d.]+\s+[\d.]+\s+[\d,]+\s+[\d.]+x\s+([\d.]+)x", done.stdout, re.MULTILINE)
        if match is None:
            raise SystemExit(f"no {phase!r} row in bench_ingest.py's output from {tree}:\n{done.stdout[-2000:]}")
        ratios[phase] = float(match.group(1))
    return ratios


def main() -> int:
    args = parse_args()
    arguments = args.bench or ["--images", "200", "--repeat", "3"]
    base = Path(tempfile.mkdtemp(prefix="lce-bench-base-")) / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(base), args.base], check=True)
    try:
        print(f"bench_ingest.py {' '.join(arguments)}: {args.base} (base) against this checkout, {args.pairs} pairs, "
              f"alternating which runs first; load average {os.getloadavg()[0]:.2f}", flush=True)
        changes: dict[str, list[float]] = {phase: [] for phase in PHASES}
        for pair in range(args.pairs):
            order = [("base", base), ("this", REPO)]
            if pair % 2:
                order.reverse()
            ratios = {name: paired_ratios(tree, arguments) for name, tree in order}
            cells = []
            for phase in PHASES:
                before, after = ratios["base"][phase], ratios["this"][phase]
                changes[phase].append(100 * (after / before - 1))
                cells.append(f"{phase} {before:.2f}x -> {after:.2f}x ({changes[phase][-1]:+.1f}%)")
            print(f"pair {pair + 1}: " + "; ".join(cells), flush=True)
        print("median change: " + "; ".join(f"{phase} {statistics.median(values):+.1f}%"
                                            for phase, values in changes.items()))
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
