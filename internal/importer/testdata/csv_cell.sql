-- The API's neutralising of CSV cells (a leading = + - @ tab or CR gets a
-- single quote), for the export below.
CREATE FUNCTION pg_temp.csv_cell(cell text) RETURNS text
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN left(cell, 1) IN ('=', '+', '-', '@', E'\t', E'\r') THEN '''' || cell ELSE cell END;
