-- Every unit of every run with its label at the report's cut-off (:min_iou; NULL = each run's own).
SELECT run_id, unit, label, category, iou, interpretable
FROM unit_label_at(CAST(:min_iou AS double precision))
ORDER BY run_id, unit
