-- The category profile of every model of one embedding (:embedding is its id): interpretable units and distinct
-- concepts per category (the paper's all_<category> and unique_<category>), over the runs the embedding used and
-- at its IoU cut-off. lce correlate reads it.
--
-- Counted here from unit and concept rather than through model_category_profile_at, because that view family
-- leaves out superseded runs, and a stored embedding keeps the runs it was made from (even after --replace).
-- Interpretable is as in unit_label: a concept and IoU > the cut-off (NULL = the run's own), strictly.
SELECT m.name AS model, c.category, count(*) AS interpretable_units, count(DISTINCT c.id) AS distinct_concepts
FROM embedding e
JOIN embedding_point ep ON ep.embedding_id = e.id
JOIN run r ON r.id = ep.run_id
JOIN model m ON m.id = r.model_id
JOIN unit u ON u.run_id = r.id
JOIN concept c ON c.id = u.concept_id
WHERE e.id = :embedding AND u.iou > COALESCE(e.min_iou, r.iou_threshold)
GROUP BY m.name, c.category
ORDER BY m.name, c.category
