-- Every run's concepts at the report's cut-off (:min_iou; NULL = each run's own): interpretable units and best
-- IoU per concept, the most frequent first.
SELECT run_id, category, label, units, max_iou
FROM model_concept_units_at(CAST(:min_iou AS double precision))
ORDER BY run_id, units DESC, max_iou DESC, category, label
