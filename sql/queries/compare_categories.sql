-- Per category, two runs' interpretable units and distinct concepts, and the concepts they share (:a and :b are
-- run ids; :min_iou the IoU cut-off, NULL = each run's own). A category only one run has shows 0 for the other.
WITH units AS (
    SELECT run_id, category, label, units
    FROM model_concept_units_at(CAST(:min_iou AS double precision))
    WHERE run_id IN (:a, :b)
), paired AS (
    SELECT category, label, a.units AS units_a, b.units AS units_b
    FROM (SELECT * FROM units WHERE run_id = :a) a
    FULL JOIN (SELECT * FROM units WHERE run_id = :b) b USING (category, label)
)
SELECT category,
       coalesce(sum(units_a), 0)::bigint AS units_a, coalesce(sum(units_b), 0)::bigint AS units_b,
       count(units_a) AS concepts_a, count(units_b) AS concepts_b,
       count(*) FILTER (WHERE units_a IS NOT NULL AND units_b IS NOT NULL) AS shared
FROM paired
GROUP BY category
ORDER BY array_position(ARRAY['object', 'part', 'material', 'color', 'scene', 'texture'], category), category
