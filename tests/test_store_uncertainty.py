"""The store of a label's uncertainty (migration 0009): unit columns, unit_alternative, unit_replicate, the run's
bootstrap settings, pending files, and controls (run_control, control_cutoff, run_control_of, unit_label's
beats_random and trusted)."""

import numpy as np
from sqlalchemy import text

from lce.db import pending
from lce.importers import pending_runs
from lce.db.controls import control_of, set_control, unset_control
from lce.db.runs import write_runs
from lce.records import Bootstrap, ModelInfo, ReplicateLabels, RunRecord, TallyRow, UnitRow

SKY, TREE, CAR = ("object", "sky"), ("object", "tree"), ("object", "car")
NAN = float("nan")


def rows(engine, sql: str, **params) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql), params)]


def dissected(name: str, units: list[UnitRow], tallies: list[TallyRow], bootstrap: Bootstrap | None = None,
              control: bool = False, architecture: str | None = "resnet18") -> RunRecord:
    return RunRecord(model=ModelInfo(name, architecture=architecture), probe="p", layer="layer4", variant="dissect",
                     quantile=0.01, iou_threshold=0.04, source="dissected", units=units, tallies=tallies, seg_size=7,
                     settings={"seed": name}, bootstrap=bootstrap, control=control)


UNITS = [
    UnitRow(0, SKY, 0.3, 1.0, iou_low=0.25, iou_high=0.35, stability=0.99, runner_up=TREE, runner_up_iou=0.1,
            chance_iou=0.05, lift=6.0),
    UnitRow(1, TREE, 0.05, 1.0, iou_low=0.01, iou_high=0.09, stability=0.55, runner_up=SKY, runner_up_iou=0.04,
            chance_iou=0.04, lift=1.25),
    UnitRow(2, None, 0.0, 1.0, iou_low=NAN, iou_high=NAN, stability=NAN, chance_iou=NAN, lift=NAN),
]
TALLIES = [TallyRow(0, SKY, 30, 60, 70, 0.3), TallyRow(0, TREE, 10, 60, 50, 0.1),
           TallyRow(1, TREE, 5, 55, 50, 0.05), TallyRow(1, SKY, 4, 34, 70, 0.04)]
BOOTSTRAP = Bootstrap(
    replicates=1000, blocks=100, seed=2**59 + 3, alternatives=[(0, SKY, 0.99), (1, TREE, 0.55), (1, SKY, 0.45)],
    labels=ReplicateLabels(concepts=[SKY, TREE], label=np.array([[0, 0, 0], [1, 0, 1], [-1, -1, -1]]),
                           iou=np.array([[0.3, 0.31, 0.29], [0.05, 0.045, 0.06], [0, 0, 0]], dtype=np.float32)))


def test_uncertainty_is_stored_with_each_unit_and_nan_becomes_null(engine):
    (written,) = write_runs(engine, [dissected("m", UNITS, TALLIES, BOOTSTRAP)])
    assert rows(engine, "SELECT replicates, bootstrap_blocks, bootstrap_seed FROM run") == [(1000, 100, 2**59 + 3)]
    assert rows(engine, "SELECT u.unit, u.iou_low, u.iou_high, u.stability, c.name, u.runner_up_iou, u.chance_iou,"
                        " u.lift FROM unit u LEFT JOIN concept c ON c.id = u.runner_up_id ORDER BY 1") == [
        (0, 0.25, 0.35, 0.99, "tree", 0.1, 0.05, 6.0), (1, 0.01, 0.09, 0.55, "sky", 0.04, 0.04, 1.25),
        (2, None, None, None, None, None, None, None)]
    assert rows(engine, "SELECT a.unit, c.name, a.share FROM unit_alternative a JOIN concept c ON c.id = a.concept_id"
                        " ORDER BY 1, 3 DESC") == [(0, "sky", 0.99), (1, "tree", 0.55), (1, "sky", 0.45)]
    names = dict(rows(engine, "SELECT id, name FROM concept"))
    replicate = rows(engine, "SELECT unit, concept_ids, ious FROM unit_replicate ORDER BY unit")
    assert [(unit, [names.get(i) for i in ids]) for unit, ids, _ in replicate] == [
        (0, ["sky", "sky", "sky"]), (1, ["tree", "sky", "tree"]), (2, [None, None, None])]
    assert np.array_equal(np.array([ious for _, _, ious in replicate], dtype=np.float32), BOOTSTRAP.labels.iou)
    # unit_label: the new columns after the old ones; no control serves the run, so trusted needs only stability
    # >= 0.8 and iou_low > chance_iou.
    assert rows(engine, "SELECT unit, label, interpretable, iou_low, stability, runner_up, beats_random, trusted"
                        " FROM unit_label ORDER BY unit") == [
        (0, "sky", True, 0.25, 0.99, "tree", None, True), (1, "tree", True, 0.01, 0.55, "sky", None, False),
        (2, None, False, None, None, None, None, False)]
    assert rows(engine, "SELECT unit, trusted FROM unit_label_at(NULL, 0.5, 0.2) ORDER BY unit") == [
        (0, True), (1, True), (2, False)]
    assert rows(engine, "SELECT count(*) FROM unit_label_at(0.08) WHERE interpretable") == [(1,)]
    assert written.run_id


def test_a_pending_file_keeps_the_uncertainty(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("LCE_HOME", str(tmp_path))
    record = dissected("m", UNITS, TALLIES, BOOTSTRAP)
    loaded, _ = pending_runs.load(pending.save([record], replace=False))
    (back,) = loaded
    assert [row.runner_up for row in back.units] == [TREE, SKY, None]
    assert back.units[0] == UNITS[0] and back.units[2].stability is None  # NaN, an unknown measure, is saved null
    assert (back.bootstrap.replicates, back.bootstrap.blocks, back.bootstrap.seed) == (1000, 100, 2**59 + 3)
    assert back.bootstrap.alternatives == BOOTSTRAP.alternatives
    assert np.array_equal(back.bootstrap.labels.label, BOOTSTRAP.labels.label)
    assert np.array_equal(back.bootstrap.labels.iou, BOOTSTRAP.labels.iou)
    write_runs(engine, loaded)
    assert rows(engine, "SELECT count(*) FROM unit_replicate") == [(3,)]


def test_a_dissected_control_sets_a_cut_off_per_concept_and_serves_its_kind(engine):
    # The control: 100 units; sky's IoU is 0.01 * u for units 0..49 (0 for the rest), tree's 0.2 on one unit only.
    control_units = [UnitRow(u, SKY if u < 50 else None, 0.01 * u if u < 50 else 0.0, 1.0) for u in range(100)]
    control_tallies = [TallyRow(u, SKY, u, 100, 100, 0.01 * u) for u in range(1, 50)] + [TallyRow(7, TREE, 20, 100,
                                                                                                  20, 0.2)]
    written = write_runs(engine, [dissected("m", UNITS, TALLIES, BOOTSTRAP),
                                  dissected("random", control_units, control_tallies, control=True)])
    model_run, control_run = (item.run_id for item in written)
    sky = np.zeros(100)
    sky[:50] = 0.01 * np.arange(50)
    tree = np.zeros(100)
    tree[7] = 0.2
    assert rows(engine, "SELECT c.name, k.cutoff FROM control_cutoff k JOIN concept c ON c.id = k.concept_id"
                        " ORDER BY 1") == [("sky", np.percentile(sky, 99)), ("tree", np.percentile(tree, 99))]
    with engine.connect() as conn:
        assert control_of(conn, model_run) == control_run
        assert control_of(conn, control_run) is None  # a control does not serve itself
    # sky's cut-off is 0.4801 (unit 0's 0.3 does not pass it); tree's 0.002 (unit 1's 0.05 does).
    assert rows(engine, "SELECT unit, beats_random, trusted FROM unit_label WHERE run_id = :run ORDER BY unit",
                run=model_run) == [(0, False, False), (1, True, False), (2, None, False)]
    assert rows(engine, "SELECT unit, trusted FROM unit_label_at(NULL, 0.5, 0.2) WHERE run_id = :run ORDER BY unit",
                run=model_run) == [(0, False), (1, True), (2, False)]
    with engine.begin() as conn:
        assert unset_control(conn, control_run)
        assert not unset_control(conn, control_run)
    assert rows(engine, "SELECT count(*) FROM control_cutoff") == [(0,)]
    assert rows(engine, "SELECT unit, beats_random, trusted FROM unit_label WHERE run_id = :run ORDER BY unit",
                run=model_run) == [(0, None, True), (1, None, False), (2, None, False)]


def test_an_imported_control_takes_the_best_labelled_unit_and_serves_only_its_kind(engine):
    imported = RunRecord(model=ModelInfo("Random(R)"), probe="p", layer="layer4", variant="dissect", quantile=0.01,
                         iou_threshold=0.04, source="imported:test", seg_size=7,
                         units=[UnitRow(0, SKY, 0.2), UnitRow(1, SKY, 0.5), UnitRow(2, None, 0.9),
                                UnitRow(3, CAR, None)])
    other_layer = dissected("other", UNITS, TALLIES, BOOTSTRAP)
    other_layer.layer = "layer3"
    other_arch = dissected("vit", UNITS, TALLIES, BOOTSTRAP, architecture="vit_b_16")
    written = write_runs(engine, [dissected("m", UNITS, TALLIES, BOOTSTRAP), imported, other_layer, other_arch])
    model_run, control_run, layer_run, arch_run = (item.run_id for item in written)
    with engine.begin() as conn:
        assert set_control(conn, control_run) == 1
        assert control_of(conn, model_run) == control_run  # Random(R) records no architecture: it serves resnet18
        assert control_of(conn, layer_run) is None
    assert rows(engine, "SELECT c.name, k.cutoff FROM control_cutoff k JOIN concept c ON c.id = k.concept_id") == [
        ("sky", 0.5)]
    # tree has no cut-off: the control's own 0.04 stands in.
    assert rows(engine, "SELECT unit, beats_random FROM unit_label WHERE run_id = :run ORDER BY unit",
                run=model_run) == [(0, False), (1, True), (2, None)]
    # A second control of the model's own architecture is preferred over one that records none.
    control = dissected("random", [UnitRow(0, SKY, 0.1, 1.0)], [TallyRow(0, SKY, 10, 50, 60, 0.1)], control=True)
    (second,) = write_runs(engine, [control])
    with engine.connect() as conn:
        assert control_of(conn, model_run) == second.run_id
        assert control_of(conn, arch_run) == control_run  # vit_b_16: only the control that records no architecture
