"""Two identical imports at once: one creates the run, the other finds it unchanged; neither sees a duplicate key."""

import threading

import pytest
from sqlalchemy import text

from lce.db import connection, runs
from lce.importers.dissect_csv import read_dissect_csv

pytestmark = pytest.mark.slow  # concurrent imports


def test_two_identical_imports_at_once_give_created_and_unchanged(engine, tmp_path, monkeypatch):
    path = tmp_path / "units.csv"
    path.write_text(",name,unit,iou,label,category\n0,M,0,0.2,sky,object\n1,M,1,0.05,wood,material\n"
                    "2,M,2,0.01,-,\n")
    # Both writers begin their transactions together: without the lock both find no probe and no run, and
    # both insert them.
    barrier = threading.Barrier(2)
    real_retrying = runs.retrying

    def retrying_together(*args, **kwargs):
        barrier.wait(timeout=30)
        return real_retrying(*args, **kwargs)

    monkeypatch.setattr(runs, "retrying", retrying_together)
    outcomes, failures = [], []

    def write():
        try:
            records = read_dissect_csv(path, layer="layer4", probe="places365-upp")
            outcomes.extend(item.outcome.value for item in runs.write_runs(connection.connect(), records))
        except Exception as error:  # noqa: BLE001 - the test reports it
            failures.append(error)

    threads = [threading.Thread(target=write) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert sorted(outcomes) == ["created", "unchanged"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM unit")).scalar() == 3
