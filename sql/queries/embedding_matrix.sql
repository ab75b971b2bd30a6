-- The model x concept matrix of an embedding, in long form: one row per (model, concept) with a non-zero value,
-- and a row without a model for each column that no embedded run has. lce.analysis.matrix pivots it.
-- Runs in Postgres over model_concept_matrix_at(:min_iou) (sql/model_concept_matrix.sql).
--
-- :min_iou     the IoU cut-off: a unit counts when its IoU is above it
-- :population  the runs sharing the embedded runs' probe, layer and variant (the matrix's columns come from them)
-- :selected    the runs embedded (the matrix's rows)
-- :normalize   'population': units / distinct concepts of the category over the population (docs/method.md section 3)
--              'selection':  units / distinct concepts of the category over the embedded runs only
--              'none':       units
WITH population AS (
    SELECT * FROM model_concept_matrix_at(:min_iou) WHERE run_id = ANY(:population)
), columns AS (
    SELECT DISTINCT category, label, concept FROM population
    WHERE :normalize <> 'selection' OR run_id = ANY(:selected)
), selected AS (
    SELECT * FROM population WHERE run_id = ANY(:selected)
), selection_concepts AS (
    SELECT category, count(DISTINCT label) AS concepts FROM selected GROUP BY category
)
SELECT c.category, c.label, c.concept, s.model,
       CASE :normalize
           WHEN 'population' THEN s.value
           WHEN 'selection' THEN s.units::double precision / n.concepts
           ELSE s.units
       END AS value
FROM columns c
LEFT JOIN selected s USING (category, label)
LEFT JOIN selection_concepts n USING (category)
