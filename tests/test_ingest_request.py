"""What lce ingest was asked, checked before anything loads (lce.ingest.request), and a plan's exit status."""

from __future__ import annotations

import inspect
from dataclasses import fields, replace
from pathlib import Path

import pytest

from lce.cli.ingest import ingest
from lce.errors import LceError
from lce.ingest.plan import OPTION_DEFAULTS, PlanRow, RowResult, exit_code
from lce.ingest.request import PLAN_DEFAULTS, IngestOptions

# lce ingest r18 --probe synth, every other option at the command line's default
ASKED = IngestOptions(**{name: parameter.default.default for name, parameter in
                         inspect.signature(ingest).parameters.items()} | {"model": "r18", "probe": "synth"})


def test_the_options_are_the_commands_parameters():
    """The command builds IngestOptions from its parameters by name."""
    assert [field.name for field in fields(IngestOptions)] == list(inspect.signature(ingest).parameters)


def test_each_mode_from_its_options():
    assert ASKED.mode() == "model"
    assert replace(ASKED, model=None, probe=None, plan=Path("plan.csv"), executor="local").mode() == "plan"
    assert replace(ASKED, model=None, probe=None, resume=Path("runs.json.gz"), replace=True).mode() == "resume"


@pytest.mark.parametrize("changes, message", [
    ({"plan": Path("plan.csv")}, "Give --plan alone: its rows name the models, so drop 'r18'."),
    ({"model": None, "plan": Path("p.csv"), "resume": Path("r")}, "Give --plan alone: its rows name the models, so "
                                                                  "drop --resume."),
    ({"shard": "1/2"}, "--skip-invalid, --shard, --executor, --devices and --ray-address go with --plan FILE"),
    ({"resume": Path("runs.json.gz"), "layer": ["layer4"]}, "Give MODEL or --resume, not both: --resume runs.json.gz "
                                                            "stores runs already dissected, so 'r18', --probe, "
                                                            "--layer would be ignored; drop them."),
    ({"model": None}, "Missing MODEL: name the model to dissect"),
    ({"probe": None}, "Missing --probe NAME"),
    ({"control_seed": 3}, "--control-seed 3 seeds the control of --random-control: add --random-control, or drop "
                          "--control-seed."),
])
def test_options_of_two_modes_are_refused_by_name(changes, message):
    with pytest.raises(LceError) as refused:
        replace(ASKED, **changes).mode()
    assert str(refused.value).startswith(message)


def test_a_plans_rows_default_to_every_per_model_option():
    defaults = replace(ASKED, layer=["layer3", "layer4"], seed=7).plan_defaults()
    assert set(defaults) == set(PLAN_DEFAULTS) >= set(OPTION_DEFAULTS)
    assert (defaults["layer"], defaults["seed"], defaults["probe"]) == (["layer3", "layer4"], 7, "synth")


def _rows(*statuses: str) -> list[PlanRow]:
    return [PlanRow(line=line, model=f"m{line}", options={}, status=status)
            for line, status in enumerate(statuses, start=2)]


def test_a_plans_exit_status():
    valid, mixed = _rows("to do", "done"), _rows("to do", "invalid")
    assert [exit_code(valid, False), exit_code(mixed, False), exit_code(mixed, True)] == [0, 1, 2]  # --dry-run
    stored = [RowResult(row, "stored") for row in mixed[:1]] + [RowResult(mixed[1], "invalid")]
    failed = [RowResult(mixed[0], "failed"), RowResult(mixed[1], "invalid")]
    assert exit_code(valid, False, [RowResult(row, "stored") for row in valid]) == 0
    assert exit_code(mixed, True, stored) == 2  # the valid rows ran, the invalid ones were skipped
    assert exit_code(mixed, True, failed) == 1
