"""A stored embedding read back: its points as stored, with the model x concept matrix and the PCA loadings (which
the store does not keep) recomputed from the embedding's own settings.

    stored = load_embedding()              # the newest; load_embedding(3) for embedding 3; None if none is stored
    stored.result.coordinates              # as stored
    stored.result.loadings                 # recomputed (PCA only); stored.loadings_note says whether they
                                           # reproduce the stored scores
    stored.result.covariance, stored.result.coassignment   # as stored by lce embed --uncertainty, else None
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime

import numpy as np
from sqlalchemy import text

from lce.analysis.embed import EmbeddingResult, EmbedSettings
from lce.analysis.projection import Projection
from lce.analysis.matrix import ConceptMatrix, Selection, concept_matrix
from lce.db.connection import connect_reader
from lce.errors import LceError
from lce.records import RunIdentity
from lce.resources import read_sql


@dataclass
class StoredEmbedding:
    result: EmbeddingResult  # coordinates, clusters, inertia and explained variance as stored
    created_at: datetime
    loadings_note: str  # whether the recomputed loadings reproduce the stored scores, or why there are none


def load_embedding(embedding_id: int | None = None) -> StoredEmbedding | None:
    """Embedding `embedding_id` (LceError when there is none with that id), or the newest (None when the store
    holds none)."""
    with connect_reader(required=False).connect() as conn:
        row = conn.execute(text(read_sql("queries/stored_embedding")), {"embedding": embedding_id}).mappings().first()
        if row is None:
            if embedding_id is None:
                return None
            raise LceError(f"No embedding with id {embedding_id} is stored (lce sql \"SELECT id, created_at FROM "
                           "embedding\" lists them).")
        points = conn.execute(text(read_sql("queries/stored_embedding_points")),
                              {"embedding": row["id"]}).mappings().all()
        shares = conn.execute(text(read_sql("queries/stored_embedding_coassignment")),
                              {"embedding": row["id"]}).mappings().all()
        population = conn.execute(
            text(read_sql("queries/embedding_population")),
            {"probe": row["probe_id"], "layer": row["layer"], "variant": row["variant"]}).scalars().all()
    known = {field.name for field in fields(EmbedSettings)}
    settings = EmbedSettings(**{key: tuple(value) if isinstance(value, list) else value
                                for key, value in row["settings"].items() if key in known})
    selection = Selection(
        runs=tuple(RunIdentity.of(point) for point in points),
        population=tuple(population))
    coordinates = np.array([list(p["coordinates"]) for p in points], dtype=np.float64)
    matrix, loadings, note = _recompute(row, settings, selection, coordinates)
    covariance = coassignment = None
    if points and all(p["covariance"] is not None for p in points):
        k = coordinates.shape[1]
        covariance = np.array([list(p["covariance"]) for p in points], dtype=np.float64).reshape(len(points), k, k)
    if shares:
        position = {p["model"]: i for i, p in enumerate(points)}
        coassignment = np.full((len(points), len(points)), np.nan)
        for share in shares:
            coassignment[position[share["model"]], position[share["other_model"]]] = share["share"]
    result = EmbeddingResult(
        settings=settings, selection=selection, matrix=matrix, coordinates=coordinates,
        clusters=np.array([p["cluster"] for p in points], dtype=np.int64), inertia=list(row["inertia"]),
        explained_variance=list(row["explained_variance"]) if row["explained_variance"] else None,
        loadings=loadings, embedding_id=row["id"], covariance=covariance, coassignment=coassignment,
    )
    return StoredEmbedding(result=result, created_at=row["created_at"], loadings_note=note)


def _recompute(row, settings: EmbedSettings, selection: Selection, coordinates: np.ndarray):
    """(matrix, loadings, note): the matrix rebuilt from today's runs, and for PCA the loadings of the
    projection fitted to it, checked against the stored scores."""
    empty = ConceptMatrix(models=selection.models, concepts=[], categories=[], labels=[],
                          values=np.zeros((len(selection.runs), 0)))
    try:
        matrix = concept_matrix(selection, row["min_iou"], row["normalize"])
    except LceError as error:
        return empty, None, f"The model x concept matrix could not be rebuilt: {error}"
    if row["method"] != "pca":
        return matrix, None, f"A {row['method'].upper()} embedding has no loadings (PCA only)."
    if row["components"] > min(matrix.values.shape):
        return matrix, None, (f"The {len(selection.runs)} runs left in embedding {row['id']} allow fewer than "
                              f"its {row['components']} components; no loadings.")
    projection = Projection("pca", row["components"], settings.seed)
    scores = projection.fit_transform(matrix.values)
    scale = max(1.0, float(np.abs(coordinates).max(initial=0.0)))
    if np.allclose(scores, coordinates, rtol=0.0, atol=1e-6 * scale):
        return matrix, projection.loadings_, (
            "The store keeps no loadings: these are recomputed from the model x concept matrix with the embedding's "
            "settings, and reproduce its stored scores.")
    return matrix, projection.loadings_, (
        f"The store keeps no loadings, and the runs have changed since embedding {row['id']} was computed (runs "
        "added, replaced or re-imported): these loadings are those of today's matrix, whose scores differ from the "
        "stored ones. Run lce embed again for a consistent picture.")
