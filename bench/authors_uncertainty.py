"""Is the paper's three-family embedding robust? Its uncertainty and its beats-random rebuild on the authors' data.

    .venv/bin/python bench/authors_uncertainty.py                   # 200 replicates, seed 0: ~35 s on 2 cores
    .venv/bin/python bench/authors_uncertainty.py --replicates 500 --seed 1

Imports the authors' per-unit CSV (--data; default: the one under LCE_PUBLISHED_DATA, see lce/published.py;
imported runs: no stored replicate labels, so a replicate resamples each model's units with their labels fixed),
embeds the paper's 13 models (docs/method.md section 3) with 200 replicates (lce.analysis.embed_uncertainty), and
prints, as docs/trust.md's "Uncertainty on the authors' data" records:

1. each model's 95% ellipse (PC1 x PC2) and sds against the distances between the three families;
2. the co-assignment share within and across the families;
3. with the authors' random-weights ResNet-50, Random(R), named the control (lce.db.controls.set_control), each
   model's interpretable against beats-random units;
4. the LCE rebuilt from the beats-random units (--units beats-random), with its own replicates.

LCE_HOME is a fresh temporary directory (LCE_DATABASE_URL removed), deleted at the end with its server.
"""

from __future__ import annotations

import argparse
import sys
from itertools import combinations
from pathlib import Path

import numpy as np

from scratch_home import scratch_home  # bench/, beside this script

EXCLUDED = ("SimCLRV1(R)", "SimCLRV2(R)", "Random(R)", "SwAV200(R)", "SwAV400(R)", "SwAV200bs256(R)",
            "SwAV400_2x244(R)")
# docs/method.md section 3: the paper's three categories of the 13 models.
FAMILIES = {
    "A": ("BYOL", "DeepClusterV2", "SeLaV2", "SwAV", "Supervised"),
    "B": ("InsDis", "MoCoV1", "PIRL"),
    "C": ("InfoMin", "MoCoV2", "PCLV1", "PCLV2", "SeLaV1"),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="the authors' per-unit CSV (default: under LCE_PUBLISHED_DATA)")
    args = parser.parse_args()
    if args.data is None:
        from lce.published import AUTHORS_UNITS, PublishedDataMissing, locate

        try:
            args.data = locate(AUTHORS_UNITS)
        except PublishedDataMissing as missing:
            raise SystemExit(f"error: {missing} Or give the CSV with --data.") from None
    return args


def family_of(model: str) -> str:
    return next(name for name, members in FAMILIES.items() if model.removesuffix("(R)") in members)


def semi_axes(covariance: np.ndarray) -> tuple[float, float]:
    """The 95% ellipse's semi-axes (major, minor) of a 2 x 2 covariance."""
    from lce.analysis.embed_uncertainty import ELLIPSE_CHI2_95

    values = np.clip(np.linalg.eigvalsh(covariance), 0.0, None)[::-1]
    return tuple(float(np.sqrt(ELLIPSE_CHI2_95 * v)) for v in values)


def describe(result, title: str) -> None:
    """Sections 1 and 2 for one embedding with replicates."""
    models = result.matrix.models
    families = [family_of(m) for m in models]
    coords = result.coordinates
    print(f"\n## {title}: {len(models)} models x {len(result.matrix.concepts)} concepts, explained variance "
          + ", ".join(f"{v:.3f}" for v in result.explained_variance))
    found = {}
    for model, cluster in zip(models, result.clusters.tolist()):
        found.setdefault(cluster, []).append(model.removesuffix("(R)"))
    same = sorted(map(sorted, found.values())) == sorted(map(sorted, FAMILIES.values()))
    print("KMeans clusters: " + "; ".join(", ".join(c) for c in found.values())
          + ("  (the paper's three families)" if same else "  (NOT the paper's three families)"))

    print("\n| model | family | PC1 | PC2 | PC3 | sd PC1 | sd PC2 | sd PC3 | 95% ellipse PC1xPC2 semi-axes |"
          " nearest other family (PC1xPC2) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    sd = result.sd
    majors = []
    for i, model in enumerate(models):
        major, minor = semi_axes(result.covariance[i][:2, :2])
        majors.append(major)
        others = [j for j in range(len(models)) if families[j] != families[i]]
        nearest = min(others, key=lambda j: np.linalg.norm(coords[j, :2] - coords[i, :2]))
        distance = float(np.linalg.norm(coords[nearest, :2] - coords[i, :2]))
        print(f"| {model} | {families[i]} | " + " | ".join(f"{v:.2f}" for v in coords[i]) + " | "
              + " | ".join(f"{v:.2f}" for v in sd[i]) + f" | {major:.2f} x {minor:.2f} | "
              f"{models[nearest].removesuffix('(R)')} at {distance:.2f} |")
    centroids = {f: coords[[i for i, g in enumerate(families) if g == f], :2].mean(axis=0) for f in FAMILIES}
    print("\nfamily centroids (PC1, PC2): " + "; ".join(f"{f} ({c[0]:.2f}, {c[1]:.2f})" for f, c in centroids.items()))
    print("distances between family centroids (PC1xPC2): " + "; ".join(
        f"{a}-{b} {np.linalg.norm(centroids[a] - centroids[b]):.2f}" for a, b in combinations(FAMILIES, 2)))
    print(f"ellipse semi-major axis: median {np.median(majors):.2f}, max {max(majors):.2f} "
          f"({models[int(np.argmax(majors))]})")

    shares = result.coassignment
    print("\nco-assignment (share of replicates in one KMeans cluster), mean [min, max] over pairs of models:")
    for a, b in [(f, f) for f in FAMILIES] + list(combinations(FAMILIES, 2)):
        pairs = [shares[i, j] for i, j in combinations(range(len(models)), 2)
                 if sorted((families[i], families[j])) == [a, b]]
        if pairs:
            print(f"  {a}-{b}: {np.mean(pairs):.2f} [{min(pairs):.2f}, {max(pairs):.2f}] ({len(pairs)} pairs)")
    within = [shares[i, j] for i, j in combinations(range(len(models)), 2) if families[i] == families[j]]
    across = [shares[i, j] for i, j in combinations(range(len(models)), 2) if families[i] != families[j]]
    print(f"  all within: {np.mean(within):.2f}; all across: {np.mean(across):.2f}")
    for i, model in enumerate(models):
        own = [shares[i, j] for j in range(len(models)) if j != i and families[j] == families[i]]
        print(f"  {model}: with its family {np.mean(own):.2f}, with the others "
              f"{np.mean([shares[i, j] for j in range(len(models)) if families[j] != families[i]]):.2f}")


def run(args: argparse.Namespace) -> None:
    from sqlalchemy import text

    from lce.analysis.embed import EmbedSettings, embed
    from lce.db.connection import connect
    from lce.db.controls import set_control
    from lce.db.runs import write_runs
    from lce.importers.dissect_csv import read_dissect_csv
    from lce.vocabulary import IOU_CUTOFF

    engine = connect()
    write_runs(engine, read_dissect_csv(args.data, layer="layer4", probe="places365-upp", architecture=None))
    print(f"# Uncertainty of the LCE on the authors' data ({args.replicates} replicates, seed {args.seed})")
    point = embed(EmbedSettings(exclude=EXCLUDED, replicates=args.replicates, seed=args.seed), store=False)
    describe(point, "Interpretable units (the paper's LCE)")

    with engine.begin() as conn:
        control = conn.execute(text("SELECT r.id FROM run r JOIN model m ON m.id = r.model_id"
                                    " WHERE m.name = 'Random(R)'")).scalar_one()
        set_control(conn, control)
    with engine.connect() as conn:
        counts = conn.execute(text(
            "SELECT model, count(*) FILTER (WHERE interpretable) AS interpretable,"
            " count(*) FILTER (WHERE interpretable AND beats_random) AS beats_random,"
            " bool_or(beats_random IS NOT NULL) AS served"
            f" FROM unit_label_at({IOU_CUTOFF}) GROUP BY model ORDER BY model")).all()
    print("\n## Interpretable against beats-random units (Random(R) the control)")
    print("\n| model | interpretable | beats random | share |\n|---|---|---|---|")
    for row in counts:
        share = f"{row.beats_random / row.interpretable:.0%}" if row.interpretable and row.served else "-"
        print(f"| {row.model} | {row.interpretable} | {row.beats_random if row.served else '- (the control)'} "
              f"| {share} |")
    embedded = [row for row in counts if row.model not in EXCLUDED]
    print(f"13 embedded models: {sum(r.interpretable for r in embedded)} interpretable units, "
          f"{sum(r.beats_random for r in embedded)} beat random")

    rebuilt = embed(EmbedSettings(exclude=EXCLUDED, units="beats-random", replicates=args.replicates,
                                  seed=args.seed), store=False)
    describe(rebuilt, "The LCE rebuilt from beats-random units")
    a, b = point.coordinates, rebuilt.coordinates
    print("\nrebuilt vs paper's scores, Pearson r per component: " + ", ".join(
        f"PC{k + 1} {np.corrcoef(a[:, k], b[:, k])[0, 1]:+.3f}" for k in range(a.shape[1])))


def main() -> None:
    args = parse_args()
    with scratch_home("lce-authors-uncertainty-"):
        run(args)


if __name__ == "__main__":
    sys.exit(main())
