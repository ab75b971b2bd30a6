-- lce sql's output before the DuckDB session was locked (issue 23): result.csv (--format csv, and --out
-- result.csv), result.json (--format json, --out result.json), from main at 1dd31be over the two_models fixture.
SELECT l.model, l.unit, l.iou, l.label, l.interpretable, l.trusted, l.stability,
       l.iou / 3 AS third, 'a,b "c"' || chr(10) || 'd' AS text, '' AS empty, ' ünï ' AS spaced,
       TIMESTAMPTZ '2024-01-02 03:04:05.123456+02' AS ts, TIMESTAMP '2024-01-02 03:04:05' AS naive,
       DATE '2024-01-02' AS day, [l.unit, NULL] AS units, ['x,y', NULL, 'q"'] AS words,
       {'k': l.unit, 'v': 'a"b'} AS pair, 12.345::DECIMAL(10, 3) AS dec, 1e300 AS big, -0.0 AS negzero,
       'nan'::DOUBLE AS nan, 'inf'::DOUBLE AS inf, INTERVAL 3 DAY AS span, '\xAA'::BLOB AS bytes,
       '6d1f1e34-1b7a-4e1b-9b2e-1c2d3e4f5a6b'::UUID AS id, 170141183460469231731687303715884105727::HUGEINT AS huge,
       p.pg_ts, p.pg_arr, p.pg_json, p.pg_num
FROM unit_label l, postgres_query('pg', 'SELECT ''2024-01-02 03:04:05.5+02''::timestamptz AS pg_ts, ARRAY[1, 2] AS pg_arr, ''{"a": [1, "x"]}''::jsonb AS pg_json, 1.50::numeric(5, 2) AS pg_num') p
ORDER BY l.model, l.unit
