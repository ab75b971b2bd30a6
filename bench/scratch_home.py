"""A bench's own embedded database: a throwaway $LCE_HOME whose server is stopped and folder removed at the end.

    with scratch_home("lce-bench-store-"):
        run(args)   # lce's commands and functions use the scratch home's embedded server

LCE_DATABASE_URL and LCE_DATABASE_READONLY_URL are unset inside, so no bench writes to a server it was not made
for. Used by bench_store.py and authors_uncertainty.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def scratch_home(prefix: str):
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["LCE_HOME"] = str(scratch / "home")
    os.environ.pop("LCE_DATABASE_URL", None)
    os.environ.pop("LCE_DATABASE_READONLY_URL", None)
    try:
        yield scratch
    finally:
        from lce.db.connection import dispose_all
        from lce.db.server import EmbeddedServer

        dispose_all()
        EmbeddedServer(scratch / "home").stop()
        shutil.rmtree(scratch, ignore_errors=True)
