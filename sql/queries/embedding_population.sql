-- The current runs on one probe, layer and variant (:probe is the probe's id): the population a stored
-- embedding's matrix is normalised against when it is rebuilt (lce.analysis.stored_embedding).
SELECT id
FROM run
WHERE probe_id = :probe AND layer = :layer AND variant = :variant AND superseded_at IS NULL
ORDER BY id
