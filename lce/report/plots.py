"""The figures: the embedding, two panels as in the authors' figure (component 1 vs 2, component 3 vs 2), every
model labelled, colours by cluster, with 95% ellipses when it has replicates (lce embed --uncertainty); the
heatmap of its correlations with task metrics; and, for the report, the co-assignment heatmap, the elbow curve,
the loadings per component and the models' category profiles.

    plot_embedding(result, Path("lce.png"))
    plot_coassignment(result, Path("coassignment.png"))     # needs result.coassignment
    plot_correlation(correlation, Path("correlation.png"))
    plot_elbow(result.inertia, chosen=3, path=Path("elbow.png"))
    plot_loadings(result.loadings, result.matrix, result.columns, Path("loadings.png"))
    plot_profiles({"MoCoV1(R)": {"object": 454, "part": 371}, ...}, Path("profiles.png"))

Every text is drawn as written: model, concept and metric names are the user's, and one with two dollar signs
(`a$\\foo$`) would otherwise be parsed as mathtext and fail.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from lce.analysis.correlate import EMBEDDING_FAMILY, MEAN_PREFIX, Correlation
from lce.analysis.embed import EmbeddingResult
from lce.analysis.embed_uncertainty import ellipse_axes

if TYPE_CHECKING:
    from lce.analysis.matrix import ConceptMatrix


def literal_text(plot: Callable) -> Callable:
    """Run a plotting function with matplotlib's mathtext off (text.parse_math), for every text it creates and
    draws, tick labels included (they are made when the figure is saved, inside the function)."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        from matplotlib import rc_context

        with rc_context({"text.parse_math": False}):
            return plot(*args, **kwargs)

    return wrapper


@literal_text
def plot_embedding(result: EmbeddingResult, path: Path) -> None:
    # The Figure API without pyplot: files only, no display, no global state (and a faster import).
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse

    coords = result.coordinates
    # Panels: (1 vs 2) and, with a third component, (3 vs 2); a single component is drawn against zero.
    panels = [(0, 1)] if coords.shape[1] >= 2 else [(0, None)]
    if coords.shape[1] >= 3:
        panels.append((2, 1))
    figure = Figure(figsize=(6.5 * len(panels), 5.5))
    axes = figure.subplots(1, len(panels), squeeze=False)
    colours = colormaps["tab10"]
    labels = [model.removesuffix("(R)") for model in result.matrix.models]
    for ax, (x, y) in zip(axes[0], panels):
        ys = coords[:, y] if y is not None else [0.0] * len(coords)
        for cluster in sorted(set(result.clusters.tolist())):
            members = result.clusters == cluster
            ax.scatter(coords[members, x], [v for v, m in zip(ys, members) if m], s=60,
                       color=colours(cluster % 10), label=f"cluster {cluster}", edgecolors="black", linewidths=0.5)
        if result.covariance is not None:
            # 95% ellipses of each model's aligned replicates: chi-square with 2 degrees of freedom on the
            # 2 x 2 covariance of the two components drawn (1.96 sd either side with one component).
            for index, (cluster, px, py) in enumerate(zip(result.clusters.tolist(), coords[:, x], ys)):
                colour = colours(cluster % 10)
                if y is None:
                    half = 1.96 * float(np.sqrt(max(result.covariance[index, x, x], 0.0)))
                    ax.plot([px - half, px + half], [py, py], color=colour, linewidth=1.2, alpha=0.7, zorder=1)
                    continue
                width, height, angle = ellipse_axes(result.covariance[index][np.ix_([x, y], [x, y])])
                ax.add_patch(Ellipse((px, py), width, height, angle=angle, facecolor=colour, alpha=0.15,
                                     edgecolor=colour, linewidth=0.8, zorder=1))
        for label, px, py in zip(labels, coords[:, x], ys):
            ax.annotate(label, (px, py), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel(_axis_label(result, x))
        ax.set_ylabel(_axis_label(result, y) if y is not None else "")
        ax.axhline(0, color="grey", linewidth=0.5, zorder=0)
        ax.axvline(0, color="grey", linewidth=0.5, zorder=0)
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(loc="best", fontsize=8)
    selection = result.selection
    settings = result.settings
    units = "" if settings.units == "interpretable" else f", {settings.units} units"
    ellipses = (f"\n95% ellipses over {settings.replicates} replicates (units resampled, aligned by Procrustes)"
                if result.covariance is not None else "")
    figure.suptitle(
        f"Learned Concepts Embedding: {len(labels)} models, {selection.layer}, probe {selection.probe}, "
        f"{selection.variant}, IoU > {settings.min_iou}{units}{ellipses}"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


@literal_text
def plot_coassignment(result: EmbeddingResult, path: Path) -> None:
    """The share of replicates in which each pair of models share a KMeans cluster (result.coassignment), models
    ordered by their point estimate's cluster, lines between the clusters."""
    import numpy as np
    from matplotlib.figure import Figure

    if result.coassignment is None:
        raise ValueError("plot_coassignment needs an embedding with replicates (lce embed --uncertainty)")
    order = sorted(range(len(result.matrix.models)), key=lambda i: (int(result.clusters[i]), result.matrix.models[i]))
    shares = result.coassignment[np.ix_(order, order)]
    names = [result.matrix.models[i].removesuffix("(R)") for i in order]
    size = 2.5 + 0.42 * len(names)
    figure = Figure(figsize=(size + 1.0, size))
    ax = figure.subplots()
    image = ax.imshow(shares, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    for (i, j), share in np.ndenumerate(shares):
        ax.text(j, i, f"{share:.2f}", ha="center", va="center", fontsize=6,
                color="black" if share > 0.6 else "white")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    clusters = [int(result.clusters[i]) for i in order]
    for position in range(1, len(clusters)):
        if clusters[position] != clusters[position - 1]:
            ax.axhline(position - 0.5, color="white", linewidth=1.5)
            ax.axvline(position - 0.5, color="white", linewidth=1.5)
    figure.colorbar(image, ax=ax, shrink=0.8, label="share of replicates in one cluster")
    ax.set_title(f"Co-assignment over {result.settings.replicates} replicates (KMeans, k = {result.settings.clusters})",
                 fontsize=9)
    figure.tight_layout()
    _save(figure, path)


def _axis_label(result: EmbeddingResult, index: int) -> str:
    name = result.columns[index].upper()
    if result.explained_variance:
        return f"{name} ({result.explained_variance[index]:.1%} of variance)"
    return name


@literal_text
def plot_correlation(correlation: Correlation, path: Path) -> None:
    """A heatmap of r: metrics (each family's mean first, in bold) by components and profile columns, and below
    it the components against the profile columns. Lower-is-better metrics are marked with a down arrow."""
    import numpy as np
    from matplotlib.figure import Figure

    columns = correlation.columns
    lower = {metric.name for metric in correlation.metrics if metric.direction == "lower"}
    blocks = [[row for row in correlation.rows if row.family == family] for family in correlation.families]
    blocks.append([row for row in correlation.rows if row.family == EMBEDDING_FAMILY])

    def grid(rows) -> tuple[list[str], np.ndarray]:
        names = list(dict.fromkeys(row.metric for row in rows))
        values = np.full((len(names), len(columns)), np.nan)
        for row in rows:
            values[names.index(row.metric), columns.index(row.component)] = row.r
        return names, values

    top = [grid(rows) for rows in blocks[:-1]]
    names = [name for block_names, _ in top for name in block_names]
    values = np.vstack([block_values for _, block_values in top])
    panels = [(names, values)]
    bottom_names, bottom_values = grid(blocks[-1])
    if bottom_names:  # none when the embedded runs have no interpretable unit, so no profile columns
        panels.append((bottom_names, bottom_values))
    heights = [len(labels) for labels, _ in panels]
    figure = Figure(figsize=(2.5 + 0.55 * len(columns), 1.8 + 0.24 * sum(heights)))
    axes = figure.subplots(len(panels), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)[:, 0]
    image = None
    for ax, (labels, matrix) in zip(axes, panels):
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto",
                          interpolation="nearest")
        ax.set_facecolor("#eeeeee")
        for (i, j), r in np.ndenumerate(matrix):
            if not math.isnan(r):
                ax.text(j, i, f"{r:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if abs(r) > 0.6 else "black")
        ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(labels)), [label + (" \u2193" if label in lower else "") for label in labels],
                      fontsize=7)
        for tick, label in zip(ax.get_yticklabels(), labels):
            if label.startswith(MEAN_PREFIX):
                tick.set_fontweight("bold")
        ax.axvline(len(correlation.components) - 0.5, color="black", linewidth=1)
    start = 0
    for block_names, _ in top[:-1]:
        start += len(block_names)
        axes[0].axhline(start - 0.5, color="black", linewidth=1)
    if len(axes) > 1:
        axes[1].set_title(f"components and category profile ({len(correlation.embedded)} models)", fontsize=8)
    axes[0].set_title(
        f"Embedding {correlation.embedding_id}: {correlation.method} r with task metrics over "
        f"{len(correlation.models)} models" + (f" (left out: {', '.join(correlation.left_out)})"
                                               if correlation.left_out else ""), fontsize=9)
    figure.colorbar(image, ax=list(axes), shrink=0.6, label="r")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")


# The category colours of every figure and page (the order of docs/method.md's categories).
CATEGORY_COLOURS = {"object": "#4e79a7", "part": "#f28e2b", "material": "#59a14f", "color": "#e15759",
                    "scene": "#b07aa1", "texture": "#9c755f"}


@literal_text
def plot_elbow(inertia: list[float], chosen: int, path: Path) -> None:
    """KMeans inertia for k = 1, 2, ... with the chosen k marked."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 3.8))
    ax = figure.subplots()
    ks = list(range(1, len(inertia) + 1))
    ax.plot(ks, inertia, marker="o", color="#4e79a7")
    if 1 <= chosen <= len(inertia):
        ax.plot([chosen], [inertia[chosen - 1]], marker="o", markersize=12, markerfacecolor="none",
                markeredgecolor="#e15759", markeredgewidth=2, label=f"k = {chosen} (chosen)")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("clusters k")
    ax.set_ylabel("KMeans inertia")
    ax.set_xticks(ks)
    ax.grid(True, alpha=0.3)
    figure.suptitle("Elbow curve")
    figure.tight_layout()
    _save(figure, path)


@literal_text
def plot_loadings(loadings, matrix: ConceptMatrix, columns: list[str], path: Path, top: int = 12) -> None:
    """One panel per component: its `top` concepts (the matrix's columns) by absolute loading, bars coloured by the
    concept's category, hatched when negative."""
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    count = len(columns)
    figure = Figure(figsize=(4.2 * count, 0.32 * top + 1.6))
    axes = figure.subplots(1, count, squeeze=False)[0]
    concepts, categories = matrix.concepts, matrix.categories
    for ax, name, row in zip(axes, columns, loadings):
        order = np.argsort(-np.abs(row))[:top][::-1]
        values = row[order]
        colours = [CATEGORY_COLOURS.get(categories[i], "grey") for i in order]
        bars = ax.barh(range(len(order)), values, color=colours, edgecolor="black", linewidth=0.4)
        for bar, value in zip(bars, values):
            if value < 0:
                bar.set_hatch("//")
        ax.set_yticks(range(len(order)), [concepts[i] for i in order], fontsize=8)
        ax.axvline(0, color="grey", linewidth=0.6)
        ax.set_title(name.upper(), fontsize=10)
        ax.set_xlabel("loading")
        ax.grid(True, axis="x", alpha=0.3)
    shown = sorted({categories[i] for row in loadings for i in np.argsort(-np.abs(row))[:top]})
    figure.legend(handles=[Patch(color=CATEGORY_COLOURS[c], label=c) for c in shown if c in CATEGORY_COLOURS],
                  loc="lower center", ncol=len(shown), fontsize=8, frameon=False)
    figure.suptitle("Concepts with the largest loadings per component")
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    _save(figure, path)


@literal_text
def plot_profiles(profiles: dict[str, dict[str, int]], path: Path) -> None:
    """Interpretable units per category, one stacked horizontal bar per model (or run), in the given order."""
    from matplotlib.figure import Figure

    names = list(profiles)
    categories = [c for c in CATEGORY_COLOURS if any(c in p for p in profiles.values())]
    categories += sorted({c for p in profiles.values() for c in p} - set(categories))
    figure = Figure(figsize=(8, 0.3 * len(names) + 1.6))
    ax = figure.subplots()
    left = [0] * len(names)
    positions = list(range(len(names)))[::-1]  # the first model at the top
    for category in categories:
        widths = [profiles[name].get(category, 0) for name in names]
        ax.barh(positions, widths, left=left, color=CATEGORY_COLOURS.get(category, "grey"), label=category,
                edgecolor="white", linewidth=0.4)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(positions, names, fontsize=8)
    ax.set_xlabel("interpretable units")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    figure.suptitle("Interpretable units per category")
    figure.tight_layout()
    _save(figure, path)


def _save(figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
