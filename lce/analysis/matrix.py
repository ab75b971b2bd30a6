"""The model x concept matrix that an embedding projects (method.md section 3), built by SQL.

    selection = select_runs(con, models=[], exclude=["Random(R)"], layer="layer4")   # con: DuckDB (duck.py)
    matrix = concept_matrix(selection, min_iou=IOU_CUTOFF, normalize="population")  # lce.dissect.variants
    matrix.values      # models x concepts, numpy; matrix.concepts, .categories, .labels name the columns

The counting and normalising are Postgres's model_concept_matrix_at (sql/model_concept_matrix.sql), which
sql/queries/embedding_matrix.sql selects and normalises in long form, with its parameters bound; the long form
is pivoted here into the matrix.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import duckdb
import numpy as np
from sqlalchemy import text

from lce.db.connection import connect_reader
from lce.errors import LceError
from lce.resources import read_sql

NORMALIZATIONS = ("population", "selection", "none")


@dataclass(frozen=True)
class RunChoice:
    run_id: int
    model: str
    layer: str
    probe: str
    variant: str
    source: str


@dataclass(frozen=True)
class Selection:
    """The runs embedded (one per model, sorted by model) and the population they are normalised against."""

    runs: tuple[RunChoice, ...]
    population: tuple[int, ...]

    @property
    def layer(self) -> str:
        return self.runs[0].layer

    @property
    def probe(self) -> str:
        return self.runs[0].probe

    @property
    def variant(self) -> str:
        return self.runs[0].variant

    @property
    def models(self) -> list[str]:
        return [run.model for run in self.runs]


@dataclass(frozen=True)
class ConceptMatrix:
    """Rows are models, columns concepts; a column is named by the three parallel lists."""

    models: list[str]
    concepts: list[str]  # the column's name, the views' `concept` ('o_food'), in sorted order
    categories: list[str]  # the column's category ('object')
    labels: list[str]  # the column's label ('food')
    values: np.ndarray  # len(models) x len(concepts)


def select_runs(
    con: duckdb.DuckDBPyConnection,
    models: list[str] | None = None,
    exclude: list[str] | None = None,
    layer: str | None = None,
    probe: str | None = None,
    variant: str | None = None,
) -> Selection:
    """One run per model, all on the same probe, layer and variant; a clear error where that is ambiguous."""
    candidates = [RunChoice(*row[:6]) for row in con.execute(read_sql("queries/embedding_runs")).fetchall()]
    if not candidates:
        raise LceError("The database holds no runs yet: import results (lce import ...) first.")
    known = {run.model for run in candidates}
    for option, names in (("--model", models or []), ("--exclude", exclude or [])):
        unknown = [name for name in names if name not in known]
        if unknown:
            raise LceError(
                f"{option} names model(s) the database does not have: {', '.join(unknown)}. "
                f"Known models: {', '.join(sorted(known))}."
            )
    chosen = [
        run for run in candidates
        if (not models or run.model in models)
        and run.model not in (exclude or [])
        and (layer is None or run.layer == layer)
        and (probe is None or run.probe == probe)
        and (variant is None or run.variant == variant)
    ]
    if not chosen:
        raise LceError("No run matches the options given (--model, --exclude, --layer, --probe, --variant).")
    groups = sorted({(run.layer, run.probe, run.variant) for run in chosen})
    if len(groups) > 1:
        shown = "; ".join(f"layer {g[0]}, probe {g[1]}, variant {g[2]}" for g in groups)
        raise LceError(
            f"The runs selected span {len(groups)} layer/probe/variant combinations ({shown}); an embedding compares "
            "models on one of them. Choose with --layer, --probe and --variant."
        )
    per_model: dict[str, list[RunChoice]] = defaultdict(list)
    for run in chosen:
        per_model[run.model].append(run)
    for model, runs in per_model.items():
        if len(runs) > 1:
            raise LceError(
                f"Model {model!r} has {len(runs)} runs that match (runs {', '.join(str(r.run_id) for r in runs)}, "
                f"sources {', '.join(r.source for r in runs)}); keep one with --exclude or delete the other."
            )
    if len(per_model) < 2:
        raise LceError(f"An embedding needs at least 2 models; the options select {len(per_model)}.")
    layer_, probe_, variant_ = groups[0]
    population = tuple(
        run.run_id for run in candidates if (run.layer, run.probe, run.variant) == (layer_, probe_, variant_)
    )
    return Selection(runs=tuple(runs[0] for _, runs in sorted(per_model.items())), population=population)


def concept_matrix(selection: Selection, min_iou: float, normalize: str) -> ConceptMatrix:
    """The matrix of the selected runs at IoU > min_iou (read through the read-only login)."""
    if normalize not in NORMALIZATIONS:
        raise LceError(f"--normalize must be one of {', '.join(NORMALIZATIONS)}, not {normalize!r}.")
    if not 0.0 <= min_iou < 1.0:
        raise LceError(f"--min-iou must lie in [0, 1), not {min_iou}.")
    parameters = {
        "min_iou": float(min_iou),
        "population": list(selection.population),
        "selected": [run.run_id for run in selection.runs],
        "normalize": normalize,
    }
    with connect_reader(required=False).connect() as conn:
        rows = conn.execute(text(read_sql("queries/embedding_matrix")), parameters).all()
    if not any(row.model is not None for row in rows):
        raise LceError(f"No unit of the selected runs is interpretable at IoU > {min_iou}: the matrix is empty.")
    # Columns sorted by name, the views' concept: category initial, then label.
    columns = sorted({(row.concept, row.category, row.label) for row in rows})
    column_of = {(category, label): index for index, (_, category, label) in enumerate(columns)}
    row_of = {model: index for index, model in enumerate(selection.models)}
    values = np.zeros((len(selection.models), len(columns)), dtype=np.float64)
    for row in rows:
        if row.model in row_of and row.value is not None:  # a row without a model only names a column
            values[row_of[row.model], column_of[(row.category, row.label)]] += row.value
    return ConceptMatrix(models=selection.models, concepts=[concept for concept, _, _ in columns],
                         categories=[category for _, category, _ in columns],
                         labels=[label for _, _, label in columns], values=values)
