-- model_concept_matrix: the normalised model x concept matrix of the Learned Concepts Embedding, in long form
-- (docs/method.md section 3): interpretable units per (run, concept), divided by the number of distinct concepts of
-- that category among the interpretable units of the whole population, that is every run on the same probe,
-- layer and variant. `concept` is the matrix column: the category's initial, '_', the label ('o_food' and
-- 'm_food' are different columns).
--
--   SELECT model, concept, value FROM model_concept_matrix WHERE layer = 'layer4';
--
-- model_concept_matrix_at(min_iou) is the same at another cut-off (NULL = each run's own).

CREATE FUNCTION model_concept_matrix_at(min_iou double precision)
RETURNS TABLE (
    run_id integer, model text, layer text, probe text, variant text,
    category text, label text, concept text, units bigint,
    population_concepts bigint, value double precision
)
LANGUAGE sql STABLE
AS $$
    WITH counts AS (
        SELECT * FROM model_concept_units_at(min_iou)
    ), population AS (
        SELECT p.probe, p.layer, p.variant, p.category, count(DISTINCT p.label) AS concepts
        FROM counts p
        GROUP BY p.probe, p.layer, p.variant, p.category
    )
    SELECT c.run_id, c.model, c.layer, c.probe, c.variant, c.category, c.label,
           left(c.category, 1) || '_' || c.label,
           c.units, p.concepts, c.units::double precision / p.concepts
    FROM counts c
    JOIN population p USING (probe, layer, variant, category)
$$;

CREATE VIEW model_concept_matrix AS SELECT * FROM model_concept_matrix_at(NULL);

COMMENT ON VIEW model_concept_matrix IS 'Normalised model x concept matrix (long form) at each run''s cut-off.';
