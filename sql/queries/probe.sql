-- One stored probe (:name is its name), every column. No row: none of that name. `lce probe show` prints it;
-- lce ingest reads the registered dataset's path, content hash and image size (source 'broden').
SELECT *
FROM probe
WHERE name = :name
