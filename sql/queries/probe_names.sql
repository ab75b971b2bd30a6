-- The stored probes' names as one comma-separated list (NULL when there is none), for messages; only those of
-- source :source when it is not NULL ('broden': the registered datasets).
SELECT string_agg(name, ', ' ORDER BY name) AS names
FROM probe
WHERE CAST(:source AS text) IS NULL OR source = CAST(:source AS text)
