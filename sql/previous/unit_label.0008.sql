-- unit_label: one row per unit of every current run, with its best concept. The first thing to query.
--
--   SELECT model, count(*) FILTER (WHERE interpretable) FROM unit_label GROUP BY model;
--
-- `interpretable` is IoU > the run's own cut-off (strict, as every published tool); `label` and `category`
-- are NULL for a unit without a concept. unit_label_at(min_iou) is the same at another cut-off
-- (NULL = each run's own), so the cut-off changes without a migration:
--
--   SELECT * FROM unit_label_at(0.08) WHERE interpretable;
--
-- A run that --replace superseded (kept only because a stored embedding uses it) is left out, here and so in
-- every view built on this one.

CREATE FUNCTION unit_label_at(min_iou double precision)
RETURNS TABLE (
    model text, layer text, probe text, variant text, run_id integer,
    unit integer, label text, category text, iou double precision, interpretable boolean
)
LANGUAGE sql STABLE
AS $$
    SELECT m.name, r.layer, p.name, r.variant, r.id,
           u.unit, c.name, c.category, u.iou,
           c.id IS NOT NULL AND COALESCE(u.iou > COALESCE(min_iou, r.iou_threshold), false)
    FROM unit u
    JOIN run r ON r.id = u.run_id
    JOIN model m ON m.id = r.model_id
    JOIN probe p ON p.id = r.probe_id
    LEFT JOIN concept c ON c.id = u.concept_id
    WHERE r.superseded_at IS NULL
$$;

CREATE VIEW unit_label AS SELECT * FROM unit_label_at(NULL);

COMMENT ON VIEW unit_label IS 'One row per unit: its best concept, IoU, and whether it is interpretable at its run''s cut-off.';
