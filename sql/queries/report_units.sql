-- Every unit of every run with its label at the report's cut-off (:min_iou; NULL = each run's own), and the label's
-- uncertainty (interval, stability, chance IoU, lift; NULL where unknown, as for imported runs), whether it beats
-- the run's random-weights control (NULL when none serves the run) and whether it is trusted, at unit_label_at's
-- default stability and lift.
SELECT run_id, unit, label, category, iou, interpretable, iou_low, iou_high, stability, chance_iou, lift,
       beats_random, trusted
FROM unit_label_at(CAST(:min_iou AS double precision))
ORDER BY run_id, unit
