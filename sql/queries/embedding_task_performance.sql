-- The transfer-task results of the models of one embedding (:embedding is its id), in long form, with every
-- stored metric's family and direction. lce correlate reads it.
SELECT t.model, t.metric, t.family, t.direction, t.task, t.dataset, t.value
FROM model_task_performance t
JOIN embedding_point p ON p.model_id = t.model_id
WHERE p.embedding_id = :embedding
ORDER BY t.family, t.metric, t.model
