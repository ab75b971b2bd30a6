-- The current runs of one model (:model is its name), with what tells them apart. `lce compare` and `lce report` choose
-- among them with --layer, --probe and --variant.
SELECT r.id AS run_id, m.name AS model, r.layer, p.name AS probe, r.variant, r.source, r.quantile, r.seg_size,
       r.unit_count, r.iou_threshold
FROM run r
JOIN model m ON m.id = r.model_id
JOIN probe p ON p.id = r.probe_id
WHERE m.name = :model AND r.superseded_at IS NULL
ORDER BY r.layer, p.name, r.variant, r.source, r.id
