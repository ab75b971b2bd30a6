-- Every run's category profile at the report's cut-off (:min_iou; NULL = each run's own): interpretable units and
-- distinct concepts per category.
SELECT run_id, category, interpretable_units, distinct_concepts
FROM model_category_profile_at(CAST(:min_iou AS double precision))
ORDER BY run_id, array_position(ARRAY['object', 'part', 'material', 'color', 'scene', 'texture'], category), category
