"""`lce embed --units` and `--uncertainty`: the matrix from filtered units, and replicates of the embedding aligned
by Procrustes (covariance per model, co-assignment per pair), on the paper authors' data."""

import csv

import numpy as np
import pytest
from sqlalchemy import text

from lce.analysis.duck import duckdb_connection
from lce.analysis.embed import EmbedSettings, embed
from lce.analysis.embed_uncertainty import ELLIPSE_CHI2_95, ellipse_axes, procrustes_rotation
from lce.analysis.matrix import (
    PopulationUnits, RunUnits, concept_matrix, population_units, select_runs, unit_counts, units_matrix,
)
from lce.analysis.stored_embedding import load_embedding
from tests.conftest import PAPER_EXCLUDED

PAPER = tuple(PAPER_EXCLUDED)


def exclude_args():
    return [arg for name in PAPER_EXCLUDED for arg in ("--exclude", name)]


def run_id(engine, model: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT r.id FROM run r JOIN model m ON m.id = r.model_id WHERE m.name = :m"),
                            {"m": model}).scalar_one()


def name_random_the_control(engine) -> int:
    from lce.db.controls import set_control

    control = run_id(engine, "Random(R)")
    with engine.begin() as conn:
        set_control(conn, control)
    return control


def paper_selection(**options):
    con = duckdb_connection(read_only=True)
    try:
        return select_runs(con, list(options.get("models", [])), list(options.get("exclude", PAPER_EXCLUDED)))
    finally:
        con.close()


def test_procrustes_recovers_a_known_rotation():
    generator = np.random.default_rng(7)
    target = generator.normal(size=(13, 3))
    target -= target.mean(axis=0)
    rotation, _ = np.linalg.qr(generator.normal(size=(3, 3)))
    rotation[:, 0] *= -1.0  # a reflection too: sign flips of PCA components are one
    moving = target @ rotation.T
    found = procrustes_rotation(moving, target)
    assert np.allclose(found, rotation, atol=1e-12)
    assert np.allclose(moving @ found, target, atol=1e-12)
    assert np.allclose(found @ found.T, np.eye(3), atol=1e-12)  # orthogonal: no scaling


def test_ellipse_is_the_chi_square_95_contour():
    width, height, angle = ellipse_axes(np.array([[4.0, 0.0], [0.0, 1.0]]))
    assert (width, height) == pytest.approx((2 * np.sqrt(ELLIPSE_CHI2_95 * 4), 2 * np.sqrt(ELLIPSE_CHI2_95)))
    assert angle % 180.0 == pytest.approx(0.0)
    assert ELLIPSE_CHI2_95 == pytest.approx(5.991465, abs=1e-6)  # scipy.stats.chi2.ppf(0.95, 2)
    _, _, tilted = ellipse_axes(np.array([[2.0, 1.0], [1.0, 2.0]]))
    assert tilted % 180.0 == pytest.approx(45.0)


def test_replicate_labels_equal_to_the_point_ones_give_the_point_counts():
    """Replicate r of a dissected run reads its stored labels; equal to the point labels they change nothing,
    and no label in the replicate removes the unit."""
    concept = np.array([0, 1, -1, 1])
    iou = np.array([0.05, 0.2, np.nan, 0.03])
    run = RunUnits(run_id=1, concept=concept, iou=iou, eligible=np.ones(4, dtype=bool),
                   replicate_concept=np.stack([concept, np.full(4, -1)], axis=1),
                   replicate_iou=np.stack([np.nan_to_num(iou), np.zeros(4)], axis=1).astype(np.float32))
    population = PopulationUnits(concepts=[("c_red", "color", "red"), ("o_dog", "object", "dog")], runs=(run,),
                                 min_iou=0.04, units="interpretable")
    assert unit_counts(population).tolist() == [[1, 1]]
    assert unit_counts(population, replicate=0).tolist() == [[1, 1]]
    assert unit_counts(population, replicate=1).tolist() == [[0, 0]]
    assert unit_counts(population, draws=[np.array([1, 1, 1, 0])]).tolist() == [[1, 3]]


@pytest.mark.parametrize("normalize", ["population", "selection", "none"])
def test_units_counted_in_numpy_give_the_sql_matrix_exactly(engine, paper_data, normalize):
    """Replicate 0 without resampling is the point matrix: the numpy count of the interpretable units equals the
    SQL's matrix value for value (the same divisions in float64)."""
    selection = paper_selection()
    population = population_units(selection, 0.04, "interpretable", replicates=True)
    sql = concept_matrix(selection, 0.04, normalize)
    counted = units_matrix(population, selection, normalize)
    assert counted.concepts == sql.concepts and counted.categories == sql.categories
    assert np.array_equal(counted.values, sql.values)
    replicate = unit_counts(population, [np.arange(len(run.concept)) for run in population.runs], replicate=0)
    assert np.array_equal(units_matrix(population, selection, normalize, replicate).values, sql.values)


def test_beats_random_units_match_the_views_count(engine, paper_data):
    control = name_random_the_control(engine)
    result = embed(EmbedSettings(exclude=PAPER, units="beats-random", normalize="none"), store=False)
    with engine.connect() as conn:
        expected = dict(conn.execute(text(
            "SELECT model, count(*) FROM unit_label_at(0.04) WHERE interpretable AND beats_random"
            " AND run_id <> :control GROUP BY model"), {"control": control}).all())
    counted = dict(zip(result.matrix.models, result.matrix.values.sum(axis=1).astype(int).tolist()))
    assert counted == {model: expected.get(model, 0) for model in result.matrix.models}
    interpretable = embed(EmbedSettings(exclude=PAPER, normalize="none"), store=False).matrix.values.sum(axis=1)
    assert (result.matrix.values.sum(axis=1) <= interpretable).all()
    assert result.matrix.values.sum() < interpretable.sum()


def test_beats_random_normalises_over_the_units_it_keeps(engine, paper_data):
    name_random_the_control(engine)
    raw = embed(EmbedSettings(exclude=PAPER, units="beats-random", normalize="none"), store=False).matrix
    normalised = embed(EmbedSettings(exclude=PAPER, units="beats-random"), store=False).matrix
    with engine.connect() as conn:
        distinct = dict(conn.execute(text(
            "SELECT category, count(DISTINCT label) FROM unit_label_at(0.04)"
            " WHERE interpretable AND beats_random GROUP BY category")).all())
    assert normalised.concepts == raw.concepts
    for column, category in enumerate(normalised.categories):
        assert np.array_equal(normalised.values[:, column], raw.values[:, column] / distinct[category])


def test_uncertainty_adds_sd_columns_and_keeps_the_point_estimate(cli, paper_data, tmp_path):
    plain, uncertain, plot = tmp_path / "plain.csv", tmp_path / "uncertain.csv", tmp_path / "lce.png"
    assert cli("embed", *exclude_args(), "--out", plain).exit_code == 0
    result = cli("embed", *exclude_args(), "--uncertainty", "--replicates", "20", "--out", uncertain, "--plot", plot)
    assert result.exit_code == 0, result.output
    assert "uncertainty over 20 replicates" in result.stdout
    assert plain.read_text().splitlines()[0] == "model,pc1,pc2,pc3,cluster"
    lines = uncertain.read_text().splitlines()
    assert lines[0] == "model,pc1,pc2,pc3,cluster,pc1_sd,pc2_sd,pc3_sd"
    # The point estimate is the default's, digit for digit; the sd columns follow it.
    assert [line.rsplit(",", 3)[0] for line in lines[1:]] == plain.read_text().splitlines()[1:]
    sds = [[float(row[f"pc{i}_sd"]) for i in (1, 2, 3)] for row in csv.DictReader(uncertain.open())]
    assert all(value > 0 for row in sds for value in row)
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # seconds on two cores (dissections or embeddings with replicates)
def test_same_seed_gives_the_same_uncertainty_csv(cli, paper_data, tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    for path in (first, second):
        result = cli("embed", *exclude_args(), "--uncertainty", "--replicates", "8", "--seed", "3", "--out", path)
        assert result.exit_code == 0, result.output
    assert first.read_bytes() == second.read_bytes()
    other = tmp_path / "c.csv"
    assert cli("embed", *exclude_args(), "--uncertainty", "--replicates", "8", "--out", other).exit_code == 0
    assert other.read_bytes() != first.read_bytes()


@pytest.mark.slow  # seconds on two cores (dissections or embeddings with replicates)
def test_covariance_and_coassignment_round_trip_through_the_store(engine, paper_data, tmp_path):
    from lce.report.plots import plot_coassignment

    result = embed(EmbedSettings(exclude=PAPER, replicates=12))
    shares = result.coassignment
    assert shares.shape == (13, 13) and np.array_equal(shares, shares.T)
    assert np.array_equal(np.diag(shares), np.ones(13)) and ((shares >= 0) & (shares <= 1)).all()
    assert result.covariance.shape == (13, 3, 3)
    assert np.allclose(result.covariance, result.covariance.transpose(0, 2, 1))
    with engine.connect() as conn:
        row = conn.execute(text("SELECT units, replicates FROM embedding WHERE id = :e"),
                           {"e": result.embedding_id}).one()
        pairs = conn.execute(text("SELECT count(*) FROM embedding_coassignment WHERE embedding_id = :e"),
                             {"e": result.embedding_id}).scalar_one()
    assert tuple(row) == ("interpretable", 12) and pairs == 169
    stored = load_embedding(result.embedding_id).result
    assert np.array_equal(stored.covariance, result.covariance)  # double precision, stored as is
    assert np.array_equal(stored.coassignment, shares)
    assert stored.settings.replicates == 12
    plot_coassignment(stored, tmp_path / "coassignment.png")
    assert (tmp_path / "coassignment.png").read_bytes()[:4] == b"\x89PNG"
    plain = load_embedding(embed(EmbedSettings(exclude=PAPER)).embedding_id).result
    assert plain.covariance is None and plain.coassignment is None


@pytest.mark.slow  # seconds on two cores (dissections or embeddings with replicates)
def test_stored_replicate_labels_are_used_and_bound_the_replicates(cli, engine, paper_data, tmp_path):
    """A run with unit_replicate rows takes each unit's label in replicate r; --replicates beyond what is stored
    is refused with the stored count."""
    moco = run_id(engine, "MoCoV1(R)")
    with engine.begin() as conn:
        # Five replicates: the point label in replicates 0, 1, 3 and 4, no label at all in replicate 2.
        conn.execute(text(
            "INSERT INTO unit_replicate (run_id, unit, concept_ids, ious)"
            " SELECT run_id, unit, ARRAY[concept_id, concept_id, NULL, concept_id, concept_id],"
            "        ARRAY[i, i, 0, i, i]::real[] FROM (SELECT *, COALESCE(iou, 0) AS i FROM unit) u WHERE run_id = :run"), {"run": moco})
    selection = paper_selection()
    population = population_units(selection, 0.04, "interpretable", replicates=True)
    row = [run.run_id for run in population.runs].index(moco)
    assert population.runs[row].replicates == 5
    whole = [np.arange(len(run.concept)) for run in population.runs]
    point = unit_counts(population)
    # float32 IoUs may fall on the other side of 0.04 than the double ones: compare with the same rounding.
    near = population.runs[row].iou.astype(np.float32).astype(np.float64)
    expected = np.bincount(population.runs[row].concept[(population.runs[row].concept >= 0) & (near > 0.04)],
                           minlength=len(population.concepts))
    assert np.array_equal(unit_counts(population, whole, replicate=0)[row], expected)
    assert unit_counts(population, whole, replicate=2)[row].sum() == 0
    others = [i for i in range(len(population.runs)) if i != row]
    assert np.array_equal(unit_counts(population, whole, replicate=2)[others], point[others])

    result = cli("embed", *exclude_args(), "--uncertainty", "--replicates", "6", "--out", tmp_path / "x.csv")
    assert result.exit_code == 1
    assert "--replicates 6 is more than the 5 replicate labels stored" in result.stderr
    assert cli("embed", *exclude_args(), "--uncertainty", "--replicates", "5", "--out",
               tmp_path / "x.csv").exit_code == 0


@pytest.mark.parametrize("args, message", [
    (["--uncertainty", "--method", "mds", "--components", "2"], "--uncertainty works with --method pca only"),
    (["--replicates", "10"], "--replicates sets how many replicates --uncertainty draws"),
    (["--uncertainty", "--replicates", "1"], "--replicates must be at least 2"),
    (["--uncertainty", "--replicates", "0"], "--replicates must be at least 2"),
    (["--units", "sure"], "--units must be one of interpretable, trusted, beats-random"),
    (["--units", "trusted"], "--units trusted needs each interpretable unit's interval and stability"),
])
def test_bad_uncertainty_options_are_clear_errors(cli, paper_data, tmp_path, args, message):
    result = cli("embed", *exclude_args(), *args, "--out", tmp_path / "x.csv")
    assert result.exit_code == 1
    assert message in result.stderr
    assert not (tmp_path / "x.csv").exists()


def test_beats_random_without_a_control_names_the_runs(cli, engine, paper_data, tmp_path):
    result = cli("embed", *exclude_args(), "--units", "beats-random", "--out", tmp_path / "x.csv")
    assert result.exit_code == 1
    assert f"MoCoV1(R) (run {run_id(engine, 'MoCoV1(R)')})" in result.stderr
    assert "lce control set" in result.stderr
    name_random_the_control(engine)
    # The control itself has no control serving it: embedding it under beats-random is refused by name.
    result = cli("embed", "--model", "Random(R)", "--model", "MoCoV1(R)", "--units", "beats-random",
                 "--components", "1", "--clusters", "1", "--out", tmp_path / "x.csv")
    assert result.exit_code == 1
    assert "Random(R) (run" in result.stderr and "MoCoV1(R) (run" not in result.stderr
