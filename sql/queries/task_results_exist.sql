-- Whether any transfer-task result is stored. `lce report` draws the task correlations only then.
SELECT EXISTS (SELECT 1 FROM task_performance) AS task_results_exist
