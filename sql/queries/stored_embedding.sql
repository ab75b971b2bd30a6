-- One stored embedding (:embedding is its id; NULL: the newest) with its probe's name. No row: none stored.
-- lce correlate and lce report (lce.analysis.stored_embedding) read it.
SELECT e.*, p.name AS probe
FROM embedding e
JOIN probe p ON p.id = e.probe_id
WHERE CAST(:embedding AS integer) IS NULL OR e.id = CAST(:embedding AS integer)
ORDER BY e.id DESC
LIMIT 1
