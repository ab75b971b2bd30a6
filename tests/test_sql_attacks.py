"""`lce sql` without --write, attacked after issue 23's lock: statements that slipped past the check (reading.py)
or the locked session (duck.py). Each marked "before" ran (or reached the server) on wt-attack1 at 3db1396.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def two_models(cli, tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("name,unit,iou,label,category\na,0,0.1,sky,object\na,1,0.01,sky,object\nb,0,0.2,red-c,color\n")
    assert cli("import", "dissect-csv", path).exit_code == 0


def _refused(result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.mark.parametrize("query", [
    "CHECKPOINT memory",  # before: ran, exit 0
    "FORCE CHECKPOINT memory",  # before: ran, exit 0
    "CHECKPOINT pg",  # before: sent CHECKPOINT to PostgreSQL (refused there only for want of the privilege)
    "FORCE CHECKPOINT",  # before: the same
    "checkpoint /* x */ pg",
])
def test_checkpoint_is_refused_by_the_check(cli, two_models, query):
    # DuckDB parses CHECKPOINT as a CALL whose text does not start with CALL: the check read "SELECT * FROM pg".
    _refused(cli("sql", query), "The query writes (CHECKPOINT)", "lce sql is read-only unless you pass --write")
