"""`lce embed`: the Learned Concepts Embedding of the stored models."""

from __future__ import annotations

from pathlib import Path

import typer

from lce.analysis.embed import EmbedSettings, store_embedding, write_csv
from lce.analysis.embed import embed as run_embed
from lce.analysis.embed_uncertainty import DEFAULT_REPLICATES
from lce.cli.app import app, console, user_errors
from lce.cli.options import MinIou
from lce.errors import LceError
from lce.output_paths import check_table_and_plot
from lce.report.plots import plot_embedding
from lce.vocabulary import IOU_CUTOFF, one_of


@app.command("embed", short_help="Project the stored models into a Learned Concepts Embedding (CSV, plot).")
@user_errors
def embed(
    model: list[str] = typer.Option([], "--model", help="Embed only these models (repeatable; default: all)."),
    exclude: list[str] = typer.Option([], "--exclude", help="Leave these models out (repeatable)."),
    layer: str | None = typer.Option(None, "--layer", help="Layer to compare (needed when runs span several)."),
    probe: str | None = typer.Option(None, "--probe", help="Probe to compare on (needed when runs span several)."),
    variant: str | None = typer.Option(None, "--variant", help=f"{one_of()} (never mixed)."),
    min_iou: MinIou = IOU_CUTOFF,
    normalize: str = typer.Option("population", "--normalize",
                                  help="population (all stored models, as the paper), selection, or none."),
    method: str = typer.Option("pca", "--method", help="pca, mds or tsne."),
    components: int = typer.Option(3, "--components", help="Dimensions of the embedding."),
    clusters: int = typer.Option(3, "--clusters", help="KMeans clusters (n_init=10)."),
    seed: int = typer.Option(0, "--seed", help="Random seed of KMeans, MDS and t-SNE (and the replicates)."),
    units: str = typer.Option("interpretable", "--units",
                              help="Units counted: interpretable (as the paper), trusted, or beats-random."),
    uncertainty: bool = typer.Option(False, "--uncertainty",
                                     help="Resample the units (and the probe, for dissected runs): 95% ellipses, "
                                          "pc*_sd columns, co-assignment (PCA only)."),
    replicates: int | None = typer.Option(None, "--replicates", help="Replicates of --uncertainty (200)."),
    out: Path = typer.Option(Path("lce.csv"), "--out", help="CSV of the embedding: model, pc1.., cluster."),
    plot: Path | None = typer.Option(None, "--plot", help="PNG of the embedding (two panels, as the paper)."),
) -> None:
    """Build the model x concept matrix in SQL, project the models (PCA by default), cluster them, store the
    embedding, and write it as CSV (and a plot). Defaults reproduce Mustapha et al.'s Learned Concepts Embedding.
    --out and --plot are checked first: a directory, a symbolic link or a path under a file is refused.
    --units beats-random counts only the units beating a random-weights control (lce control set), the population
    normalisation over the same units. --uncertainty refits the embedding on replicates (each model's units drawn
    with replacement; dissected runs take each unit's label in the bootstrap's replicate) aligned by Procrustes,
    and stores a covariance per model and how often each pair of models shares a cluster.

    Example: lce embed --exclude 'Random(R)' --exclude 'SimCLRV1(R)' --out lce.csv --plot lce.png
    """
    if replicates is not None and not uncertainty:
        raise LceError("--replicates sets how many replicates --uncertainty draws: add --uncertainty.")
    settings = EmbedSettings(
        models=tuple(model), exclude=tuple(exclude), layer=layer, probe=probe, variant=variant, min_iou=min_iou,
        normalize=normalize, method=method, components=components, clusters=clusters, seed=seed, units=units,
        replicates=(DEFAULT_REPLICATES if replicates is None else replicates) if uncertainty else None,
    )
    check_table_and_plot(out, plot)
    # Files first, then the store: a failure while writing them leaves no embedding behind.
    result = run_embed(settings, store=False)
    write_csv(result, out)
    if plot is not None:
        plot_embedding(result, plot)
    result.embedding_id = store_embedding(result)
    selection = result.selection
    console.print(
        f"Embedding {result.embedding_id}: {len(selection.runs)} models x {len(result.matrix.concepts)} concepts "
        f"({selection.layer}, probe {selection.probe}, {selection.variant}, IoU > {min_iou}, {normalize} "
        f"normalisation, {method}" + ("" if units == "interpretable" else f", {units} units") + ")"
    )
    if result.explained_variance:
        shares = ", ".join(f"{share:.3f}" for share in result.explained_variance)
        console.print(f"explained variance: {shares} (total {sum(result.explained_variance):.3f})")
    console.print("KMeans inertia for k = 1..{}: {}".format(
        len(result.inertia), ", ".join(f"{value:.1f}" for value in result.inertia)))
    for cluster in sorted(set(result.clusters.tolist())):
        members = [m for m, c in zip(result.matrix.models, result.clusters) if c == cluster]
        console.print(f"cluster {cluster}: {', '.join(members)}", highlight=False)
    if result.covariance is not None:
        sd = ", ".join(f"{column} {value:.3f}" for column, value in zip(result.columns, result.sd.mean(axis=0)))
        within, across = result.coassignment_means()
        console.print(f"uncertainty over {settings.replicates} replicates: mean sd {sd}; co-assignment within the "
                      f"clusters {within:.2f}, across {across:.2f}")
    console.print(f"wrote {out}")
    if plot is not None:
        console.print(f"wrote {plot}")
