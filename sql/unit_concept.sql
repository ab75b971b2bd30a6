-- unit_concept: the tallies of every (unit, concept) pair of every run, one row per pair: the intersection I,
-- the unit's activation count A, the concept's truth count G and IoU = I / (A + G - I) (docs/method.md section 1), as
-- dissected or as imported. Sparse: a pair that no pixel shares is absent from dissected runs.
-- Stored as arrays, one unit_tally row per (run, unit, category), G once per (run, concept) in run_concept; the
-- view gives them back pair by pair. Like the tables, it includes superseded runs.
--
--   SELECT concept_id, intersection, iou FROM unit_concept WHERE run_id = 3 AND unit = 0 ORDER BY iou DESC;

CREATE VIEW unit_concept AS
SELECT t.run_id, t.unit, e.concept_id, e.intersection, COALESCE(e.activation, t.activation) AS activation,
       COALESCE(e.truth, k.truth) AS truth, e.iou
FROM unit_tally t
CROSS JOIN LATERAL unnest(t.concept_ids, t.intersections, t.ious, t.activations, t.truths)
    AS e (concept_id, intersection, iou, activation, truth)
JOIN run_concept k ON k.run_id = t.run_id AND k.concept_id = e.concept_id;

COMMENT ON VIEW unit_concept IS 'Tallies of every (unit, concept) pair: intersection, activation, truth, IoU.';
