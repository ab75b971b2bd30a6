-- model_task_performance: every model's transfer-task results in long form, one row per (model, metric), with the
-- metric's task family and direction ('higher' or 'lower': which values are better). `lce tasks import` fills it.
--
--   SELECT family, metric, model, value FROM model_task_performance WHERE family = 'few-shot' ORDER BY metric, value;

CREATE VIEW model_task_performance AS
SELECT m.name AS model, t.name AS metric, t.family, t.direction, t.task, t.dataset, p.value,
       p.model_id, p.metric_id
FROM task_performance p
JOIN task_metric t ON t.id = p.metric_id
JOIN model m ON m.id = p.model_id;

COMMENT ON VIEW model_task_performance IS 'Transfer-task results per model and metric, with family and direction.';
