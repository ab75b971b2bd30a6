"""Writing an embedding and its points to Postgres, in one transaction. Stored embeddings are never changed after.

    point = EmbeddingPoint(run_id=7, coordinates=[1.2, -0.4, 0.1], cluster=0)
    embedding_id = write_embedding(engine, EmbeddingRecord(method="pca", ..., points=[point, ...]))

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


def write_embedding(engine: Engine, record: EmbeddingRecord) -> int:
    """The embedding and its points, in one transaction; returns the embedding's id."""
    with engine.begin() as conn:
        probe_id = conn.execute(text("SELECT id FROM probe WHERE name = :n"), {"n": record.probe}).scalar()
        embedding_id = conn.execute(
            text(
                "INSERT INTO embedding (method, components, clusters, normalize, min_iou, layer, probe_id, variant,"
                " seed, concept_count, explained_variance, inertia, settings, code_version)"
                " VALUES (:method, :components, :clusters, :normalize, :min_iou, :layer, :probe, :variant, :seed,"
                " :concepts, :explained, :inertia, CAST(:settings AS jsonb), :code) RETURNING id"
            ),
            dict(method=record.method, components=record.components, clusters=record.clusters,
                 normalize=record.normalize, min_iou=record.min_iou, layer=record.layer, probe=probe_id,
                 variant=record.variant, seed=record.seed, concepts=record.concept_count,
                 explained=record.explained_variance, inertia=record.inertia, settings=json.dumps(record.settings),
                 code=code_version()),
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO embedding_point (embedding_id, model_id, run_id, coordinates, cluster)"
                " SELECT :embedding, r.model_id, r.id, :coordinates, :cluster FROM run r WHERE r.id = :run"
            ),
            [dict(embedding=embedding_id, run=point.run_id, coordinates=point.coordinates, cluster=point.cluster)
             for point in record.points],
        )
    return embedding_id
