"""The Learned Concepts Embedding: project the model x concept matrix, cluster the models, store the result.

    result = embed(EmbedSettings(exclude=("Random(R)",)))
    result.coordinates, result.clusters, result.explained_variance
    write_csv(result, Path("lce.csv"))
    embed(EmbedSettings(units="beats-random", replicates=200)).covariance   # per model, over 200 replicates
    within, across = result.coassignment_means()   # with replicates: how often pairs share a cluster

Defaults reproduce Mustapha, Khreich and Masri (docs/method.md section 3): population normalisation, PCA with 3
components (each oriented so that its largest-magnitude loading is positive), KMeans with k = 3. The clusters are
found in the matrix itself, as the authors did (their elbow inertias, 104.4 at k = 1, are the matrix's), so they
do not depend on the projection chosen for display.

`units` picks the units counted (lce.analysis.matrix.UNIT_FILTERS); `replicates` adds the embedding's
uncertainty (lce/analysis/embed_uncertainty.py): a covariance per model and a co-assignment share per pair.
"""

from __future__ import annotations

import csv
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lce.analysis.matrix import (
    UNIT_FILTERS, ConceptMatrix, Selection, concept_matrix, population_units, select_runs, units_matrix,
)
from lce.analysis.duck import duckdb_connection
from lce.analysis.embed_uncertainty import EmbeddingUncertainty
from lce.analysis.projection import ModelClusters, Projection
from lce.db.connection import connect
from lce.db.embeddings import EmbeddingPoint, EmbeddingRecord, write_embedding
from lce.vocabulary import IOU_CUTOFF
from lce.errors import LceError

METHODS = ("pca", "mds", "tsne")


@dataclass(frozen=True)
class EmbedSettings:
    models: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    layer: str | None = None
    probe: str | None = None
    variant: str | None = None
    min_iou: float = IOU_CUTOFF  # the IoU cut-off of every published tool
    normalize: str = "population"
    method: str = "pca"
    components: int = 3
    clusters: int = 3
    seed: int = 0
    units: str = "interpretable"  # UNIT_FILTERS
    replicates: int | None = None  # --uncertainty: how many replicates (None: no uncertainty)


@dataclass
class EmbeddingResult:
    settings: EmbedSettings
    selection: Selection
    matrix: ConceptMatrix
    coordinates: np.ndarray
    clusters: np.ndarray
    inertia: list[float]
    explained_variance: list[float] | None
    loadings: np.ndarray | None = None
    embedding_id: int | None = None
    covariance: np.ndarray | None = None  # models x components x components, over the replicates (--uncertainty)
    coassignment: np.ndarray | None = None  # models x models: share of replicates in one cluster (diagonal 1)
    column_prefix: str = field(init=False)

    def __post_init__(self) -> None:
        self.column_prefix = "pc" if self.settings.method == "pca" else "dim"

    @property
    def columns(self) -> list[str]:
        return [f"{self.column_prefix}{i + 1}" for i in range(self.coordinates.shape[1])]

    @property
    def sd(self) -> np.ndarray | None:
        """models x components: each coordinate's standard deviation over the replicates (None without)."""
        if self.covariance is None:
            return None
        return np.sqrt(np.clip(np.diagonal(self.covariance, axis1=1, axis2=2), 0.0, None))

    def coassignment_means(self) -> tuple[float, float]:
        """How often, over the replicates, two models share a cluster: the mean over the pairs in one cluster of the
        embedding and over the pairs across two (NaN when there is no such pair). Only with replicates."""
        same = self.clusters[:, None] == self.clusters[None, :]
        other = ~np.eye(len(self.clusters), dtype=bool)  # a model with itself is no pair
        within, across = self.coassignment[same & other], self.coassignment[~same]
        return (float(within.mean()) if within.size else float("nan"),
                float(across.mean()) if across.size else float("nan"))


def check_settings(settings: EmbedSettings) -> None:
    if settings.method not in METHODS:
        raise LceError(f"--method must be one of {', '.join(METHODS)}, not {settings.method!r}.")
    if settings.components < 1:
        raise LceError(f"--components must be at least 1, not {settings.components}.")
    if settings.clusters < 1:
        raise LceError(f"--clusters must be at least 1, not {settings.clusters}.")
    if not 0 <= settings.seed < 2**31:  # scikit-learn takes 0 to 2^32 - 1, the embedding table's integer less
        raise LceError(f"--seed must be a whole number from 0 to 2^31 - 1, not {settings.seed}.")
    if settings.method == "tsne" and settings.components > 3:
        raise LceError("--method tsne supports at most 3 components.")
    if settings.units not in UNIT_FILTERS:
        raise LceError(f"--units must be one of {', '.join(UNIT_FILTERS)}, not {settings.units!r}.")
    if settings.replicates is not None and settings.method != "pca":
        raise LceError(
            f"--uncertainty works with --method pca only, not {settings.method}: replicates are aligned to the point "
            "estimate by a rotation, which MDS and t-SNE layouts (not linear in the matrix) do not allow."
        )
    if settings.replicates is not None and settings.replicates < 2:
        raise LceError(f"--replicates must be at least 2 (a covariance needs two), not {settings.replicates}.")


def _import_scikit_learn() -> None:
    import sklearn.cluster  # noqa: F401
    import sklearn.decomposition  # noqa: F401


def embed(settings: EmbedSettings, store: bool = True) -> EmbeddingResult:
    """Select runs, build the matrix in SQL, project, cluster, and (by default) store the embedding."""
    check_settings(settings)
    # scikit-learn takes about a second to import (scipy.stats); do it while the database works.
    warm = threading.Thread(target=_import_scikit_learn, daemon=True)
    warm.start()
    con = duckdb_connection(read_only=True)
    try:
        selection = select_runs(con, list(settings.models), list(settings.exclude), settings.layer,
                                settings.probe, settings.variant)
    finally:
        con.close()
    population = None
    if settings.units != "interpretable" or settings.replicates is not None:
        population = population_units(selection, settings.min_iou, settings.units,
                                      replicates=settings.replicates is not None)
    if settings.units == "interpretable":
        matrix = concept_matrix(selection, settings.min_iou, settings.normalize)  # the SQL matrix, as always
    else:
        matrix = units_matrix(population, selection, settings.normalize)
    count = len(selection.runs)
    if settings.components > min(count, len(matrix.concepts)):
        raise LceError(
            f"--components {settings.components} is more than the data allow: {count} models and "
            f"{len(matrix.concepts)} concepts give at most {min(count, len(matrix.concepts))}."
        )
    if settings.clusters > count:
        raise LceError(f"--clusters {settings.clusters} is more than the {count} models embedded.")
    warm.join()
    projection = Projection(settings.method, settings.components, settings.seed)
    coordinates = projection.fit_transform(matrix.values)
    clusters = ModelClusters(settings.clusters, settings.seed).fit(matrix.values)
    result = EmbeddingResult(
        settings=settings, selection=selection, matrix=matrix, coordinates=coordinates,
        clusters=clusters.labels_, inertia=clusters.elbow_,
        explained_variance=projection.explained_variance_ratio_, loadings=projection.loadings_,
    )
    if settings.replicates is not None:
        uncertainty = EmbeddingUncertainty(settings.replicates, settings.clusters, settings.seed).fit(
            population, selection, settings.normalize, coordinates)
        result.covariance, result.coassignment = uncertainty.covariance_, uncertainty.coassignment_
    if store:
        result.embedding_id = store_embedding(result)
    return result


def store_embedding(result: EmbeddingResult) -> int:
    """The embedding and its points, in one transaction; returns the embedding's id."""
    settings = result.settings
    covariance = result.covariance if result.covariance is not None else [None] * len(result.selection.runs)
    points = [EmbeddingPoint(run_id=run.run_id, coordinates=[float(v) for v in coords], cluster=int(cluster),
                             covariance=None if cov is None else [float(v) for v in np.ravel(cov)])
              for run, coords, cluster, cov in zip(result.selection.runs, result.coordinates, result.clusters,
                                                   covariance)]
    coassignment = []
    if result.coassignment is not None:
        runs = [run.run_id for run in result.selection.runs]
        coassignment = [(runs[i], runs[j], float(share)) for (i, j), share in np.ndenumerate(result.coassignment)]
    return write_embedding(connect(), EmbeddingRecord(
        method=settings.method, components=settings.components, clusters=settings.clusters,
        normalize=settings.normalize, min_iou=settings.min_iou, layer=result.selection.layer,
        probe=result.selection.probe, variant=result.selection.variant, seed=settings.seed,
        concept_count=len(result.matrix.concepts), explained_variance=result.explained_variance,
        inertia=result.inertia, settings=asdict(settings), points=points, units=settings.units,
        replicates=settings.replicates, coassignment=coassignment))


def write_csv(result: EmbeddingResult, path: Path) -> None:
    """One row per model: `model,pc1,pc2,pc3,cluster` (or dim1.. for MDS and t-SNE), and with the uncertainty
    `pc1_sd,pc2_sd,..` after them; byte-identical for the same data and seed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = result.sd

    def number(value) -> str:
        return f"{round(float(value), 6) + 0.0:.6f}"

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["model", *result.columns, "cluster", *([f"{c}_sd" for c in result.columns] if sd is not None
                                                                  else [])])
        for index, (model, coords, cluster) in enumerate(zip(result.matrix.models, result.coordinates,
                                                             result.clusters)):
            writer.writerow([model, *(number(value) for value in coords), int(cluster),
                             *(number(value) for value in (sd[index] if sd is not None else []))])
