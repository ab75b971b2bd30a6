"""The embedding figure: two panels as in the authors' figure (component 1 vs 2, component 3 vs 2), every model
labelled, colours by cluster.

    plot_embedding(result, Path("lce.png"))
"""

from __future__ import annotations

from pathlib import Path

from lce.analysis.embed import EmbeddingResult


def plot_embedding(result: EmbeddingResult, path: Path) -> None:
    # The Figure API without pyplot: files only, no display, no global state (and a faster import).
    from matplotlib import colormaps
    from matplotlib.figure import Figure

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
        for label, px, py in zip(labels, coords[:, x], ys):
            ax.annotate(label, (px, py), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel(_axis_label(result, x))
        ax.set_ylabel(_axis_label(result, y) if y is not None else "")
        ax.axhline(0, color="grey", linewidth=0.5, zorder=0)
        ax.axvline(0, color="grey", linewidth=0.5, zorder=0)
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(loc="best", fontsize=8)
    selection = result.selection
    figure.suptitle(
        f"Learned Concepts Embedding: {len(labels)} models, {selection.layer}, probe {selection.probe}, "
        f"{selection.variant}, IoU > {result.settings.min_iou}"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)


def _axis_label(result: EmbeddingResult, index: int) -> str:
    name = result.columns[index].upper()
    if result.explained_variance:
        return f"{name} ({result.explained_variance[index]:.1%} of variance)"
    return name
