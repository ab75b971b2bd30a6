-- unit_category_label: each unit's best concept within every category, by IoU, from the unit x concept tallies
-- (NetDissect reports these beside the unit's overall label; dissected and netdissect-imported runs have them).
-- Ties go to the first name. Current runs only (a superseded run, kept for a stored embedding, is left out).
--
--   SELECT unit, category, label, iou FROM unit_category_label WHERE run_id = 3 AND unit = 0;
--
-- One unit_tally row holds a unit's tallies with one category's concepts: its best is the concept at the
-- highest IoU of the row (only those at that IoU are looked up by name), with no sort of every pair.

CREATE VIEW unit_category_label AS
SELECT t.run_id, t.unit, t.category, b.label, b.iou, b.intersection,
       COALESCE(b.activation, t.activation) AS activation, COALESCE(b.truth, k.truth) AS truth
FROM unit_tally t
JOIN run r ON r.id = t.run_id AND r.superseded_at IS NULL
CROSS JOIN LATERAL (SELECT max(x) AS iou FROM unnest(t.ious) AS x) m
CROSS JOIN LATERAL (
    SELECT t.concept_ids[i] AS concept_id, c.name AS label, t.ious[i] AS iou, t.intersections[i] AS intersection,
           t.activations[i] AS activation, t.truths[i] AS truth
    FROM unnest(array_positions(t.ious, m.iou)) AS i
    JOIN concept c ON c.id = t.concept_ids[i]
    ORDER BY c.name
    LIMIT 1
) b
JOIN run_concept k ON k.run_id = t.run_id AND k.concept_id = b.concept_id
ORDER BY t.run_id, t.unit, t.category;

COMMENT ON VIEW unit_category_label IS 'Best concept of every unit within each category (from unit_concept).';
