-- unit_label: one row per unit of every current run, with its best concept. The first thing to query.
--
--   SELECT model, count(*) FILTER (WHERE interpretable), count(*) FILTER (WHERE trusted) FROM unit_label
--   GROUP BY model;
--
-- `interpretable` is IoU > the run's own cut-off (strict, as every published tool); `label` and `category`
-- are NULL for a unit without a concept.
--
-- How sure a label is (dissected runs with a bootstrap; NULL where unknown, e.g. imported runs):
--   iou_low, iou_high   the 95% interval of the label's IoU over the bootstrap's replicates (blocks of images);
--   stability           the share of replicates whose best concept is the label (the variant's rule);
--   runner_up(_iou)     the concept of second-best IoU;
--   chance_iou, lift    the IoU expected with the label maps permuted among the images, and iou / chance_iou
--                       (a baseline, not a p-value);
--   beats_random        the IoU exceeds the run's control's cut-off for the label (table control_cutoff; the
--                       control's iou_threshold for a concept without one); NULL when no control serves the run
--                       (view run_control_of) or the unit has no label;
--   trusted             interpretable, stability >= 0.8, iou_low > chance_iou, and beats_random when a control
--                       serves the run; NULL where that is unknown for an interpretable unit, false otherwise.
--
-- unit_label_at(min_iou, min_stability, min_low_lift) is the same at other thresholds: min_iou NULL = each run's
-- own cut-off; trusted asks stability >= min_stability (default 0.8) and iou_low > min_low_lift * chance_iou
-- (default 1). The cut-offs change without a migration:
--
--   SELECT * FROM unit_label_at(0.08) WHERE interpretable;
--   SELECT * FROM unit_label_at(NULL, 0.95, 2) WHERE trusted;
--
-- A run that --replace superseded (kept only because a stored embedding uses it) is left out, here and so in
-- every view built on this one.

CREATE FUNCTION unit_label_at(min_iou double precision, min_stability double precision DEFAULT 0.8,
                              min_low_lift double precision DEFAULT 1.0)
RETURNS TABLE (
    model text, layer text, probe text, variant text, run_id integer,
    unit integer, label text, category text, iou double precision, interpretable boolean,
    iou_low double precision, iou_high double precision, stability double precision, runner_up text,
    runner_up_iou double precision, chance_iou double precision, lift double precision,
    beats_random boolean, trusted boolean
)
LANGUAGE sql STABLE
AS $$
    SELECT l.model, l.layer, l.probe, l.variant, l.run_id, l.unit, l.label, l.category, l.iou, l.interpretable,
           l.iou_low, l.iou_high, l.stability, l.runner_up, l.runner_up_iou, l.chance_iou, l.lift, l.beats_random,
           l.interpretable AND l.stability >= min_stability AND l.iou_low > min_low_lift * l.chance_iou
               AND CASE WHEN l.control_run_id IS NULL THEN true ELSE l.beats_random END
    FROM (
        SELECT m.name AS model, r.layer, p.name AS probe, r.variant, r.id AS run_id,
               u.unit, c.name AS label, c.category, u.iou,
               c.id IS NOT NULL AND COALESCE(u.iou > COALESCE(min_iou, r.iou_threshold), false) AS interpretable,
               u.iou_low, u.iou_high, u.stability, ru.name AS runner_up, u.runner_up_iou, u.chance_iou, u.lift,
               CASE WHEN k.control_run_id IS NOT NULL AND c.id IS NOT NULL
                    THEN u.iou > COALESCE(cc.cutoff, cr.iou_threshold) END AS beats_random,
               k.control_run_id
        FROM unit u
        JOIN run r ON r.id = u.run_id
        JOIN model m ON m.id = r.model_id
        JOIN probe p ON p.id = r.probe_id
        LEFT JOIN concept c ON c.id = u.concept_id
        LEFT JOIN concept ru ON ru.id = u.runner_up_id
        LEFT JOIN run_control_of k ON k.run_id = r.id
        LEFT JOIN run cr ON cr.id = k.control_run_id
        LEFT JOIN control_cutoff cc ON cc.run_id = k.control_run_id AND cc.concept_id = u.concept_id
        WHERE r.superseded_at IS NULL
    ) l
$$;

CREATE VIEW unit_label AS SELECT * FROM unit_label_at(NULL);

COMMENT ON VIEW unit_label IS 'One row per unit: its best concept, IoU, whether it is interpretable at its run''s cut-off, how sure the label is, and whether it is trusted.';
