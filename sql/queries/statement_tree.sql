-- DuckDB's parse of one SELECT (? is its text) as JSON: {"error": ..., "statements": [{"node": ...}]}. lce sql
-- looks there for the table functions a query calls and the files it names (lce/analysis/reading.py).
SELECT json_serialize_sql(?)
