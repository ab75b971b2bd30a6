"""Dissect per-unit CSV (the LCE paper's data): `name,unit,iou,label,category`, one row per model and unit.

    records = read_dissect_csv(Path("models_dissect_profiles_raw.csv"), layer="layer4", probe="places365-upp")

Each distinct `name` becomes a model with one run of the `dissect` variant, with its quantile and IoU cut-off
(lce.vocabulary; docs/method.md section 1). Label `-` means the unit has no concept; an empty IoU is kept as
NULL (a NaN is refused). Model names and labels follow lce.importers.common's rules (length, no control characters).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from lce.records import RunRecord, UnitRow
from lce.vocabulary import variant
from lce.errors import LceError
from lce.importers.common import UnitIndex, imported_run, parse_category, parse_int, parse_iou, read_csv
from lce.names import MAX_LABEL, check_name, check_options

FORMAT = "dissect-csv"
NO_LABEL = "-"
DISSECT = variant("dissect")  # davidbau/dissect (Bau et al. PNAS 2020), as the LCE paper used it


def read_dissect_csv(path: Path, layer: str, probe: str, architecture: str | None = None) -> list[RunRecord]:
    check_options(layer=layer, probe=probe, architecture=architecture)
    units_by_model: dict[str, list[UnitRow]] = defaultdict(list)
    index = UnitIndex(path)
    for where, row in read_csv(path, ["name", "unit", "iou", "label", "category"]):
        model = check_name(row["name"].strip(), where, "model name")
        unit = parse_int(row["unit"], where, "unit")
        index.add(model, unit, where)
        label = row["label"].strip()
        concept = None if label in ("", NO_LABEL) else (parse_category(row["category"], where),
                                                         check_name(label, where, "label", MAX_LABEL))
        units_by_model[model].append(UnitRow(unit=unit, concept=concept, iou=parse_iou(row["iou"], where)))
    if not units_by_model:
        raise LceError(f"{path} has a header but no units.")
    index.check_range()
    return [
        imported_run(path=path, fmt=FORMAT, model=model, architecture=architecture, probe=probe, layer=layer,
                     variant=DISSECT.name, quantile=DISSECT.quantile, iou_threshold=DISSECT.iou_cutoff, units=units)
        for model, units in sorted(units_by_model.items())
    ]
