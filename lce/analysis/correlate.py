"""How an embedding relates to what the models do: correlations of components and category profiles with
transfer-task metrics (docs/method.md section 3.9).

    correlation = correlate(embedding_id=None, method="pearson")   # the newest stored embedding
    correlation.family_mean("many-shot", "pc1")                     # -0.71 on the paper's data
    write_csv(correlation, Path("correlation.csv"))

Rows, in long form (`metric,family,component,r`):
- every metric against every component (pc1.., or dim1.. for MDS and t-SNE) and every profile column
  (`all_<category>`: interpretable units, `unique_<category>`: distinct concepts), over the embedded models that
  have a value for the metric; embedded models without any task result are left out and named;
- `mean:<family>`: the mean of the family's metric r's, for every component and profile column;
- metric `pc1`.. with family `embedding`: each component against each profile column, over every embedded model
  (no task result is needed; the paper's PC1 ~ all_material 0.98 is over all 13).
r is taken with the metric's raw value, whatever its direction: for a lower-is-better metric (sne_Mean) a
negative r goes with better results. That is how the paper's figures come out (surface normals |mean r| < 0.1 on
every component; flipping the angular errors' sign would give 0.31 with PC3).
"""

from __future__ import annotations

import csv
import functools
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import text

from lce.db.connection import connect_reader
from lce.errors import LceError
from lce.importers.task_families import family_order
from lce.records import MetricInfo
from lce.resources import read_sql
from lce.vocabulary import CATEGORIES

METHODS = ("pearson", "spearman")
EMBEDDING_FAMILY = "embedding"
MEAN_PREFIX = "mean:"
MIN_MODELS = 3  # a correlation over two points is always +-1: report it as undefined
CSV_HEADER = ["metric", "family", "component", "r"]


@dataclass(frozen=True)
class CorrelationRow:
    metric: str  # a metric, `mean:<family>`, or a component (family `embedding`)
    family: str
    component: str  # pc1.. (dim1..) or a profile column: all_<category>, unique_<category>
    r: float  # NaN where undefined (fewer than 3 models, or a constant column)
    n: int  # models the r is computed over; for a family mean, the metrics averaged


@dataclass
class Correlation:
    embedding_id: int
    method: str  # pearson or spearman
    components: list[str]
    profile: list[str]
    families: list[str]  # in report order: the built-in ones first, then the user's alphabetically
    metrics: list[MetricInfo]  # by family, then name
    rows: list[CorrelationRow]  # in CSV order
    models: list[str]  # embedded models with task results: the sample of every metric's r
    left_out: list[str]  # embedded models without any task result
    embedded: list[str]  # every model of the embedding: the sample of the component x profile r's

    @property
    def columns(self) -> list[str]:
        return [*self.components, *self.profile]

    def r(self, metric: str, column: str) -> float:
        """The r of a metric (or `mean:<family>`, or a component) with a component or profile column."""
        return self._index[metric, column]

    @functools.cached_property
    def _index(self) -> dict[tuple[str, str], float]:
        return {(row.metric, row.component): row.r for row in self.rows}

    def family_mean(self, family: str, column: str) -> float:
        return self.r(MEAN_PREFIX + family, column)


def correlate(embedding_id: int | None = None, method: str = "pearson") -> Correlation:
    """Correlate a stored embedding (default: the newest) with the stored task results of its models."""
    if method not in METHODS:
        raise LceError(f"--method must be one of {', '.join(METHODS)}, not {method!r}.")
    with connect_reader(required=False).connect() as conn:
        embedding = conn.execute(text(read_sql("queries/stored_embedding")), {"embedding": embedding_id}).first()
        if embedding is None:
            if embedding_id is None:
                raise LceError("The database holds no embedding yet: make one with lce embed first.")
            known = conn.execute(text(read_sql("queries/embedding_ids"))).scalars().all()
            raise LceError(f"There is no embedding {embedding_id}; stored embeddings: "
                           f"{', '.join(map(str, known)) or 'none'}.")
        parameters = {"embedding": embedding.id}
        points = conn.execute(text(read_sql("queries/stored_embedding_points")), parameters).all()
        profile_rows = conn.execute(text(read_sql("queries/embedding_category_profile")), parameters).all()
        results = conn.execute(text(read_sql("queries/embedding_task_performance")), parameters).all()

    embedded = [point.model for point in points]
    prefix = "pc" if embedding.method == "pca" else "dim"
    components = [f"{prefix}{i + 1}" for i in range(embedding.components)]
    coordinates = {point.model: np.asarray(point.coordinates, dtype=np.float64) for point in points}
    profile, profile_values = _profile(profile_rows, embedded)

    metrics = {row.metric: MetricInfo(row.metric, row.family, row.direction, row.task, row.dataset)
               for row in results}
    values: dict[str, dict[str, float]] = defaultdict(dict)  # metric -> model -> value
    for row in results:
        values[row.metric][row.model] = row.value
    with_results = {row.model for row in results}
    models = [model for model in embedded if model in with_results]
    left_out = [model for model in embedded if model not in with_results]
    if not models:
        raise LceError(
            f"None of the {len(embedded)} models of embedding {embedding.id} has task results: import them with "
            "lce tasks import FILE (model names must match the stored ones)."
        )
    families = sorted({metric.family for metric in metrics.values()}, key=family_order)
    ordered = sorted(metrics.values(), key=lambda m: (family_order(m.family), _natural(m.name)))
    correlate_pair = _pearson if method == "pearson" else _spearman

    def column_values(model: str) -> np.ndarray:
        return np.concatenate([coordinates[model], profile_values[model]])

    columns = [*components, *profile]
    rows: list[CorrelationRow] = []
    for family in families:
        family_rows = []
        for metric in (m for m in ordered if m.family == family):
            sample = [model for model in models if model in values[metric.name]]
            y = np.array([values[metric.name][model] for model in sample])
            x = np.array([column_values(model) for model in sample]).reshape(len(sample), len(columns))
            for index, column in enumerate(columns):
                r = correlate_pair(x[:, index], y) if len(sample) >= MIN_MODELS else math.nan
                family_rows.append(CorrelationRow(metric.name, family, column, r, len(sample)))
        for column in columns:
            defined = [row.r for row in family_rows if row.component == column and not math.isnan(row.r)]
            rows.append(CorrelationRow(MEAN_PREFIX + family, family, column,
                                       float(np.mean(defined)) if defined else math.nan, len(defined)))
        rows.extend(family_rows)
    x = np.array([column_values(model) for model in embedded]).reshape(len(embedded), len(columns))
    for index, component in enumerate(components):
        for offset, column in enumerate(profile, start=len(components)):
            r = correlate_pair(x[:, index], x[:, offset]) if len(embedded) >= MIN_MODELS else math.nan
            rows.append(CorrelationRow(component, EMBEDDING_FAMILY, column, r, len(embedded)))
    return Correlation(embedding.id, method, components, profile, families, ordered, rows, models, left_out,
                       embedded)


def write_csv(correlation: Correlation, path: Path) -> None:
    """`metric,family,component,r`, one row per pair, in the Correlation's order; an undefined r is empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for row in correlation.rows:
            r = "" if math.isnan(row.r) else f"{round(row.r, 6) + 0.0:.6f}"
            writer.writerow([row.metric, row.family, row.component, r])


def summary(correlation: Correlation, strongest: int = 5) -> list[str]:
    """A few lines naming the strongest links: the family means per component, each family's strongest
    component and profile column, the strongest single metrics, and each component's closest profile column."""
    lines = [
        f"Embedding {correlation.embedding_id}: {correlation.method} r over the {len(correlation.models)} models "
        "with task results" + (f"; left out (no task results): {', '.join(correlation.left_out)}."
                               if correlation.left_out else ".")
    ]
    width = max(len(family) for family in correlation.families) + 6
    lines.append(" " * width + "".join(f"{c:>8}" for c in correlation.components) + "   strongest profile link")
    for family in correlation.families:
        count = sum(1 for m in correlation.metrics if m.family == family)
        means = [correlation.family_mean(family, c) for c in correlation.components]
        link = _strongest([(c, correlation.family_mean(family, c)) for c in correlation.profile])
        lines.append(f"{family + f' ({count})':<{width}}" + "".join(f"{_r(r):>8}" for r in means)
                     + (f"   {link[0]} {_r(link[1])}" if link else ""))
    links = []
    for family in correlation.families:
        link = _strongest([(c, correlation.family_mean(family, c)) for c in correlation.components])
        if link:
            links.append(f"{family} ~ {link[0]} {_r(link[1])}")
    lines.append("each family's strongest component (mean r): " + "; ".join(links))
    singles = [(f"{row.metric} ~ {row.component}", row.r) for row in correlation.rows
               if row.family != EMBEDDING_FAMILY and not row.metric.startswith(MEAN_PREFIX)
               and row.component in correlation.components]
    lines.append("strongest metrics: " + "; ".join(f"{name} {_r(r)}" for name, r in _ranked(singles)[:strongest]))
    closest = []
    for component in correlation.components:
        link = _strongest([(c, correlation.r(component, c)) for c in correlation.profile])
        if link:
            closest.append(f"{component} ~ {link[0]} {_r(link[1])}")
    if closest:
        lines.append(f"components and category profile ({len(correlation.embedded)} models): " + "; ".join(closest))
    lower = [m.name for m in correlation.metrics if m.direction == "lower"]
    if lower:
        lines.append(f"r is with the raw value: for {', '.join(lower)} lower is better, so a negative r goes with "
                     "better results.")
    return lines


def _profile(rows, models: list[str]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Profile columns (all_<category> then unique_<category>, categories in lce's order) and each model's values;
    a category where a model has no interpretable unit is 0."""
    categories = sorted({row.category for row in rows}, key=lambda c: CATEGORIES.index(c) if c in CATEGORIES else 99)
    columns = [f"all_{c}" for c in categories] + [f"unique_{c}" for c in categories]
    table = {model: np.zeros(len(columns)) for model in models}
    for row in rows:
        index = categories.index(row.category)
        table[row.model][index] = row.interpretable_units
        table[row.model][len(categories) + index] = row.distinct_concepts
    return columns, table


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    x = x - x.mean()
    y = y - y.mean()
    return float(np.clip(x @ y / math.sqrt((x @ x) * (y @ y)), -1.0, 1.0))


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    return _pearson(_ranks(x), _ranks(y))


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (as scipy.stats.rankdata's default)."""
    unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    return (upper - (counts - 1) / 2.0)[inverse]


def _natural(name: str) -> list:
    """ISIC_5_shot before ISIC_20_shot: digit runs compare as numbers, letters regardless of case."""
    key = [(0, float(part), "") if re.fullmatch(r"\d+(\.\d+)?", part) else (1, 0.0, part.lower())
           for part in re.split(r"(\d+(?:\.\d+)?)", name) if part]
    return [*key, (2, 0.0, name)]


def _ranked(pairs: list[tuple[str, float]]) -> list[tuple[str, float]]:
    return sorted((pair for pair in pairs if not math.isnan(pair[1])), key=lambda pair: (-abs(pair[1]), pair[0]))


def _strongest(pairs: list[tuple[str, float]]) -> tuple[str, float] | None:
    ranked = _ranked(pairs)
    return ranked[0] if ranked else None


def _r(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.2f}"
