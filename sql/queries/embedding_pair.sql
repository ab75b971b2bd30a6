-- The newest stored embedding that holds both runs :a and :b (only embedding :embedding when it is not NULL),
-- with each run's coordinates and cluster. No row: no such embedding.
SELECT e.id AS embedding_id, e.method, e.components, e.min_iou,
       pa.coordinates AS coordinates_a, pb.coordinates AS coordinates_b,
       pa.cluster AS cluster_a, pb.cluster AS cluster_b
FROM embedding e
JOIN embedding_point pa ON pa.embedding_id = e.id AND pa.run_id = :a
JOIN embedding_point pb ON pb.embedding_id = e.id AND pb.run_id = :b
WHERE CAST(:embedding AS integer) IS NULL OR e.id = CAST(:embedding AS integer)
ORDER BY e.id DESC
LIMIT 1
