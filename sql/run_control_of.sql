-- run_control_of: the control run (lce control set; lce ingest --random-control) that serves each current run.
--
--   SELECT r.id, k.control_run_id FROM run r LEFT JOIN run_control_of k ON k.run_id = r.id;
--
-- A control serves the current runs of the same layer, probe, variant, quantile and segmentation size, and of
-- the same architecture when both models record one; among several, one of the same architecture first, then
-- the newest. A control serves neither itself nor another control. Runs without a control have no row.

CREATE VIEW run_control_of AS
SELECT DISTINCT ON (r.id) r.id AS run_id, c.id AS control_run_id
FROM run r
JOIN model m ON m.id = r.model_id
JOIN run c ON c.layer = r.layer AND c.probe_id = r.probe_id AND c.variant = r.variant AND c.quantile = r.quantile
          AND c.seg_size IS NOT DISTINCT FROM r.seg_size AND c.id <> r.id AND c.superseded_at IS NULL
JOIN run_control k ON k.run_id = c.id
JOIN model cm ON cm.id = c.model_id
WHERE r.superseded_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM run_control own WHERE own.run_id = r.id)
  AND (m.architecture IS NULL OR cm.architecture IS NULL OR m.architecture = cm.architecture)
ORDER BY r.id, COALESCE(m.architecture = cm.architecture, false) DESC, k.created_at DESC, c.id DESC;

COMMENT ON VIEW run_control_of IS 'The control run serving each current run (same layer, probe, method; architecture).';
