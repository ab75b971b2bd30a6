"""davidbau/dissect's report.json: `{"units": [{"unit": 0, "iou": 0.12, "label": "sky", "cat": "object"}, ...]}`.

    records = read_dissect_report(Path("report.json"), model="resnet50-places", layer="layer4", probe=...)

A label is a string (or null, "" or "-" for no concept); an IoU a number in [0, 1] or null (NaN is refused).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lce.errors import LceError
from lce.importers.common import UnitIndex, Where, imported_run, parse_category, parse_int, parse_iou, read_json_text
from lce.importers.dissect_csv import DISSECT, NO_LABEL
from lce.names import MAX_LABEL, check_name, check_options
from lce.records import RunRecord, UnitRow

FORMAT = "dissect-report"


def read_dissect_report(
    path: Path, model: str, layer: str, probe: str, architecture: str | None = None
) -> list[RunRecord]:
    check_options(model=model, layer=layer, probe=probe, architecture=architecture)
    try:
        report = json.loads(read_json_text(path))
    except json.JSONDecodeError as error:
        raise LceError(f"{path} is not JSON: {error.msg} at line {error.lineno}, column {error.colno}.") from None
    except RecursionError:  # json's parser recurses once per [ or {
        raise LceError(f"{path} nests lists or objects deeper than Python's JSON reader can follow (about "
                       f"{sys.getrecursionlimit():,} levels); a dissect report nests three.") from None
    entries = report.get("units") if isinstance(report, dict) else None
    if not isinstance(entries, list):
        raise LceError(f"{path} is not a dissect report: it has no list under \"units\".")
    if not entries:
        raise LceError(f"{path} lists no units.")
    index = UnitIndex(path)
    units = []
    for number, entry in enumerate(entries):
        where = Where(path, entry=number)
        if not isinstance(entry, dict):
            raise LceError(f"{where} is not an object with unit, iou, label and cat.")
        missing = [key for key in ("unit", "iou", "label") if key not in entry]
        if "cat" not in entry and "category" not in entry:
            missing.append("cat")
        if missing:
            raise LceError(f"{where} lacks {', '.join(missing)}.")
        unit = parse_int(str(entry["unit"]), where, "unit")
        index.add(model, unit, where)
        if entry["label"] is not None and not isinstance(entry["label"], str):
            raise LceError(f"{where}: label {entry['label']!r} is not a string.")
        label = (entry["label"] or "").strip()
        category = entry.get("cat", entry.get("category"))
        concept = None if label in ("", NO_LABEL) else (parse_category(str(category), where, "cat"),
                                                         check_name(label, where, "label", MAX_LABEL))
        units.append(UnitRow(unit=unit, concept=concept, iou=parse_iou(entry["iou"], where)))
    index.check_range()
    return [
        imported_run(path=path, fmt=FORMAT, model=model, architecture=architecture, probe=probe, layer=layer,
                     variant=DISSECT.name, quantile=DISSECT.quantile, iou_threshold=DISSECT.iou_cutoff, units=units)
    ]
