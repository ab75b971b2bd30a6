-- The concepts of two runs side by side (:a and :b are run ids; :min_iou the IoU cut-off, NULL = each run's own):
-- one row per concept that either run has an interpretable unit for, with the units and best IoU in each.
-- presence is 'both', 'only_a' or 'only_b'; a run without the concept shows 0 units and a NULL IoU.
WITH units AS (
    SELECT run_id, category, label, units, max_iou
    FROM model_concept_units_at(CAST(:min_iou AS double precision))
    WHERE run_id IN (:a, :b)
)
SELECT category, label,
       CASE WHEN a.run_id IS NULL THEN 'only_b' WHEN b.run_id IS NULL THEN 'only_a' ELSE 'both' END AS presence,
       coalesce(a.units, 0) AS units_a, a.max_iou AS max_iou_a,
       coalesce(b.units, 0) AS units_b, b.max_iou AS max_iou_b
FROM (SELECT * FROM units WHERE run_id = :a) a
FULL JOIN (SELECT * FROM units WHERE run_id = :b) b USING (category, label)
ORDER BY presence, coalesce(a.units, 0) + coalesce(b.units, 0) DESC, category, label
