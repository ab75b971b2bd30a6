-- Every unit of an embedding's population, with what lce embed --units filters on, in unit order.
-- lce.analysis.matrix.population_units counts them in numpy (--units trusted|beats-random, --uncertainty).
--
-- :min_iou     the IoU cut-off: `interpretable` is IoU > it
-- :population  the runs sharing the embedded runs' probe, layer and variant
SELECT l.run_id, l.unit, l.category, l.label, l.iou, l.interpretable, l.beats_random, l.trusted
FROM unit_label_at(:min_iou) l
WHERE l.run_id = ANY(:population)
ORDER BY l.run_id, l.unit
