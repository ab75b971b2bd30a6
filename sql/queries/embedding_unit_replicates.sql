-- Each dissected unit's label (concept id, -1 for none) and its IoU in the bootstrap's first replicates
-- (table unit_replicate; imported runs have no rows). lce embed --uncertainty reads them.
--
-- :runs  the runs of the embedding's population
SELECT r.run_id, r.unit, array_replace(r.concept_ids, NULL, -1) AS concept_ids, r.ious
FROM unit_replicate r
WHERE r.run_id = ANY(:runs)
ORDER BY r.run_id, r.unit
