-- model_concept_units: how many interpretable units of each run detect each concept.
--
--   SELECT model, label, units FROM model_concept_units WHERE category = 'material' ORDER BY units DESC;
--
-- model_concept_units_at(min_iou) counts at another cut-off (NULL = each run's own).

CREATE FUNCTION model_concept_units_at(min_iou double precision)
RETURNS TABLE (
    run_id integer, model text, layer text, probe text, variant text,
    category text, label text, units bigint, max_iou double precision
)
LANGUAGE sql STABLE
AS $$
    SELECT l.run_id, l.model, l.layer, l.probe, l.variant, l.category, l.label, count(*), max(l.iou)
    FROM unit_label_at(min_iou) l
    WHERE l.interpretable
    GROUP BY l.run_id, l.model, l.layer, l.probe, l.variant, l.category, l.label
$$;

CREATE VIEW model_concept_units AS SELECT * FROM model_concept_units_at(NULL);

COMMENT ON VIEW model_concept_units IS 'Interpretable units per run and concept, at each run''s cut-off.';
