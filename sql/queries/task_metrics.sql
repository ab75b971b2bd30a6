-- Stored transfer-task metrics: family, direction, how many models have a value, and the range. `lce tasks list`.
SELECT t.name AS metric, t.family, t.direction, t.task, t.dataset, count(p.model_id) AS models,
       min(p.value) AS min, max(p.value) AS max, t.source
FROM task_metric t
LEFT JOIN task_performance p ON p.metric_id = t.id
GROUP BY t.id
ORDER BY t.family, t.name
