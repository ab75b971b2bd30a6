-- The controls (runs named by `lce control set` or `lce ingest --random-control`): what each is, how many current
-- runs it serves (view run_control_of), and how many concepts have a cut-off of their own (table control_cutoff;
-- the others fall back to the control's iou_threshold). `lce control list` prints it.
SELECT c.run_id AS run, m.name AS model, m.architecture, r.layer, p.name AS probe, r.variant, r.source,
       r.iou_threshold,
       (SELECT count(*) FROM run_control_of o WHERE o.control_run_id = c.run_id) AS serves,
       (SELECT count(*) FROM control_cutoff k WHERE k.run_id = c.run_id) AS concepts,
       c.created_at::timestamp(0) AS since
FROM run_control c
JOIN run r ON r.id = c.run_id
JOIN model m ON m.id = r.model_id
JOIN probe p ON p.id = r.probe_id
WHERE r.superseded_at IS NULL
ORDER BY m.name, r.layer, c.run_id
