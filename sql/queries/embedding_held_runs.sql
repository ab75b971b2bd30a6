-- Which of the runs :a and :b embedding :embedding holds. `lce compare --embedding` names the missing one.
SELECT run_id
FROM embedding_point
WHERE embedding_id = :embedding AND run_id IN (:a, :b)
