-- The concepts that the replicates' labels name (:ids), with their category.
SELECT c.id, c.category, c.name
FROM concept c
WHERE c.id = ANY(:ids)
