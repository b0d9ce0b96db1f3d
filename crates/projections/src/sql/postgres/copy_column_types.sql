-- The types of a table's columns, in the order asked for, as format_type prints them
-- (NULL for a column the table does not have): the binary COPY of a rebuild writes each
-- value in its column type's wire format. $1 table (resolved on the search path),
-- $2 column names.
SELECT format_type(a.atttypid, a.atttypmod)
FROM unnest($2::text[]) WITH ORDINALITY AS c(name, i)
LEFT JOIN pg_attribute AS a
       ON a.attrelid = to_regclass($1) AND a.attname = c.name AND NOT a.attisdropped
ORDER BY c.i
