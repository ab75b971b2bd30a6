"""`lce probe check`: every problem of a Broden-format dataset, each with its file and line.

    problems = check_probe(Path("broden1_224"), deep=False)

Fast by default: image and PNG sizes come from file headers. `deep` decodes every file, and so also finds
truncated or corrupt ones and label numbers in PNGs that label.csv lacks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lce.probe.broden import Broden, Problem, Problems, read_label_png, unknown_labels


def check_probe(root: Path, deep: bool = False, progress: Callable[[int, int], None] | None = None) -> list[Problem]:
    problems = Problems(strict=False)
    probe = Broden.read(Path(root), "all", problems)
    known = np.array(sorted(probe.vocabulary), dtype=np.int64)
    index = probe.root / "index.csv"
    for position, row in enumerate(probe.rows):
        _check_file(probe.root / "images" / row.image, (row.iw, row.ih), "ih,iw", index, row.line, deep, problems)
        for category in probe.categories:
            for name in row.label_files(category):
                path = probe.root / "images" / name
                if _check_file(path, (row.sw, row.sh), "sh,sw", index, row.line, deep, problems) and deep:
                    unknown = unknown_labels(read_label_png(path), known)
                    if unknown.size:
                        problems.add(path, f"label number(s) {', '.join(map(str, unknown[:5]))} absent from label.csv"
                                           f" (index.csv line {row.line})")
        if progress is not None:
            progress(position + 1, len(probe.rows))
    return list(problems)


def _check_file(path: Path, size: tuple[int, int], columns: str, index: Path, line: int, deep: bool,
                problems: Problems) -> bool:
    """True when the file opens with the expected size (and, when deep, decodes completely)."""
    from PIL import Image

    if not path.is_file():  # a FIFO, a device or a folder is no image either, and is not opened
        problems.add(index, f"{path} is {'not a regular file' if os.path.lexists(path) else 'missing'}", line)
        return False
    try:
        with Image.open(path) as image:
            found = image.size
            if deep:
                image.load()
    except (OSError, SyntaxError, ValueError) as error:
        problems.add(path, f"cannot be read ({error}; index.csv line {line})")
        return False
    if found != size:
        problems.add(path, f"is {found[0]}x{found[1]}, but index.csv line {line} gives {columns} "
                           f"{size[1]},{size[0]}")
        return False
    return True
