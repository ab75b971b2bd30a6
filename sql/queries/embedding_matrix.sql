-- The model x concept matrix of an embedding, in long form: one row per (model, concept) with a non-zero value.
-- Runs in DuckDB over `matrix`, a temporary view of Postgres's model_concept_matrix_at(min_iou).
--
-- $population  the runs sharing the embedded runs' probe, layer and variant (the matrix's columns come from them)
-- $selected    the runs embedded (the matrix's rows)
-- $normalize   'population': units / distinct concepts of the category over the population (method.md section 3)
--              'selection':  units / distinct concepts of the category over the embedded runs only
--              'none':       units
WITH population AS (
    SELECT * FROM matrix WHERE list_contains($population, run_id)
), columns AS (
    SELECT DISTINCT concept FROM population
    WHERE $normalize <> 'selection' OR list_contains($selected, run_id)
), selected AS (
    SELECT *, count(DISTINCT concept) OVER (PARTITION BY category) AS selection_concepts
    FROM population WHERE list_contains($selected, run_id)
)
SELECT s.model, c.concept,
       CASE $normalize
           WHEN 'population' THEN s.value
           WHEN 'selection' THEN s.units / s.selection_concepts
           ELSE s.units
       END AS value
FROM columns c
LEFT JOIN selected s USING (concept)
