-- model_category_profile: per run and category, the interpretable units and the distinct concepts they detect
-- (the paper's "all_<category>" and "unique_<category>" profiles).
--
--   SELECT model, category, interpretable_units, distinct_concepts FROM model_category_profile ORDER BY model;
--
-- model_category_profile_at(min_iou) is the same at another cut-off (NULL = each run's own).

CREATE FUNCTION model_category_profile_at(min_iou double precision)
RETURNS TABLE (
    run_id integer, model text, layer text, probe text, variant text,
    category text, interpretable_units bigint, distinct_concepts bigint
)
LANGUAGE sql STABLE
AS $$
    SELECT c.run_id, c.model, c.layer, c.probe, c.variant, c.category, sum(c.units)::bigint, count(*)
    FROM model_concept_units_at(min_iou) c
    GROUP BY c.run_id, c.model, c.layer, c.probe, c.variant, c.category
$$;

CREATE VIEW model_category_profile AS SELECT * FROM model_category_profile_at(NULL);

COMMENT ON VIEW model_category_profile IS 'Interpretable units and distinct concepts per run and category.';
