"""The schema: migrations round-trip, match the SQLAlchemy models, and create the views from sql/."""

from alembic import command
from sqlalchemy import inspect, text

from lce.db import connection, migrate
from lce.db.views import VIEWS

TABLES = {"probe", "concept", "model", "run", "unit", "run_concept", "unit_tally", "unit_top_image", "embedding",
          "unit_alternative", "unit_replicate", "run_control", "control_cutoff", "embedding_coassignment",
          "embedding_point", "task_metric", "task_performance"}


def test_upgrade_downgrade_upgrade_round_trips(empty_database):
    engine = connection.connect(upgrade=False)
    assert migrate.current(engine) is None
    migrate.upgrade(engine)
    assert migrate.current(engine) == migrate.head()
    assert TABLES <= set(inspect(engine).get_table_names())
    assert set(VIEWS) <= set(inspect(engine).get_view_names())

    migrate.downgrade(engine, "base")
    engine.dispose()
    assert migrate.current(engine) is None
    assert not TABLES & set(inspect(engine).get_table_names())
    assert not set(VIEWS) & set(inspect(engine).get_view_names())

    migrate.upgrade(engine)
    engine.dispose()
    assert migrate.current(engine) == migrate.head()
    assert set(VIEWS) <= set(inspect(engine).get_view_names())


def test_models_match_migrations(database):
    """`alembic check`: autogenerate finds nothing to add, drop or alter."""
    engine = connection.connect()
    command.check(migrate.config(engine))


def test_first_use_upgrades_an_empty_database(empty_database):
    engine = connection.connect()  # what every command does first
    assert migrate.current(engine) == migrate.head()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM unit_label")).scalar() == 0


def test_constraints_reject_bad_rows(engine):
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO probe (name, source) VALUES ('p', 'imported')"))
        conn.execute(text("INSERT INTO model (name) VALUES ('m')"))
    bad_statements = [
        "INSERT INTO concept (probe_id, name, category) SELECT id, 'x', 'smell' FROM probe",
        "INSERT INTO run (model_id, probe_id, layer, variant, quantile, iou_threshold, source, code_version,"
        " unit_count) SELECT m.id, p.id, 'l', 'dissect', 0.01, 1.5, 'dissected', 'v', 1 FROM model m, probe p",
        "INSERT INTO run (model_id, probe_id, layer, variant, quantile, iou_threshold, source, code_version,"
        " unit_count) SELECT m.id, p.id, 'l', 'gradcam', 0.01, 0.04, 'dissected', 'v', 1 FROM model m, probe p",
        "INSERT INTO model (name, checkpoint_sha256) VALUES ('n', 'not-a-hash')",
    ]
    for statement in bad_statements:
        with engine.connect() as conn:
            try:
                conn.execute(text(statement))
            except Exception as error:  # noqa: BLE001 - any integrity error will do
                assert "violates check constraint" in str(error)
            else:
                raise AssertionError(f"accepted: {statement}")
    with engine.begin() as conn:
        run_id = conn.execute(text(
            "INSERT INTO run (model_id, probe_id, layer, variant, quantile, iou_threshold, source, code_version,"
            " unit_count) SELECT m.id, p.id, 'l', 'dissect', 0.01, 0.04, 'dissected', 'v', 1 FROM model m, probe p"
            " RETURNING id")).scalar()
    for values in [f"({run_id}, -1, 0.1)", f"({run_id}, 0, 1.2)"]:
        with engine.connect() as conn:
            try:
                conn.execute(text(f"INSERT INTO unit (run_id, unit, iou) VALUES {values}"))
            except Exception as error:  # noqa: BLE001
                assert "violates check constraint" in str(error)
            else:
                raise AssertionError(f"accepted unit {values}")
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO unit (run_id, unit, iou) VALUES ({run_id}, 0, NULL)"))
        duplicate_ok = False
        try:
            with conn.begin_nested():
                conn.execute(text(f"INSERT INTO unit (run_id, unit, iou) VALUES ({run_id}, 0, 0.5)"))
        except Exception as error:  # noqa: BLE001
            duplicate_ok = "duplicate key" in str(error)
        assert duplicate_ok, "a second row for the same run and unit was accepted"


def test_superseded_runs_migration_keeps_data_and_downgrades_to_the_old_views(empty_database):
    """0005 -> 0006 on a database with a run, and back: the views work at both revisions (each from its own
    definition), and the downgrade drops superseded runs, which the old unique constraint would not admit."""
    engine = connection.connect(upgrade=False)
    migrate.upgrade(engine, "0005")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO probe (name, source) VALUES ('p', 'imported')"))
        conn.execute(text("INSERT INTO model (name) VALUES ('m')"))
        conn.execute(text(
            "INSERT INTO run (model_id, probe_id, layer, variant, quantile, iou_threshold, source, code_version,"
            " unit_count) SELECT m.id, p.id, 'l', 'dissect', 0.01, 0.04, 'dissected', 'v', 1 FROM model m, probe p"))
        conn.execute(text("INSERT INTO unit (run_id, unit, iou) SELECT id, 0, 0.5 FROM run"))
    migrate.upgrade(engine)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM unit_label")).scalar() == 1
        conn.execute(text("UPDATE run SET superseded_at = now()"))
        assert conn.execute(text("SELECT count(*) FROM unit_label")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM unit_category_label")).scalar() == 0
    migrate.downgrade(engine, "0005")
    engine.dispose()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM unit_label")).scalar() == 0
        assert "superseded_at" not in {c["name"] for c in inspect(engine).get_columns("run")}
        view = conn.execute(text("SELECT pg_get_functiondef('unit_label_at(double precision)'::regprocedure)")).scalar()
        assert "superseded" not in view


def test_model_settings_are_backfilled_for_runs_of_an_older_lce(empty_database):
    """0006 -> 0007: dissected runs that do not record how their model was made get it from the model row, as lce
    0.1.0 built it: a zoo entry named in the notes (SimCLR's without mean/std), else the architecture with
    ImageNet's; imported runs and runs that record it already are left alone; the downgrade takes back only that."""
    engine = connection.connect(upgrade=False)
    migrate.upgrade(engine, "0006")
    models = [("simclr-v1", "resnet50", "SimCLR-v1: resnet50 from r50_1x_sk0.pth (layout torchvision)", "ab"),
              ("r18", "resnet18", "resnet18, random init (seed 3)", None),
              ("simclr-v1-like", "resnet50", "SimCLR-v1: resnet50 from x.pth", "cd")]
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO probe (name, source) VALUES ('p', 'imported')"))
        for name, architecture, notes, checkpoint in models:
            conn.execute(text("INSERT INTO model (name, architecture, notes) VALUES (:n, :a, :notes)"),
                         {"n": name, "a": architecture, "notes": notes})
            conn.execute(text(
                "INSERT INTO run (model_id, probe_id, layer, variant, quantile, iou_threshold, source, code_version,"
                " unit_count, checkpoint_sha256, settings) SELECT m.id, p.id, 'layer4', 'dissect', 0.01, 0.04,"
                " 'dissected', 'v', 1, :c, CAST(:s AS jsonb) FROM model m, probe p WHERE m.name = :n"),
                {"n": name, "c": checkpoint, "s": '{"seed": 3, "random_init": true}' if checkpoint is None else '{}'})
    migrate.upgrade(engine)

    def settings() -> dict:
        with engine.connect() as conn:
            return {row.name: row.settings for row in conn.execute(text(
                "SELECT m.name, r.settings FROM run r JOIN model m ON m.id = r.model_id"))}

    backfilled = settings()
    assert {key: backfilled["simclr-v1"][key] for key in ("architecture", "zoo", "mean", "std", "random_init")} == \
        {"architecture": "resnet50", "zoo": "simclr-v1", "mean": None, "std": None, "random_init": False}
    assert {key: backfilled["r18"][key] for key in ("architecture", "source", "zoo", "mean", "seed")} == \
        {"architecture": "resnet18", "source": "torchvision", "zoo": None, "mean": [0.485, 0.456, 0.406], "seed": 3}
    assert backfilled["simclr-v1-like"]["zoo"] is None and backfilled["simclr-v1-like"]["std"] == [0.229, 0.224, 0.225]
    migrate.downgrade(engine, "0006")
    assert settings() == {"simclr-v1": {"random_init": False, "seed": None}, "r18": {"seed": 3, "random_init": True},
                          "simclr-v1-like": {"random_init": False, "seed": None}}
