"""The light commands import none of the heavy packages: listing the store, a query or the version must not wait
for torch (seconds) or the others. lce/cli imports them only inside the commands that use them (lce ingest,
lce layers, lce zoo ...), each such import with a comment why."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "sklearn", "matplotlib", "timm", "transformers", "ray")

# `lce ARGS` in a fresh interpreter, then (at exit, whatever the exit status) the heavy packages it had imported.
RUN_AND_LIST_IMPORTS = f"""
import atexit, sys
atexit.register(lambda: print("heavy imported:", sorted(name for name in {HEAVY!r} if name in sys.modules)))
sys.argv = ["lce", *sys.argv[1:]]
from lce.cli import main
main()
"""


@pytest.mark.parametrize("command, says", [
    (["models"], "No models yet"),
    (["sql", "select 1 AS one"], "1 row(s)"),
    (["probe", "list"], "0 row(s)"),
    (["--version"], "lce "),
], ids=["models", "sql", "probe-list", "version"])
def test_a_light_command_imports_no_heavy_package(database, tmp_path, command, says):
    result = subprocess.run([sys.executable, "-c", RUN_AND_LIST_IMPORTS, *command], capture_output=True, text=True,
                            env={**os.environ, "LCE_HOME": str(tmp_path)}, timeout=300)
    assert result.returncode == 0, result.stderr
    *output, imported = result.stdout.splitlines()
    assert says in "\n".join(output)  # the command ran, against this test's database
    assert imported == "heavy imported: []"
