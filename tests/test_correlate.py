"""`lce correlate`: the paper's correlations of the embedding with transfer-task metrics (docs/method.md section 3.9),
and the command's other paths."""

import csv
import math

import numpy as np
import pytest

from lce.analysis.correlate import _ranks, correlate, write_csv
from lce.published import AUTHORS_TASKS
from tests.conftest import PAPER_EXCLUDED, published_file
from tests.test_embed import exclude_args

# docs/method.md section 3.9: mean r per family over the 12 embedded models with task results.
PAPER_FAMILY_MEANS = {("many-shot", "pc1"): -0.71, ("few-shot", "pc2"): -0.56, ("detection", "pc1"): -0.51}
PROFILE = ["all_object", "all_part", "all_material", "all_color",
           "unique_object", "unique_part", "unique_material", "unique_color"]


# paper_embedding (conftest): the paper's embedding of 13 models and the authors' task results, stored.


def read_rows(path):
    return list(csv.DictReader(path.open()))


def test_reproduces_the_papers_task_correlations(cli, paper_embedding, tmp_path):
    out, plot = tmp_path / "correlation.csv", tmp_path / "correlation.png"
    result = cli("correlate", "--out", out, "--plot", plot)
    assert result.exit_code == 0, result.output
    assert "pearson r over the 12 models with task results; left out (no task results): SeLaV1(R)." in result.stdout
    assert "many-shot ~ pc1 -0.71; few-shot ~ pc2 -0.56; detection ~ pc1 -0.51" in result.stdout
    assert "pc1 ~ all_material +0.98; pc2 ~ all_object +0.95" in result.stdout

    with out.open() as handle:
        assert handle.readline() == "metric,family,component,r\n"
    r = {(row["metric"], row["component"]): float(row["r"]) for row in read_rows(out)}
    for (family, component), expected in PAPER_FAMILY_MEANS.items():
        assert r[f"mean:{family}", component] == pytest.approx(expected, abs=0.02), family
    for component in ("pc1", "pc2", "pc3"):
        assert abs(r["mean:surface-normals", component]) < 0.1, component
    assert plot.stat().st_size > 50_000 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_components_follow_the_category_profile(paper_embedding):
    correlation = correlate()
    assert correlation.profile == PROFILE
    assert correlation.components == ["pc1", "pc2", "pc3"]
    assert len(correlation.embedded) == 13 and len(correlation.models) == 12
    # docs/method.md section 3.9: PC1 ~ all_material 0.98, PC2 ~ all_object 0.95 (over the 13 embedded models).
    assert correlation.r("pc1", "all_material") == pytest.approx(0.98, abs=0.02)
    assert correlation.r("pc2", "all_object") == pytest.approx(0.95, abs=0.02)
    # Many-shot accuracy falls as material units rise (the paper's reading of PC1).
    assert correlation.family_mean("many-shot", "all_material") == pytest.approx(-0.64, abs=0.02)


def test_r_is_pearson_with_the_raw_value(paper_embedding):
    """Recomputed here from the two CSV files: no sign flip for lower-is-better metrics such as sne_Mean."""
    correlation = correlate()
    coordinates = {row["model"]: row for row in read_rows(paper_embedding)}
    tasks = {row["model"]: row for row in read_rows(published_file(AUTHORS_TASKS))}
    models = sorted(set(coordinates) & set(tasks))
    assert models == correlation.models
    for metric, component in [("sne_Mean", "pc3"), ("dt_ImageNet", "pc1"), ("ISIC_5_shot", "pc2")]:
        x = [float(coordinates[m][component]) for m in models]
        y = [float(tasks[m][metric]) for m in models]
        assert correlation.r(metric, component) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-6), metric
    assert correlation.r("sne_Mean", "pc3") < -0.3  # a flip would make the surface-normal mean 0.31 on PC3
    # The family mean is the plain mean of its metrics' r (dt_Avg., an aggregate, is not one of them).
    many_shot = [m.name for m in correlation.metrics if m.family == "many-shot"]
    assert len(many_shot) == 12 and "dt_Avg." not in many_shot
    assert correlation.family_mean("many-shot", "pc1") == pytest.approx(
        np.mean([correlation.r(m, "pc1") for m in many_shot]))


def test_csv_rows_are_complete_and_deterministic(paper_embedding, tmp_path):
    correlation = correlate()
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    write_csv(correlation, first)
    write_csv(correlate(), second)
    assert first.read_bytes() == second.read_bytes()
    rows = read_rows(first)
    columns = ["pc1", "pc2", "pc3", *PROFILE]
    # 35 metrics and 4 family means by 11 columns, then 3 components by 8 profile columns.
    assert len(rows) == (35 + 4) * 11 + 3 * 8
    assert [row["component"] for row in rows[:11]] == columns
    assert {row["metric"] for row in rows[:11]} == {"mean:many-shot"}
    assert [row["metric"] for row in rows[11::11][:3]] == ["dt_Aircraft", "dt_Caltech101", "dt_Cars"]
    families = list(dict.fromkeys(row["family"] for row in rows))
    assert families == ["many-shot", "few-shot", "detection", "surface-normals", "embedding"]
    few_shot = list(dict.fromkeys(row["metric"] for row in rows if row["family"] == "few-shot"))
    assert few_shot[:4] == ["mean:few-shot", "ChestX_5_shot", "ChestX_20_shot", "ChestX_50_shot"]
    assert all(-1 <= float(row["r"]) <= 1 for row in rows)


def test_spearman_ranks_the_values(paper_embedding):
    spearman = correlate(method="spearman")
    assert spearman.method == "spearman"
    assert spearman.family_mean("many-shot", "pc1") == pytest.approx(-0.80, abs=0.01)
    assert spearman.r("pc1", "all_material") == pytest.approx(0.93, abs=0.01)
    assert _ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_the_newest_embedding_is_the_default(cli, paper_embedding, tmp_path):
    args = [*exclude_args(), "--exclude", "Supervised(R)", "--out", tmp_path / "second.csv"]
    assert cli("embed", *args).exit_code == 0
    newest = correlate()
    assert len(newest.embedded) == 12 and len(newest.models) == 11
    first = correlate(embedding_id=newest.embedding_id - 1)
    assert len(first.models) == 12
    result = cli("correlate", "--embedding", str(first.embedding_id))
    assert result.exit_code == 0 and f"Embedding {first.embedding_id}: pearson r over the 12 models" in result.stdout


def test_undefined_r_is_an_empty_cell(cli, paper_embedding, tmp_path):
    """A metric known for fewer than 3 embedded models has no r (the CSV cell is empty, the mean skips it)."""
    path = tmp_path / "one.csv"
    path.write_text("model,dt_Extra\nMoCoV1(R),1\nBYOL(R),2\n")
    assert cli("tasks", "import", path).exit_code == 0
    correlation = correlate()
    assert math.isnan(correlation.r("dt_Extra", "pc1"))
    out = tmp_path / "correlation.csv"
    write_csv(correlation, out)
    assert "dt_Extra,many-shot,pc1,\n" in out.read_text()
    assert correlation.family_mean("many-shot", "pc1") == pytest.approx(-0.711, abs=0.001)


@pytest.mark.parametrize("args, message", [
    (["--method", "kendall"], "--method must be one of pearson, spearman, not 'kendall'"),
    (["--embedding", "99"], "There is no embedding 99; stored embeddings: 1"),
])
def test_bad_options_are_clear_errors(cli, paper_embedding, tmp_path, args, message):
    result = cli("correlate", *args, "--out", tmp_path / "x.csv")
    assert result.exit_code == 1
    assert message in result.stderr
    assert not (tmp_path / "x.csv").exists()


def test_missing_embedding_or_task_results_say_what_to_do(cli, paper_data, tmp_path):
    result = cli("correlate")
    assert result.exit_code == 1
    assert "holds no embedding yet: make one with lce embed first" in result.stderr
    assert cli("embed", "--exclude", PAPER_EXCLUDED[0], "--out", tmp_path / "lce.csv").exit_code == 0
    result = cli("correlate")
    assert result.exit_code == 1
    assert "None of the 19 models of embedding 1 has task results: import them with lce tasks import" in result.stderr
