-- Models with their current runs (superseded ones, kept for stored embeddings, are left out): units and
-- interpretable units (at each run's cut-off) per run. `lce models` prints it.
SELECT m.name AS model, m.architecture, r.id AS run, r.layer, p.name AS probe, r.variant, r.source,
       r.unit_count AS units,
       count(*) FILTER (WHERE l.interpretable) AS interpretable
FROM model m
LEFT JOIN run r ON r.model_id = m.id AND r.superseded_at IS NULL
LEFT JOIN probe p ON p.id = r.probe_id
LEFT JOIN unit_label l ON l.run_id = r.id
GROUP BY m.name, m.architecture, r.id, r.layer, p.name, r.variant, r.source, r.unit_count
ORDER BY m.name, r.layer, r.id
