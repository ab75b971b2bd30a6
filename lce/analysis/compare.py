"""How two models relate: the concepts both have and those only one has, their interpretable units per category,
and their distance in a stored embedding.

    comparison = compare("MoCoV1(R)", "InfoMin(R)", min_iou=IOU_CUTOFF)  # lce.vocabulary
    comparison.shared, comparison.only_a, comparison.only_b      # ConceptRow lists
    comparison.embedding.distance                                 # None when no stored embedding holds both
    write_csv(comparison, sys.stdout); json.dumps(comparison.to_json())

Each model contributes one run (--layer, --probe and --variant choose it when a model has several). The two runs
must share a probe and a variant: concepts are the probe's and IoUs are comparable only within one variant
(docs/method.md section 1). The counting is SQL (sql/queries/compare_*.sql over model_concept_units_at).

Whether a concept's unit counts differ beyond unit sampling: each model's units are taken as a sample of the units
it could have had, so a concept's count is n of the run's N units; Fisher's exact test (two-sided) on the 2 x 2
table (n_a, N_a - n_a; n_b, N_b - n_b) gives p, and Benjamini-Hochberg over the concepts compared (those either
model has) gives q; `significant` is q <= 0.05. Fisher's rather than a two-proportion z-test because most counts
are a handful of units in 512-2,048, where the normal approximation is poor (and undefined for 0 against 0); it is
exact given the concept's total, hence slightly conservative. It speaks to unit sampling only: the probe's images
and the labels' own uncertainty are not in it.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TextIO

from sqlalchemy import text

from lce.db.connection import connect_reader
from lce.db.run_choice import choose_run
from lce.vocabulary import IOU_CUTOFF
from lce.errors import LceError
from lce.records import RunIdentity
from lce.resources import read_sql

FALSE_DISCOVERY_RATE = 0.05  # Benjamini-Hochberg's level over the concepts compared (issue 16)
COUNT_TEST = "Fisher's exact test, two-sided, on each concept's units out of each run's units"


@dataclass(frozen=True, kw_only=True)
class ComparedRun(RunIdentity):
    """One of the two runs compared, and what the comparison counts in it."""

    units: int
    interpretable: int  # units whose label's IoU passes the comparison's cut-off
    concepts: int  # the concepts those units name

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "model": self.model, "layer": self.layer, "probe": self.probe,
                "variant": self.variant, "source": self.source, "units": self.units,
                "interpretable": self.interpretable, "concepts": self.concepts}


@dataclass(frozen=True)
class ConceptRow:
    category: str
    label: str
    presence: str  # both | only_a | only_b
    units_a: int
    max_iou_a: float | None
    units_b: int
    max_iou_b: float | None
    p: float | None = None  # Fisher's exact test of units_a of the A run's units against units_b of B's
    q: float | None = None  # p adjusted by Benjamini-Hochberg over the concepts compared
    significant: bool = False  # q <= FALSE_DISCOVERY_RATE: the counts differ beyond unit sampling


@dataclass(frozen=True)
class CategoryRow:
    category: str
    units_a: int
    units_b: int
    concepts_a: int
    concepts_b: int
    shared: int


@dataclass(frozen=True)
class EmbeddingDistance:
    """The two runs in one stored embedding: Euclidean distance over all its components, set against the
    distances between every pair of its models (median, largest, and this pair's rank, 1 = the closest pair)."""

    embedding_id: int
    method: str
    components: int
    min_iou: float
    distance: float
    coordinates_a: list[float]
    coordinates_b: list[float]
    cluster_a: int
    cluster_b: int
    models: int
    median_distance: float
    max_distance: float
    rank: int
    pairs: int

    @property
    def same_cluster(self) -> bool:
        return self.cluster_a == self.cluster_b


@dataclass
class Comparison:
    a: ComparedRun
    b: ComparedRun
    min_iou: float | None  # None: each run's own cut-off
    concepts: list[ConceptRow]
    categories: list[CategoryRow]
    embedding: EmbeddingDistance | None
    embedding_note: str | None = None  # why there is no distance

    def _with(self, presence: str) -> list[ConceptRow]:
        return [row for row in self.concepts if row.presence == presence]

    @property
    def shared(self) -> list[ConceptRow]:
        return self._with("both")

    @property
    def only_a(self) -> list[ConceptRow]:
        return self._with("only_a")

    @property
    def only_b(self) -> list[ConceptRow]:
        return self._with("only_b")

    @property
    def significant(self) -> list[ConceptRow]:
        """The concepts whose unit counts differ beyond what unit sampling explains."""
        return [row for row in self.concepts if row.significant]

    @property
    def jaccard(self) -> float | None:
        """Shared concepts over the concepts of either (None when neither has one)."""
        return len(self.shared) / len(self.concepts) if self.concepts else None

    def to_json(self) -> dict:
        return {
            "min_iou": self.min_iou,
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "shared": len(self.shared),
            "only_a": len(self.only_a),
            "only_b": len(self.only_b),
            "jaccard": self.jaccard,
            "significant": len(self.significant),
            "count_test": COUNT_TEST,
            "false_discovery_rate": FALSE_DISCOVERY_RATE,
            "embedding": None if self.embedding is None else {
                **asdict(self.embedding), "same_cluster": self.embedding.same_cluster},
            "embedding_note": self.embedding_note,
            "categories": [asdict(row) for row in self.categories],
            "concepts": [asdict(row) for row in self.concepts],
        }


CSV_COLUMNS = ("model_a", "model_b", "category", "label", "presence", "units_a", "max_iou_a", "units_b", "max_iou_b",
               "p", "q", "significant")


def write_csv(comparison: Comparison, handle: TextIO) -> None:
    """One row per concept either model has (the per-category units are its sums by category; the distance is in
    the JSON output)."""
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in comparison.concepts:
        writer.writerow([comparison.a.model, comparison.b.model, row.category, row.label, row.presence,
                         row.units_a, _number(row.max_iou_a), row.units_b, _number(row.max_iou_b),
                         _probability(row.p), _probability(row.q), "true" if row.significant else "false"])


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _probability(value: float | None) -> str:
    # %g keeps the small p-values readable (6 decimals would show many as 0.000000).
    return "" if value is None else f"{value:.6g}"


def count_difference_p(units_a: int, total_a: int, units_b: int, total_b: int) -> float:
    """Two-sided p of Fisher's exact test: is units_a of total_a as likely a share as units_b of total_b?"""
    from scipy.stats import fisher_exact

    if not (0 <= units_a <= total_a and 0 <= units_b <= total_b):
        raise ValueError(f"counts out of range: {units_a} of {total_a}, {units_b} of {total_b}")
    table = [[units_a, total_a - units_a], [units_b, total_b - units_b]]
    return min(1.0, float(fisher_exact(table, alternative="two-sided").pvalue))


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg q-values (adjusted p-values), in the order given: the i-th smallest p becomes
    min over j >= i of m * p_(j) / j, capped at 1; a test is significant at level alpha when its q <= alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    q_values = [1.0] * m
    running = 1.0
    for rank in range(m, 0, -1):  # from the largest p down, so each q is the minimum over the ranks above it
        index = order[rank - 1]
        running = min(running, m * p_values[index] / rank)
        q_values[index] = running
    return q_values


def with_count_tests(rows: list[ConceptRow], total_a: int, total_b: int,
                     rate: float = FALSE_DISCOVERY_RATE) -> list[ConceptRow]:
    """The rows with p, q and significant filled in, the false discovery rate held at `rate` over these rows."""
    p_values = [count_difference_p(row.units_a, total_a, row.units_b, total_b) for row in rows]
    return [replace(row, p=p, q=q, significant=q <= rate)
            for row, p, q in zip(rows, p_values, benjamini_hochberg(p_values))]


def compare(model_a: str, model_b: str, min_iou: float | None = IOU_CUTOFF, layer: str | None = None,
            probe: str | None = None, variant: str | None = None, embedding_id: int | None = None) -> Comparison:
    """Compare the runs of two models at IoU > min_iou (None: each run's own cut-off); the distance comes from
    embedding `embedding_id`, else from the newest stored embedding that holds both runs."""
    if min_iou is not None and not 0.0 <= min_iou < 1.0:
        raise LceError(f"--min-iou must lie in [0, 1), not {min_iou}.")
    with connect_reader(required=False).connect() as conn:
        known = conn.execute(text(read_sql("queries/model_names"))).scalars().all()
        runs = [choose_run(conn, name, known, layer, probe, variant) for name in (model_a, model_b)]
        if runs[0]["run_id"] == runs[1]["run_id"]:
            raise LceError(f"Both names choose the same run ({runs[0]['run_id']}); compare two different models.")
        for field in ("probe", "variant"):
            if runs[0][field] != runs[1][field]:
                raise LceError(
                    f"{model_a!r} (run {runs[0]['run_id']}) and {model_b!r} (run {runs[1]['run_id']}) were dissected "
                    f"on different {field}s ({runs[0][field]} and {runs[1][field]}); concepts and IoUs compare only "
                    f"within one probe and variant. Choose with --{field}."
                )
        params = {"a": runs[0]["run_id"], "b": runs[1]["run_id"], "min_iou": min_iou}
        concepts = [ConceptRow(**row) for row in
                    conn.execute(text(read_sql("queries/compare_concepts")), params).mappings()]
        categories = [CategoryRow(**row) for row in
                      conn.execute(text(read_sql("queries/compare_categories")), params).mappings()]
        embedding, note = _distance(conn, params["a"], params["b"], embedding_id)
    concepts = with_count_tests(concepts, runs[0]["unit_count"], runs[1]["unit_count"])
    compared = [
        ComparedRun.of(run, units=run["unit_count"],
                       interpretable=sum(getattr(row, f"units_{side}") for row in categories),
                       concepts=sum(getattr(row, f"concepts_{side}") for row in categories))
        for run, side in zip(runs, "ab")
    ]
    return Comparison(a=compared[0], b=compared[1], min_iou=min_iou, concepts=concepts, categories=categories,
                      embedding=embedding, embedding_note=note)


def _distance(conn, run_a: int, run_b: int, embedding_id: int | None) -> tuple[EmbeddingDistance | None, str | None]:
    params = {"a": run_a, "b": run_b, "embedding": embedding_id}
    row = conn.execute(text(read_sql("queries/embedding_pair")), params).mappings().first()
    if row is None:
        stored = conn.execute(text(read_sql("queries/embedding_ids"))).scalars().all()
        if embedding_id is None:
            return None, (f"No stored embedding holds both runs ({len(stored)} embedding(s) stored); `lce embed` "
                          "with both models makes one.")
        if embedding_id not in stored:
            raise LceError(f"No embedding with id {embedding_id} is stored (lce sql \"SELECT id, created_at FROM "
                           "embedding\" lists them).")
        held = conn.execute(text(read_sql("queries/embedding_held_runs")), params).scalars().all()
        missing = [str(run) for run in (run_a, run_b) if run not in held]
        raise LceError(f"Embedding {embedding_id} does not hold run(s) {', '.join(missing)}; leave --embedding out "
                       "to use the newest embedding that holds both.")
    points = [list(p.coordinates) for p in
              conn.execute(text(read_sql("queries/stored_embedding_points")), {"embedding": row["embedding_id"]})]
    distances = sorted(math.dist(p, q) for i, p in enumerate(points) for q in points[i + 1:])
    distance = math.dist(row["coordinates_a"], row["coordinates_b"])
    return EmbeddingDistance(
        embedding_id=row["embedding_id"], method=row["method"], components=row["components"],
        min_iou=row["min_iou"], distance=distance, coordinates_a=list(row["coordinates_a"]),
        coordinates_b=list(row["coordinates_b"]), cluster_a=row["cluster_a"], cluster_b=row["cluster_b"],
        models=len(points), median_distance=_median(distances), max_distance=distances[-1],
        rank=1 + sum(1 for d in distances if d < distance - 1e-12), pairs=len(distances),
    ), None


def _median(values: list[float]) -> float:
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2
