"""Controls: runs (random weights, usually) that say which labels chance and the architecture alone produce.

    with engine.begin() as conn:
        concepts = set_control(conn, run_id)   # marks the run, computes its per-concept cut-offs
        control_of(conn, other_run_id)         # the control that serves a run (view run_control_of), or None
    change = name_control("Random(R)")         # lce control set RUN [--layer ...]: its own transaction (unname_control)

A control serves every current run of the same layer, probe, variant, quantile and segmentation size (and of the
same architecture when both models record one). A unit of a served run beats random when its label's IoU exceeds
the control's cut-off for that concept (view unit_label, column beats_random):

- a dissected control (one with tallies): the 99th percentile (linear interpolation) of the concept's IoU over
  all the control's units, a unit without a tally of it counting 0;
- an imported control (no tallies): the highest IoU among the control's units labelled with the concept; units
  without a label or an IoU are left out.

A concept without a cut-off (an imported control none of whose units carries it) falls back to the control's own
IoU cut-off, run.iou_threshold (0.04). One cut-off over all of a control's units would not do: the paper
authors' Random(R) has hundreds of unlabelled units of high IoU, and its 99th percentile passes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Connection, text

from lce.db.connection import connect
from lce.db.run_choice import run_named
from lce.errors import LceError
from lce.resources import read_sql

PERCENTILE = 99.0


def set_control(conn: Connection, run_id: int) -> int:
    """Name run `run_id` a control and compute its cut-offs (again, when it is one already), inside the caller's
    transaction; returns the number of concepts given a cut-off. An LceError for a run that is missing or
    superseded."""
    run = conn.execute(text("SELECT id, superseded_at FROM run WHERE id = :id"), {"id": run_id}).first()
    if run is None:
        raise LceError(f"There is no run {run_id}; `lce models` lists the stored runs and their ids.")
    if run.superseded_at is not None:
        raise LceError(f"Run {run_id} was replaced (--replace) and is kept only for a stored embedding; name its "
                       "current run the control instead.")
    conn.execute(text("INSERT INTO run_control (run_id) VALUES (:id) ON CONFLICT (run_id) DO NOTHING"),
                 {"id": run_id})
    conn.execute(text("DELETE FROM control_cutoff WHERE run_id = :id"), {"id": run_id})
    cutoffs = _dissected_cutoffs(conn, run_id)
    if cutoffs is None:
        cutoffs = _imported_cutoffs(conn, run_id)
    if cutoffs:
        conn.execute(text("INSERT INTO control_cutoff (run_id, concept_id, cutoff) VALUES (:run, :concept, :cutoff)"),
                     [{"run": run_id, "concept": concept, "cutoff": cutoff} for concept, cutoff in cutoffs.items()])
    return len(cutoffs)


def unset_control(conn: Connection, run_id: int) -> bool:
    """The run is no longer a control (its cut-offs go with it); False when it was not one."""
    return conn.execute(text("DELETE FROM run_control WHERE run_id = :id"), {"id": run_id}).rowcount > 0


def control_of(conn: Connection, run_id: int) -> int | None:
    """The id of the control that serves run `run_id` (view run_control_of), or None."""
    return conn.execute(text("SELECT control_run_id FROM run_control_of WHERE run_id = :id"),
                        {"id": run_id}).scalar()


def _dissected_cutoffs(conn: Connection, run_id: int) -> dict[int, float] | None:
    """Per concept of the run's tallies, the 99th percentile of its IoU over all the run's units (0 for a unit with
    no tally of it); None for a run without tallies."""
    concepts = [row.concept_id for row in conn.execute(
        text("SELECT concept_id FROM run_concept WHERE run_id = :id ORDER BY concept_id"), {"id": run_id})]
    units = {row.unit: index for index, row in enumerate(conn.execute(
        text("SELECT unit FROM unit WHERE run_id = :id ORDER BY unit"), {"id": run_id}))}
    if not concepts or not units:
        return None
    column = {concept: index for index, concept in enumerate(concepts)}
    iou = np.zeros((len(units), len(concepts)))
    rows = conn.execute(text("SELECT t.unit, t.concept_ids, t.ious FROM unit_tally t WHERE t.run_id = :id"),
                        {"id": run_id})
    for unit, concept_ids, ious in rows:
        iou[units[unit], [column[concept] for concept in concept_ids]] = ious
    cutoff = np.percentile(iou, PERCENTILE, axis=0)  # linear interpolation, numpy's default
    return {concept: float(value) for concept, value in zip(concepts, cutoff.tolist())}


def _imported_cutoffs(conn: Connection, run_id: int) -> dict[int, float]:
    """Per concept some unit of the run is labelled with, the highest IoU among those units."""
    rows = conn.execute(text("SELECT concept_id, max(iou) AS cutoff FROM unit WHERE run_id = :id AND concept_id IS NOT"
                             " NULL AND iou IS NOT NULL GROUP BY concept_id"), {"id": run_id})
    return {row.concept_id: float(row.cutoff) for row in rows}


@dataclass(frozen=True)
class ControlChange:
    """What `lce control set|unset` did: the run (control_candidate.sql's row: model, layer, probe, variant,
    source, random_weights, whether it was a control before) and its row of controls.sql before unset, after set
    (the runs it serves, its concepts with a cut-off, its own iou_threshold)."""

    run: dict
    listed: dict


def name_control(run: str, layer: str | None = None, probe: str | None = None,
                 variant: str | None = None) -> ControlChange:
    """Name the run that RUN names (a run id, or a model's name with --layer/--probe/--variant) a control, its
    cut-offs computed (afresh when it is one already), in one transaction as the owner."""
    with connect().begin() as conn:
        chosen = _control_candidate(conn, run_named(conn, run, layer, probe, variant), current=True)
        set_control(conn, chosen["run_id"])
        return ControlChange(chosen, _listed(conn, chosen["run_id"]))


def unname_control(run: str, layer: str | None = None, probe: str | None = None,
                   variant: str | None = None) -> ControlChange:
    """Stop the run that RUN names being a control (an LceError when it is not one), in one transaction."""
    with connect().begin() as conn:
        chosen = _control_candidate(conn, run_named(conn, run, layer, probe, variant), current=False)
        if not chosen["control"]:
            raise LceError(f"Run {chosen['run_id']} ({described(chosen)}) is not a control; lce control list "
                           "shows the controls.")
        listed = _listed(conn, chosen["run_id"])
        unset_control(conn, chosen["run_id"])
        return ControlChange(chosen, listed)


def described(run: dict) -> str:
    """'MODEL LAYER, probe PROBE, VARIANT, SOURCE': a run in the messages of lce control."""
    return f"{run['model']} {run['layer']}, probe {run['probe']}, {run['variant']}, {run['source']}"


def _control_candidate(conn: Connection, run_id: int, current: bool) -> dict:
    """What control_candidate.sql says of the run; an LceError for an unknown run, and for a superseded one when
    `current`."""
    chosen = conn.execute(text(read_sql("queries/control_candidate")), {"run": run_id}).mappings().first()
    if chosen is None:
        raise LceError(f"No run {run_id} is stored; lce models lists the runs (column run), lce control list the "
                       "controls.")
    if current and chosen["superseded_at"] is not None:
        raise LceError(f"Run {run_id} ({described(chosen)}) was replaced by run {chosen['superseded_by']} and is kept "
                       f"only for a stored embedding: it serves no run. Name the current one: lce control set "
                       f"{chosen['superseded_by']}.")
    return dict(chosen)


def _listed(conn: Connection, run_id: int) -> dict:
    """The control's row of controls.sql (the runs it serves, its concepts with a cut-off)."""
    rows = conn.execute(text(read_sql("queries/controls"))).mappings()
    return next((dict(row) for row in rows if row["run"] == run_id), {"serves": 0, "concepts": 0})
