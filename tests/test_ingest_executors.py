"""`lce ingest --plan --executor local|ray`: the same unit rows as one row after another, a worker's death fails its
row only, and the options that cannot work are refused before any work."""

import os
import signal
import sys

import pytest
import torch
import torchvision
from sqlalchemy import text

from tests import test_ingest
from tests.test_ingest_plan import plan, runs

pytestmark = pytest.mark.slow  # worker processes and a Ray cluster

synth = test_ingest.synth  # the fixture of the registered 30-image 64-px probe

# Three small models (layer3 and below: 256 units at most); one has two layers.
THREE = ("model,arch,random_init,seed,layer\nr18-1,resnet18,true,1,layer3\nr18-2,resnet18,yes,2,layer2\n"
         "r18-3,resnet18,1,3,layer2;layer3\n")
DRIVER_ENV = "LCE_TEST_DRIVER_PID"


def stored(engine):
    """Every unit row and every tally (through unit_concept) of every run, by model and layer, ids left out."""
    with engine.connect() as conn:
        units = conn.execute(text(
            "SELECT m.name, r.layer, u.unit, u.threshold, c.category, c.name, u.iou FROM unit u"
            " JOIN run r ON r.id = u.run_id JOIN model m ON m.id = r.model_id LEFT JOIN concept c ON c.id ="
            " u.concept_id ORDER BY 1, 2, 3")).all()
        tallies = conn.execute(text(
            "SELECT m.name, r.layer, t.unit, c.category, c.name, t.intersection, t.activation, t.truth, t.iou"
            " FROM unit_concept t JOIN run r ON r.id = t.run_id JOIN model m ON m.id = r.model_id"
            " JOIN concept c ON c.id = t.concept_id ORDER BY 1, 2, 3, 4, 5")).all()
    return [tuple(row) for row in units], [tuple(row) for row in tallies]


def clear(engine):
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM run"))


@pytest.fixture
def sequential(cli, engine, synth, tmp_path):
    """The three-model plan stored one row after another: (plan file, its unit rows and tallies); the store is
    emptied again."""
    path = tmp_path / "plan.csv"
    path.write_text(THREE)
    result = plan(cli, path)
    assert result.exit_code == 0, result.output
    rows = stored(engine)
    assert len({(name, layer) for name, layer, *_ in rows[0]}) == 4 and len(rows[1]) > 1000
    clear(engine)
    return path, rows


def test_two_cpu_workers_store_the_same_rows_as_one_after_another(cli, engine, sequential):
    path, expected = sequential
    result = plan(cli, path, "--executor", "local", "--devices", "cpu,cpu")
    assert result.exit_code == 0, result.output
    summary = result.stdout[result.stdout.index("Summary"):]
    assert summary.count("stored") == 3 and summary.count(" cpu") == 3
    assert stored(engine) == expected
    again = plan(cli, path, "--executor", "local", "--devices", "cpu,cpu")
    assert again.exit_code == 0 and again.stdout.count("skipped") == 3, again.output


def test_a_local_ray_cluster_stores_the_same_rows_as_one_after_another(cli, engine, sequential, tmp_path,
                                                                        monkeypatch):
    pytest.importorskip("ray")
    path, expected = sequential
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # where ray.init() on its own keeps its token
    result = plan(cli, path, "--executor", "ray", "--devices", "cpu,cpu")  # a local cluster of 2 CPUs
    assert result.exit_code == 0, result.output
    assert result.stdout[result.stdout.index("Summary"):].count("stored") == 3
    assert stored(engine) == expected
    import ray

    assert not ray.is_initialized()  # lce shut down the cluster it started
    # Its token was its own, in its environment only (tests/test_ray_cluster.py: loopback, refused without it).
    assert "RAY_AUTH_TOKEN" not in os.environ and not (tmp_path / "home" / ".ray").exists()


def resnet18_that_dies() -> torch.nn.Module:
    """resnet18 whose process is killed (SIGKILL) at its second forward pass, in any process but the test's own:
    a worker dies mid-row, after the layouts were read. Built by `--arch tests.test_ingest_executors:...`."""
    model = torchvision.models.resnet18()
    calls = []

    def die(module, inputs):
        calls.append(1)
        if len(calls) >= 2 and str(os.getpid()) != os.environ.get(DRIVER_ENV):
            os.kill(os.getpid(), signal.SIGKILL)

    model.register_forward_pre_hook(die)
    return model


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_worker_killed_mid_row_fails_that_row_and_the_others_are_stored(cli, engine, synth, tmp_path, monkeypatch,
                                                                         executor):
    if executor == "ray":
        pytest.importorskip("ray")
    monkeypatch.setenv(DRIVER_ENV, str(os.getpid()))
    path = tmp_path / "plan.csv"
    path.write_text("model,arch,seed\nr18-a,resnet18,1\ndies,tests.test_ingest_executors:resnet18_that_dies,2\n"
                    "r18-c,resnet18,3\n")
    result = plan(cli, path, "--random-init", "--layer", "layer2", "--executor", executor, "--devices", "cpu,cpu")
    assert result.exit_code == 1, result.output
    assert [row[:2] for row in runs(engine)] == [("r18-a", "layer2"), ("r18-c", "layer2")]
    reason = result.stdout[result.stdout.index("line 3 (dies) failed"):]
    if executor == "local":
        assert "the worker process on cpu" in reason and "died (killed by SIGKILL)" in reason, result.output
    else:
        assert "the Ray task died" in reason, result.output


def test_options_that_cannot_work_are_refused_before_any_work(cli, engine, synth, tmp_path, monkeypatch):
    path = tmp_path / "plan.csv"
    path.write_text(THREE)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    missing = plan(cli, path, "--executor", "ray")
    assert missing.exit_code == 1 and "pip install 'lce[ray]'" in missing.stderr, missing.output
    assert "Plan" not in missing.stdout  # refused before the plan was checked
    assert runs(engine) == []
    monkeypatch.delenv("LCE_DATABASE_URL")  # the embedded server: a unix socket of this machine
    remote = plan(cli, path, "--executor", "ray", "--ray-address", "10.0.0.7:6379")
    assert remote.exit_code == 1 and "Set LCE_DATABASE_URL" in remote.stderr, remote.output
    assert "Plan" not in remote.stdout  # refused before the plan was checked
    for args, said in ((["--executor", "threads"], "--executor must be one of sequential, local, ray"),
                       (["--devices", "cpu,cpu"], "--devices goes with --executor local"),
                       (["--executor", "local", "--devices", "cpu,gpu"], "--device must be one of")):
        refused = plan(cli, path, *args)
        assert refused.exit_code == 1 and said in refused.stderr, refused.output


def test_the_probe_on_a_worker_is_checked_against_its_registration(cli, engine, synth):
    from lce.errors import LceError
    from lce.probe.registry import open_registered_probe

    open_registered_probe(engine, "synth", "all")
    (synth / "index.csv").write_text((synth / "index.csv").read_text() + "\n")
    with pytest.raises(LceError, match=f"probe 'synth' at {synth} on host .* is not the registered dataset"):
        open_registered_probe(engine, "synth", "all")
