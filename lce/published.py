"""The published results lce is checked against, found through one setting: they are not in this repository.

    path = locate(AUTHORS_UNITS)            # $LCE_PUBLISHED_DATA/mustapha2022/models_dissect_profiles.csv
    path = locate(AUTHORS_TASKS, folder)    # or under a folder given on the command line
    python -m lce.published [DIR]           # prints the authors' per-unit file (scripts/demo --published)

The LCE paper's authors (Mustapha et al. 2022) publish their per-unit results and task table in their repository's
`Data/` folder, which carries no licence, so lce keeps no copy: a user downloads it as DIR/mustapha2022/ and sets
LCE_PUBLISHED_DATA=DIR (.ci/run says where CI keeps them). The NetDissect results sit beside them in
DIR/netdissect/. When a file is missing, PublishedDataMissing's message says where to download it and what to pass.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from lce.config import PUBLISHED_DATA_ENV, published_data
from lce.errors import LceError

AUTHORS_REPOSITORY = "https://github.com/AhmadM-DL/Intermodel-Interpretation"
NETDISSECT_REPOSITORY = "https://github.com/Trustworthy-ML-Lab/CLIP-dissect"


class PublishedDataMissing(LceError):
    """A published file is not where the setting points (or the setting is unset): the message says what to do."""


@dataclass(frozen=True)
class PublishedFile:
    """One published file: what it is, its folder under LCE_PUBLISHED_DATA, the names it goes by, its source."""

    what: str
    folder: str
    names: tuple[str, ...]  # the source's current name first; older downloads keep an earlier one
    source: str  # the folder to download, as a reader finds it

    def missing(self, root: Path | None) -> str:
        """The one message for a file that cannot be found under `root` (None: the setting is unset)."""
        names = self.names[0] + "".join(f" (or {name})" for name in self.names[1:])
        where = (f"{PUBLISHED_DATA_ENV} is not set" if root is None
                 else f"{root} is a file, not the folder above {self.folder}/" if root.is_file()
                 else f"{root / self.folder} has no {names}")
        return (f"{self.what} cannot be found: {where}. lce keeps no copy: download {self.source} as "
                f"DIR/{self.folder}/ and set {PUBLISHED_DATA_ENV}=DIR (scripts/demo --published DIR).")


# The LCE paper's per-unit Dissect labels: 20 ResNet-50 models x 2,048 layer4 units (40,960 rows).
AUTHORS_UNITS = PublishedFile("The LCE paper's per-unit results", "mustapha2022",
                              ("models_dissect_profiles.csv", "models_dissect_profiles_raw.csv"),
                              f"the Data/ folder of {AUTHORS_REPOSITORY}")
# The transfer results per model (Ericsson et al., CVPR 2021) that the paper correlates with the embedding.
AUTHORS_TASKS = PublishedFile("The LCE paper's task results", "mustapha2022", ("models_performance_on_tasks.csv",),
                              f"the Data/ folder of {AUTHORS_REPOSITORY}")


def netdissect_result(name: str) -> PublishedFile:
    """A NetDissect result (tally CSV) as CLIP-dissect publishes it, e.g. resnet18_places365_layer4.csv."""
    return PublishedFile("A published NetDissect result", "netdissect", (name,),
                         f"the data/NetDissect_results/ folder of {NETDISSECT_REPOSITORY}")


def locate(file: PublishedFile, root: Path | None = None) -> Path:
    """The path of `file` under `root` (default: $LCE_PUBLISHED_DATA), trying its names in order."""
    root = root if root is not None else published_data()
    if root is not None:
        for name in file.names:
            path = root / file.folder / name
            if path.is_file():
                return path
    raise PublishedDataMissing(file.missing(root))


def main(argv: list[str]) -> int:
    """Print the authors' per-unit file under argv's folder (else the setting's), or the message on stderr."""
    try:
        print(locate(AUTHORS_UNITS, Path(argv[0]) if argv else None))
    except PublishedDataMissing as missing:
        print(f"error: {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
