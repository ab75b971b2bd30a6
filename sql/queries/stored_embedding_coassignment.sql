-- The co-assignment of one stored embedding (:embedding is its id): for each ordered pair of its models, the
-- share of lce embed --uncertainty's replicates in which KMeans put them in one cluster. No rows without it.
SELECT m.name AS model, o.name AS other_model, c.share
FROM embedding_coassignment c
JOIN model m ON m.id = c.model_id
JOIN model o ON o.id = c.other_model_id
WHERE c.embedding_id = :embedding
ORDER BY m.name, o.name
