-- Every current run, by model, with what the report shows about it and what drawing its unit strips needs (how the
-- model was made, where the probe is) and whether it stores top images; its bootstrap (NULL when it has none), the
-- control run serving it (NULL when none does) and whether it is itself a control.
SELECT r.id AS run_id, m.name AS model, m.architecture, m.family, m.notes, r.layer, p.name AS probe, r.variant,
       r.source, r.quantile, r.iou_threshold, r.seg_size, r.unit_count, r.checkpoint_sha256, r.settings,
       r.code_version, r.created_at, p.path AS probe_path, p.content_sha256 AS probe_sha256,
       EXISTS (SELECT 1 FROM unit_top_image t WHERE t.run_id = r.id) AS has_top_images,
       r.replicates, r.bootstrap_blocks, r.bootstrap_seed, c.control_run_id,
       EXISTS (SELECT 1 FROM run_control k WHERE k.run_id = r.id) AS is_control
FROM run r
JOIN model m ON m.id = r.model_id
JOIN probe p ON p.id = r.probe_id
LEFT JOIN run_control_of c ON c.run_id = r.id
WHERE r.superseded_at IS NULL
ORDER BY m.name, r.layer, p.name, r.variant, r.id
