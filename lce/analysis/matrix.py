"""The model x concept matrix that an embedding projects (docs/method.md section 3), built by SQL.

    selection = select_runs(con, models=[], exclude=["Random(R)"], layer="layer4")   # con: DuckDB (duck.py)
    matrix = concept_matrix(selection, min_iou=IOU_CUTOFF, normalize="population")  # lce.vocabulary
    matrix.values      # models x concepts, numpy; matrix.concepts, .categories, .labels name the columns

The counting and normalising are Postgres's model_concept_matrix_at (sql/model_concept_matrix.sql), which
sql/queries/embedding_matrix.sql selects and normalises in long form, with its parameters bound; the long form
is pivoted here into the matrix.

    population = population_units(selection, IOU_CUTOFF, units="beats-random")  # the units, as arrays
    matrix = units_matrix(population, selection, normalize="population")           # counted in numpy

`lce embed --units trusted|beats-random` and the embedding's replicates (lce/analysis/embed_uncertainty.py) count
the population's units in numpy instead (sql/queries/embedding_units.sql reads them), the same rule and the same
normalisation over the units the filter keeps; for the default filter it gives the SQL's matrix exactly.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import duckdb
import numpy as np
from sqlalchemy import text

from lce.db.connection import connect_reader
from lce.errors import LceError
from lce.records import RunIdentity
from lce.resources import read_sql

NORMALIZATIONS = ("population", "selection", "none")
# Which units count (issue 16): interpretable (IoU > the cut-off, as the paper), and of those the ones that beat
# the random-weights control for their concept, or are trusted (unit_label's flags, at their defaults).
UNIT_FILTERS = ("interpretable", "trusted", "beats-random")


@dataclass(frozen=True)
class Selection:
    """The runs embedded (one per model, sorted by model) and the population they are normalised against."""

    runs: tuple[RunIdentity, ...]
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
    found = con.execute(read_sql("queries/embedding_runs"))
    columns = [column[0] for column in found.description]
    candidates = [RunIdentity.of(dict(zip(columns, row))) for row in found.fetchall()]
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
    per_model: dict[str, list[RunIdentity]] = defaultdict(list)
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


def check_matrix_options(min_iou: float, normalize: str) -> None:
    if normalize not in NORMALIZATIONS:
        raise LceError(f"--normalize must be one of {', '.join(NORMALIZATIONS)}, not {normalize!r}.")
    if not 0.0 <= min_iou < 1.0:
        raise LceError(f"--min-iou must lie in [0, 1), not {min_iou}.")


def concept_matrix(selection: Selection, min_iou: float, normalize: str) -> ConceptMatrix:
    """The matrix of the selected runs at IoU > min_iou (read through the read-only login)."""
    check_matrix_options(min_iou, normalize)
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


@dataclass(frozen=True)
class RunUnits:
    """One run's units as arrays, in unit order."""

    run_id: int
    concept: np.ndarray  # (units,) index into PopulationUnits.concepts; -1: no label
    iou: np.ndarray  # (units,) float64; NaN where the run has none
    eligible: np.ndarray  # (units,) bool: the --units filter's own flag at the point estimate (all True for
    #                       interpretable): beats_random, or trusted, from unit_label
    replicate_concept: np.ndarray | None = None  # (units, replicates) the replicate's label (index, -1: none)
    replicate_iou: np.ndarray | None = None  # (units, replicates) float32, its IoU in that replicate

    @property
    def replicates(self) -> int | None:
        return None if self.replicate_concept is None else self.replicate_concept.shape[1]


@dataclass(frozen=True)
class PopulationUnits:
    """Every unit of an embedding's population (selection.population, in that order), what the matrix counts."""

    concepts: list[tuple[str, str, str]]  # (concept, category, label), sorted as the SQL matrix's columns
    runs: tuple[RunUnits, ...]
    min_iou: float
    units: str  # the --units filter


def population_units(selection: Selection, min_iou: float, units: str = "interpretable",
                     replicates: bool = False) -> PopulationUnits:
    """The population's units at IoU > min_iou with the --units filter's flag, and (replicates=True) each dissected
    unit's label and IoU in the stored replicates (table unit_replicate; imported runs have none). A selected run
    whose flag is unknown is refused: beats-random needs a control serving it, trusted an interval and a
    stability."""
    if units not in UNIT_FILTERS:
        raise LceError(f"--units must be one of {', '.join(UNIT_FILTERS)}, not {units!r}.")
    population = list(selection.population)
    with connect_reader(required=False).connect() as conn:
        rows = conn.execute(text(read_sql("queries/embedding_units")),
                            {"min_iou": float(min_iou), "population": population}).all()
        stored = conn.execute(text(read_sql("queries/embedding_unit_replicates")),
                              {"runs": population}).all() if replicates else []
        ids = sorted({i for row in stored for i in row.concept_ids if i >= 0})
        named = conn.execute(text(read_sql("queries/embedding_replicate_concepts")), {"ids": ids}).all() if ids else []
    if units != "interpretable":
        _refuse_unknown_flags(selection, rows, units)
    vocabulary = sorted({(f"{row.category[0]}_{row.label}", row.category, row.label) for row in rows
                         if row.label is not None}
                        | {(f"{row.category[0]}_{row.name}", row.category, row.name) for row in named})
    index = {(category, label): i for i, (_, category, label) in enumerate(vocabulary)}
    replicate_index = {row.id: index[(row.category, row.name)] for row in named}
    per_run: dict[int, list] = defaultdict(list)
    for row in rows:
        per_run[row.run_id].append(row)
    replicate_rows: dict[int, list] = defaultdict(list)
    for row in stored:
        replicate_rows[row.run_id].append(row)
    lookup = np.full(max(replicate_index, default=0) + 1, -1, dtype=np.int64)  # concept id -> column
    for concept_id, column in replicate_index.items():
        lookup[concept_id] = column
    flag = {"interpretable": None, "beats-random": "beats_random", "trusted": "trusted"}[units]
    runs = []
    for run_id in population:
        unit_rows = per_run.get(run_id, [])
        unit_position = {row.unit: i for i, row in enumerate(unit_rows)}
        concept = np.array([-1 if row.label is None else index[(row.category, row.label)] for row in unit_rows],
                           dtype=np.int64)
        iou = np.array([np.nan if row.iou is None else row.iou for row in unit_rows], dtype=np.float64)
        eligible = np.array([True if flag is None else bool(getattr(row, flag)) for row in unit_rows], dtype=bool)
        replicate_concept = replicate_iou = None
        if replicate_rows.get(run_id):
            count = min(len(row.concept_ids) for row in replicate_rows[run_id])
            replicate_concept = np.full((len(unit_rows), count), -1, dtype=np.int64)
            replicate_iou = np.zeros((len(unit_rows), count), dtype=np.float32)
            for row in replicate_rows[run_id]:
                position = unit_position[row.unit]
                ids_ = np.asarray(row.concept_ids[:count], dtype=np.int64)  # -1 stands for a NULL element
                replicate_concept[position] = np.where(ids_ >= 0, lookup[np.maximum(ids_, 0)], -1)
                replicate_iou[position] = np.asarray(row.ious[:count], dtype=np.float32)
        runs.append(RunUnits(run_id=run_id, concept=concept, iou=iou, eligible=eligible,
                             replicate_concept=replicate_concept, replicate_iou=replicate_iou))
    return PopulationUnits(concepts=vocabulary, runs=tuple(runs), min_iou=float(min_iou), units=units)


def _refuse_unknown_flags(selection: Selection, rows, units: str) -> None:
    column = "beats_random" if units == "beats-random" else "trusted"
    selected = {run.run_id: run for run in selection.runs}
    # A unit without a label has no beats_random; an uninterpretable unit is never trusted: neither says anything.
    unknown = sorted({row.run_id for row in rows if row.run_id in selected and row.interpretable
                      and getattr(row, column) is None})
    if not unknown:
        return
    names = ", ".join(f"{selected[run_id].model} (run {run_id})" for run_id in unknown)
    if units == "beats-random":
        raise LceError(
            f"--units beats-random needs a random-weights control serving every embedded run, and none serves "
            f"{names}: name one with `lce control set RUN` (a run of the same architecture with random weights, "
            "on the same layer, probe and variant), or leave these models out with --exclude."
        )
    raise LceError(
        f"--units trusted needs each interpretable unit's interval and stability, and {names} has units where they "
        "are unknown (imported runs carry no bootstrap): dissect the models with lce ingest, use --units "
        "beats-random, or leave these models out with --exclude."
    )


def unit_counts(population: PopulationUnits, draws: list[np.ndarray] | None = None,
                replicate: int | None = None) -> np.ndarray:
    """(population runs x concepts) int64: how many of each run's units count for each concept. draws[i]: the
    units of run i drawn (with replacement; None: each unit once). replicate r: runs with stored replicate labels
    use replicate r's label and IoU (interpretable there = its IoU > min_iou), the --units flag staying the point
    estimate's; runs without (imports) keep their labels."""
    counts = np.zeros((len(population.runs), len(population.concepts)), dtype=np.int64)
    for i, run in enumerate(population.runs):
        taken = np.arange(len(run.concept)) if draws is None else draws[i]
        if replicate is not None and run.replicate_concept is not None:
            concept = run.replicate_concept[taken, replicate]
            iou = run.replicate_iou[taken, replicate].astype(np.float64)
        else:
            concept, iou = run.concept[taken], run.iou[taken]
        with np.errstate(invalid="ignore"):  # NaN IoU: not interpretable, as in unit_label
            kept = (concept >= 0) & (iou > population.min_iou) & run.eligible[taken]
        counts[i] = np.bincount(concept[kept], minlength=len(population.concepts))
    return counts


def units_matrix(population: PopulationUnits, selection: Selection, normalize: str,
                 counts: np.ndarray | None = None) -> ConceptMatrix:
    """The matrix of the selected runs from unit counts (default: the point estimate's), normalised as the SQL
    does, over the same units: population = each count over its category's distinct concepts among the
    population's counted units (selection: the embedded runs'; none: the counts)."""
    check_matrix_options(population.min_iou, normalize)
    counts = unit_counts(population) if counts is None else counts
    row_of = {run.run_id: i for i, run in enumerate(population.runs)}
    selected = counts[[row_of[run.run_id] for run in selection.runs]]
    present = (selected if normalize == "selection" else counts).sum(axis=0) > 0
    if not selected.any():
        raise LceError(f"No unit of the selected runs counts as {population.units} at IoU > {population.min_iou}: "
                       "the matrix is empty.")
    columns = np.flatnonzero(present)
    categories = [population.concepts[i][1] for i in columns]
    values = selected[:, columns].astype(np.float64)
    if normalize != "none":
        distinct = defaultdict(int)
        for category in categories:
            distinct[category] += 1
        values = values / np.array([float(distinct[category]) for category in categories])
    return ConceptMatrix(models=selection.models, concepts=[population.concepts[i][0] for i in columns],
                         categories=categories, labels=[population.concepts[i][2] for i in columns], values=values)
