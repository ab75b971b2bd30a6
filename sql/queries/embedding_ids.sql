-- The stored embeddings' ids, oldest first, for messages about a missing one.
SELECT id
FROM embedding
ORDER BY id
