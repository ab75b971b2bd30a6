-- The category profile of every model of one embedding (:embedding is its id): interpretable units and distinct
-- concepts per category (the paper's all_<category> and unique_<category>), over the runs the embedding used and
-- at its IoU cut-off. lce correlate reads it.
SELECT p.model, p.category, p.interpretable_units, p.distinct_concepts
FROM embedding e
CROSS JOIN LATERAL model_category_profile_at(e.min_iou) p
JOIN embedding_point ep ON ep.embedding_id = e.id AND ep.run_id = p.run_id
WHERE e.id = :embedding
ORDER BY p.model, p.category
