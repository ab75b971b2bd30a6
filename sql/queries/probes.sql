-- Stored probes with their concept counts. `lce probe list` prints it.
SELECT p.name AS probe, p.source, p.image_count AS images, p.image_size, p.seg_size,
       count(c.id) AS concepts, p.path, left(p.content_sha256, 12) AS content
FROM probe p
LEFT JOIN concept c ON c.probe_id = p.id
GROUP BY p.id
ORDER BY p.name
