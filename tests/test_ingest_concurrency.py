"""Many writers on one database: concurrent ingests and an import, two of them the same model; a plan's driver
killed mid-plan and started again."""

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import text

from lce.published import netdissect_result
from tests import test_ingest
from tests.conftest import published_file
from tests.test_ingest_plan import THREE, plan, units

pytestmark = pytest.mark.slow  # concurrent lce processes, each importing torch

synth = test_ingest.synth  # the fixture of the registered 30-image 64-px probe


def lce(*args: str) -> list[str]:
    return [sys.executable, "-m", "lce", *args]


def stored_runs(engine) -> list[tuple]:
    """(model, layer, units stored, units the run says) for every run."""
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT m.name, r.layer, (SELECT count(*) FROM unit u WHERE u.run_id = r.id), r.unit_count FROM run r"
            " JOIN model m ON m.id = r.model_id ORDER BY 1, 2")).all()


def test_four_ingests_and_an_import_at_once_store_one_run_each(engine, synth, database):
    """Four `lce ingest` processes, two of them the same model and settings, and an `lce import` at the same
    moment: every one succeeds, the shared model is dissected and stored once, and the other says skipped."""
    env = {**os.environ, "LCE_DATABASE_URL": database, "COLUMNS": "200"}
    common = ["--probe", "synth", "--arch", "resnet18", "--random-init", "--batch-size", "8", "--layer", "layer3"]
    commands = [lce("ingest", "r18-a", *common, "--seed", "1"), lce("ingest", "r18-b", *common, "--seed", "2"),
                lce("ingest", "r18-c", *common, "--seed", "3"), lce("ingest", "r18-c", *common, "--seed", "3"),
                lce("import", "netdissect-csv", str(published_file(netdissect_result("resnet18_places365_layer4.csv"))),
                    "--model", "nd-r18", "--layer", "layer4")]
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for command in commands]
    outputs = [process.communicate(timeout=600) for process in processes]
    for command, process, (out, err) in zip(commands, processes, outputs):
        assert process.returncode == 0, (command, out, err)
    assert stored_runs(engine) == [("nd-r18", "layer4", 512, 512), ("r18-a", "layer3", 256, 256),
                                   ("r18-b", "layer3", 256, 256), ("r18-c", "layer3", 256, 256)]
    same = [outputs[2][0], outputs[3][0]]
    assert sum("r18-c layer3: created run" in out for out in same) == 1, same
    assert sum("already ingested with this checkpoint and settings" in out for out in same) == 1, same


def test_a_plan_killed_midway_does_only_what_is_missing_when_run_again(cli, engine, synth, database, tmp_path):
    """SIGKILL of the driver once its first model is stored: no partial run is left, and the same command again
    dissects only the models not yet stored."""
    path = tmp_path / "plan.csv"
    path.write_text(THREE)
    env = {**os.environ, "LCE_DATABASE_URL": database, "COLUMNS": "200"}
    driver = subprocess.Popen(lce("ingest", "--plan", str(path), "--probe", "synth", "--batch-size", "8"), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not stored_runs(engine) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=60)
    time.sleep(0.2)  # the server notices the dropped connection and rolls its transaction back
    killed = stored_runs(engine)
    assert killed and all(stored == said for _, _, stored, said in killed), killed  # whole runs only
    stored_models = {name for name, *_ in killed}
    assert len(stored_models) < 3, "the driver finished before it was killed; nothing was tested"
    again = plan(cli, path)
    assert again.exit_code == 0, again.output
    assert again.stdout.count("to do") == 3 - len(stored_models), again.stdout
    assert again.stdout.count("skipped") == len(stored_models), again.stdout
    assert [(name, layer) for name, layer, *_ in stored_runs(engine)] == [
        ("r18-1", "layer4"), ("r18-2", "layer4"), ("r18-34", "layer3"), ("r18-34", "layer4")]
    assert all(stored == said for _, _, stored, said in stored_runs(engine))
    assert sorted(units(engine)) == [("r18-1", "layer4"), ("r18-2", "layer4"), ("r18-34", "layer3"),
                                     ("r18-34", "layer4")]
