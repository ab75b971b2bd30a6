-- How many of the store's tables and views (in DuckDB, through the attached `pg`) are named ? (any case).
-- lce sql --read NAME=PATH refuses a NAME that would hide one.
SELECT count(*)
FROM information_schema.tables
WHERE lower(table_name) = lower(?)
