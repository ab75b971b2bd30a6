"""The records that importers, the ingest and the writers share: which run (RunIdentity), a run's content
(RunRecord: its model, units, tallies, top images and bootstrap) and a file's task results (TaskTable).

    identity = RunIdentity("r18", "layer4", "synth", "dissect", quantile=0.005, seg_size=7, source="dissected")
    record = RunRecord(model=ModelInfo("r18"), probe="synth", layer="layer4", variant="dissect", quantile=0.005,
                       iou_threshold=0.04, source="dissected", seg_size=7, units=[UnitRow(0, ("object", "sky"), 0.12)])
    record.identity == identity

Importers (lce/importers) and the ingest (lce/ingest/run.py) make them; lce.db.runs.write_runs and
lce.db.task_performance.write_task_table store them; lce.db.pending keeps runs a lost database could not take.
Ground floor: this module imports nothing of lce and no database, so making a record needs none.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path

import numpy as np

ConceptKey = tuple[str, str]  # (category, name)


@dataclass(frozen=True)
class RunIdentity:
    """Which run: what sets a current run apart from every other (the unique key of table `run`, by names), and
    the stored run's id where it has one. The ingest locks and looks up a run by it before dissecting
    (lce.db.locks, lce.db.runs.find_run); the analyses name the runs they chose with it (an embedding's runs,
    lce.analysis.matrix; a comparison's two, lce.analysis.compare; a report's strips, lce.report.strips).

        RunIdentity.of(row)   # a row of the run queries (sql/queries/model_runs.sql, report_runs.sql, ...)
    """

    model: str
    layer: str
    probe: str
    variant: str  # lce.vocabulary
    quantile: float
    seg_size: int | None  # the segmentation's side; None where an imported file does not say
    source: str  # 'dissected' or 'imported:<format>'
    run_id: int | None = None  # None: not stored (yet)

    @classmethod
    def of(cls, row, **more):
        """The identity in `row` (a mapping with the columns of the fields), and `more`: a subclass's fields."""
        return cls(model=row["model"], layer=row["layer"], probe=row["probe"], variant=row["variant"],
                   quantile=row["quantile"], seg_size=row["seg_size"], source=row["source"], run_id=row["run_id"],
                   **more)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    architecture: str | None = None
    checkpoint_sha256: str | None = None
    family: str | None = None
    notes: str | None = None


@dataclass(frozen=True)
class UnitRow:
    unit: int
    concept: ConceptKey | None
    iou: float | None
    threshold: float | None = None
    # How sure the label is (issue 16; lce.dissect.uncertainty): None where unknown (imports, no bootstrap).
    iou_low: float | None = None  # the 95% interval of the label's IoU over the bootstrap's replicates
    iou_high: float | None = None
    stability: float | None = None  # share of replicates whose best concept is the label
    runner_up: ConceptKey | None = None  # the concept with the second-best IoU, and that IoU
    runner_up_iou: float | None = None
    chance_iou: float | None = None  # the label's IoU expected by chance (the pairing of images permuted)
    lift: float | None = None  # iou / chance_iou; None where chance_iou is 0


@dataclass(eq=False)
class ReplicateLabels:
    """Each unit's label in the first replicates of the bootstrap: the best concept overall (the variant's label
    rule) and its IoU. `lce embed --uncertainty` reads them (table unit_replicate)."""

    concepts: list[ConceptKey]  # what `label` indexes
    label: np.ndarray  # (units, replicates): row u is unit u; an index into concepts, -1: no concept overlaps it
    iou: np.ndarray  # (units, replicates) float32 IoU of that label in that replicate (0 with no label)


@dataclass(eq=False)
class Bootstrap:
    """How a dissected run's uncertainty was made, and what of it is stored beyond the unit rows."""

    replicates: int  # behind the intervals and stability (run.replicates)
    blocks: int  # blocks of images resampled (run.bootstrap_blocks)
    seed: int  # from the probe's content hash (run.bootstrap_seed; lce.dissect.uncertainty.replicate_seed)
    alternatives: list[tuple[int, ConceptKey, float]] = field(default_factory=list)  # (unit, concept, share)
    labels: ReplicateLabels | None = None  # the first replicates' labels, for the embedding's uncertainty


@dataclass(frozen=True)
class TallyRow:
    unit: int
    concept: ConceptKey
    intersection: int
    activation: int
    truth: int
    iou: float


@dataclass(eq=False)
class TallyColumns:
    """A run's tallies as numpy columns, one entry per (unit, concept) pair, as a dissection hands them over: the
    content of a list of TallyRow (iterating gives them), without a Python object per pair (a Broden-sized
    ResNet-50 layer has 2.46M pairs, ~8 s of objects)."""

    concepts: list[ConceptKey]  # the concepts that `concept` indexes
    unit: np.ndarray
    concept: np.ndarray
    intersection: np.ndarray
    activation: np.ndarray
    truth: np.ndarray
    iou: np.ndarray

    @classmethod
    def of(cls, tallies: list[TallyRow] | TallyColumns) -> TallyColumns:
        """The tallies as columns: a list of TallyRow (importers, pending files) turned into them once."""
        if isinstance(tallies, TallyColumns):
            return tallies
        count = len(tallies)

        def column(name: str, dtype) -> np.ndarray:
            return np.fromiter(map(attrgetter(name), tallies), dtype, count)

        concepts = sorted({tally.concept for tally in tallies})
        index = {concept: number for number, concept in enumerate(concepts)}
        return cls(concepts, unit=column("unit", np.int64),
                   concept=np.fromiter((index[tally.concept] for tally in tallies), np.int64, count),
                   intersection=column("intersection", np.int64), activation=column("activation", np.int64),
                   truth=column("truth", np.int64), iou=column("iou", np.float64))

    def __len__(self) -> int:
        return len(self.unit)

    def __iter__(self):
        for unit, concept, intersection, activation, truth, iou in zip(
                self.unit.tolist(), self.concept.tolist(), self.intersection.tolist(), self.activation.tolist(),
                self.truth.tolist(), self.iou.tolist()):
            yield TallyRow(unit, self.concepts[concept], intersection, activation, truth, iou)

    def named(self) -> set[ConceptKey]:
        """The concepts that some pair names."""
        return {self.concepts[index] for index in np.unique(self.concept).tolist()}


@dataclass
class RunRecord:
    model: ModelInfo
    probe: str
    layer: str
    variant: str
    quantile: float
    iou_threshold: float
    source: str
    units: list[UnitRow]
    tallies: list[TallyRow] | TallyColumns = field(default_factory=list)
    seg_size: int | None = None
    settings: dict = field(default_factory=dict)
    top_images: list[tuple[int, int, int, float]] = field(default_factory=list)  # (unit, rank, image, activation)
    bootstrap: Bootstrap | None = None  # dissected runs: the uncertainty's settings, alternatives, replicate labels
    control: bool = False  # a random-weights run to serve as the control of its kind (table run_control)

    def content_sha256(self) -> str:
        """A hash of the method and every unit and tally, so that importing the same data again is recognised
        (settings such as the file's name are left out: the same rows from a renamed file are the same run).
        A dissected run is identified by its checkpoint and settings instead: the same inputs, the same run."""
        digest = hashlib.sha256()
        header = [self.layer, self.variant, self.quantile, self.iou_threshold, self.seg_size]
        digest.update(json.dumps(header, sort_keys=True, default=str).encode())
        if self.source == "dissected":
            digest.update(json.dumps([self.model.checkpoint_sha256, self.settings], sort_keys=True).encode())
            return digest.hexdigest()
        for row in self.units:
            digest.update(repr((row.unit, row.concept, row.iou, row.threshold)).encode())
        for tally in self.tallies:
            digest.update(repr(tally).encode())
        return digest.hexdigest()

    @property
    def identity(self) -> RunIdentity:
        """The run this record is written as (a second record of the same identity replaces it, or is refused)."""
        return RunIdentity(self.model.name, self.layer, self.probe, self.variant, self.quantile, self.seg_size,
                           self.source)

    def interpretable_units(self) -> list[UnitRow]:
        """The units whose label's IoU exceeds the run's cut-off: the interpretable units lce ingest counts (and
        lce ingest --resume, for runs it stores later)."""
        return [row for row in self.units if row.concept and row.iou is not None and row.iou > self.iou_threshold]

    def describe(self) -> str:
        return f"model {self.model.name!r}, layer {self.layer!r} ({self.source}, probe {self.probe!r})"


@dataclass(frozen=True)
class MetricInfo:
    name: str
    family: str
    direction: str  # 'higher' or 'lower': which values are better
    task: str | None = None
    dataset: str | None = None


@dataclass(frozen=True)
class TaskValue:
    model: str
    metric: str
    value: float


@dataclass
class TaskTable:
    """A file's task results, parsed and checked (lce.importers.task_csv)."""

    path: Path
    layout: str  # 'wide' or 'long'
    metrics: list[MetricInfo]  # in the order the file first names them
    values: list[TaskValue]
    models: list[str]  # in the order the file first names them
    ignored: list[str] = field(default_factory=list)  # metrics an `ignore` rule left out

    def families(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for metric in self.metrics:
            grouped.setdefault(metric.family, []).append(metric.name)
        return grouped
