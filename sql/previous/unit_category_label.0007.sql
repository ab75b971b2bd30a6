-- The definition up to migration 0007 (over the table unit_concept, one row per pair); migration 0008's downgrade
-- and an upgrade replayed from an empty database through 0006-0007 create this one. The current one is
-- sql/unit_category_label.sql.
--
-- unit_category_label: each unit's best concept within every category, by IoU, from the unit x concept tallies
-- (NetDissect reports these beside the unit's overall label; dissected and netdissect-imported runs have them).
-- Current runs only (a superseded run, kept for a stored embedding, is left out).
--
--   SELECT unit, category, label, iou FROM unit_category_label WHERE run_id = 3 AND unit = 0;

CREATE VIEW unit_category_label AS
SELECT DISTINCT ON (t.run_id, t.unit, c.category)
       t.run_id, t.unit, c.category, c.name AS label, t.iou, t.intersection, t.activation, t.truth
FROM unit_concept t
JOIN concept c ON c.id = t.concept_id
JOIN run r ON r.id = t.run_id AND r.superseded_at IS NULL
ORDER BY t.run_id, t.unit, c.category, t.iou DESC, c.name;

COMMENT ON VIEW unit_category_label IS 'Best concept of every unit within each category (from unit_concept).';
