"""The tables users query: probe, concept, model, run, unit, run_concept and unit_tally (read pair by pair through
the view unit_concept), unit_alternative, unit_replicate, unit_top_image, run_control, control_cutoff, embedding,
embedding_point, embedding_coassignment, task_metric, task_performance.

Their names and columns are part of lce's interface (users write SQL against them); change them only with a
migration under migrations/versions/, and `alembic check` (run by the tests) keeps these models and the
migrations in step. Views and SQL functions over these tables live in sql/ and are created by migrations.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    REAL,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The categories a concept may belong to (Broden's six) and the method's variants: their CHECKs below list
# lce.vocabulary' names, so a change there needs a migration (alembic check sees run.variant's comment).
from lce.vocabulary import CATEGORIES, NAMES

# Which units an embedding's matrix counts (lce embed --units): unit_label's interpretable, trusted, or
# interpretable and beating the run's random control.
UNIT_FILTERS = ("interpretable", "trusted", "beats-random")
_UNIT_FILTERS_TEXT = ", ".join(UNIT_FILTERS)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """The CHECK `column IN ('a', 'b')`."""
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Probe(Base):
    """A probe dataset with pixel-level concept labels (Broden format), or the vocabulary of imported results."""

    __tablename__ = "probe"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    path: Mapped[str | None] = mapped_column(Text, comment="dataset directory; NULL for an imported vocabulary")
    image_count: Mapped[int | None] = mapped_column(Integer)
    image_size: Mapped[int | None] = mapped_column(Integer)
    seg_size: Mapped[int | None] = mapped_column(Integer)
    content_sha256: Mapped[str | None] = mapped_column(Text, comment="hash of the dataset's CSV files")
    source: Mapped[str] = mapped_column(Text, comment="'broden' or 'imported'")
    category_images: Mapped[dict | None] = mapped_column(JSONB, comment="images annotating each category")
    created_at: Mapped[datetime] = _created_at()

    concepts: Mapped[list[Concept]] = relationship(back_populates="probe")

    __table_args__ = (CheckConstraint("source IN ('broden', 'imported')", name="source"),)


class Concept(Base):
    """One visual concept of a probe's vocabulary, within one category (`food` as object and as material are two)."""

    __tablename__ = "concept"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    probe_id: Mapped[int] = mapped_column(ForeignKey("probe.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(Text)
    number: Mapped[int | None] = mapped_column(
        Integer, comment="label number in the probe's label.csv; NULL for a concept known only by name (imports)"
    )
    primary_category: Mapped[str | None] = mapped_column(
        Text, comment="the category the label occurs in most (label.csv); NULL for imports"
    )
    frequency: Mapped[int | None] = mapped_column(Integer, comment="images with this label in this category")
    coverage: Mapped[float | None] = mapped_column(Double, comment="mean fraction of those images' pixels it covers")

    probe: Mapped[Probe] = relationship(back_populates="concepts")

    __table_args__ = (
        UniqueConstraint("probe_id", "category", "name"),
        CheckConstraint(_one_of("category", CATEGORIES), name="category"),
        CheckConstraint("number IS NULL OR number > 0", name="number"),
        CheckConstraint(_one_of("primary_category", CATEGORIES), name="primary_category"),
        Index(None, "probe_id", "number"),
    )


class Model(Base):
    __tablename__ = "model"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    architecture: Mapped[str | None] = mapped_column(Text)
    checkpoint_sha256: Mapped[str | None] = mapped_column(Text)
    family: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        CheckConstraint("checkpoint_sha256 ~ '^[0-9a-f]{64}$'", name="checkpoint_sha256"),
    )


class Run(Base):
    """One dissection of one model's layer over one probe, dissected here or imported; records how it was made."""

    __tablename__ = "run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id", ondelete="CASCADE"))
    probe_id: Mapped[int] = mapped_column(ForeignKey("probe.id", ondelete="RESTRICT"))
    layer: Mapped[str] = mapped_column(Text)
    variant: Mapped[str] = mapped_column(
        Text, comment=" or ".join(repr(name) for name in NAMES) + " (method.md section 1)"
    )
    quantile: Mapped[float] = mapped_column(Double, comment="top fraction of activations above the threshold")
    iou_threshold: Mapped[float] = mapped_column(Double, comment="IoU cut-off for 'interpretable' (strict >)")
    seg_size: Mapped[int | None] = mapped_column(Integer, comment="segmentation resolution S; NULL if unknown")
    checkpoint_sha256: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text, comment="'dissected' or 'imported:<format>'")
    source_sha256: Mapped[str | None] = mapped_column(Text, comment="hash of the imported file's rows for this run")
    settings: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    code_version: Mapped[str] = mapped_column(Text)
    unit_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created_at()
    superseded_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True),
        comment="when --replace swapped this run out; kept only because an embedding uses it. NULL: current",
    )
    superseded_by: Mapped[int | None] = mapped_column(
        ForeignKey("run.id", ondelete="SET NULL"), comment="the run that replaced this one"
    )
    replicates: Mapped[int | None] = mapped_column(
        Integer, comment="bootstrap replicates behind the units' intervals and stability; NULL: none (imports)"
    )
    bootstrap_blocks: Mapped[int | None] = mapped_column(Integer, comment="blocks of probe images the bootstrap draws")
    bootstrap_seed: Mapped[int | None] = mapped_column(
        BigInteger, comment="the bootstrap's seed, from the probe's content hash (shared by every run on the probe)"
    )

    __table_args__ = (
        # One current run per model, layer, probe and method: a second one is a --replace. Superseded runs
        # (kept for the embeddings that use them) are outside it.
        Index(
            "uq_run_current_identity", "model_id", "layer", "probe_id", "variant", "quantile", "seg_size", "source",
            unique=True, postgresql_nulls_not_distinct=True, postgresql_where=text("superseded_at IS NULL"),
        ),
        CheckConstraint(_one_of("variant", NAMES), name="variant"),
        CheckConstraint("quantile > 0 AND quantile < 1", name="quantile"),
        CheckConstraint("iou_threshold >= 0 AND iou_threshold <= 1", name="iou_threshold"),
        CheckConstraint("seg_size IS NULL OR seg_size > 0", name="seg_size"),
        CheckConstraint("source = 'dissected' OR source LIKE 'imported:%'", name="source"),
        CheckConstraint("unit_count >= 0", name="unit_count"),
        CheckConstraint("(replicates IS NULL OR replicates > 0) AND (bootstrap_blocks IS NULL OR bootstrap_blocks > 0)"
                        " AND (replicates IS NULL) = (bootstrap_blocks IS NULL)"
                        " AND (replicates IS NULL) = (bootstrap_seed IS NULL)", name="bootstrap"),
        Index(None, "probe_id", "layer", "variant"),
    )


class Unit(Base):
    """One unit (channel) of a run's layer, with its best concept. `iou` is NULL where the source gave none."""

    __tablename__ = "unit"

    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    unit: Mapped[int] = mapped_column(Integer, primary_key=True)
    threshold: Mapped[float | None] = mapped_column(Double, comment="activation threshold T_u; NULL for imports")
    concept_id: Mapped[int | None] = mapped_column(ForeignKey("concept.id", ondelete="RESTRICT"))
    iou: Mapped[float | None] = mapped_column(Double)
    # How sure the label is (lce.dissect.uncertainty); NULL where unknown (imports, a run without a bootstrap).
    iou_low: Mapped[float | None] = mapped_column(Double, comment="2.5% percentile of the label's bootstrap IoU")
    iou_high: Mapped[float | None] = mapped_column(Double, comment="97.5% percentile of the label's bootstrap IoU")
    stability: Mapped[float | None] = mapped_column(
        Double, comment="share of replicates whose best concept is the label"
    )
    runner_up_id: Mapped[int | None] = mapped_column(
        ForeignKey("concept.id", ondelete="RESTRICT"), comment="the concept of second-best IoU (the variant's rule)"
    )
    runner_up_iou: Mapped[float | None] = mapped_column(Double)
    chance_iou: Mapped[float | None] = mapped_column(
        Double, comment="the label's IoU expected with its label maps permuted among the images (a baseline)"
    )
    lift: Mapped[float | None] = mapped_column(Double, comment="iou / chance_iou; NULL where chance_iou is 0")

    __table_args__ = (
        CheckConstraint("unit >= 0", name="unit"),
        CheckConstraint("iou >= 0 AND iou <= 1", name="iou"),
        CheckConstraint("0 <= iou_low AND iou_low <= iou_high AND iou_high <= 1 AND stability >= 0 AND stability <= 1"
                        " AND runner_up_iou >= 0 AND runner_up_iou <= 1 AND chance_iou >= 0 AND chance_iou <= 1"
                        " AND lift >= 0", name="uncertainty"),
        Index(None, "concept_id"),
    )


class UnitAlternative(Base):
    """A concept that is a dissected unit's best in at least 1% of the bootstrap's replicates (its label included),
    with that share."""

    __tablename__ = "unit_alternative"

    run_id: Mapped[int] = mapped_column(primary_key=True)
    unit: Mapped[int] = mapped_column(Integer, primary_key=True)
    concept_id: Mapped[int] = mapped_column(ForeignKey("concept.id", ondelete="RESTRICT"), primary_key=True)
    share: Mapped[float] = mapped_column(Double, comment="share of replicates in which it is the unit's best")

    __table_args__ = (
        ForeignKeyConstraint(["run_id", "unit"], ["unit.run_id", "unit.unit"], ondelete="CASCADE"),
        CheckConstraint("share > 0 AND share <= 1", name="share"),
        Index(None, "concept_id"),
    )


class UnitReplicate(Base):
    """A dissected unit's label and its IoU in each of the bootstrap's first replicates (those lce embed
    --uncertainty may use), as arrays in replicate order."""

    __tablename__ = "unit_replicate"

    run_id: Mapped[int] = mapped_column(primary_key=True)
    unit: Mapped[int] = mapped_column(Integer, primary_key=True)
    concept_ids: Mapped[list[int | None]] = mapped_column(
        ARRAY(Integer), comment="concept id per replicate; NULL where no concept overlaps the unit in it"
    )
    ious: Mapped[list[float]] = mapped_column(ARRAY(REAL), comment="that concept's IoU per replicate (0 without one)")

    __table_args__ = (
        ForeignKeyConstraint(["run_id", "unit"], ["unit.run_id", "unit.unit"], ondelete="CASCADE"),
        CheckConstraint("cardinality(concept_ids) = cardinality(ious) AND array_position(ious, NULL) IS NULL"
                        " AND 0 <= ALL (ious) AND 1 >= ALL (ious)", name="arrays"),
    )


class RunConcept(Base):
    """A concept that a run has tallies for, with its truth count G (pixels labelled with it over the probe, the
    same for every unit). unit_tally's concept ids are among these; the view unit_concept joins the two."""

    __tablename__ = "run_concept"

    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    concept_id: Mapped[int] = mapped_column(ForeignKey("concept.id", ondelete="RESTRICT"), primary_key=True)
    truth: Mapped[int | None] = mapped_column(
        BigInteger, comment="G; NULL when it differs between the run's units (an imported file): unit_tally.truths"
    )

    __table_args__ = (
        CheckConstraint("truth >= 0", name="truth"),
        Index(None, "concept_id"),
    )


class UnitTally(Base):
    """The tallies of one unit with the concepts of one category, as arrays in concept order: I and IoU per
    concept, A once (it depends on the unit and, under netdissect, on the category). The view unit_concept gives
    one row per (unit, concept) pair: I, A, G and IoU = I / (A + G - I). Arrays, because at a few bytes per value
    against ~28 bytes per PostgreSQL row, a Broden run's 2.46M pairs as rows took ~300 MB."""

    __tablename__ = "unit_tally"

    run_id: Mapped[int] = mapped_column(primary_key=True)
    unit: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[str] = mapped_column(Text, primary_key=True)
    activation: Mapped[int | None] = mapped_column(
        BigInteger, comment="A; NULL when it differs between the concepts (an imported file): then activations"
    )
    concept_ids: Mapped[list[int]] = mapped_column(ARRAY(Integer), comment="ascending; each in run_concept")
    intersections: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), comment="I, per concept")
    ious: Mapped[list[float]] = mapped_column(ARRAY(Double), comment="IoU as computed or imported, per concept")
    activations: Mapped[list[int] | None] = mapped_column(ARRAY(BigInteger), comment="A per concept, or NULL")
    truths: Mapped[list[int] | None] = mapped_column(
        ARRAY(BigInteger), comment="G per concept where run_concept.truth is NULL, or NULL"
    )

    __table_args__ = (
        ForeignKeyConstraint(["run_id", "unit"], ["unit.run_id", "unit.unit"], ondelete="CASCADE"),
        CheckConstraint(_one_of("category", CATEGORIES), name="category"),
        # Every array one-dimensional, as long as concept_ids, without NULLs (array_position needs 1-D arrays).
        CheckConstraint(
            " AND ".join(f"array_position({name}, NULL) IS NULL AND cardinality({name}) = cardinality(concept_ids)"
                         for name in ("concept_ids", "intersections", "ious", "activations", "truths")),
            name="arrays",
        ),
        CheckConstraint("(activation IS NULL) <> (activations IS NULL)", name="activation"),
        # The pair by pair checks of the former row table that arrays allow; intersection <= activation per pair
        # and <= truth are checked by the writer (lce/db/runs.py).
        CheckConstraint(
            "0 <= ALL (intersections) AND activation >= ALL (intersections) AND activation >= 0"
            " AND 0 <= ALL (activations) AND 0 <= ALL (truths)",
            name="counts",
        ),
        CheckConstraint("0 <= ALL (ious) AND 1 >= ALL (ious)", name="iou"),
    )


class RunControl(Base):
    """A run named a control (random weights, usually): it serves every current run of the same layer, probe,
    variant, quantile and segmentation size (and architecture, when both record one); see view run_control_of."""

    __tablename__ = "run_control"

    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = _created_at()


class ControlCutoff(Base):
    """Per concept, the IoU a unit's label must exceed to beat a control: the 99th percentile of the concept's IoU
    over the control's units (dissected), or the highest IoU of a control unit labelled with it (imported)."""

    __tablename__ = "control_cutoff"

    run_id: Mapped[int] = mapped_column(ForeignKey("run_control.run_id", ondelete="CASCADE"), primary_key=True)
    concept_id: Mapped[int] = mapped_column(ForeignKey("concept.id", ondelete="RESTRICT"), primary_key=True)
    cutoff: Mapped[float] = mapped_column(Double)

    __table_args__ = (CheckConstraint("cutoff >= 0 AND cutoff <= 1", name="cutoff"),)


class UnitTopImage(Base):
    """The probe images that activate a dissected unit most (rank 0 = strongest), for reports."""

    __tablename__ = "unit_top_image"

    run_id: Mapped[int] = mapped_column(primary_key=True)
    unit: Mapped[int] = mapped_column(Integer, primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    image: Mapped[int] = mapped_column(Integer, comment="0-based row of the probe's index.csv")
    activation: Mapped[float] = mapped_column(Double, comment="the unit's largest activation in that image")

    __table_args__ = (
        ForeignKeyConstraint(["run_id", "unit"], ["unit.run_id", "unit.unit"], ondelete="CASCADE"),
        CheckConstraint("rank >= 0 AND image >= 0", name="rank_image"),
    )


class Embedding(Base):
    """A Learned Concepts Embedding: every parameter needed to make it again, and what it found."""

    __tablename__ = "embedding"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    method: Mapped[str] = mapped_column(Text)
    components: Mapped[int] = mapped_column(Integer)
    clusters: Mapped[int] = mapped_column(Integer)
    normalize: Mapped[str] = mapped_column(Text)
    min_iou: Mapped[float] = mapped_column(Double)
    layer: Mapped[str] = mapped_column(Text)
    probe_id: Mapped[int] = mapped_column(ForeignKey("probe.id", ondelete="RESTRICT"))
    variant: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer)
    concept_count: Mapped[int] = mapped_column(Integer, comment="columns of the model x concept matrix")
    explained_variance: Mapped[list[float] | None] = mapped_column(ARRAY(Double), comment="PCA only")
    inertia: Mapped[list[float]] = mapped_column(ARRAY(Double), comment="KMeans inertia for k = 1, 2, ...")
    settings: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    code_version: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    units: Mapped[str] = mapped_column(
        Text, server_default="interpretable", comment="the units the matrix counts: " + _UNIT_FILTERS_TEXT
    )
    replicates: Mapped[int | None] = mapped_column(
        Integer, comment="replicates behind the points' covariance and the co-assignment; NULL: none"
    )

    __table_args__ = (
        CheckConstraint(_one_of("units", UNIT_FILTERS), name="units"),
        CheckConstraint("replicates IS NULL OR replicates > 0", name="replicates"),
        CheckConstraint("method IN ('pca', 'mds', 'tsne')", name="method"),
        CheckConstraint("normalize IN ('population', 'selection', 'none')", name="normalize"),
        CheckConstraint("components > 0 AND clusters > 0", name="sizes"),
    )


class EmbeddingPoint(Base):
    """One model's place in an embedding: the run it came from, its coordinates and its cluster."""

    __tablename__ = "embedding_point"

    embedding_id: Mapped[int] = mapped_column(ForeignKey("embedding.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id", ondelete="CASCADE"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("run.id", ondelete="CASCADE"))
    coordinates: Mapped[list[float]] = mapped_column(ARRAY(Double))
    cluster: Mapped[int] = mapped_column(Integer)
    covariance: Mapped[list[float] | None] = mapped_column(
        ARRAY(Double), comment="covariance of the coordinates over the replicates, row-major; NULL: none"
    )

    __table_args__ = (
        CheckConstraint("cluster >= 0", name="cluster"),
        Index(None, "run_id"),
    )


class EmbeddingCoassignment(Base):
    """How often two models of an embedding share a cluster over its replicates (both orders stored; 1 with
    itself)."""

    __tablename__ = "embedding_coassignment"

    embedding_id: Mapped[int] = mapped_column(ForeignKey("embedding.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("model.id", ondelete="CASCADE"), primary_key=True)
    other_model_id: Mapped[int] = mapped_column(ForeignKey("model.id", ondelete="CASCADE"), primary_key=True)
    share: Mapped[float] = mapped_column(Double)

    __table_args__ = (CheckConstraint("share >= 0 AND share <= 1", name="share"),)


class TaskMetric(Base):
    """A transfer-task metric (Ericsson et al.'s benchmark, or the user's): its task family and which way is better."""

    __tablename__ = "task_metric"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    family: Mapped[str] = mapped_column(
        Text, comment="task family: many-shot, few-shot, detection, surface-normals, or one the user names"
    )
    direction: Mapped[str] = mapped_column(Text, comment="'higher' or 'lower': which values are better")
    task: Mapped[str | None] = mapped_column(Text, comment="the evaluation within the family, e.g. linear, 5-shot")
    dataset: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text, comment="the file the metric was (last) imported from")
    created_at: Mapped[datetime] = _created_at()

    __table_args__ = (
        CheckConstraint("direction IN ('higher', 'lower')", name="direction"),
        CheckConstraint("family <> '' AND name <> ''", name="names"),
    )


class TaskPerformance(Base):
    """One model's value of one task metric."""

    __tablename__ = "task_performance"

    model_id: Mapped[int] = mapped_column(ForeignKey("model.id", ondelete="CASCADE"), primary_key=True)
    metric_id: Mapped[int] = mapped_column(ForeignKey("task_metric.id", ondelete="CASCADE"), primary_key=True)
    value: Mapped[float] = mapped_column(Double)

    __table_args__ = (
        # Finite only: in Postgres NaN sorts above 'Infinity', so this rejects NaN as well.
        CheckConstraint("value > '-Infinity' AND value < 'Infinity'", name="value"),
        Index(None, "metric_id"),
    )
