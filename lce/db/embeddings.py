"""Writing an embedding and its points to Postgres, in one transaction. Stored embeddings are never changed after.

    point = EmbeddingPoint(run_id=7, coordinates=[1.2, -0.4, 0.1], cluster=0)
    embedding_id = write_embedding(engine, EmbeddingRecord(method="pca", ..., points=[point, ...]))

With lce embed --uncertainty, a point carries its covariance (components x components, row-major) and the record
the replicates and the co-assignment share of every ordered pair of runs (table embedding_coassignment).

lce/analysis/embed.py computes what is written (store_embedding); the points name their runs, whose models the
write looks up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Engine, text

from lce.config import code_version


@dataclass(frozen=True)
class EmbeddingPoint:
    run_id: int
    coordinates: list[float]
    cluster: int
    covariance: list[float] | None = None  # components x components, row-major (--uncertainty)


@dataclass(frozen=True)
class EmbeddingRecord:
    method: str
    components: int
    clusters: int
    normalize: str
    min_iou: float
    layer: str
    probe: str  # the probe's name
    variant: str
    seed: int
    concept_count: int
    explained_variance: list[float] | None
    inertia: list[float]  # k = 1..10
    settings: dict  # every option, stored as JSONB
    points: list[EmbeddingPoint]
    units: str = "interpretable"  # the units counted (lce.analysis.matrix.UNIT_FILTERS)
    replicates: int | None = None  # --uncertainty's replicates
    coassignment: list[tuple[int, int, float]] = ()  # (run, other run, share): both orders, the diagonal 1


def write_embedding(engine: Engine, record: EmbeddingRecord) -> int:
    """The embedding and its points, in one transaction; returns the embedding's id."""
    with engine.begin() as conn:
        probe_id = conn.execute(text("SELECT id FROM probe WHERE name = :n"), {"n": record.probe}).scalar()
        embedding_id = conn.execute(
            text(
                "INSERT INTO embedding (method, components, clusters, normalize, min_iou, layer, probe_id, variant,"
                " seed, concept_count, explained_variance, inertia, settings, code_version, units, replicates)"
                " VALUES (:method, :components, :clusters, :normalize, :min_iou, :layer, :probe, :variant, :seed,"
                " :concepts, :explained, :inertia, CAST(:settings AS jsonb), :code, :units, :replicates) RETURNING id"
            ),
            dict(method=record.method, components=record.components, clusters=record.clusters,
                 normalize=record.normalize, min_iou=record.min_iou, layer=record.layer, probe=probe_id,
                 variant=record.variant, seed=record.seed, concepts=record.concept_count,
                 explained=record.explained_variance, inertia=record.inertia, settings=json.dumps(record.settings),
                 code=code_version(), units=record.units, replicates=record.replicates),
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO embedding_point (embedding_id, model_id, run_id, coordinates, cluster, covariance)"
                " SELECT :embedding, r.model_id, r.id, :coordinates, :cluster, :covariance FROM run r"
                " WHERE r.id = :run"
            ),
            [dict(embedding=embedding_id, run=point.run_id, coordinates=point.coordinates, cluster=point.cluster,
                  covariance=point.covariance)
             for point in record.points],
        )
        if record.coassignment:
            conn.execute(
                text(
                    "INSERT INTO embedding_coassignment (embedding_id, model_id, other_model_id, share)"
                    " SELECT :embedding, r.model_id, o.model_id, :share FROM run r, run o"
                    " WHERE r.id = :run AND o.id = :other"
                ),
                [dict(embedding=embedding_id, run=run, other=other, share=share)
                 for run, other, share in record.coassignment],
            )
    return embedding_id
