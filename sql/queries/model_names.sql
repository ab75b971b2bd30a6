-- The stored models' names. `lce compare` checks the names it is given against them.
SELECT name
FROM model
ORDER BY name
