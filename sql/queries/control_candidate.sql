-- One run (:run is its id), as `lce control set` and `unset` check it: what it is, whether it is current, whether
-- its weights are known to be random (a dissected --random-init run, the zoo's random entry, or a name saying so,
-- as the authors' Random(R)), and whether it is a control already.
SELECT r.id AS run_id, m.name AS model, m.architecture, r.layer, p.name AS probe, r.variant, r.source,
       r.superseded_at, r.superseded_by,
       COALESCE((r.settings ->> 'random_init')::boolean, false) OR m.family = 'random'
           OR m.name ILIKE '%random%' AS random_weights,
       EXISTS (SELECT 1 FROM run_control c WHERE c.run_id = r.id) AS control
FROM run r
JOIN model m ON m.id = r.model_id
JOIN probe p ON p.id = r.probe_id
WHERE r.id = :run
