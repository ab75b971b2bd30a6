"""`lce ingest --plan`: a CSV of models checked before any work, run one by one, resumable, and sharded."""

import pytest
import torch
import torchvision
from sqlalchemy import text

from lce.ingest.plan import parse_shard, read_plan
from lce.errors import LceError
from tests import test_ingest
from tests.test_ingest import ingest

synth = test_ingest.synth  # the fixture of the registered 30-image 64-px probe

THREE = ("model,arch,random_init,seed,layer\nr18-1,resnet18,true,1,\nr18-2,resnet18,yes,2,\n"
         "r18-34,resnet18,1,3,layer3;layer4\n")


def plan(cli, path, *args):
    return cli("ingest", "--plan", path, "--probe", "synth", "--batch-size", "8", *args)


def units(engine):
    """(model, layer) -> every unit's (threshold, concept, iou), from the database."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT m.name, r.layer, u.unit, u.threshold, u.concept_id, u.iou FROM unit u"
                                 " JOIN run r ON r.id = u.run_id JOIN model m ON m.id = r.model_id"
                                 " ORDER BY 1, 2, 3")).all()
    stored: dict = {}
    for name, layer, _, threshold, concept, iou in rows:
        stored.setdefault((name, layer), []).append((threshold, concept, iou))
    return stored


def runs(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT m.name, r.layer, r.id FROM run r JOIN model m ON m.id = r.model_id"
                                 " ORDER BY 1, 2")).all()


def test_a_plan_stores_what_separate_ingests_store_and_a_second_run_is_all_done(cli, engine, synth, tmp_path):
    path = tmp_path / "plan.csv"
    path.write_text(THREE)
    result = plan(cli, path)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("to do") == 3 and "Summary" in result.stdout
    planned = units(engine)
    assert sorted(planned) == [("r18-1", "layer4"), ("r18-2", "layer4"), ("r18-34", "layer3"), ("r18-34", "layer4")]
    first = runs(engine)
    again = plan(cli, path)
    assert again.exit_code == 0, again.output
    assert again.stdout.count("done") == 3 and again.stdout.count("skipped") == 3 and "to do" not in again.stdout
    assert runs(engine) == first
    # The same models one `lce ingest` at a time, under other names: the same unit rows.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM run"))
    for name, seed, layers in (("r18-1", 1, ["layer4"]), ("r18-2", 2, ["layer4"]), ("r18-34", 3, ["layer3", "layer4"])):
        layer_args = [arg for layer in layers for arg in ("--layer", layer)]
        single = ingest(cli, name, "--arch", "resnet18", "--random-init", "--seed", str(seed), *layer_args)
        assert single.exit_code == 0, single.output
    assert units(engine) == planned


def test_invalid_rows_stop_the_plan_unless_skipped(cli, engine, synth, tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint at all")
    path = tmp_path / "plan.csv"
    path.write_text(f"model,arch,checkpoint,random_init,layer\nr18-ok,resnet18,,true,\nbroken,resnet18,{corrupt},,\n"
                    "typo,resnet18,,true,layer5\n")
    refused = plan(cli, path)
    assert refused.exit_code == 1, refused.output
    assert "line 3 (broken) is invalid" in refused.stdout and "line 4 (typo) is invalid" in refused.stdout
    assert "'layer5'" in refused.stdout and "line 3, 4" in refused.stderr
    assert runs(engine) == []
    skipped = plan(cli, path, "--skip-invalid")
    assert skipped.exit_code == 2, skipped.output
    assert [row[:2] for row in runs(engine)] == [("r18-ok", "layer4")]
    summary = skipped.stdout[skipped.stdout.index("Summary"):]
    assert "line 3 (broken) invalid" in summary and "line 4 (typo) invalid" in summary
    assert "stored" in summary


def test_two_shards_store_each_model_once(cli, engine, synth, tmp_path):
    path = tmp_path / "plan.csv"
    path.write_text("model,seed\nr18-a,1\nr18-b,2\nr18-c,3\n")
    for shard in ("1/2", "2/2"):
        result = plan(cli, path, "--arch", "resnet18", "--random-init", "--shard", shard)
        assert result.exit_code == 0, result.output
    assert [row[:2] for row in runs(engine)] == [("r18-a", "layer4"), ("r18-b", "layer4"), ("r18-c", "layer4")]
    rows = read_plan(path, {}, shard=(2, 2))
    assert [(row.line, row.model) for row in rows] == [(3, "r18-b")]
    with pytest.raises(LceError, match="--shard '3/2'"):
        parse_shard("3/2")


def test_dry_run_prints_the_plan_and_an_unknown_column_is_named(cli, engine, synth, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    path = tmp_path / "plan.csv"
    path.write_text(f"model,arch,checkpoint,layer\nmine,resnet18,{weights},layer2;layer3\n")
    dry = plan(cli, path, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "mine" in dry.stdout and "layer2;layer3" in dry.stdout and "to do" in dry.stdout
    assert runs(engine) == []
    path.write_text("model,arch,colour\nmine,resnet18,red\n")
    bad = plan(cli, path, "--dry-run")
    assert bad.exit_code == 1 and "column 'colour'" in bad.stderr and str(path) in bad.stderr
    assert bad.stderr.count("error:") == 1
    mixed = cli("ingest", "r18", "--plan", path, "--probe", "synth")
    assert mixed.exit_code == 1 and "--plan alone" in mixed.stderr


def test_a_row_that_fails_is_reported_and_the_others_go_on(cli, engine, synth, tmp_path, monkeypatch):
    import lce.ingest.run

    real = lce.ingest.run.ingest

    def out_of_memory_for_b(request, progress=None, **kwargs):
        if request.model == "r18-b":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(request, progress, **kwargs)

    monkeypatch.setattr(lce.ingest.run, "ingest", out_of_memory_for_b)
    path = tmp_path / "plan.csv"
    path.write_text("model,seed\nr18-a,1\nr18-b,2\nr18-c,3\n")
    result = plan(cli, path, "--arch", "resnet18", "--random-init")
    assert result.exit_code == 1, result.output
    assert "line 3 (r18-b) failed: RuntimeError: CUDA out of memory" in result.stdout
    assert [row[0] for row in runs(engine)] == ["r18-a", "r18-c"]


def test_runs_pending_from_a_lost_database_are_stored_by_the_plan(cli, engine, synth, tmp_path, monkeypatch):
    import lce.ingest.run
    from lce.db.outage import DatabaseLost

    def lost(*args, **kwargs):
        raise DatabaseLost("the server closed the connection")

    with monkeypatch.context() as patched:
        patched.setattr(lce.ingest.run, "write_runs", lost)
        assert ingest(cli, "r18-a", "--arch", "resnet18", "--random-init", "--seed", "1").exit_code == 1
    saved = list((tmp_path / "home" / "pending").iterdir())
    assert len(saved) == 1 and runs(engine) == []
    path = tmp_path / "plan.csv"
    path.write_text("model,seed\nr18-a,1\n")
    result = plan(cli, path, "--arch", "resnet18", "--random-init")
    assert result.exit_code == 0, result.output
    assert f"{saved[0]}: stored r18-a layer4 (created run" in result.stdout and not saved[0].exists()
    assert "skipped" in result.stdout and [row[:2] for row in runs(engine)] == [("r18-a", "layer4")]
