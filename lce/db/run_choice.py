"""Which stored run a command means: a run id, or a model's name that --layer/--probe/--variant narrow to one run.

    run = choose_run(conn, "MoCoV1(R)", known, layer=None, probe=None, variant=None)   # lce compare: model_runs.sql
    run_id = run_named(conn, "12", None, None, None)          # lce control: a run id, or a model name as above

An LceError names the candidates when the name is unknown or the options leave no run, or several.
"""

from __future__ import annotations

import difflib

from sqlalchemy import text

from lce.errors import LceError
from lce.resources import read_sql


def choose_run(conn, model: str, known: list[str], layer: str | None, probe: str | None,
               variant: str | None) -> dict:
    """The current run of `model` (one of `known`, the stored model names) that --layer/--probe/--variant narrow to
    one (lce compare, lce control); an LceError naming the candidates otherwise."""
    if model not in known:
        close = difflib.get_close_matches(model, known, n=5)
        hint = f"did you mean {', '.join(close)}?" if close else f"known models: {', '.join(sorted(known)) or 'none'}."
        raise LceError(f"No model named {model!r} is stored; {hint} (lce models lists them).")
    runs = [dict(row) for row in conn.execute(text(read_sql("queries/model_runs")), {"model": model}).mappings()]
    if not runs:
        raise LceError(f"Model {model!r} has no runs stored.")
    chosen = [run for run in runs
              if (layer is None or run["layer"] == layer) and (probe is None or run["probe"] == probe)
              and (variant is None or run["variant"] == variant)]
    if len(chosen) == 1:
        return chosen[0]
    listed = "; ".join(f"run {run['run_id']}: layer {run['layer']}, probe {run['probe']}, {run['variant']}, "
                       f"{run['source']}" for run in (chosen or runs))
    if not chosen:
        raise LceError(f"No run of {model!r} matches --layer/--probe/--variant; its runs are {listed}.")
    raise LceError(f"Model {model!r} has {len(chosen)} runs that match ({listed}); choose one with --layer, --probe "
                   "or --variant.")


def run_named(conn, run: str, layer: str | None, probe: str | None, variant: str | None) -> int:
    """The id of the run that RUN names: a run id as it is (not checked here), or the model's run chosen as
    choose_run() chooses; --layer/--probe/--variant with a run id are an LceError."""
    if run.strip().isdigit():
        if layer or probe or variant:
            raise LceError(f"Run {run} is a run id: --layer, --probe and --variant choose among a model's runs, so "
                           "drop them (or give the model's name).")
        return int(run)
    known = conn.execute(text(read_sql("queries/model_names"))).scalars().all()
    return choose_run(conn, run, known, layer, probe, variant)["run_id"]
