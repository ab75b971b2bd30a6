"""`lce report`: the store as a static HTML report that opens from disk, with no server and no network.

    outcome = write_report(ReportSettings(out=Path("report")))
    outcome.index            # report/index.html

DIR/index.html      the embedding (plot with clusters, loadings per component, elbow curve), task correlations when
                    task data exist, every run's category profile and top concepts, and the list of runs
DIR/runs/run-N.html one run: its facts, category profile, concepts, and a sortable table of every unit (label,
                    category, IoU, the IoU's 95% interval, stability, chance IoU and lift, whether it beats the
                    random-weights control and is trusted; "-" where unknown, as for imported runs) with, for
                    dissected runs, the strip of its top images with its mask drawn over
DIR/img/*.png       the figures; DIR/strips/run-N/*.jpg the strips (drawn once into $LCE_HOME/cache/report/ by
                    lce.report.strips, then copied or hard-linked here)

The embedding is the one named, else the newest stored; units count as interpretable at its IoU cut-off (or at
--min-iou, or without an embedding at each run's own cut-off); beats random and trusted are unit_label_at's, at that
cut-off and its default stability and lift (method: issue 16, sql/unit_label.sql).
"""

from __future__ import annotations

import os
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path

from sqlalchemy import text

from lce.analysis.correlate import correlate, summary
from lce.analysis.stored_embedding import StoredEmbedding, load_embedding
from lce.config import code_version
from lce.db.connection import connect_reader
from lce.errors import LceError
from lce.output_paths import check_output, check_output_dir
from lce.report.markup import UNKNOWN, Raw, Section, figure, link, navigation, page, paragraph, section, table
from lce.report import plots
from lce.report.plots import CATEGORY_COLOURS
from lce.report.strips import DissectedRun, Progress, RunStrips, StripStyle, run_strips
from lce.resources import read_sql

TOP_CONCEPTS = 10  # per run on the index page
TOP_LOADINGS = 10  # per component in the loadings tables
CLUSTER_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf")  # matplotlib's tab10, as the embedding plot colours its clusters


@dataclass(frozen=True)
class ReportSettings:
    out: Path
    embedding_id: int | None = None  # None: the newest stored embedding
    min_iou: float | None = None  # None: the embedding's cut-off, else each run's own
    strips: bool = True  # draw unit strips for dissected runs
    strip_units: int | None = None  # per run, the units with the highest IoU; None: every unit
    device: str = "auto"
    batch_size: int = 32
    style: StripStyle = StripStyle()
    # package.module:function architectures the user lets the strips run (--allow-arch); other stored ones are not
    allowed_archs: tuple[str, ...] = ()


@dataclass
class ReportOutcome:
    index: Path
    pages: list[Path]
    embedding_id: int | None
    strips: dict[int, RunStrips] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def strips_rendered(self) -> int:
        return sum(s.rendered for s in self.strips.values())

    @property
    def strips_reused(self) -> int:
        return sum(s.reused for s in self.strips.values())


def write_report(settings: ReportSettings, progress: Progress | None = None) -> ReportOutcome:
    started = time.perf_counter()
    out = Path(settings.out)
    check_output_dir(out, "--out")  # a directory or nothing yet; not a file, not a symbolic link
    for name in ("img", "runs", "strips"):
        check_output_dir(out / name, "--out")
    check_output(out / "index.html", "--out")
    if settings.min_iou is not None and not 0.0 <= settings.min_iou < 1.0:
        raise LceError(f"--min-iou must lie in [0, 1), not {settings.min_iou}.")
    if settings.strip_units is not None and settings.strip_units < 0:
        raise LceError(f"--units must be 0 or more, not {settings.strip_units}.")
    if settings.batch_size < 1:
        raise LceError(f"--batch-size must be at least 1, not {settings.batch_size}.")
    with connect_reader(required=False).connect() as conn:
        runs = [dict(row) for row in conn.execute(text(read_sql("queries/report_runs"))).mappings()]
    if not runs:
        raise LceError("The database holds no runs yet: import results (lce import ...) or dissect a model "
                       "(lce ingest ...) first.")
    stored = load_embedding(settings.embedding_id)
    min_iou = settings.min_iou if settings.min_iou is not None else (
        stored.result.settings.min_iou if stored else None)
    (out / "img").mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(exist_ok=True)
    store = _StoreRows.read(min_iou)
    outcome = ReportOutcome(index=out / "index.html", pages=[], embedding_id=stored.result.embedding_id if stored
                            else None)
    if settings.strips:
        for run in runs:
            if run["has_top_images"]:
                strips = run_strips(DissectedRun.of(run), settings.strip_units, settings.style, settings.device,
                                    settings.batch_size, progress, allowed_archs=settings.allowed_archs)
                outcome.strips[run["run_id"]] = strips
                _publish(strips, out / "strips" / f"run-{run['run_id']}")
                if strips.note and not strips.files:
                    outcome.notes.append(f"run {run['run_id']} ({run['model']}): {strips.note}")
    names = _run_names(runs)
    cutoff = f"IoU > {min_iou}" if min_iou is not None else "IoU above each run's own cut-off"
    for run in runs:
        path = out / "runs" / f"run-{run['run_id']}.html"
        path.write_text(_run_page(run, names[run["run_id"]], store, outcome.strips.get(run["run_id"]), cutoff),
                        encoding="utf-8")
        outcome.pages.append(path)
    outcome.index.write_text(_index_page(runs, names, store, stored, outcome, cutoff, out), encoding="utf-8")
    outcome.seconds = time.perf_counter() - started
    return outcome


@dataclass
class _StoreRows:
    """The per-run rows of the report at its cut-off, grouped by run id."""

    units: dict[int, list[dict]]
    concepts: dict[int, list[dict]]
    profiles: dict[int, list[dict]]

    @classmethod
    def read(cls, min_iou: float | None) -> _StoreRows:
        grouped = []
        with connect_reader(required=False).connect() as conn:
            for query in ("report_units", "report_concepts", "report_profiles"):
                rows: dict[int, list[dict]] = defaultdict(list)
                for row in conn.execute(text(read_sql(f"queries/{query}")), {"min_iou": min_iou}).mappings():
                    rows[row["run_id"]].append(dict(row))
                grouped.append(rows)
        return cls(*grouped)

    def interpretable(self, run_id: int) -> int:
        return sum(row["interpretable_units"] for row in self.profiles.get(run_id, []))

    def beats_random(self, run_id: int) -> int | None:
        """Interpretable units above the control's cut-off for their concept (a subset of the interpretable ones, to
        read against them); None when no control serves the run (every value NULL)."""
        units = self.units.get(run_id, [])
        if all(row["beats_random"] is None for row in units):
            return None
        return sum(1 for row in units if row["interpretable"] and row["beats_random"])

    def trusted(self, run_id: int) -> int | None:
        """Trusted units; None when any unit's is unknown (an interpretable unit without a stability or interval,
        as in imported runs), since the count would then be a lower bound only."""
        values = [row["trusted"] for row in self.units.get(run_id, [])]
        return None if any(value is None for value in values) else sum(1 for value in values if value)


def _run_names(runs: list[dict]) -> dict[int, str]:
    """The model's name, with layer, probe and variant when the model has several runs."""
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        counts[run["model"]] += 1
    return {run["run_id"]: run["model"] if counts[run["model"]] == 1
            else f"{run['model']} ({run['layer']}, {run['probe']}, {run['variant']})" for run in runs}


def _publish(strips: RunStrips, target: Path) -> None:
    """The cached strips into the report's directory: hard links where the file system allows, else copies;
    files already there and current are left alone."""
    target.mkdir(parents=True, exist_ok=True)
    for source in strips.files.values():
        destination = target / source.name
        if destination.exists():
            if os.path.samefile(source, destination):
                continue
            if destination.stat().st_size == source.stat().st_size and \
                    destination.stat().st_mtime_ns >= source.stat().st_mtime_ns:
                continue
            destination.unlink()
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)


# ---- the index page -------------------------------------------------------------------------------------------

def _index_page(runs: list[dict], names: dict[int, str], store: _StoreRows, stored: StoredEmbedding | None,
                outcome: ReportOutcome, cutoff: str, out: Path) -> str:
    models = len({run["model"] for run in runs})
    dissected = sum(1 for run in runs if run["source"] == "dissected")
    header = (
        "<h1>lce report</h1>\n"
        + paragraph(f"Generated {datetime.now():%Y-%m-%d %H:%M} by {code_version()}: {models} models, {len(runs)} "
                    f"runs ({dissected} dissected, {len(runs) - dissected} imported); units are interpretable at "
                    f"{cutoff}.", "meta")
    )
    sections = [*_embedding_sections(stored, names, out / "img"), _correlation_section(stored, out / "img"),
                _profiles_section(runs, names, store, out / "img"), _top_concepts_section(runs, names, store),
                _runs_section(runs, names, store, outcome)]
    sections = [part for part in sections if part]
    return page("lce report", "\n".join([header, navigation(sections), *sections]))


def _embedding_sections(stored: StoredEmbedding | None, names: dict[int, str], images: Path) -> list[Section]:
    if stored is None:
        return [section("embedding", "Learned Concepts Embedding", paragraph(
            "No embedding is stored yet: lce embed makes one (and this report shows the newest).", "note"))]
    result = stored.result
    options = result.settings
    selection = result.selection
    plots.plot_embedding(result, images / "embedding.png")
    columns = result.columns
    described = (f"Embedding {result.embedding_id} (stored {stored.created_at:%Y-%m-%d %H:%M}): "
                 f"{len(selection.runs)} models, {selection.layer}, probe {selection.probe}, {selection.variant}, "
                 f"IoU > {options.min_iou}, {options.normalize} normalisation, {options.method.upper()} with "
                 f"{len(columns)} components, KMeans with k = {options.clusters}.")
    if result.explained_variance:
        shares = ", ".join(f"{c.upper()} {v:.1%}" for c, v in zip(columns, result.explained_variance))
        described += f" Explained variance: {shares} (total {sum(result.explained_variance):.1%})."
    if options.units != "interpretable":
        described += f" Units counted: {options.units} (the population normalisation over the same units)."
    sd = result.sd
    if sd is not None:
        described += (f" Ellipses: each model's 95% region over {options.replicates} replicates (its units resampled "
                      "and, for dissected runs, each replicate's labels), aligned to the point estimate; the table's "
                      "sd columns are its coordinates' standard deviations.")
    rows = [[link(f"runs/run-{run.run_id}.html", names.get(run.run_id, run.model)),
             _cluster_tag(int(cluster)), *map(float, coords), *(map(float, sd[index]) if sd is not None else ())]
            for index, (run, coords, cluster) in enumerate(zip(selection.runs, result.coordinates, result.clusters))]
    spread = [f"{c} sd" for c in columns] if sd is not None else []
    members = defaultdict(list)
    for run, cluster in zip(selection.runs, result.clusters):
        members[int(cluster)].append(run.model)
    clusters = "<ul>" + "".join(f"<li>{_cluster_tag(c)} {', '.join(escape(m) for m in ms)}</li>"
                                for c, ms in sorted(members.items())) + "</ul>"
    embedding = section(
        "embedding", "Learned Concepts Embedding", paragraph(described),
        figure("img/embedding.png", f"The embedding of {len(selection.runs)} models, coloured by cluster"),
        clusters, table(["model", "cluster", *columns, *spread], rows,
                        numeric=set(range(1, len(columns) + len(spread) + 2)), table_id="embedding-points"))
    sections = [embedding]
    if result.coassignment is not None:
        plots.plot_coassignment(result, images / "coassignment.png")
        sections.append(section("coassignment", "Co-assignment: how often two models share a cluster", paragraph(
            f"The share of embedding {result.embedding_id}'s {options.replicates} replicates in which each pair of "
            f"models falls in one KMeans cluster (k = {options.clusters}), models in the order of their clusters; "
            "near 1 within a cluster and near 0 across clusters means the clusters hold up under unit sampling."),
            figure("img/coassignment.png", "Share of replicates in which two models share a cluster", width=720)))

    if result.loadings is not None and result.matrix.concepts:
        plots.plot_loadings(result.loadings, result.matrix, columns, images / "loadings.png")
        tables = []
        matrix = result.matrix
        for name, row in zip(columns, result.loadings):
            order = sorted(range(len(row)), key=lambda i: -abs(row[i]))[:TOP_LOADINGS]
            tables.append(f"<div><h3>{name.upper()}</h3>" + table(
                ["concept", "category", "loading"],
                [[matrix.labels[i], matrix.categories[i], float(row[i])] for i in order],
                numeric={2}, table_id=f"loadings-{name}") + "</div>")
        loadings = section("loadings", "Loadings: the concepts that distinguish the components",
                           paragraph(stored.loadings_note, "note"),
                           figure("img/loadings.png", "The largest loadings of each component"),
                           "<div class=\"components\">" + "".join(tables) + "</div>")
    else:
        loadings = section("loadings", "Loadings", paragraph(stored.loadings_note, "note"))

    plots.plot_elbow(result.inertia, options.clusters, images / "elbow.png")
    elbow = section("elbow", "Elbow curve", paragraph(
        f"KMeans inertia (n_init = 10) of the model x concept matrix for k = 1..{len(result.inertia)}: "
        + ", ".join(f"{v:.1f}" for v in result.inertia) + f"; the embedding uses k = {options.clusters}."),
        figure("img/elbow.png", "KMeans inertia against the number of clusters", width=560))
    return [*sections, loadings, elbow]


def _correlation_section(stored: StoredEmbedding | None, images: Path) -> Section | None:
    """The heatmap of the embedding's components (and category profiles) against the models' transfer-task
    results (lce correlate), when task results are stored."""
    if stored is None:
        return None
    with connect_reader(required=False).connect() as conn:
        if not conn.execute(text(read_sql("queries/task_results_exist"))).scalar():
            return None
    try:
        correlation = correlate(stored.result.embedding_id)
    except LceError as error:
        return section("correlations", "Task correlations", paragraph(str(error), "note"))
    plots.plot_correlation(correlation, images / "correlation.png")
    return section("correlations", "Task correlations", paragraph(
        f"Pearson correlation of each component of embedding {stored.result.embedding_id} and of each model's "
        "category profile with each transfer-task metric, over the embedded models that have task results "
        "(lce correlate)."),
        figure("img/correlation.png", "Correlation of components with task metrics"),
        f"<pre>{escape(chr(10).join(summary(correlation)))}</pre>")


def _profiles_section(runs: list[dict], names: dict[int, str], store: _StoreRows, images: Path) -> Section:
    present = {row["category"] for rows in store.profiles.values() for row in rows}
    categories = [c for c in CATEGORY_COLOURS if c in present] + sorted(present - set(CATEGORY_COLOURS))
    profiles = {names[run["run_id"]]: {row["category"]: row["interpretable_units"]
                                       for row in store.profiles.get(run["run_id"], [])} for run in runs}
    if any(profiles.values()):
        plots.plot_profiles(profiles, images / "profiles.png")
    headers = ["model", "layer", "probe", "variant", "units", "interpretable"]
    for category in categories:
        headers += [f"{category} units", f"{category} concepts"]
    rows = []
    for run in runs:
        by_category = {row["category"]: row for row in store.profiles.get(run["run_id"], [])}
        cells = [link(f"runs/run-{run['run_id']}.html", names[run["run_id"]]), run["layer"], run["probe"],
                 run["variant"], run["unit_count"], store.interpretable(run["run_id"])]
        for category in categories:
            row = by_category.get(category)
            cells += [row["interpretable_units"] if row else 0, row["distinct_concepts"] if row else 0]
        rows.append(cells)
    return section(
        "profiles", "Category profiles",
        paragraph("Interpretable units and distinct concepts per category, per run (the paper's all_ and unique_ "
                  "profiles)."),
        figure("img/profiles.png", "Interpretable units per category") if any(profiles.values()) else "",
        table(headers, rows, numeric=set(range(4, len(headers))), table_id="profiles"))


def _top_concepts_section(runs: list[dict], names: dict[int, str], store: _StoreRows) -> Section:
    rows = []
    for run in runs:
        concepts = store.concepts.get(run["run_id"], [])
        top = ", ".join(f"{c['label']} ({c['category']}) {c['units']}" for c in concepts[:TOP_CONCEPTS])
        rows.append([link(f"runs/run-{run['run_id']}.html", names[run["run_id"]]), store.interpretable(run["run_id"]),
                     len(concepts), top])
    return section("top-concepts", "Top concepts",
                   paragraph(f"Each run's {TOP_CONCEPTS} concepts with the most interpretable units."),
                   table(["model", "interpretable", "concepts", "top concepts (units)"], rows, numeric={1, 2},
                         table_id="top-concepts"))


def _runs_section(runs: list[dict], names: dict[int, str], store: _StoreRows, outcome: ReportOutcome) -> Section:
    rows = []
    for run in runs:
        strips = outcome.strips.get(run["run_id"])
        shown = (f"{len(strips.files)}" if strips and strips.files else
                 (strips.note if strips else ("not drawn" if run["has_top_images"] else "none (imported)")))
        rows.append([link(f"runs/run-{run['run_id']}.html", names[run["run_id"]]), run["run_id"], run["layer"],
                     run["probe"], run["variant"], run["source"], run["unit_count"], store.interpretable(run["run_id"]),
                     _known(store.beats_random(run["run_id"])), _known(store.trusted(run["run_id"])), shown])
    return section("runs", "Runs", paragraph(
        "Beats random: interpretable units whose IoU exceeds the cut-off of the random-weights control serving the "
        f"run for their concept. Trusted: {TRUSTED_RULE}. \"-\": not known (no control serves the run; imported "
        "runs carry no interval or stability)."), table(
        ["model", "run", "layer", "probe", "variant", "source", "units", "interpretable", "beats random", "trusted",
         "unit strips"], rows, numeric={1, 6, 7, 8, 9}, table_id="runs"))


# unit_label_at's defaults (sql/unit_label.sql), which the report uses.
TRUSTED_RULE = ("interpretable, stability >= 0.8, the IoU's 95% interval above the chance IoU, and beating random "
                "when a control serves the run")


def _known(value: object) -> object:
    """A value for a table cell, "-" when the store does not know it."""
    return UNKNOWN if value is None else value


def _flag(value: bool | None) -> object:
    return UNKNOWN if value is None else ("yes" if value else "no")


# ---- a run's page ---------------------------------------------------------------------------------------------

def _run_page(run: dict, name: str, store: _StoreRows, strips: RunStrips | None, cutoff: str) -> str:
    run_id = run["run_id"]
    settings = run["settings"] or {}
    facts = [
        ("run", run_id), ("model", run["model"]), ("architecture", run["architecture"]), ("layer", run["layer"]),
        ("probe", run["probe"]), ("variant", run["variant"]), ("quantile", run["quantile"]),
        ("IoU cut-off of the run", run["iou_threshold"]), ("segmentation size", run["seg_size"]),
        ("source", run["source"]), ("checkpoint", settings.get("checkpoint") or (
            f"random init, seed {settings.get('seed')}" if settings.get("random_init") else None)),
        ("checkpoint SHA-256", run["checkpoint_sha256"]), ("notes", run["notes"]), ("family", run["family"]),
        ("bootstrap", f"{run['replicates']} replicates of the probe's images in {run['bootstrap_blocks']} blocks, "
                      f"seed {run['bootstrap_seed']}" if run.get("replicates") else None),
        ("random-weights control", f"run {run['control_run_id']}" if run.get("control_run_id") else (
            "this run is a control" if run.get("is_control") else "none")),
        ("dissected by" if run["source"] == "dissected" else "imported by", run["code_version"]),
        ("stored", f"{run['created_at']:%Y-%m-%d %H:%M}"),
    ]
    fact_table = "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                                     for k, v in facts if v is not None) + "</table>"
    profile = table(["category", "interpretable units", "distinct concepts"],
                    [[r["category"], r["interpretable_units"], r["distinct_concepts"]]
                     for r in store.profiles.get(run_id, [])], numeric={1, 2}, table_id="profile")
    concepts = table(["concept", "category", "units", "best IoU"],
                     [[c["label"], c["category"], c["units"], float(c["max_iou"])]
                      for c in store.concepts.get(run_id, [])], numeric={2, 3}, table_id="concepts")
    units = store.units.get(run_id, [])
    interpretable = sum(1 for u in units if u["interpretable"])
    beats_random, trusted = store.beats_random(run_id), store.trusted(run_id)
    strip_note, strip_cell = _strip_cells(run, strips)
    headers = ["unit", "label", "category", "IoU", "interpretable", *UNCERTAINTY_HEADERS] + (
        ["top images"] if strip_cell else [])
    rows = [[u["unit"], u["label"], u["category"], u["iou"], "yes" if u["interpretable"] else "",
             *_uncertainty_cells(u), *([strip_cell(u["unit"])] if strip_cell else [])] for u in units]
    attributes = [f'data-unit="{u["unit"]}"' + ("" if u["interpretable"] else ' class="dim"') for u in units]
    counted = (f"{len(units)} units, {interpretable} interpretable at {cutoff}; {_known(beats_random)} beat random, "
               f"{_known(trusted)} trusted.")
    body = "\n".join([
        "<p><a href=\"../index.html\">&larr; report</a></p>",
        f"<h1>{escape(name)}</h1>",
        paragraph(counted, "meta"),
        fact_table,
        section("profile", "Category profile", profile),
        section("concepts", "Concepts", f'<div class="scroll">{concepts}</div>'),
        section("units", "Units", paragraph(strip_note, "note") if strip_note else "",
                paragraph(UNCERTAINTY_NOTE, "note"),
                paragraph("Click a column's header to sort by it."),
                table(headers, rows, numeric={0, 3, *range(5, 10)}, table_id="units", row_attributes=attributes,
                      cell_classes={len(headers) - 1: "strip"} if strip_cell else None)),
    ])
    return page(f"{name}: lce report", body)


UNCERTAINTY_HEADERS = ["IoU low", "IoU high", "stability", "chance IoU", "lift", "beats random", "trusted"]
UNCERTAINTY_NOTE = (
    "IoU low and high: a 95% interval of the label's IoU over the bootstrap's replicates of the probe's images. "
    "Stability: the share of replicates in which the label stays the unit's best concept. Chance IoU: the IoU "
    "expected were the concept's pixels paired with the probe's images at random (a baseline, not a p-value); lift: "
    "IoU over chance IoU. Beats random: the IoU exceeds the random-weights control's cut-off for the concept. "
    f"Trusted: {TRUSTED_RULE}. \"-\": not known (imported runs carry no tallies; no control serves the run).")


def _uncertainty_cells(unit: dict) -> list[object]:
    """The unit's interval, stability, chance IoU, lift, beats random and trusted, "-" where unknown."""
    return [*(_known(unit[column]) for column in ("iou_low", "iou_high", "stability", "chance_iou", "lift")),
            _flag(unit["beats_random"]), _flag(unit["trusted"])]


def _strip_cells(run: dict, strips: RunStrips | None):
    """(note, cell function or None): the strip column of a run's unit table."""
    if strips is None:
        if run["has_top_images"]:
            return "Unit strips were not drawn for this report (--no-images).", None
        return "Imported results carry no images: this run has no unit strips.", None
    if not strips.files:
        return strips.note, None
    size = _image_size(next(iter(strips.files.values())))

    def cell(unit: int):
        path = strips.files.get(unit)
        if path is None:
            return None
        dimensions = f' width="{size[0]}" height="{size[1]}"' if size else ""
        return Raw(f'<img loading="lazy" src="../strips/run-{run["run_id"]}/{path.name}"{dimensions} '
                   f'alt="unit {unit}: top images with its mask">')

    note = "Each strip: the unit's top images, strongest first, dimmed outside the unit's mask (its activation " \
           "upsampled as the run's variant does and thresholded at the unit's threshold), the mask outlined."
    return (f"{note} {strips.note}" if strips.note else note), cell


def _image_size(path: Path) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as picture:
            return picture.size
    except OSError:
        return None


def _cluster_tag(cluster: int) -> Raw:
    colour = CLUSTER_COLOURS[cluster % len(CLUSTER_COLOURS)]
    return Raw(f'<span class="tag" style="background:{colour}">{cluster}</span>')
