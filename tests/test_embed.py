"""`lce embed`: the paper's Learned Concepts Embedding from the authors' data, and the command's other paths."""

import csv

import numpy as np
import pytest
from sqlalchemy import text

from lce.analysis.embed import EmbedSettings, embed
from tests.conftest import PAPER_EXCLUDED

# docs/method.md section 3: PCA scores with each component oriented so that its largest-magnitude loading is positive.
PAPER_SCORES = {
    "MoCoV1(R)": (4.95, 0.05, -0.60),
    "InfoMin(R)": (0.11, 1.97, 1.89),
    "DeepClusterV2(R)": (-2.42, -1.27, -0.03),
}
PAPER_CLUSTERS = [
    {"BYOL", "DeepClusterV2", "SeLaV2", "SwAV", "Supervised"},
    {"InsDis", "MoCoV1", "PIRL"},
    {"InfoMin", "MoCoV2", "PCLV1", "PCLV2", "SeLaV1"},
]
PAPER_ELBOW = [104.4, 51.2, 32.0, 23.3, 17.0, 12.6, 9.1, 6.1, 4.2, 2.7]


def exclude_args():
    return [arg for name in PAPER_EXCLUDED for arg in ("--exclude", name)]


def read_embedding_csv(path):
    return {row["model"]: row for row in csv.DictReader(path.open())}


def test_reproduces_the_papers_embedding(cli, engine, paper_data, tmp_path):
    out, plot = tmp_path / "lce.csv", tmp_path / "lce.png"
    result = cli("embed", *exclude_args(), "--out", out, "--plot", plot)
    assert result.exit_code == 0, result.output
    assert "13 models x 145 concepts" in result.stdout
    assert "explained variance: 0.607, 0.177, 0.105" in result.stdout

    with out.open() as handle:
        assert handle.readline() == "model,pc1,pc2,pc3,cluster\n"
    embedding = read_embedding_csv(out)
    assert len(embedding) == 13
    for model, scores in PAPER_SCORES.items():
        found = [float(embedding[model][f"pc{i}"]) for i in (1, 2, 3)]
        assert found == pytest.approx(scores, abs=0.02), model
    clusters = {}
    for model, row in embedding.items():
        clusters.setdefault(row["cluster"], set()).add(model.removesuffix("(R)"))
    assert sorted(clusters.values(), key=sorted) == sorted(PAPER_CLUSTERS, key=sorted)
    assert plot.stat().st_size > 20_000 and plot.read_bytes()[:4] == b"\x89PNG"

    with engine.connect() as conn:
        stored = conn.execute(text("SELECT * FROM embedding")).mappings().one()
        assert stored["explained_variance"] == pytest.approx([0.607, 0.177, 0.105], abs=0.002)
        assert stored["inertia"] == pytest.approx(PAPER_ELBOW, abs=0.15)
        assert (stored["method"], stored["normalize"], stored["components"], stored["clusters"],
                stored["min_iou"], stored["concept_count"], stored["layer"], stored["variant"]) == \
            ("pca", "population", 3, 3, 0.04, 145, "layer4", "dissect")
        assert sorted(stored["settings"]["exclude"]) == sorted(PAPER_EXCLUDED)
        points = conn.execute(text(
            "SELECT m.name, p.coordinates, p.cluster FROM embedding_point p JOIN model m ON m.id = p.model_id")).all()
    assert len(points) == 13
    for name, coordinates, cluster in points:
        assert coordinates == pytest.approx([float(embedding[name][f"pc{i}"]) for i in (1, 2, 3)], abs=1e-6)
        assert cluster == int(embedding[name]["cluster"])


def test_components_are_oriented_with_the_largest_loading_positive(engine, paper_data):
    result = embed(EmbedSettings(exclude=tuple(PAPER_EXCLUDED)), store=False)
    largest = np.abs(result.loadings).argmax(axis=1)
    assert (result.loadings[np.arange(3), largest] > 0).all()
    assert result.explained_variance == pytest.approx([0.607, 0.177, 0.105], abs=0.002)


def test_same_data_and_seed_give_a_byte_identical_csv(cli, paper_data, tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    for path in (first, second):
        assert cli("embed", *exclude_args(), "--out", path).exit_code == 0
    assert first.read_bytes() == second.read_bytes()


def test_population_normalisation_uses_every_stored_model(engine, paper_data):
    """Embedding fewer models keeps the 20-model normalisers; 'selection' recomputes them over the subset."""
    subset = ("MoCoV1(R)", "InfoMin(R)", "BYOL(R)")
    population = embed(EmbedSettings(models=subset, components=2, clusters=2), store=False)
    selection = embed(EmbedSettings(models=subset, components=2, clusters=2, normalize="selection"), store=False)
    raw = embed(EmbedSettings(models=subset, components=2, clusters=2, normalize="none"), store=False)
    column = population.matrix.concepts.index("m_wood") if "m_wood" in population.matrix.concepts else 0
    name = population.matrix.concepts[column]
    row = population.matrix.models.index("MoCoV1(R)")
    units = raw.matrix.values[row, raw.matrix.concepts.index(name)]
    assert population.matrix.values[row, column] == pytest.approx(units / {"m": 16, "o": 67, "p": 54, "c": 8}[name[0]])
    assert len(population.matrix.concepts) == 145  # the population's columns
    assert len(selection.matrix.concepts) < 145  # only the subset's
    selection_column = selection.matrix.concepts.index(name)
    distinct = sum(1 for c in selection.matrix.concepts if c[0] == name[0])
    assert selection.matrix.values[row, selection_column] == pytest.approx(units / distinct)


@pytest.mark.parametrize("method", ["mds", "tsne"])
def test_other_projections_write_dim_columns(cli, paper_data, tmp_path, method):
    out = tmp_path / f"{method}.csv"
    result = cli("embed", *exclude_args(), "--method", method, "--components", "2", "--out", out)
    assert result.exit_code == 0, result.output
    with out.open() as handle:
        assert handle.readline() == "model,dim1,dim2,cluster\n"
    assert len(read_embedding_csv(out)) == 13
    assert "explained variance" not in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--model", "NoSuchNet"], "--model names model(s) the database does not have: NoSuchNet"),
    (["--exclude", "NoSuchNet"], "--exclude names model(s) the database does not have: NoSuchNet"),
    (["--clusters", "30"], "--clusters 30 is more than the 20 models embedded"),
    (["--components", "0"], "--components must be at least 1"),
    (["--method", "umap"], "--method must be one of pca, mds, tsne"),
    (["--normalize", "zscore"], "--normalize must be one of population, selection, none"),
    (["--layer", "layer3"], "No run matches the options given"),
    (["--model", "MoCoV1(R)"], "An embedding needs at least 2 models"),
    (["--min-iou", "0.99"], "No unit of the selected runs is interpretable at IoU > 0.99"),
])
def test_bad_options_are_clear_errors(cli, paper_data, tmp_path, args, message):
    result = cli("embed", *args, "--out", tmp_path / "x.csv")
    assert result.exit_code == 1
    assert message in result.stderr
    assert not (tmp_path / "x.csv").exists()


def test_runs_on_several_layers_must_be_chosen(cli, paper_data, tmp_path):
    assert cli("import", "dissect-csv", paper_data, "--layer", "layer3").exit_code == 0
    result = cli("embed", "--out", tmp_path / "x.csv")
    assert result.exit_code == 1
    assert "span 2 layer/probe/variant combinations" in result.stderr
    assert cli("embed", "--layer", "layer3", "--out", tmp_path / "x.csv").exit_code == 0


def test_empty_database_says_what_to_do(cli, tmp_path):
    result = cli("embed", "--out", tmp_path / "x.csv")
    assert result.exit_code == 1
    assert "holds no runs yet" in result.stderr


def test_each_matrix_column_carries_its_category_and_label(engine, paper_data):
    """The matrix's columns keep the views' names ('m_wood') and say their category and label as fields, so that
    nothing decodes a name's first letter."""
    matrix = embed(EmbedSettings(exclude=tuple(PAPER_EXCLUDED)), store=False).matrix
    assert len(matrix.concepts) == len(matrix.categories) == len(matrix.labels) == 145
    assert matrix.concepts == sorted(matrix.concepts)
    assert all(concept == f"{category[0]}_{label}"
               for concept, category, label in zip(matrix.concepts, matrix.categories, matrix.labels))
    counts = {category: matrix.categories.count(category) for category in set(matrix.categories)}
    assert counts == {"material": 16, "object": 67, "part": 54, "color": 8}
    with engine.connect() as conn:
        stored = set(conn.execute(text("SELECT DISTINCT concept, category, label FROM model_concept_matrix"
                                       " WHERE layer = 'layer4'")).all())
    assert set(zip(matrix.concepts, matrix.categories, matrix.labels)) <= stored


def test_coassignment_means_within_and_across_the_clusters():
    """lce embed --uncertainty's summary: pairs of models in one cluster, then pairs across two; a model with
    itself is no pair, and a kind of pair that does not occur is NaN."""
    from types import SimpleNamespace

    from lce.analysis.embed import EmbeddingResult

    shares = np.array([[1.0, 0.9, 0.2], [0.9, 1.0, 0.4], [0.2, 0.4, 1.0]])
    means = EmbeddingResult.coassignment_means(SimpleNamespace(clusters=np.array([0, 0, 1]), coassignment=shares))
    assert means == pytest.approx((0.9, 0.3))
    within, across = EmbeddingResult.coassignment_means(SimpleNamespace(clusters=np.array([0, 1]),
                                                                        coassignment=np.eye(2)))
    assert np.isnan(within) and across == 0.0
