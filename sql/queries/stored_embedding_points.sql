-- The points of one stored embedding (:embedding is its id), one per model, by model name: the run embedded
-- (with its layer, probe, variant, source, quantile and segmentation size), its coordinates and cluster, and its
-- covariance over the replicates (components x components, row-major; NULL without --uncertainty).
SELECT m.name AS model, p.run_id, r.layer, pr.name AS probe, r.variant, r.source, r.quantile, r.seg_size,
       p.coordinates, p.cluster, p.covariance
FROM embedding_point p
JOIN model m ON m.id = p.model_id
JOIN run r ON r.id = p.run_id
JOIN probe pr ON pr.id = r.probe_id
WHERE p.embedding_id = :embedding
ORDER BY m.name
