-- The concepts of one probe (:probe is its id): category, global label number and name. lce ingest names a
-- dissection's tally columns with them.
SELECT category, number, name
FROM concept
WHERE probe_id = :probe
