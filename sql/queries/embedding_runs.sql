-- The runs an embedding can draw on: one row per current run, with what identifies its population.
-- lce.analysis.matrix filters these by the --model/--exclude/--layer/--probe/--variant options.
SELECT r.id AS run_id, m.name AS model, r.layer, p.name AS probe, r.variant, r.source, r.quantile, r.seg_size
FROM run r
JOIN model m ON m.id = r.model_id
JOIN probe p ON p.id = r.probe_id
WHERE r.superseded_at IS NULL
ORDER BY m.name, r.layer, p.name, r.variant, r.source
