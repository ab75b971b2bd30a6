"""Which task family a transfer metric belongs to, and which way is better: rules matched against its name.

    rules = read_families(Path("families.csv")) + BUILT_IN_RULES   # the user's rules first
    metric = classify("ISIC_5_shot", rules)   # MetricInfo(family='few-shot', direction='higher', task='5-shot', ...)

The built-in rules follow docs/method.md section 3.9 (Ericsson et al., CVPR 2021, as the LCE paper used them): `dt_`
many-shot linear classification, `*_shot` few-shot, `voc_` detection, `sne_` surface normals (NYUv2), where the
angular errors `sne_Mean` and `sne_Median` are lower-is-better and the shares within 11.25/22.5/30 degrees
higher-is-better. A families file (`pattern,family,direction[,task,dataset]`) adds rules that are tried first;
family `ignore` leaves matching columns out.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from lce.errors import LceError
from lce.importers.common import read_csv
from lce.names import MAX_LABEL, check_name
from lce.records import MetricInfo

DIRECTIONS = ("higher", "lower")
IGNORE = "ignore"
# The built-in families, in the order reports list them.
FAMILIES = ("many-shot", "few-shot", "detection", "surface-normals")


@dataclass(frozen=True)
class FamilyRule:
    """`pattern` is matched against the whole name, case-sensitively: `*` matches any text, `?` one character.
    `task` and `dataset` may use {1}, {2}, ...: the text the pattern's wildcards matched."""

    pattern: str
    family: str
    direction: str = "higher"
    task: str | None = None
    dataset: str | None = None

    def match(self, name: str) -> MetricInfo | None:
        found = _regex(self.pattern).fullmatch(name)
        if found is None:
            return None
        groups = {str(i + 1): text for i, text in enumerate(found.groups())}

        def fill(template: str | None) -> str | None:
            return re.sub(r"\{(\d+)\}", lambda m: groups.get(m.group(1), m.group(0)), template) if template else None

        return MetricInfo(name, self.family, self.direction, fill(self.task), fill(self.dataset))


BUILT_IN_RULES = (
    # dt_Avg. is the mean of the twelve dt_ columns: counting it as a metric would weigh them twice (the paper's
    # "12 datasets"; mean r with PC1 is -0.711 without it, -0.713 with it).
    FamilyRule("*Avg.", IGNORE),
    FamilyRule("dt_*", "many-shot", "higher", "linear", "{1}"),
    FamilyRule("*_*_shot", "few-shot", "higher", "{2}-shot", "{1}"),
    FamilyRule("*_shot", "few-shot", "higher", None, "{1}"),
    FamilyRule("voc_*", "detection", "higher", "{1}", "VOC"),
    # Angular errors in degrees: lower is better.
    FamilyRule("sne_Mean", "surface-normals", "lower", "mean angular error", "NYUv2"),
    FamilyRule("sne_Median", "surface-normals", "lower", "median angular error", "NYUv2"),
    # Percent of pixels within 11.25, 22.5 or 30 degrees: higher is better.
    FamilyRule("sne_*", "surface-normals", "higher", "within {1} degrees", "NYUv2"),
)


def family_order(family: str) -> tuple[int, str]:
    """Sort key: the built-in families in their order, then the user's alphabetically."""
    return (FAMILIES.index(family), "") if family in FAMILIES else (len(FAMILIES), family)


def classify(name: str, rules: tuple[FamilyRule, ...] | list[FamilyRule]) -> MetricInfo | None:
    """The first rule that matches `name`, applied to it; None when none does."""
    for rule in rules:
        info = rule.match(name)
        if info is not None:
            return info
    return None


def read_families(path: Path) -> list[FamilyRule]:
    """A families file: `pattern,family,direction` (direction `higher` or `lower`, empty = higher) and optional
    `task,dataset`; rows in the order they are tried."""
    rules = []
    for where, row in read_csv(path, ["pattern", "family"]):
        pattern = (row.get("pattern") or "").strip()
        family = (row.get("family") or "").strip()
        direction = (row.get("direction") or "").strip().lower() or "higher"
        if not pattern:
            raise LceError(f"{where}: the pattern is empty.")
        if not family:
            raise LceError(f"{where}: the family for pattern {pattern!r} is empty.")
        if direction not in DIRECTIONS:
            raise LceError(f"{where}: direction {row.get('direction')!r} must be 'higher' or 'lower' (which values "
                           "are better).")
        check_name(family, where, "family", MAX_LABEL)
        task, dataset = ((row.get(column) or "").strip() or None for column in ("task", "dataset"))
        for name, what in ((task, "task name"), (dataset, "dataset name")):
            if name is not None:
                check_name(name, where, what, MAX_LABEL)
        rules.append(FamilyRule(pattern, family, direction, task, dataset))
    if not rules:
        raise LceError(f"{path} has a header but no rules.")
    return rules


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern:
    parts = [("(.*)" if char == "*" else "(.)" if char == "?" else re.escape(char)) for char in pattern]
    return re.compile("".join(parts), re.DOTALL)
