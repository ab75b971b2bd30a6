-- The top images of one dissected run's units (:run is its id), strongest first, with what a strip of them needs:
-- the unit's threshold (its mask) and IoU (which units come first when strips are capped).
SELECT t.unit, t.rank, t.image, t.activation, u.threshold, u.iou
FROM unit_top_image t
JOIN unit u ON u.run_id = t.run_id AND u.unit = t.unit
WHERE t.run_id = :run
ORDER BY t.unit, t.rank
