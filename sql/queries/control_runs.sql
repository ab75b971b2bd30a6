-- The runs named controls (lce control set, lce ingest --random-control), current or superseded.
SELECT run_id
FROM run_control
ORDER BY run_id
