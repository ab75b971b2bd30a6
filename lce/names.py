"""Names and labels as lce reads them, from a file or the command line: one line of printable text, not too long.

    check_name(row["name"].strip(), where, "model name")        # where: "results.csv, line 12" or "--model"
    check_options(model="resnet50", layer="layer4", probe=None)  # each given option, named in the message

At most MAX_NAME characters for model, layer and probe names and MAX_LABEL for concept labels and metric, task,
dataset and family names, with no control character (tab and newline included) and no line or paragraph separator
(U+2028, U+2029). The importers, the probe registry and the ingest all check names here; it imports only
lce.errors, so every layer may import it.
"""

from __future__ import annotations

import unicodedata

from lce.errors import LceError

# Names end up in unique btree indexes, whose rows PostgreSQL caps at 2704 bytes (a third of a page); at 4 bytes
# a character at most, these stay below it, and far above any real name.
MAX_NAME = 200  # model, layer and probe names, --arch
MAX_LABEL = 500  # concept labels; metric, task, dataset and family names
# Unicode categories a name may not hold: control characters (Cc: tab, newline, escape, ...), line and paragraph
# separators (Zl, Zp): each would break the one-line tables, CSV files and messages that show names.
NOT_IN_NAMES = ("Cc", "Zl", "Zp")
OPTIONS = {"model": "--model", "layer": "--layer", "probe": "--probe", "architecture": "--arch"}


def check_name(name: str, where: object, what: str, limit: int = MAX_NAME) -> str:
    """`name` as given, when it is not empty, at most `limit` characters long and one line of printable text;
    `where` is a place in a file (lce.importers.common.Where) or an option ('--model')."""
    if not name:
        raise LceError(f"{where}: the {what} is empty.")
    if len(name) > limit:
        raise LceError(f"{where}: the {what} {name[:40]!r}... is {len(name):,} characters long; lce takes at most "
                       f"{limit}.")
    bad = next((char for char in name if unicodedata.category(char) in NOT_IN_NAMES), None)
    if bad is not None:
        raise LceError(f"{where}: the {what} {name[:80]!r} holds U+{ord(bad):04X} "
                       f"({unicodedata.name(bad, 'a control character')}); names and labels are one line of "
                       "printable text.")
    return name


def check_options(**names: str | None) -> None:
    """Names given on the command line (model=, layer=, probe=, architecture=), each checked like a file's."""
    for key, value in names.items():
        if value is not None:
            check_name(value, OPTIONS[key], f"{key} name")
