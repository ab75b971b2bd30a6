-- Concepts per category of one probe (:probe is its id). `lce probe show` prints it with images per category.
SELECT category, count(*) AS concepts
FROM concept
WHERE probe_id = :probe
GROUP BY category
ORDER BY category
