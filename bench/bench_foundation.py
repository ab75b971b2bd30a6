"""Foundation benchmarks of the `lce` CLI: import, embed and sql, each timed as a real subprocess.

    .venv/bin/python bench/bench_foundation.py [--data FILE] [--repeat 5]     (from the repository root)

Every figure runs the installed `lce` next to this interpreter (process start included), against a fresh
embedded PostgreSQL under a temporary LCE_HOME (LCE_DATABASE_URL is removed), which is stopped and deleted at the
end. Each figure is reported next to a baseline measured in the same run, interleaved with it repetition by
repetition (machines are noisy): median and min seconds over --repeat repetitions, and the ratio of medians.
There is no pass/fail; the targets are printed for reading.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

LCE = str(Path(sys.executable).with_name("lce"))
MATRIX = "SELECT model, concept, value FROM model_concept_matrix"


class Bench:
    """A fresh LCE_HOME, the environment for `lce` subprocesses in it, and the rows of the result table."""

    def __init__(self, data: Path, repeat: int) -> None:
        self.data, self.repeat = data, repeat
        self.home = Path(tempfile.mkdtemp(prefix="lce-bench-"))
        self.env = {k: v for k, v in os.environ.items() if k != "LCE_DATABASE_URL"} | {"LCE_HOME": str(self.home)}
        self.rows: list[tuple] = []

    def lce(self, *args: str) -> str:
        """Run `lce ARGS` to completion; its stdout (a failure stops the benchmark with lce's stderr)."""
        done = subprocess.run([LCE, *args], env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"lce {' '.join(args)} failed ({done.returncode}):\n{done.stderr or done.stdout}")
        return done.stdout

    def command(self, *argv: str) -> Callable[[], None]:
        """A callable running `lce ARGV` in one process, or this interpreter with ARGV[1:] for ("python", ...)."""
        if argv[0] == "python":
            return lambda: subprocess.run([sys.executable, *argv[1:]], env=self.env, check=True)
        return lambda: self.lce(*argv)

    def sample(self, cases: dict[str, Callable[[], None]]) -> dict[str, list[float]]:
        """Seconds of each case, `repeat` times, round-robin so that drift hits every case alike."""
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(self.repeat):
            for name, case in cases.items():
                started = time.perf_counter()
                case()
                times[name].append(time.perf_counter() - started)
        return times

    def row(self, figure: str, times: list[float], baseline: str, base: list[float], target: str = "-") -> None:
        median, base_median = statistics.median(times), statistics.median(base)
        self.rows.append((figure, median, min(times), baseline, base_median, median / base_median, target))

    def close(self) -> None:
        subprocess.run([LCE, "db", "stop"], env=self.env, capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)


def bench_import(bench: Bench) -> None:
    """Figure 1: `lce import dissect-csv --replace` of the 40,960-row CSV vs psycopg COPY of the raw file."""
    args = ("import", "dissect-csv", str(bench.data), "--layer", "layer4", "--replace")
    bench.lce(*args)  # warm-up, not counted: starts and migrates the server, first write
    url = bench.lce("db", "url", "--write").strip()

    def copy_floor() -> None:
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE scratch (idx int, name text, unit int, iou float8, label text, "
                        "category text)")
            with cur.copy("COPY scratch FROM STDIN (FORMAT csv, HEADER true)") as copy, bench.data.open("rb") as f:
                while chunk := f.read(1 << 20):
                    copy.write(chunk)
            cur.execute("SELECT count(*) FROM scratch")
            assert cur.fetchone()[0] == 40_960

    times = bench.sample({"copy": copy_floor, "import": bench.command(*args)})
    bench.row("import dissect-csv (40,960 rows)", times["import"], "psycopg COPY", times["copy"], "<= 5 s")


def bench_embed(bench: Bench) -> None:
    """Figure 2: `lce embed` over the 20 models, without and with the plot, vs interpreter and CLI start."""
    out, png = str(bench.home / "lce.csv"), str(bench.home / "lce.png")
    times = bench.sample({
        "python": bench.command("python", "-c", "pass"),
        "help": bench.command("--help"),
        "embed": bench.command("embed", "--out", out),
        "plot": bench.command("embed", "--out", out, "--plot", png),
    })
    for figure, name in (("embed --out", "embed"), ("embed --out --plot", "plot")):
        bench.row(figure, times[name], "lce --help", times["help"], "<= 3 s")
        bench.row(figure, times[name], "python -c pass", times["python"], "<= 3 s")
    bench.row("lce --help", times["help"], "python -c pass", times["python"])


def bench_sql(bench: Bench) -> None:
    """Figure 3: `lce sql` of the model x concept matrix to CSV, in DuckDB and in Postgres, vs `SELECT 1`."""
    out = str(bench.home / "m.csv")
    times = bench.sample({
        "one": bench.command("sql", "SELECT 1"),
        "one-pg": bench.command("sql", "SELECT 1", "--engine", "postgres"),
        "duckdb": bench.command("sql", MATRIX, "--format", "csv", "--out", out),
        "postgres": bench.command("sql", MATRIX, "--format", "csv", "--out", out, "--engine", "postgres"),
    })
    bench.row("sql matrix -> csv (duckdb)", times["duckdb"], "sql SELECT 1", times["one"])
    bench.row("sql matrix -> csv (postgres)", times["postgres"], "sql SELECT 1 (postgres)", times["one-pg"])


def print_table(rows: list[tuple]) -> None:
    header = ("figure", "median s", "min s", "baseline", "base med s", "ratio", "target")
    lines = [header] + [(f, f"{m:.3f}", f"{lo:.3f}", b, f"{bm:.3f}", f"{r:.2f}x", t) for f, m, lo, b, bm, r, t in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for number, line in enumerate(lines):
        print("  ".join(cell.ljust(w) if i in (0, 3, 6) else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(line, widths))).rstrip())
        if number == 0:
            print("  ".join("-" * w for w in widths))


def published_units() -> Path:
    """The LCE paper's per-unit CSV under LCE_PUBLISHED_DATA, or a stop with the message saying where to get it."""
    from lce.published import AUTHORS_UNITS, PublishedDataMissing, locate

    try:
        return locate(AUTHORS_UNITS)
    except PublishedDataMissing as missing:
        raise SystemExit(f"error: {missing} Or give a Dissect CSV with --data.") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        help="the Dissect CSV (default: the LCE paper's, under LCE_PUBLISHED_DATA: lce/published.py)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions of every figure (default: 5)")
    options = parser.parse_args()
    if options.data is None:
        options.data = published_units()
    if not options.data.is_file():
        raise SystemExit(f"no data file at {options.data} (give it with --data)")
    bench = Bench(options.data.resolve(), options.repeat)
    print(f"lce foundation benchmarks: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{options.repeat} repetitions, load average {os.getloadavg()[0]:.2f}, LCE_HOME {bench.home}", flush=True)
    try:
        for figure in (bench_import, bench_embed, bench_sql):
            started = time.perf_counter()
            figure(bench)
            print(f"  {figure.__name__} done in {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        bench.close()
    print(f"load average at the end: {os.getloadavg()[0]:.2f}\n")
    print_table(bench.rows)


if __name__ == "__main__":
    main()
