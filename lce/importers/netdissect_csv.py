"""NetDissect / NetDissect-Lite tally.csv: one row per unit (1-based), its best category, label and score, then
for every category `<cat>-label, -truth, -activation, -intersect, -iou`.

    records = read_netdissect_csv(Path("tally.csv"), model="resnet18-places365", layer="layer4", probe="broden1_224")

The unit's label and score become its best concept and IoU; each category's best label, with its truth,
activation and intersection counts and IoU, becomes a unit x concept tally. A category column without a label
(NetDissect-Lite leaves some texture labels empty) has no concept to attach the counts to and is skipped. Counts
are whole numbers from 0 to 2^63 - 1; a NaN score or IoU is refused.
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path

from lce.records import RunRecord, TallyRow, UnitRow
from lce.vocabulary import variant
from lce.errors import LceError
from lce.importers.common import (
    UnitIndex, csv_header, imported_run, parse_category, parse_count, parse_int, parse_iou, read_csv,
)
from lce.names import MAX_LABEL, check_name, check_options

FORMAT = "netdissect-csv"
NETDISSECT = variant("netdissect")  # Bau et al. CVPR 2017 (NetDissect, NetDissect-Lite)
TALLY_FIELDS = ("label", "truth", "activation", "intersect", "iou")


def read_netdissect_csv(
    path: Path, model: str, layer: str, probe: str, architecture: str | None = None
) -> list[RunRecord]:
    check_options(model=model, layer=layer, probe=probe, architecture=architecture)
    header = csv_header(path)
    categories = [name[: -len("-label")] for name in header if name.endswith("-label")]
    for category in categories:
        missing = [f"{category}-{field}" for field in TALLY_FIELDS if f"{category}-{field}" not in header]
        if missing:
            raise LceError(f"{path} lacks the column(s) {', '.join(missing)} that go with {category}-label.")
    tally_columns = [f"{category}-{field}" for category in categories for field in TALLY_FIELDS]
    rows = read_csv(path, ["unit", "category", "label", "score", *tally_columns])
    first = next(rows, None)
    if first is None:
        raise LceError(f"{path} has a header but no units.")

    index = UnitIndex(path, first=1)
    units, tallies, skipped = [], [], 0
    for where, row in chain([first], rows):
        unit = parse_int(row["unit"], where, "unit") - 1  # tally.csv numbers units from 1
        index.add(model, unit, where)
        label = row["label"].strip()
        concept = None
        if label:
            concept = (parse_category(row["category"], where), check_name(label, where, "label", MAX_LABEL))
        units.append(UnitRow(unit=unit, concept=concept, iou=parse_iou(row["score"], where, "score")))
        for category in categories:
            cat_label = row[f"{category}-label"].strip()
            if not cat_label:
                skipped += 1
                continue
            parse_category(category, where, f"column {category}-label's category")
            check_name(cat_label, where, f"{category}-label", MAX_LABEL)
            counts = {
                field: parse_count(row[f"{category}-{field}"], where, f"{category}-{field}")
                for field in ("truth", "activation", "intersect")
            }
            iou = parse_iou(row[f"{category}-iou"], where, f"{category}-iou")
            if iou is None:
                raise LceError(f"{where}: {category}-iou is empty while {category}-label is {cat_label!r}.")
            tallies.append(TallyRow(unit=unit, concept=(category, cat_label), intersection=counts["intersect"],
                                    activation=counts["activation"], truth=counts["truth"], iou=iou))
    index.check_range()
    return [
        imported_run(path=path, fmt=FORMAT, model=model, architecture=architecture, probe=probe, layer=layer,
                     variant=NETDISSECT.name, quantile=NETDISSECT.quantile, iou_threshold=NETDISSECT.iou_cutoff,
                     units=units, tallies=tallies, unlabelled_tallies_skipped=skipped)
    ]
