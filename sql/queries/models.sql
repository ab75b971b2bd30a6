-- Models with their current runs (superseded ones, kept for stored embeddings, are left out): units, and per run
-- its interpretable units (at the run's cut-off) side by side with those that are trusted and those that beat
-- random (view unit_label), and the control serving it (view run_control_of). `lce models` prints it.
--   trusted: NULL when some interpretable unit's trust is unknown (an import: no interval or stability).
--   beats_random: the interpretable units that beat random (unit_label's beats_random alone also passes units at
--   or below the cut-off where an imported control's best IoU for the concept is lower still); NULL when no
--   control serves the run.
SELECT m.name AS model, m.architecture, r.id AS run, r.layer, p.name AS probe, r.variant, r.source,
       r.unit_count AS units,
       count(*) FILTER (WHERE l.interpretable) AS interpretable,
       CASE WHEN bool_or(l.interpretable AND l.trusted IS NULL) THEN NULL
            ELSE count(*) FILTER (WHERE l.trusted) END AS trusted,
       CASE WHEN co.control_run_id IS NULL THEN NULL
            ELSE count(*) FILTER (WHERE l.interpretable AND l.beats_random) END AS beats_random,
       co.control_run_id AS control
FROM model m
LEFT JOIN run r ON r.model_id = m.id AND r.superseded_at IS NULL
LEFT JOIN probe p ON p.id = r.probe_id
LEFT JOIN unit_label l ON l.run_id = r.id
LEFT JOIN run_control_of co ON co.run_id = r.id
GROUP BY m.name, m.architecture, r.id, r.layer, p.name, r.variant, r.source, r.unit_count, co.control_run_id
ORDER BY m.name, r.layer, r.id
