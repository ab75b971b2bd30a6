"""Where lce keeps its data, which database it talks to, and which device it computes on.

    LCE_HOME                    data directory (embedded Postgres under $LCE_HOME/postgres); default: per-user data dir
    LCE_DATABASE_URL            an external PostgreSQL server instead of the embedded one (the owner's login)
    LCE_DATABASE_READONLY_URL   the same server's read-only login, for `lce sql` (the embedded server has its own)
    LCE_WRITE_RETRY_S           seconds an ingest keeps retrying its write when the database goes away (default 60)

    device = pick_device("auto")                # CUDA when present, else the CPU
    budget = DeviceBudget.for_device(device)    # block sizes the dissection engine uses on it
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import lce

HOME_ENV = "LCE_HOME"
DATABASE_URL_ENV = "LCE_DATABASE_URL"
READONLY_URL_ENV = "LCE_DATABASE_READONLY_URL"
WRITE_RETRY_ENV = "LCE_WRITE_RETRY_S"
DEFAULT_WRITE_RETRY_S = 60.0  # long enough for `lce db stop` + restart, or a server's crash recovery


def lce_home() -> Path:
    """The data directory: $LCE_HOME, else the per-user data dir (~/.local/share/lce on Linux)."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("lce"))


def external_database_url() -> str | None:
    """$LCE_DATABASE_URL when set (an external server), else None (the embedded server)."""
    return os.environ.get(DATABASE_URL_ENV) or None


def external_readonly_url() -> str | None:
    """$LCE_DATABASE_READONLY_URL when set (the external server's read-only login), else None."""
    return os.environ.get(READONLY_URL_ENV) or None


def write_retry_s() -> float:
    """$LCE_WRITE_RETRY_S: how long an ingest retries its write against a database that went away (0: once)."""
    configured = os.environ.get(WRITE_RETRY_ENV)
    if not configured:
        return DEFAULT_WRITE_RETRY_S
    try:
        seconds = float(configured)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        from lce.errors import LceError

        raise LceError(f"{WRITE_RETRY_ENV}={configured!r} is not a number of seconds (0 or more).")
    return seconds


@functools.cache
def code_version() -> str:
    """`lce <version>`, plus the git commit when running from a checkout (recorded with every result)."""
    version = f"lce {lce.__version__}"
    checkout = Path(lce.__file__).resolve().parent.parent
    if (checkout / ".git").exists():
        try:
            commit = subprocess.run(
                ["git", "-C", str(checkout), "rev-parse", "--short=12", "HEAD"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()
            version += f" ({commit}{'+dirty' if dirty else ''})"
        except (OSError, subprocess.SubprocessError):
            pass
    return version


DEVICES = ("auto", "cpu", "cuda")


def pick_device(name: str = "auto"):
    """The torch device for `--device`: `auto` is CUDA when present, else the CPU. The only place that picks one."""
    import torch

    from lce.errors import LceError

    if name not in DEVICES and not name.startswith("cuda:"):
        raise LceError(f"--device must be one of {', '.join(DEVICES)} (or cuda:N), not {name!r}.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LceError(f"--device {name}: no CUDA device is available here; use --device cpu (or auto).")
    return torch.device(name)


@dataclass(frozen=True)
class DeviceBudget:
    """How much work the dissection engine hands the device at once, chosen by the device's type (for_device) here
    and nowhere else: a GPU takes large blocks (each block costs a host sync; it has the memory), the CPU smaller
    ones. The sizes change how fast a dissection runs, never its results (thresholds stay exact up to
    `exact_limit`, and an ingest records whether they were)."""

    exact_limit: int  # values per unit times units a layer's thresholds may hold and stay exact (dissect/threshold.py)
    threshold_window: int  # bytes of pass 1's activations buffered per layer for upsampled thresholds (engine._Window)
    cell_chunk: int  # cells upsampled at once (each a few dozen floats)
    histogram_chunk: int  # values per chunk of units counted at once into a threshold histogram
    pin_memory: bool  # the DataLoader pins its batches (for fast copies to a GPU)

    @staticmethod
    def for_device(device) -> DeviceBudget:
        """The budget of a torch device (or its name: "cpu", "cuda", "cuda:1")."""
        import torch

        return _GPU_BUDGET if torch.device(device).type == "cuda" else _CPU_BUDGET


_CPU_BUDGET = DeviceBudget(exact_limit=2**26, threshold_window=2**28, cell_chunk=2**15, histogram_chunk=2**25,
                           pin_memory=False)
_GPU_BUDGET = DeviceBudget(exact_limit=2**29, threshold_window=2**30, cell_chunk=2**19, histogram_chunk=2**28,
                           pin_memory=True)
